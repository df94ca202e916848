//! The deploy lock: `<remote_dir>/lock`, created with `set -C` (O_EXCL) so two commands
//! cannot both take it. It holds who took it, when, for what, and a token; the holder
//! removes it by token on every exit path, `stackproof unlock` removes whatever is there.

use super::poll::{poll, Attempt};
use super::ssh::Ssh;
use crate::error::{Error, Kind, Result};
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
                tracing::warn!("releasing the lock failed: {e}; again over a new connection: {e2}");
            }
            fresh.close().await;
        }
        Err(e2) => tracing::warn!("releasing the lock failed: {e}; reconnecting failed: {e2}; run `stackproof unlock --host {}`", ssh.host().name),
    }
}
