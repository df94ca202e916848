//! The sandbox host's state, seen directly: the sandbox (`scripts/sandbox up`: sshd on
//! 127.0.0.1:2222, Docker, the registry on 127.0.0.1:5000) is this machine, so the tests
//! read `/srv/stackproof-sandbox`, `docker` by label and `/proc` themselves.

use super::stack::deploy_ok;
use super::{text, REPO};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The sandbox host entry's `remote_dir`.
pub const REMOTE: &str = "/srv/stackproof-sandbox";
pub const STACK_LABEL: &str = "io.stackproof.stack=stackproof";
pub const SANDBOX_USER: &str = "stackproof";
pub const IMAGES: [&str; 4] = [
    "127.0.0.1:5000/stackproof-local/prometheus:v2.42.0",
    "127.0.0.1:5000/stackproof-local/alertmanager:v0.25.0",
    "127.0.0.1:5000/stackproof-local/node-exporter:v1.5.0",
    "127.0.0.1:5000/stackproof-local/grafana-double:12.0.2",
];

pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// Containers of the stack: service → (full id, state).
pub fn containers() -> BTreeMap<String, (String, String)> {
    let o = run(
        "docker",
        &["ps", "-a", "--no-trunc", "--filter", &format!("label={STACK_LABEL}"), "--format", "{{.Label \"io.stackproof.service\"}} {{.ID}} {{.State}}"],
    );
    assert!(o.status.success(), "docker ps: {}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), (f.next()?.to_string(), f.next()?.to_string())))
        })
        .collect()
}

pub fn ids() -> BTreeMap<String, String> {
    containers().into_iter().map(|(k, (id, _))| (k, id)).collect()
}

pub fn all_running() -> bool {
    let c = containers();
    c.len() == 4 && c.values().all(|(_, st)| st == "running")
}

pub fn assert_all_running_within(d: Duration) {
    let deadline = Instant::now() + d;
    while !all_running() {
        assert!(Instant::now() < deadline, "the stack's containers are not all running: {:?}", containers());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The release `<remote_dir>/current` points at.
pub fn current() -> Option<String> {
    std::fs::read_link(format!("{REMOTE}/current")).ok().map(|p| p.display().to_string().trim_start_matches("releases/").to_string())
}

/// The release `<remote_dir>/verified` names: the last one that passed verification.
pub fn verified() -> Option<String> {
    std::fs::read_to_string(format!("{REMOTE}/verified")).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

pub fn releases() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(format!("{REMOTE}/releases"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().to_string()).filter(|n| !n.starts_with('.')).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// `current` names a release whose `.release.json` is there and names it: never a partial one.
pub fn assert_current_complete() -> String {
    let cur = current().expect("current link");
    let info =
        std::fs::read_to_string(format!("{REMOTE}/releases/{cur}/.release.json")).unwrap_or_else(|e| panic!("current -> {cur} has no .release.json: {e}"));
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["id"], cur.as_str());
    for f in info["files"].as_object().unwrap().keys() {
        assert!(Path::new(&format!("{REMOTE}/releases/{cur}/{f}")).exists(), "release {cur} lacks {f}");
    }
    cur
}

pub fn journal_len() -> usize {
    std::fs::read_to_string(format!("{REMOTE}/journal.jsonl")).map(|s| s.lines().count()).unwrap_or(0)
}

/// The host's journal, one JSON document a line.
pub fn host_journal() -> Vec<Value> {
    read_jsonl(&Path::new(REMOTE).join("journal.jsonl"))
}

pub fn read_jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The pid of the host exporter's supervisor (the leader of its process group), from
/// the pid file a deploy writes.
pub fn exporter_pid() -> Option<u32> {
    std::fs::read_to_string(format!("{REMOTE}/run/host-exporter.pid")).ok()?.trim().parse().ok()
}

pub fn grafana_password() -> String {
    std::fs::read_to_string(Path::new(REPO).join(".stackproof/sandbox/grafana_admin_password")).unwrap().trim().to_string()
}

pub fn proc_field(pid: u32, file: &str) -> String {
    std::fs::read(format!("/proc/{pid}/{file}")).map(|b| String::from_utf8_lossy(&b).replace('\0', " ")).unwrap_or_default()
}

/// Run `f` (one command that appends one journal line) until no other developer's
/// command ran on the shared sandbox meanwhile (the journal grew by exactly one line),
/// so "nothing changed" can be checked by comparing the host before and after. Returns
/// `f`'s result, the container ids and `current` before.
pub fn undisturbed<T>(mut f: impl FnMut() -> T) -> (T, BTreeMap<String, String>, Option<String>) {
    for _ in 0..5 {
        let (ids0, cur0, n0) = (ids(), current(), journal_len());
        let out = f();
        if journal_len() == n0 + 1 {
            return (out, ids0, cur0);
        }
        eprintln!("another command ran on the sandbox meanwhile; trying again");
    }
    panic!("the sandbox was never quiet for one command");
}

/// The host right after a deploy: container ids, releases, current.
pub struct Snapshot {
    pub ids: BTreeMap<String, String>,
    pub releases: Vec<String>,
    pub current: Option<String>,
}

/// Deploy `first`, snapshot the host, deploy `second` (both `--no-drill`); retried until
/// no other developer's command ran between the two on the shared sandbox, so the
/// snapshot is what `second` started from.
pub fn deploy_pair(first: Option<&Path>, second: Option<&Path>) -> (Snapshot, Value) {
    for _ in 0..5 {
        deploy_ok(first, &["--no-drill"]);
        let n = journal_len();
        let snap = Snapshot { ids: ids(), releases: releases(), current: current() };
        let j = deploy_ok(second, &["--no-drill"]);
        if journal_len() == n + 1 {
            return (snap, j);
        }
        eprintln!("another command ran on the sandbox meanwhile; trying again");
    }
    panic!("the sandbox was never quiet for two deploys in a row");
}

pub fn lock_file() -> Option<String> {
    std::fs::read_to_string(format!("{REMOTE}/lock")).ok()
}

/// Write a lock file as the sandbox user the way a deploy does (noclobber), waiting up
/// to 5 minutes for other developers' deploys to let go.
#[must_use]
pub fn take_fake_lock(who: &str) -> FakeLock {
    take_fake_lease(who, None)
}

/// The same, as a lease live until `expires` (RFC 3339), as a running holder renews it.
pub fn take_fake_lease(who: &str, expires: Option<&str>) -> FakeLock {
    let mut info = serde_json::json!({"token": "e2e-fake", "who": who, "since": "2020-01-01T00:00:00Z", "command": "deploy", "pid": 999_999});
    if let Some(e) = expires {
        info["expires"] = e.into();
    }
    let info = info.to_string();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let o = run("runuser", &["-u", SANDBOX_USER, "--", "sh", "-c", "set -C; printf '%s\\n' \"$2\" > \"$1/lock\"", "sh", REMOTE, &info]);
        if o.status.success() {
            return FakeLock;
        }
        assert!(Instant::now() < deadline, "the sandbox lock stayed held for 5 minutes: {:?}", lock_file());
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Removes our fake lock (only ours) when dropped.
pub struct FakeLock;
impl Drop for FakeLock {
    fn drop(&mut self) {
        release_fake_lock();
    }
}

fn release_fake_lock() {
    if lock_file().is_some_and(|l| l.contains("e2e-fake")) {
        let _ = std::fs::remove_file(format!("{REMOTE}/lock"));
    }
}

/// A hosts file holding a copy of the sandbox entry (paths made absolute), changed by
/// `edit`, for `STACKPROOF_HOSTS`. Returns the temp dir and the file in it.
pub fn hosts_override(edit: impl FnOnce(&mut serde_yaml::Mapping)) -> (tempfile::TempDir, PathBuf) {
    let dir = Path::new(REPO).join(".stackproof");
    let text = std::fs::read_to_string(dir.join("hosts.yml")).unwrap();
    let all: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut entry = all["hosts"]["sandbox"].as_mapping().expect("a sandbox entry").clone();
    let abs = |v: &serde_yaml::Value| serde_yaml::Value::String(dir.join(v.as_str().unwrap()).display().to_string());
    for key in ["identity_file", "known_hosts"] {
        let v = abs(&entry[key]);
        entry.insert(key.into(), v);
    }
    let mut secrets = entry["secrets"].as_mapping().cloned().unwrap_or_default();
    for (_, src) in secrets.iter_mut() {
        if let Some(f) = src.get("file").cloned() {
            src.as_mapping_mut().unwrap().insert("file".into(), abs(&f));
        }
    }
    entry.insert("secrets".into(), serde_yaml::Value::Mapping(secrets));
    // Receivers' credentials from files, as `secrets` above.
    if let Some(receivers) = entry.get_mut("receivers").and_then(serde_yaml::Value::as_mapping_mut) {
        for (_, r) in receivers.iter_mut() {
            for (_, integration) in r.as_mapping_mut().into_iter().flatten() {
                for (_, field) in integration.as_mapping_mut().into_iter().flatten() {
                    if let Some(f) = field.get("file").cloned() {
                        field.as_mapping_mut().unwrap().insert("file".into(), abs(&f));
                    }
                }
            }
        }
    }
    edit(&mut entry);
    let mut hosts = serde_yaml::Mapping::new();
    hosts.insert("sandbox".into(), serde_yaml::Value::Mapping(entry));
    let mut top = serde_yaml::Mapping::new();
    top.insert("hosts".into(), serde_yaml::Value::Mapping(hosts));
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("hosts.yml");
    std::fs::write(&file, serde_yaml::to_string(&top).unwrap()).unwrap();
    (tmp, file)
}
