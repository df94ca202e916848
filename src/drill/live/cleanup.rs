//! Undo a live drill that died (SIGKILL, a cut connection) before it could clean up:
//! its run file ([`host::MARKER_FILE`]) says what it changed. The next `drill`, `verify`
//! or `deploy` on the host calls [`recover`], which undoes it and says so — unless the
//! drill is still running (its lock lease is live and its process, when on this
//! machine, is alive).

use super::host::{self, Marker};
use crate::error::Result;
use crate::remote::lock::{who, LockInfo};
use crate::remote::Conn;
use crate::stack::Stack;

/// Whether the drill that wrote `m` may still be running, given the host's lock.
pub fn may_be_running(m: &Marker, lock: Option<&LockInfo>, now: chrono::DateTime<chrono::Utc>, local_alive: impl Fn(u32) -> bool) -> bool {
    let Some(l) = lock else { return false };
    if l.token != m.token || !l.live_at(now) {
        return false;
    }
    // Its lease is live: dead only if it ran on this machine and its process is gone.
    l.who != who() || local_alive(l.pid)
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Undo a dead drill's changes, if any. Returns what was undone (always said on stderr,
/// `--format json` included: the host was changed behind the user's back), `None` when
/// there was nothing to undo or the drill still runs.
pub async fn recover(conn: &Conn, stack: &Stack, quiet: bool) -> Result<Option<Vec<String>>> {
    // The state read at connect carries the marker: no round trip when there is none.
    let Some(text) = &conn.state.drill_live else { return Ok(None) };
    let m = host::parse_marker(text);
    let lock: Option<LockInfo> = conn.state.lock.as_deref().and_then(|l| serde_json::from_str(l).ok());
    if may_be_running(&m, lock.as_ref(), chrono::Utc::now(), alive) {
        if !quiet {
            eprintln!("note: a live drill (started {}) is running on {}; its changes are left to it", m.started, conn.ssh.host().name);
        }
        return Ok(None);
    }
    let ep = conn.endpoints(&stack.manifest).await?;
    let http = crate::remote::http::Http::new();
    let done = super::run::undo(conn, stack, &ep, http.client(), &m, quiet).await?;
    // Its lock, when it is that dead drill's own (same token), goes with it.
    if lock.as_ref().is_some_and(|l| l.token == m.token) {
        let _ = crate::remote::lock::unlock(&conn.ssh, Some(&m.token)).await;
    }
    let silences: Vec<String> = m.silences.iter().map(|s| format!("{} until {}", s.alert, s.until)).collect();
    let mut said = done.clone();
    if !silences.is_empty() {
        said.push(format!("silences left to expire by themselves: {}", silences.join(", ")));
    }
    eprintln!("cleaned up after an interrupted drill (started {}): {}", m.started, said.join("; "));
    let _ =
        crate::remote::layout::journal(&conn.ssh, &serde_json::json!({"event": "drill-cleanup", "at": chrono::Utc::now().to_rfc3339(), "undone": said})).await;
    Ok(Some(said))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(token: &str, who_: &str, pid: u32, expires: &str) -> LockInfo {
        LockInfo { token: token.into(), who: who_.into(), since: "s".into(), command: "drill".into(), pid, expires: Some(expires.into()) }
    }

    #[test]
    fn a_drill_is_dead_when_its_lease_is_gone_or_its_local_process_is() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z").unwrap().with_timezone(&chrono::Utc);
        let m = Marker { token: "t".into(), ..Default::default() };
        let live = "2026-11-30T10:00:30Z";
        assert!(!may_be_running(&m, None, now, |_| true), "no lock: dead");
        assert!(!may_be_running(&m, Some(&lock("other", "x@y", 1, live)), now, |_| true), "someone else's lock");
        assert!(!may_be_running(&m, Some(&lock("t", "x@y", 1, "2026-11-30T09:59:00Z")), now, |_| true), "expired lease");
        assert!(may_be_running(&m, Some(&lock("t", "someone@elsewhere", 1, live)), now, |_| false), "another machine: trust the lease");
        assert!(!may_be_running(&m, Some(&lock("t", &who(), 1, live)), now, |_| false), "this machine, process gone");
        assert!(may_be_running(&m, Some(&lock("t", &who(), 1, live)), now, |_| true));
    }
}
