//! `stackproof verify [--drill | --drill-real] [--report FILE]`: the checks a person would
//! do, optionally the outage drill, then the report (text, JSON, HTML). Exit 0 all
//! passed, 1 a check failed.

use crate::drill::{bounds, refused, render_text, run_with, DrillOptions};
use crate::error::{Error, Result};
use crate::hosts::Host;
use crate::output::Format;
use crate::remote::lock::{lock, release_lock};
use crate::remote::{layout, Conn};
use crate::stack::Stack;
use crate::verify::on_host::{checks, journal};
use crate::verify::receivers::Since;
use crate::verify::Report;
use std::path::Path;

/// `None`: no drill; `Some(real)`: the outage drill, through the real receiver when `real`.
pub async fn run(stack: &Stack, host: &Host, format: Format, html: Option<&Path>, drill: Option<bool>) -> Result<i32> {
    let quiet = format == Format::Json;
    // Compare against the stack as this host runs it (its receivers rendered in).
    let (stack, _) = crate::paging::for_host(stack, host)?;
    let stack = &stack;
    // Refuse an impossible drill before connecting (nothing is stopped).
    let b = drill.map(|real| bounds(stack, real).map_err(refused)).transpose()?;
    let conn = Conn::open(host).await?;
    // A live drill killed mid-way left twins or a fault behind: undo them (and say so).
    if let Err(e) = crate::drill::live::recover(&conn, stack, quiet).await {
        eprintln!("warning: cleaning up after an interrupted drill failed: {e}");
    }
    let result = match (&b, drill) {
        (Some(b), Some(real)) => {
            // The drill changes the host (it stops the exporter): hold the deploy lock so
            // that a deploy does not restart the exporter mid-drill, nor the drill stop a
            // fresh one.
            let lock = match lock(&conn.ssh, "verify --drill", Some(b.timeout)).await {
                Ok(l) => l,
                Err(e) => {
                    conn.ssh.close().await;
                    return Err(e);
                }
            };
            let r = crate::remote::lock::with_lease(host, &lock, async {
                // Ctrl-C during the checks: stop here (the lock is released below). The
                // drill handles signals itself, so that it always restarts the exporter.
                let mut report = tokio::select! {
                    r = checks(&conn, stack, host, quiet, Since::LastVerification) => r?,
                    _ = crate::signals::interrupted() => return Err(Error::Interrupted),
                };
                let d = run_with(&conn, stack, b, &DrillOptions { real, quiet }).await?;
                if format == Format::Text {
                    println!("{}", render_text(&d));
                }
                report.ok = report.ok && d.ok;
                report.checks.push(d.check());
                report.drill = Some(d.to_json());
                Ok(report)
            })
            .await;
            release_lock(&conn.ssh, &lock).await;
            r
        }
        _ => checks(&conn, stack, host, quiet, Since::LastVerification).await,
    };
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            conn.ssh.close().await;
            return Err(e);
        }
    };
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
