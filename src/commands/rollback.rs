//! `stackproof rollback [--to RELEASE]`: back to the last verified release (or the one
//! named), under the deploy lock, then verify it. Exit 0 verified, 1 not verified.

use crate::deploy::release::fetch_release;
use crate::deploy::rollback::rollback_to;
use crate::error::{Error, Kind, Result};
use crate::hosts::Host;
use crate::output::Format;
use crate::remote::lock::{lock, release_lock};
use crate::remote::{Conn, RemoteState};
use crate::stack::Stack;
use crate::verify::Check;
use serde::Serialize;

#[derive(Serialize)]
struct RollbackOutput<'a> {
    ok: bool,
    release: &'a str,
    checks: &'a [Check],
}

/// The release to go back to: the one named, else the last verified one; it must still
/// be on the host.
fn target(state: &RemoteState, to: Option<&str>, host: &str) -> Result<String> {
    let Some(t) = to.map(str::to_string).or_else(|| state.verified.clone()) else {
        return Err(Error::config(
            Kind::NoVerifiedRelease,
            format!("no release on {host} has passed verification"),
            "name one with --to RELEASE (see `stackproof status`)",
        ));
    };
    if !state.releases.contains(&t) {
        return Err(Error::config(Kind::ReleaseMissing, format!("release {t} is not on {host}"), "see `stackproof status` for the releases kept"));
    }
    Ok(t)
}

pub async fn run(host: &Host, to: Option<&str>, format: Format) -> Result<i32> {
    let quiet = format == Format::Json;
    let mut conn = Conn::open(host).await?;
    if let Err(e) = target(&conn.state, to, &host.name) {
        conn.ssh.close().await;
        return Err(e);
    }
    let lock = lock(&conn.ssh, "rollback", None).await?;
    let r = crate::remote::lock::with_lease(
        host,
        &lock,
        crate::signals::until_interrupted(async {
            // Read the state again under the lock: a deploy may have finished meanwhile.
            conn.refresh().await?;
            let target = target(&conn.state, to, &host.name)?;
            let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
            fetch_release(&conn.ssh, &target, dir.path()).await?;
            let stack = Stack::load(dir.path())?;
            // The release holds its rendered Alertmanager config; its receivers' secret files
            // come from the host entry.
            let mut secrets = host.secrets(&stack.manifest.secrets)?;
            secrets.extend(crate::paging::secret_map(&crate::paging::secret_files(host, &stack.manifest.receivers.from_host)?));
            Ok((rollback_to(&mut conn, &target, &secrets, quiet).await?, target))
        }),
    )
    .await;
    release_lock(&conn.ssh, &lock).await;
    conn.ssh.close().await;
    let (o, target) = r?;
    match format {
        Format::Json => {
            println!("{}", serde_json::to_string(&RollbackOutput { ok: o.report.ok, release: &target, checks: &o.report.checks }).expect("serializable"))
        }
        Format::Text => {
            crate::report::print_text(&o.report);
            let (mark, how) = if o.report.ok { ("✓", " and verified it") } else { ("✗", ", but it failed verification") };
            eprintln!("{mark} rolled back to {target}{how}");
        }
    }
    Ok(if o.report.ok { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_is_the_named_or_the_last_verified_release_still_on_the_host() {
        let st = RemoteState { verified: Some("r1".into()), releases: vec!["r0".into(), "r1".into()], ..Default::default() };
        assert_eq!(target(&st, None, "h").unwrap(), "r1");
        assert_eq!(target(&st, Some("r0"), "h").unwrap(), "r0");
        assert_eq!(target(&st, Some("r9"), "h").unwrap_err().kind(), "release_missing");
        let none = RemoteState { releases: vec!["r0".into()], ..Default::default() };
        assert_eq!(target(&none, None, "h").unwrap_err().kind(), "no_verified_release");
    }
}
