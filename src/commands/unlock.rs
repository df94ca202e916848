//! `stackproof unlock [--force]`: release a lock left by a crashed command. A lock is a
//! lease its holder renews while it works: one still live is refused (its holder may be
//! running), unless `--force`, which is journaled.

use crate::error::{Error, Result};
use crate::hosts::Host;
use crate::output::Format;
use crate::remote::lock::{unlock, who, LockInfo};
use crate::remote::{layout, Ssh};
use serde::Serialize;

#[derive(Serialize)]
struct UnlockOutput {
    released: bool,
    forced: bool,
    lock: Option<LockInfo>,
}

/// Whether `unlock` may remove this lock (pure): an expired lease always, a live one
/// only with `--force`; a lock it cannot read is treated as expired.
pub fn may_remove(lock: Option<&LockInfo>, now: chrono::DateTime<chrono::Utc>, force: bool) -> bool {
    force || !lock.is_some_and(|l| l.live_at(now))
}

pub async fn run(host: &Host, force: bool, format: Format) -> Result<i32> {
    let ssh = Ssh::connect(host).await?;
    let st = layout::state(&ssh).await?;
    let held: Option<LockInfo> = st.lock.as_deref().and_then(|l| serde_json::from_str(l).ok());
    if st.lock.is_some() && !may_remove(held.as_ref(), chrono::Utc::now(), force) {
        ssh.close().await;
        let h = held.expect("a live lease was read");
        return Err(Error::LockHeld {
            message: format!(
                "the lock on {} is a live lease: {} ({}, pid {}) took it at {} and renews it (until {})",
                host.name,
                h.who,
                h.command,
                h.pid,
                h.since,
                h.expires.as_deref().unwrap_or("?")
            ),
            hint: "its holder is probably still running: wait for it; if you know it is gone (its machine died), run `stackproof unlock --force`".into(),
        });
    }
    let released = if st.lock.is_some() { unlock(&ssh, None).await? } else { false };
    let entry = serde_json::json!({"event": "unlock", "at": chrono::Utc::now().to_rfc3339(), "by": who(), "forced": force, "released": held});
    let _ = layout::journal(&ssh, &entry).await;
    ssh.close().await;
    match format {
        Format::Json => println!("{}", serde_json::to_string(&UnlockOutput { released, forced: force, lock: held }).expect("serializable")),
        Format::Text => println!("{}", if released { format!("lock on {} released", host.name) } else { format!("no lock on {}", host.name) }),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_expired_lease_is_removed_without_force() {
        let now = chrono::Utc::now();
        let lease = |secs: i64| LockInfo {
            token: "t".into(),
            who: "w".into(),
            since: "s".into(),
            command: "deploy".into(),
            pid: 1,
            expires: Some((now + chrono::Duration::seconds(secs)).to_rfc3339()),
        };
        assert!(!may_remove(Some(&lease(30)), now, false));
        assert!(may_remove(Some(&lease(30)), now, true));
        assert!(may_remove(Some(&lease(-1)), now, false));
        assert!(may_remove(None, now, false), "unreadable: treated as expired");
    }
}
