//! `stackproof drill [--alert NAME]... [--all] [--real] [--report FILE]`.
//!
//! Without `--alert`/`--all`: the outage drill of `verify --drill` (the exporter stopped,
//! `StackproofDrill` fires and reaches stackproof; `--real` as `verify --drill-real`).
//! With them: every chosen alert proven — live through its drill twin where the host
//! exporter can cause it, offline otherwise (`drill::live`). Both hold the deploy lock
//! and undo a drill killed earlier first. Exit 0 passed, 1 failed, 2 could not run.

use crate::drill::{bounds, live, refused, render_text, run_with, DrillOptions};
use crate::error::{Error, Kind, Result};
use crate::hosts::Host;
use crate::output::Format;
use crate::remote::lock::{lock, release_lock, with_lease};
use crate::remote::Conn;
use crate::stack::Stack;
use std::path::PathBuf;
use std::time::Duration;

pub struct Args {
    pub alerts: Vec<String>,
    pub all: bool,
    pub real: bool,
    pub report: Option<PathBuf>,
    pub lock_wait: Option<Duration>,
}

pub async fn run(stack: &Stack, host: &Host, format: Format, args: Args) -> Result<i32> {
    let quiet = format == Format::Json;
    let (stack, _) = crate::paging::for_host(stack, host)?;
    let stack = &stack;
    let live_mode = args.all || !args.alerts.is_empty();
    // Refuse what cannot run before connecting (nothing changed).
    let plan = if live_mode {
        Some(live::plan(stack, &args.alerts, args.all, args.real).map_err(|m| {
            if m.starts_with("no alerting rule") {
                Error::config(Kind::BadArgument, m, "name an alert of the stack's rule files (`stackproof drill --all` drills every one)")
            } else {
                refused(m)
            }
        })?)
    } else {
        None
    };
    let b = if live_mode { None } else { Some(bounds(stack, args.real).map_err(refused)?) };
    let conn = Conn::open(host).await?;
    // Undo a drill killed earlier (its lock goes with it when it ran here), then lock.
    if let Err(e) = live::recover(&conn, stack, quiet).await {
        eprintln!("warning: cleaning up after an interrupted drill failed: {e}");
    }
    let held = match lock(&conn.ssh, if live_mode { "drill --alert" } else { "drill" }, args.lock_wait).await {
        Ok(l) => l,
        Err(e) => {
            conn.ssh.close().await;
            return Err(e);
        }
    };
    let result: Result<(bool, serde_json::Value, String)> = with_lease(host, &held, async {
        if let Some(plan) = &plan {
            if !quiet {
                eprintln!(
                    "drilling {} alert(s): {} live through their twins, the rest offline (at worst {:.0} s)",
                    plan.chosen.len(),
                    plan.live.len(),
                    plan.total().as_secs_f64()
                );
            }
            let r = live::run(&conn, stack, plan, &live::Options { real: args.real, quiet }, &held.token).await?;
            Ok((r.ok, r.to_json(), live::render_text(&r)))
        } else {
            let b = b.as_ref().expect("bounds computed above");
            let d = run_with(&conn, stack, b, &DrillOptions { real: args.real, quiet }).await?;
            if d.ok {
                if let Some(cur) = &conn.state.current {
                    let _ = crate::remote::layout::mark_drill_passed(&conn.ssh, cur).await;
                }
            }
            Ok((d.ok, serde_json::json!({"ok": d.ok, "drill": d.to_json()}), render_text(&d)))
        }
    })
    .await;
    release_lock(&conn.ssh, &held).await;
    conn.ssh.close().await;
    let (ok, json, text) = result?;
    if let Some(path) = &args.report {
        crate::report::write_coverage_html(&json, path).map_err(|e| Error::io(path, e))?;
    }
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&json).expect("serializable")),
        Format::Text => print!("{text}"),
    }
    Ok(if ok { 0 } else { 1 })
}
