//! Helpers for every end-to-end test module, each written once: running the binary
//! (`bin`, `cmd`, `sp`, `text`, `json`), ports and polling, and below, the stack
//! (`stack`), the sandbox host seen directly (`sandbox`) and HTTP (`http`).

pub mod files;
pub mod http;
pub mod sandbox;
pub mod stack;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The repository root: the binary runs from here so `.stackproof/hosts.yml` is found.
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The binary under test, copied once: the shared target dir is rebuilt by other
/// developers while these tests run.
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sp-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("stackproof");
        std::fs::copy(env!("CARGO_BIN_EXE_stackproof"), &p).unwrap();
        // Someone's concurrent build can leave another build of the binary at that
        // path: refuse one whose deploy is not there at all.
        let o = Command::new(&p).args(["deploy", "--host", "e2e-no-such-host", "--format", "json"]).current_dir(REPO).output().unwrap();
        assert!(!String::from_utf8_lossy(&o.stdout).contains("not_implemented"), "{} is a stale build: rebuild and run again", p.display());
        p
    })
}

/// The binary with `args`, run from the repository root, with no host taken from the
/// environment.
pub fn cmd(args: &[&str]) -> Command {
    assert!(Path::new(REPO).join(".stackproof/hosts.yml").exists(), "no sandbox host entry: run `scripts/sandbox up` (or scripts/test)");
    let mut c = Command::new(bin());
    c.args(args).current_dir(REPO).env_remove("STACKPROOF_HOSTS").env_remove("STACKPROOF_HOST");
    c
}

pub fn sp(args: &[&str]) -> Output {
    cmd(args).output().unwrap()
}

pub fn sp_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = cmd(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

pub fn text(o: &Output) -> String {
    format!("exit {:?}\n--- stdout\n{}\n--- stderr\n{}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

pub fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", text(o)))
}

/// A loopback port nothing listens on (bound once, then released: a tiny race with
/// other processes, acceptable in a test, whose start then fails loudly).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Poll `f` until it returns `Ok` or `within` passes (then panic with the last error).
pub fn poll<T>(within: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => panic!("{what}: not within {within:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Send `sig` (`-TERM`, `-INT`, `-KILL`, …) to `pid` with kill(1): std has no signal API.
pub fn signal(sig: &str, pid: u32) {
    let st = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap();
    assert!(st.success(), "kill {sig} {pid}");
}

/// A child the test started; killed (by its pid) when dropped, so a failing assertion
/// never leaks it.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Wait for the child to exit; kill it and panic after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            if Instant::now() >= deadline {
                let _ = self.0.kill();
                panic!("{} did not exit within {within:?}", self.0.id());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
