//! The checks against a live host: tunnels through the host's connection, the Grafana
//! secret from the host entry, and the journal line. Used by `verify`, by `deploy` at its
//! end, by `rollback` and by `watch`.

use super::{receivers, Endpoints, Report, VerifyInput};
use crate::error::{Error, Kind, Result};
use crate::hosts::Host;
use crate::output::Progress;
use crate::remote::{layout, Conn};
use crate::stack::Stack;
use std::time::Instant;

/// The input of the checks for this host.
pub async fn input(conn: &Conn, stack: &Stack, host: &Host) -> Result<VerifyInput> {
    let password = host.secrets(&stack.manifest.secrets)?.remove("grafana_admin_password").ok_or_else(|| {
        Error::config(Kind::SecretMissing, "the stack declares no `grafana_admin_password` secret", "add it under `secrets:` in the manifest")
    })?;
    let endpoints: Endpoints = conn.endpoints(&stack.manifest).await?;
    Ok(VerifyInput {
        stack: stack.clone(),
        endpoints,
        grafana_user: stack.manifest.grafana_admin(),
        grafana_password: password,
        deadline: Instant::now() + stack.manifest.verify.timeout,
    })
}

/// Run every check against the host: the checks through the tunnels, and (through the
/// SSH connection) whether each receiver is reachable from the host and Alertmanager
/// has delivered since the last verification.
/// `since`: which failed notifications count against this verification.
pub async fn checks(conn: &Conn, stack: &Stack, host: &Host, quiet: bool, since: receivers::Since) -> Result<Report> {
    let input = input(conn, stack, host).await?;
    let progress = Progress::step("verifying", quiet);
    let (mut report, reach, (delivered, counts), exposed) = tokio::join!(
        super::run(&input, &progress),
        receivers::reachable(conn, stack, host),
        receivers::notifications(conn, &input.endpoints.alertmanager, since, &stack.manifest.drill.receiver),
        exposure(conn, stack),
    );
    report.add(reach);
    report.add(vec![delivered]);
    report.add(vec![exposed]);
    report.notifications_failed = counts;
    Ok(report)
}

/// `exposure: listeners`: no port of the stack that is not `public` is bound to every
/// interface on the host.
async fn exposure(conn: &Conn, stack: &Stack) -> super::Check {
    let t0 = Instant::now();
    let mut c = match crate::remote::conn::listeners(&conn.ssh).await {
        Ok(l) => super::exposure::check(&stack.manifest, &l),
        Err(e) => super::Check {
            name: "exposure: listeners".into(),
            status: super::Status::Fail,
            detail: format!("cannot read the host's listeners: {e}"),
            hint: "check that /proc/net/tcp is readable on the host".into(),
            duration_ms: 0,
        },
    };
    c.duration_ms = t0.elapsed().as_millis() as u64;
    c
}

/// Journal a verification (no secrets: check names, statuses and details only, and the
/// details were already redacted).
pub async fn journal(conn: &Conn, event: &str, release: Option<&str>, report: &Report) {
    let failed: Vec<_> = report.failed().map(|c| serde_json::json!({"name": c.name, "detail": c.detail})).collect();
    let entry = serde_json::json!({
        "event": event,
        "at": chrono::Utc::now().to_rfc3339(),
        "release": release,
        "ok": report.ok,
        "checks": report.checks.len(),
        "failed": failed,
        "drill": report.drill,
        "notifications_failed": report.notifications_failed,
    });
    if let Err(e) = layout::journal(&conn.ssh, &entry).await {
        tracing::warn!("journal: {e}");
    }
}
