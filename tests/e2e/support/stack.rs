//! The stack the tests deploy: copies of `stack/` with edits, the deploy command, and the
//! guard that puts the default stack back.
//!
//! Tests that change the stack deploy a COPY of `stack/` from a temp dir and redeploy the
//! default stack when they end (also when they fail, through `RestoreDefault`), so the
//! sandbox is left on `./stack`. The sandbox is shared with other developers' end-to-end
//! tests: deploys pass `--lock-wait 5m`.

use super::files::copy_dir;
use super::{json, sp, text, REPO};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

/// The default stack.
pub fn default_stack() -> PathBuf {
    Path::new(REPO).join("stack")
}

/// A copy of the default stack with edits `(file, from, to)`: each replaces the first
/// `from` in `file`, which must be there (so every edit changes the file).
pub fn stack_copy(edits: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&default_stack(), tmp.path());
    for (file, from, to) in edits {
        let p = tmp.path().join(file);
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.contains(from), "{file} has no {from:?}");
        std::fs::write(&p, s.replacen(from, to, 1)).unwrap();
    }
    tmp
}

/// The default stack's manifest (`stack/stackproof.yml`).
pub fn manifest() -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(default_stack().join("stackproof.yml")).unwrap()).unwrap()
}

/// The port the default stack's host exporter listens on (`host_exporter.port`).
pub fn host_exporter_port() -> u16 {
    let m = manifest();
    let port = m["host_exporter"]["port"].as_u64().expect("host_exporter.port in stack/stackproof.yml");
    u16::try_from(port).unwrap()
}

/// `deploy --host sandbox --format json --lock-wait 5m [--stack DIR] EXTRA…`.
fn deploy_output(stack: Option<&Path>, extra: &[&str]) -> Output {
    let mut args = vec!["deploy", "--host", "sandbox", "--format", "json", "--lock-wait", "5m"];
    if let Some(s) = stack {
        args.extend(["--stack", s.to_str().unwrap()]);
    }
    args.extend_from_slice(extra);
    sp(&args)
}

/// The same, with its JSON document.
pub fn deploy(stack: Option<&Path>, extra: &[&str]) -> (Output, Value) {
    let o = deploy_output(stack, extra);
    let j = json(&o);
    (o, j)
}

/// A deploy that must succeed (exit 0, `ok: true`).
pub fn deploy_ok(stack: Option<&Path>, extra: &[&str]) -> Value {
    let (o, j) = deploy(stack, extra);
    assert_eq!(o.status.code(), Some(0), "deploy of {stack:?} failed:\n{}", text(&o));
    assert_eq!(j["ok"], true);
    j
}

/// Redeploys the default stack when dropped: the sandbox is left on `./stack`. Declare it
/// first in a test, so that whatever the test holds (a listener, a lock) is dropped
/// before it runs.
pub struct RestoreDefault;

impl Drop for RestoreDefault {
    fn drop(&mut self) {
        // Not `deploy`: a panic here (stdout not JSON) would abort a failing test.
        let o = deploy_output(None, &["--no-drill"]);
        if o.status.code() != Some(0) {
            eprintln!("restoring the default stack failed:\n{}", text(&o));
        }
    }
}
