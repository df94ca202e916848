//! The host exporter step: (re)start the exporter when the plan says so, refusing a
//! port someone else holds, and wait until it answers with exposition text.

use super::containers::indent;
use super::decide;
use super::Effects;
use crate::error::{Error, Kind, Result};
use crate::exporter::{choose_mode, linger_check, Exporter, Mode};
use crate::output::Progress;
use crate::plan::{ExporterAction, Plan};
use crate::remote::conn::listeners;
use crate::remote::http::Http;
use crate::remote::poll::poll;
use crate::remote::Conn;
use crate::stack::Stack;
use std::time::Instant;

fn port_in_use(conn: &Conn, port: u16) -> Error {
    Error::remote(
        Kind::PortInUse,
        format!("port {port} on {} is in use by a process that is not stackproof's host exporter", conn.ssh.host().name),
        format!("find it with `ss -ltnp 'sport = :{port}'` on the host and stop it (by PID), or change `host_exporter.port`"),
    )
}

/// Before anything changes: refuse to restart the exporter behind a port another
/// process holds (it would crash-loop while the other process answers the checks).
pub async fn preflight(conn: &Conn, stack: &Stack, plan: &Plan) -> Result<()> {
    // What cannot be passed safely (a newline that would end a unit file line) is refused
    // before anything is touched.
    crate::exporter::check(&stack.manifest.name, &conn.ssh.host().remote_dir, &stack.manifest.host_exporter)?;
    let host = conn.ssh.host();
    // systemd without lingering: `supervisor: systemd` is refused, `auto` falls back to
    // the supervised process (said on stderr here, journaled when it starts).
    if let Some(note) = linger_check(host.supervisor, conn.state.has_systemd, conn.state.linger, &host.user)? {
        eprintln!("note: {note}");
    }
    if plan.exporter == ExporterAction::Keep {
        return Ok(());
    }
    // Under systemd the state script does not see the unit's pid, so whether a listener
    // is ours is unknown here: the check after the stop covers that case.
    if choose_mode(host.supervisor, conn.state.has_systemd, conn.state.linger) == Mode::Systemd {
        return Ok(());
    }
    let port = stack.manifest.host_exporter.port;
    let on_port = listeners(&conn.ssh).await?.iter().filter(|l| l.port == port).count();
    if decide::exporter_port_taken(&plan.exporter, on_port, conn.state.exporter.is_some()) {
        return Err(port_in_use(conn, port));
    }
    Ok(())
}

/// The exporter step (after the containers). Touches the host from the stop on.
pub async fn apply(conn: &Conn, stack: &Stack, plan: &Plan, deadline: Instant, fx: &mut Effects, progress: &Progress) -> Result<()> {
    if plan.exporter == ExporterAction::Keep {
        return Ok(());
    }
    let host = conn.ssh.host();
    let mode = choose_mode(host.supervisor, conn.state.has_systemd, conn.state.linger);
    let exp = Exporter { ssh: &conn.ssh, stack: &stack.manifest.name, cfg: &stack.manifest.host_exporter, mode };
    progress.set_message("host exporter: restarting");
    fx.touch();
    if let Ok(Some(note)) = linger_check(host.supervisor, conn.state.has_systemd, conn.state.linger, &host.user) {
        // A unit started while lingering was on would hold the port: stop and disable it.
        let unit = crate::exporter::unit_name(&stack.manifest.name);
        let _ = conn.ssh.script(r#"systemctl --user disable --now "$1" >/dev/null 2>&1; echo DONE"#, &[unit.as_str()]).await;
        let entry = serde_json::json!({"event": "host_exporter", "at": chrono::Utc::now().to_rfc3339(), "mode": "process", "reason": note});
        let _ = crate::remote::layout::journal(&conn.ssh, &entry).await;
    }
    exp.stop().await?;
    // Our exporter is stopped: whatever still listens on its port is not ours (an
    // exporter whose pid file was lost, another program). Starting now would crash-loop
    // behind a port that answers, and the checks would read the wrong process.
    let port = stack.manifest.host_exporter.port;
    if listeners(&conn.ssh).await?.iter().any(|l| l.port == port) {
        return Err(port_in_use(conn, port));
    }
    exp.start().await?;
    if let Err(why) = wait_exporter(conn, stack, deadline).await {
        let log = exp.log_tail().await;
        return Err(Error::remote(
            Kind::ExporterFailed,
            format!("the host exporter did not answer: {why}\n  last log lines:\n{}", indent(&log)),
            "check `host_exporter.command` and the exporter's log in <remote_dir>/run/host-exporter.log",
        ));
    }
    progress.println("  host exporter: answers");
    Ok(())
}

/// Wait until the host exporter answers with exposition text.
pub async fn wait_exporter(conn: &Conn, stack: &Stack, deadline: Instant) -> std::result::Result<(), String> {
    let he = &stack.manifest.host_exporter;
    let local = conn.ssh.tunnel(he.port).await.map_err(|e| e.to_string())?;
    let url = format!("http://127.0.0.1:{local}{}", he.metrics_path);
    let http = Http::new();
    let client = http.client();
    poll(deadline, || async {
        let r = client.get(&url).send().await.map_err(|e| format!("{url}: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("{url} answered {}", r.status()));
        }
        let text = r.text().await.map_err(|e| e.to_string())?;
        if text.lines().any(|l| l.starts_with("# TYPE ")) {
            Ok(())
        } else {
            Err("no exposition text".into())
        }
    })
    .await
}
