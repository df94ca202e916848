//! Verification of a live host: tunnels to the host's loopback services, then the
//! checks of `verify` through them. Used by `verify`, by `deploy` at its end, and by
//! `rollback` and `watch`.

use crate::deploy::{read_secrets, service_port, Conn};
use crate::error::{Error, Result};
use crate::hosts::Host;
use crate::output::{Format, Progress};
use crate::remote::layout;
use crate::stack::Stack;
use crate::verify::{Endpoints, Report, VerifyInput};
use std::path::Path;
use std::time::Instant;

/// Open one tunnel per service, on ephemeral local ports.
pub async fn endpoints(conn: &Conn, stack: &Stack) -> Result<Endpoints> {
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    let port = |s: &str| {
        service_port(stack, s)
            .ok_or_else(|| Error::config("stack_invalid", format!("service `{s}` has no port in the manifest"), "add `ports: [{port: N}]` to it"))
    };
    let (p, a, g, h) = tokio::try_join!(
        conn.ssh.tunnel(port("prometheus")?),
        conn.ssh.tunnel(port("alertmanager")?),
        conn.ssh.tunnel(port("grafana")?),
        conn.ssh.tunnel(stack.manifest.host_exporter.port),
    )?;
    Ok(Endpoints { prometheus: url(p), alertmanager: url(a), grafana: url(g), host_exporter: url(h) })
}

/// The Grafana admin user the stack configures (`GF_SECURITY_ADMIN_USER`, default admin).
pub fn grafana_admin(stack: &Stack) -> String {
    stack.manifest.services.get("grafana").and_then(|g| g.env.get("GF_SECURITY_ADMIN_USER").cloned()).unwrap_or_else(|| "admin".into())
}

/// The input of the checks for this host.
pub async fn input(conn: &Conn, stack: &Stack, host: &Host) -> Result<VerifyInput> {
    let secrets = read_secrets(stack, host)?;
    let password = secrets
        .get("grafana_admin_password")
        .cloned()
        .ok_or_else(|| Error::config("secret_missing", "the stack declares no `grafana_admin_password` secret", "add it under `secrets:` in the manifest"))?;
    Ok(VerifyInput {
        stack: stack.clone(),
        endpoints: endpoints(conn, stack).await?,
        grafana_user: grafana_admin(stack),
        grafana_password: password,
        deadline: Instant::now() + stack.manifest.verify.timeout,
    })
}

/// Run the checks against the host.
pub async fn checks(conn: &Conn, stack: &Stack, host: &Host, quiet: bool) -> Result<Report> {
    let input = input(conn, stack, host).await?;
    let progress = Progress::step("verifying", quiet);
    Ok(crate::verify::run(&input, &progress).await)
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
    });
    if let Err(e) = layout::journal(&conn.ssh, &entry).await {
        tracing::warn!("journal: {e}");
    }
}

/// Print a report in the chosen format and write the HTML file if asked.
pub fn emit(report: &Report, format: Format, html: Option<&Path>) -> Result<()> {
    if let Some(path) = html {
        crate::report::write_html(report, path).map_err(|e| Error::io(path, e))?;
    }
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&crate::report::to_json(report)).expect("serializable")),
        Format::Text => crate::report::print_text(report),
    }
    Ok(())
}

/// `stackproof verify`.
pub async fn verify_command(stack: &Stack, host: &Host, format: Format, html: Option<&Path>) -> Result<i32> {
    let quiet = format == Format::Json;
    let conn = Conn::open(host).await?;
    let report = checks(&conn, stack, host, quiet).await?;
    journal(&conn, "verify", conn.state.current.as_deref(), &report).await;
    if report.ok {
        if let Some(cur) = &conn.state.current {
            layout::mark_verified(&conn.ssh, cur).await?;
        }
    }
    conn.ssh.close().await;
    emit(&report, format, html)?;
    Ok(if report.ok { 0 } else { 1 })
}
