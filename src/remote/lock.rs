//! The deploy lock: `<remote_dir>/lock`, created with `set -C` (O_EXCL) so two commands
//! cannot both take it. It holds who took it, when, for what, a token, and until when
//! it is valid: a lease the holder renews (`with_lease`) while it works. The holder
//! removes it by token on every exit path; `stackproof unlock` removes only a lease that
//! has expired (its holder died), or any with `--force`.

use super::poll::{poll, Attempt};
use super::ssh::Ssh;
use crate::error::{Error, Kind, Result};
use crate::hosts::Host;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const LOCK_SCRIPT: &str = r#"d="$1"; info="$2"
umask 077
mkdir -p "$d" 2>/dev/null
if ( set -C; printf '%s\n' "$info" > "$d/lock" ) 2>/dev/null; then echo ACQUIRED
elif [ -e "$d/lock" ]; then echo HELD; cat "$d/lock" 2>/dev/null
else echo "cannot create $d/lock" >&2; fi
"#;

/// Rewrite the lease if it is still ours (by token): a new expiry.
const RENEW_SCRIPT: &str = r#"d="$1"; token="$2"; info="$3"
umask 077
if grep -qF "\"token\":\"$token\"" "$d/lock" 2>/dev/null; then printf '%s\n' "$info" > "$d/.lock.renew" && mv -f "$d/.lock.renew" "$d/lock" && echo RENEWED; else echo NOTOURS; fi
"#;

const UNLOCK_SCRIPT: &str = r#"d="$1"; token="$2"
if [ -z "$token" ] || grep -qF "\"token\":\"$token\"" "$d/lock" 2>/dev/null; then rm -f "$d/lock" && echo RELEASED; else echo NOTOURS; fi
"#;

/// Who holds the deploy lock, and since when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockInfo {
    pub token: String,
    pub who: String,
    pub since: String,
    pub command: String,
    pub pid: u32,
    /// RFC 3339: the lease holds until then unless renewed. A lock without one (written
    /// by an older stackproof) counts as expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// How long a lease holds without renewal, and how often the holder renews it.
pub const LEASE: Duration = Duration::from_secs(60);
pub const RENEW_EVERY: Duration = Duration::from_secs(15);

impl LockInfo {
    /// Whether the lease still holds at `now` (pure).
    pub fn live_at(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.expires.as_deref().and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok()).is_some_and(|e| e > now)
    }
}

/// TEST ONLY: `STACKPROOF_TEST_LEASE_SECS=N` shortens the lease to N seconds (renewed
/// every N/4), so an end-to-end test sees a holder outlive several leases in seconds.
/// Not a user setting.
pub const TEST_LEASE_ENV: &str = "STACKPROOF_TEST_LEASE_SECS";

/// The lease and its renewal period: `LEASE`/`RENEW_EVERY`, unless a test shortened them.
pub fn lease_and_renewal() -> (Duration, Duration) {
    match std::env::var(TEST_LEASE_ENV).ok().and_then(|v| v.parse::<u64>().ok()).filter(|n| *n > 0) {
        Some(n) => (Duration::from_secs(n), Duration::from_secs(n) / 4),
        None => (LEASE, RENEW_EVERY),
    }
}

fn expiry() -> String {
    (chrono::Utc::now() + chrono::Duration::from_std(lease_and_renewal().0).expect("small")).to_rfc3339()
}

/// Run `work` while renewing the lease every `RENEW_EVERY` (a schedule, not a wait):
/// a crashed holder's lease expires within `LEASE`, a working one never does. The
/// renewals use a connection of their own, opened at the first one (most commands end
/// before it), so `work` may hold the main connection mutably.
pub async fn with_lease<T>(host: &Host, info: &LockInfo, work: impl std::future::Future<Output = T>) -> T {
    let renew = async {
        let mut ssh: Option<Ssh> = None;
        loop {
            tokio::time::sleep(lease_and_renewal().1).await;
            if ssh.is_none() {
                match Ssh::connect(host).await {
                    Ok(s) => ssh = Some(s),
                    Err(e) => {
                        eprintln!("warning: renewing the deploy lock on {}: {e}", host.name);
                        continue;
                    }
                }
            }
            let Some(s) = &ssh else { continue };
            let mut next = info.clone();
            next.expires = Some(expiry());
            let json = serde_json::to_string(&next).expect("serializable");
            match s.script(RENEW_SCRIPT, &[host.remote_dir.as_str(), info.token.as_str(), json.as_str()]).await {
                Ok(o) if o.stdout.contains("RENEWED") => {}
                Ok(_) => eprintln!("warning: the deploy lock on {} is no longer ours (removed with --force?)", host.name),
                Err(e) => {
                    eprintln!("warning: renewing the deploy lock on {} failed: {e}", host.name);
                    ssh = None;
                }
            }
        }
    };
    tokio::select! {
        r = work => r,
        never = renew => never,
    }
}

pub enum LockAttempt {
    Acquired,
    Held(Option<LockInfo>, String),
}

pub async fn try_lock(ssh: &Ssh, info: &LockInfo) -> Result<LockAttempt> {
    let dir = &ssh.host().remote_dir;
    let json = serde_json::to_string(info).expect("serializable");
    let out = ssh.script(LOCK_SCRIPT, &[dir.as_str(), json.as_str()]).await?;
    if out.stdout.starts_with("ACQUIRED") {
        return Ok(LockAttempt::Acquired);
    }
    if out.stdout.starts_with("HELD") {
        let raw = out.stdout.trim_start_matches("HELD").trim().to_string();
        return Ok(LockAttempt::Held(serde_json::from_str(&raw).ok(), raw));
    }
    Err(Error::remote(Kind::LockFailed, format!("cannot create {dir}/lock: {}", out.stderr.trim()), format!("make {dir} writable by {}", ssh.host().user)))
}

/// Release our lock (by token). `None` releases whatever lock there is (`unlock`).
pub async fn unlock(ssh: &Ssh, token: Option<&str>) -> Result<bool> {
    let out = ssh.script(UNLOCK_SCRIPT, &[ssh.host().remote_dir.as_str(), token.unwrap_or("")]).await?;
    Ok(out.stdout.contains("RELEASED"))
}

pub fn who() -> String {
    let uid = || {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1)).map(|u| format!("uid{u}")))
            .unwrap_or_else(|| "unknown".into())
    };
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| uid());
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

/// Take the deploy lock, waiting up to `wait` (polling) when another command holds it.
pub async fn lock(ssh: &Ssh, command: &str, wait: Option<Duration>) -> Result<LockInfo> {
    let info = LockInfo {
        token: format!("{:x}", Sha256::digest(format!("{}{:?}{}", std::process::id(), Instant::now(), who())))[..16].to_string(),
        who: who(),
        since: chrono::Utc::now().to_rfc3339(),
        command: command.to_string(),
        pid: std::process::id(),
        expires: Some(expiry()),
    };
    let deadline = Instant::now() + wait.unwrap_or_default();
    let taken = poll(deadline, || async {
        match try_lock(ssh, &info).await {
            Ok(LockAttempt::Acquired) => Attempt::Done(Ok(())),
            Ok(LockAttempt::Held(held, raw)) => {
                Attempt::Retry(held.map(|h| format!("{} since {} ({}, pid {})", h.who, h.since, h.command, h.pid)).unwrap_or(raw))
            }
            Err(e) => Attempt::Done(Err(e)),
        }
    })
    .await;
    match taken {
        Ok(Ok(())) => Ok(info),
        Ok(Err(e)) => Err(e),
        Err(desc) => Err(Error::LockHeld {
            message: format!("another deploy holds the lock on {}: {desc}", ssh.host().name),
            hint: format!("wait for it (or pass --lock-wait 5m); if that deploy crashed, run `stackproof unlock --host {}`", ssh.host().name),
        }),
    }
}

/// Release our lock (by token). When the connection died mid-command (a cut network,
/// a killed ssh), open a new one for it: otherwise the next deploy would find a stale
/// lock and need `stackproof unlock`.
pub async fn release_lock(ssh: &Ssh, lock: &LockInfo) {
    let Err(e) = unlock(ssh, Some(&lock.token)).await else { return };
    match Ssh::connect(ssh.host()).await {
        Ok(fresh) => {
            if let Err(e2) = unlock(&fresh, Some(&lock.token)).await {
                eprintln!(
                    "warning: releasing the deploy lock failed: {e}; again over a new connection: {e2}; it expires by itself within {} s",
                    LEASE.as_secs()
                );
            }
            fresh.close().await;
        }
        Err(e2) => eprintln!(
            "warning: releasing the deploy lock failed: {e}; reconnecting failed: {e2}; it expires by itself within {} s (then `stackproof unlock --host {}`)",
            LEASE.as_secs(),
            ssh.host().name
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(expires: Option<&str>) -> LockInfo {
        LockInfo { token: "t".into(), who: "w".into(), since: "s".into(), command: "deploy".into(), pid: 1, expires: expires.map(str::to_string) }
    }

    #[test]
    fn a_lease_is_live_until_it_expires_and_an_old_lock_counts_as_expired() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z").unwrap().with_timezone(&chrono::Utc);
        assert!(info(Some("2026-11-30T10:00:30Z")).live_at(now));
        assert!(!info(Some("2026-11-30T09:59:59Z")).live_at(now));
        assert!(!info(None).live_at(now), "written by an older stackproof");
        assert!(!info(Some("garbage")).live_at(now));
        let json = serde_json::to_string(&info(None)).unwrap();
        assert!(!json.contains("expires"), "{json}");
        assert_eq!(serde_json::from_str::<LockInfo>(r#"{"token":"t","who":"w","since":"s","command":"deploy","pid":1}"#).unwrap(), info(None));
    }
}
