//! `deploy`: the pipeline. Lint (by the caller), then under the host's lock one pass of
//! named steps (`pipeline`): plan → preflight → sync → containers → exporter → checks,
//! then the outage drill; a failure after the host was touched goes back to the last
//! verified release (`rollback`). Every decision is a pure function in `decide`.
//!
//! | step       | module                  | touches the host                         |
//! |------------|-------------------------|------------------------------------------|
//! | plan       | `pipeline::make_plan`   | no (reads state, containers, secrets)    |
//! | preflight  | `pipeline`, `host_exporter::preflight` | no (ports; pulls images)  |
//! | sync       | `release::sync`         | at the swap of `current`                 |
//! | containers | `containers::apply`     | at the first remove, create or reload    |
//! | exporter   | `host_exporter::apply`  | at the stop                              |
//! | checks     | `verify::on_host`       | no                                       |
//! | drill      | `drill::run`            | stops and restarts the exporter          |

pub mod containers;
pub mod decide;
pub mod grafana;
pub mod host_exporter;
pub mod pipeline;
pub mod release;
pub mod rollback;

use crate::error::{Error, Kind, Result};
use crate::hosts::{Host, Secret};
use crate::output::{Format, Progress};
use crate::plan::PlanSummary;
use crate::remote::lock::{lock, release_lock, who};
use crate::remote::{layout, Conn};
use crate::stack::Stack;
use crate::verify::{Check, Status};
use decide::{AfterFailure, Drill};
pub use pipeline::{Durations, Failure, Outcome, Step, Target};
pub use release::LocalFiles;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a step did to the host: set (by `touch`) right before its first change.
#[derive(Debug, Default, Clone, Copy)]
pub struct Effects {
    pub touched: bool,
}

impl Effects {
    pub fn touch(&mut self) {
        self.touched = true;
    }
}

pub struct DeployOptions {
    pub lock_wait: Option<Duration>,
    pub format: Format,
    /// `Some(true)` forces the drill, `Some(false)` skips it, `None` decides from the plan.
    pub drill: Option<bool>,
    pub rollback: bool,
}

/// The deploy report (`--format json`).
#[derive(Debug, Serialize)]
pub struct DeployReport {
    pub ok: bool,
    pub release: String,
    pub plan: Option<PlanSummary>,
    pub checks: Vec<Check>,
    pub durations: Durations,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill: Option<serde_json::Value>,
    /// Set when the deploy failed after the host was touched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackReport>,
    /// Set when Ctrl-C / SIGTERM stopped the deploy after it had changed the host: the
    /// step it stopped after (the deploy then went back to the last verified release).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
    /// The verification of the deployed release, for the text and HTML reports.
    #[serde(skip)]
    pub verify: Option<crate::verify::Report>,
}

/// Where a failed deploy went back to, and whether that release verified again.
#[derive(Debug, Serialize)]
pub struct RollbackReport {
    /// `None`: no release of this host has passed verification yet.
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<Check>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `stackproof deploy`: connect, take the lock, run the pipeline, journal, release the
/// lock on every path (success, error, Ctrl-C / SIGTERM). Exit 0 deployed and verified,
/// 1 failed (rolled back when the host had changed).
pub async fn deploy(stack: &Stack, host: &Host, opts: &DeployOptions) -> Result<(DeployReport, i32)> {
    let quiet = opts.format == Format::Json;
    let t0 = Instant::now();
    let mut durations = Durations::new();
    // The stack as this host runs it (its receivers rendered in), and every secret it
    // needs, read before anything is touched.
    let (deployed, secrets) = crate::paging::deployed(stack, host)?;
    let stack = &deployed;
    let local = LocalFiles::read(stack)?;
    // An impossible drill (a `for` longer than drill.timeout) is refused before connecting.
    if opts.drill != Some(false) {
        crate::drill::bounds::bounds(stack, false).map_err(|m| {
            let e = crate::drill::refused(m);
            Error::config(Kind::DrillRefused, e.to_string(), format!("{} (or deploy with --no-drill)", e.hint()))
        })?;
    }

    let step = Progress::step(format!("connecting to {}", host.display_target()), quiet);
    let mut conn = Conn::open(host).await.inspect_err(|e| step.fail(e.to_string()))?;
    step.finish(format!("connected to {}", host.name));
    if let Err(e) = release::ensure_writable(&conn) {
        conn.ssh.close().await;
        return Err(e);
    }
    // A live drill killed mid-way left twins or a fault behind (and its lock, when it
    // ran on this machine): undo them first.
    if let Err(e) = crate::drill::live::recover(&conn, stack, quiet).await {
        eprintln!("warning: cleaning up after an interrupted drill failed: {e}");
    }
    let lock = lock(&conn.ssh, "deploy", opts.lock_wait).await?;
    // From here Ctrl-C / SIGTERM are noted, not fatal: a step that changes the host runs
    // to its end, then the pass stops and the last verified release goes back in place
    // (or, when nothing changed yet, the deploy just stops); exit 130 either way.
    crate::signals::start_noting();
    let result = crate::remote::lock::with_lease(host, &lock, run(&mut conn, stack, &local, &secrets, opts, &mut durations)).await;
    durations.insert("total_ms".into(), t0.elapsed().as_millis() as u64);
    // The journal entry and the lock's release are independent: both at once.
    let entry = match &result {
        Err(e) => {
            serde_json::json!({"event": "deploy", "at": chrono::Utc::now().to_rfc3339(), "by": who(), "ok": false, "error": e.to_string(), "kind": e.kind()})
        }
        Ok(r) => serde_json::json!({"event": "deploy", "at": chrono::Utc::now().to_rfc3339(), "by": who(), "release": r.release, "ok": r.ok,
            "plan": r.plan, "durations": durations, "rollback": r.rollback.as_ref().map(|r| serde_json::json!({"to": r.to, "ok": r.ok, "reason": r.reason})),
            "interrupted": r.interrupted,
            "notifications_failed": r.verify.as_ref().and_then(|v| v.notifications_failed.clone())}),
    };
    let (_, _) = tokio::join!(release_lock(&conn.ssh, &lock), layout::journal(&conn.ssh, &entry));
    conn.ssh.close().await;
    let mut report = result?;
    report.durations = durations;
    let code = match (&report.interrupted, report.ok) {
        (Some(_), _) => Error::Interrupted.exit_code(),
        (None, true) => 0,
        (None, false) => 1,
    };
    Ok((report, code))
}

/// The pass, the drill, and what follows a failure.
async fn run(
    conn: &mut Conn,
    stack: &Stack,
    local: &LocalFiles,
    secrets: &BTreeMap<String, Secret>,
    opts: &DeployOptions,
    durations: &mut Durations,
) -> Result<DeployReport> {
    let quiet = opts.format == Format::Json;
    let last_verified = conn.state.verified.clone();
    let drill_passed_before = conn.state.drill_passed.is_some();
    let (plan, mut report, touched, failure) = match pipeline::apply(conn, stack, Target::New(local), secrets, quiet, durations).await {
        Ok(o) => (Some(o.plan), Some(o.report), o.touched, None),
        // Nothing changed on the host: the deploy could not run (exit 2), nothing to undo.
        Err(f) if !f.touched => return Err(f.error),
        Err(f) => (f.plan, None, true, Some((f.step, f.error))),
    };

    if let (Some(p), Some(r)) = (&plan, report.as_mut()) {
        match decide::drill(opts.drill, p.alert_path_touched, drill_passed_before, r.ok) {
            Drill::Run => {
                let t = Instant::now();
                let d = crate::drill::run(conn, stack, &crate::drill::DrillOptions { real: false, quiet }).await?;
                durations.insert("drill_ms".into(), t.elapsed().as_millis() as u64);
                if !quiet {
                    eprint!("{}", crate::drill::render_text(&d));
                }
                r.ok &= d.ok;
                r.checks.push(d.check());
                r.drill = Some(d.to_json());
                if d.ok {
                    layout::mark_drill_passed(&conn.ssh, &p.release).await?;
                }
            }
            Drill::ChecksFailed if !quiet => eprintln!("– outage drill skipped: the checks failed"),
            Drill::ChecksFailed | Drill::NotNeeded | Drill::Disabled => {}
        }
    }
    let ok = report.as_ref().is_some_and(|r| r.ok);
    let release = plan.as_ref().map(|p| p.release.clone()).unwrap_or_default();
    if ok {
        // Round trips only for what changed: a release that was already the verified one
        // needs no new mark, and no release was added (nothing to prune) when it was on
        // the host before this deploy (`conn.state` as read when planning).
        if conn.state.verified.as_deref() != Some(release.as_str()) {
            layout::mark_verified(&conn.ssh, &release).await?;
        }
        if !conn.state.releases.iter().any(|r| r == &release) {
            release::prune(conn).await?;
        }
    }
    let mut out = DeployReport {
        ok,
        release,
        plan: plan.as_ref().map(|p| p.summary()),
        checks: report.as_ref().map(|r| r.checks.clone()).unwrap_or_default(),
        durations: Durations::new(),
        drill: report.as_ref().and_then(|r| r.drill.clone()),
        rollback: None,
        interrupted: None,
        verify: report.clone(),
    };
    let interrupted = matches!(&failure, Some((_, Error::Interrupted)));
    if let Some((step, e)) = &failure {
        if interrupted {
            out.interrupted = Some(step.as_str().to_string());
        }
        let detail = if interrupted { format!("interrupted after the {} step", step.as_str()) } else { format!("{} step failed: {e}", step.as_str()) };
        out.checks.push(Check { name: "deploy".into(), status: Status::Fail, detail, hint: e.hint(), duration_ms: 0 });
        if !quiet {
            eprintln!("✗ {e}\n  hint: {}", e.hint());
        }
    }
    if ok {
        return Ok(out);
    }
    match decide::after_failure(touched, opts.rollback, last_verified.as_deref()) {
        AfterFailure::Untouched => {
            if !quiet {
                eprintln!("nothing on the host changed: the release that was there stays in place");
            }
        }
        AfterFailure::KeepForDebugging => {
            if !quiet {
                eprintln!("--no-rollback: the failed release stays in place for debugging");
            }
        }
        AfterFailure::NothingToRollBackTo => {
            if !quiet {
                eprintln!("no release of this host has passed verification yet: nothing to roll back to");
            }
            out.rollback = Some(RollbackReport { to: None, ok: None, checks: None, error: None, reason: Some("no verified release".into()) });
        }
        AfterFailure::RollBack(to) => {
            if !quiet {
                let why = if interrupted { "interrupted" } else { "verification failed" };
                eprintln!("{why}: rolling back to {to}, the last verified release");
            }
            let t = Instant::now();
            let r = rollback::rollback_to(conn, &to, secrets, quiet).await;
            durations.insert("rollback_ms".into(), t.elapsed().as_millis() as u64);
            out.rollback = Some(match r {
                Ok(o) => RollbackReport {
                    to: Some(to),
                    ok: Some(o.report.ok),
                    checks: Some(o.report.checks),
                    error: None,
                    reason: interrupted.then(|| "interrupted".to_string()),
                },
                Err(e) => RollbackReport { to: Some(to), ok: Some(false), checks: None, error: Some(e.to_string()), reason: None },
            });
        }
    }
    Ok(out)
}
