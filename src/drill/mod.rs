//! The outage drill (docs/architecture.md "The drill"): stop the host exporter and watch,
//! with timestamps, the drill alert go pending and firing in Prometheus, become active
//! in Alertmanager and reach stackproof's own webhook (through a reverse SSH tunnel),
//! and the real alert reach at least pending; then restart the exporter and watch
//! everything resolve. Every stage is measured against a bound computed from the
//! stack's configuration ([`bounds`]); nothing sleeps a fixed time.
//!
//! The exporter is always restarted: after a pass, a failure, an exceeded bound, and
//! on Ctrl-C / SIGTERM (the drill then returns [`Error::Interrupted`]).
//!
//! Used by `verify --drill` (`commands::verify`) and by `deploy` ([`run`]).

mod auth;
pub mod bounds;
pub mod live;
mod observe;
mod report;
pub mod webhook;

use crate::error::{Error, Kind, Result};
use crate::exporter::{choose_mode, Exporter};
use crate::remote::layout;
use crate::remote::poll::{poll, Attempt, POLL_INTERVAL};
use crate::remote::Conn;
use crate::stack::Stack;
use crate::verify::Endpoints;
pub use bounds::{bounds, Bounds};
use futures_util::FutureExt;
pub use observe::counter;
use observe::{exporter_answers, host_time, per_receiver, snapshot, Snapshot};
pub use report::{render_text, DrillReport, Stage};
use std::time::{Duration, Instant};
use webhook::Webhook;

pub struct DrillOptions {
    /// `--drill-real`: also wait for the real alert to fire and reach its receiver.
    pub real: bool,
    /// No progress lines on stderr (JSON output).
    pub quiet: bool,
}

// ---------------------------------------------------------------------------------------
// The watch

struct Goal {
    name: String,
    phase: &'static str,
    bound: Duration,
    seen: Option<Instant>,
    failed: Option<String>,
}

impl Goal {
    pub(crate) fn new(name: impl Into<String>, phase: &'static str, bound: Duration) -> Goal {
        Goal { name: name.into(), phase, bound, seen: None, failed: None }
    }
    pub(crate) fn open(&self) -> bool {
        self.seen.is_none() && self.failed.is_none()
    }
    fn stage(&self, start: Instant) -> Stage {
        let after = self.seen.map(|t| round2(t.saturating_duration_since(start).as_secs_f64()));
        let ok = self.failed.is_none() && after.is_some_and(|a| a <= self.bound.as_secs_f64());
        Stage {
            name: self.name.clone(),
            phase: self.phase,
            after_s: after,
            bound_s: round2(self.bound.as_secs_f64()),
            ok,
            detail: self.failed.clone().unwrap_or_default(),
        }
    }
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Mark `g` seen now, printing a timestamped line.
fn hit(g: &mut Goal, start: Instant, quiet: bool) {
    if g.open() {
        let now = Instant::now();
        g.seen = Some(now);
        if !quiet {
            let a = now.duration_since(start).as_secs_f64();
            let mark = if a <= g.bound.as_secs_f64() { "✓" } else { "✗" };
            eprintln!("  {mark} {a:>6.2} s  {} (bound {:.1} s)", g.name, g.bound.as_secs_f64());
        }
    }
}

/// Poll (with the one poll loop) until every goal is seen or every open goal is past its
/// bound (plus a grace of one poll interval), or one failed.
async fn watch<F>(goals: &mut [Goal], start: Instant, quiet: bool, snap: impl Fn() -> F, judge: impl FnMut(&Snapshot, &mut [Goal], Instant, bool))
where
    F: std::future::Future<Output = Snapshot>,
{
    let last = goals.iter().map(|g| g.bound).max().unwrap_or_default();
    let goals = std::cell::RefCell::new(goals);
    let judge = std::cell::RefCell::new(judge);
    // Ok(()) every goal was seen; Err(why) the open ones are past their bounds.
    let outcome = poll(start + last + POLL_INTERVAL * 2, || async {
        let s = snap().await;
        let mut goals = goals.borrow_mut();
        (judge.borrow_mut())(&s, &mut goals, start, quiet);
        let now = Instant::now();
        let open: Vec<&Goal> = goals.iter().filter(|g| g.open()).collect();
        let why = if s.errors.is_empty() { String::new() } else { format!("last poll: {}", s.errors.join("; ")) };
        if open.is_empty() {
            Attempt::Done(Ok(()))
        } else if open.iter().all(|g| now >= start + g.bound + POLL_INTERVAL) {
            Attempt::Done(Err(why))
        } else {
            Attempt::Retry(why)
        }
    })
    .await;
    let why = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(why)) | Err(why) => why,
    };
    for g in goals.into_inner().iter_mut().filter(|g| g.open()) {
        g.failed = Some(if why.is_empty() { format!("not seen within {:.1} s", g.bound.as_secs_f64()) } else { why.clone() });
        if !quiet {
            eprintln!("  ✗  {} not seen within {:.1} s", g.name, g.bound.as_secs_f64());
        }
    }
}

/// Run the drill on an open connection. Computes the bounds first and refuses (before
/// anything is stopped) a drill that cannot finish within `drill.timeout`.
///
/// `Err` means the drill could not run (refused, tunnel failed, precondition not met:
/// the exporter was never stopped) or was interrupted (`Error::Interrupted`, after the
/// exporter was restarted). `Ok(report)` carries pass or fail in `report.ok`.
///
/// Reverse tunnel note: the tunnel from the host's `drill.port` stays open until the
/// SSH session closes; run one drill per `Conn`.
pub async fn run(conn: &Conn, stack: &Stack, opts: &DrillOptions) -> Result<DrillReport> {
    let b = bounds(stack, opts.real).map_err(refused)?;
    run_with(conn, stack, &b, opts).await
}

/// Why a notification counted for the real alert's receivers cannot be said to be its
/// own (pure): Alertmanager counting per integration only (0.25) while other alerts were
/// active, whose pages count the same.
pub fn unattributable(by_receiver: bool, others_active: &std::collections::BTreeSet<String>, real_alert: &str) -> Option<String> {
    (!by_receiver && !others_active.is_empty()).then(|| {
        format!(
            "other alerts were active in Alertmanager during the drill ({}): it counts notifications per integration only, so their pages cannot be told from {real_alert}'s; run the real drill again once they have resolved (or silence them)",
            others_active.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    })
}

/// The error for a drill refused by its bounds.
pub fn refused(msg: String) -> Error {
    let hint = if msg.contains("drill.timeout") {
        "shorten the rule's `for` (the drill alert needs only a few seconds), or raise `drill.timeout` in stackproof.yml"
    } else {
        "run `stackproof lint` and fix the drill's rule, route or receiver (docs/architecture.md \"The drill\")"
    };
    Error::config(Kind::DrillRefused, msg, hint)
}

pub async fn run_with(conn: &Conn, stack: &Stack, b: &Bounds, opts: &DrillOptions) -> Result<DrillReport> {
    let quiet = opts.quiet;
    let started = Instant::now();
    // Ctrl-C / SIGTERM: register the handlers now (one poll), so a signal after the
    // exporter stopped is caught and the exporter restarted.
    let mut intr = Box::pin(crate::signals::interrupted());
    if (&mut intr).now_or_never().is_some() {
        return Err(Error::Interrupted);
    }
    // A caller's own interrupt handler (`signals::until_interrupted`, e.g. deploy's)
    // must not cancel the drill mid-way: it waits for this section to restart the
    // exporter and return `Interrupted` itself.
    let _guard = crate::signals::guard();
    let d = &stack.manifest.drill;
    let ep = conn.endpoints(&stack.manifest).await?;
    let http = crate::remote::http::Http::new();
    let client = http.client();
    let hook = Webhook::start().await.map_err(|e| Error::io("127.0.0.1:0 (drill webhook)", e))?;
    // Alertmanager's count of webhook notifications before anything can reach the
    // webhook; and the token it must present, before the tunnel opens.
    let am_before = auth::am_metrics(client, &ep.alertmanager).await;
    auth::install_token(conn, stack, &b.token_file, hook.token()).await?;
    conn.ssh.reverse_tunnel(d.port, hook.port).await?;
    if let Err(e) = auth::check_tunnel(&conn.ssh, d.port).await {
        conn.ssh.close_reverse_tunnel(d.port, hook.port).await;
        return Err(e);
    }
    let real_ints: Vec<(String, String)> = b.real_integrations.iter().flat_map(|(r, is)| is.iter().map(move |i| (r.clone(), i.clone()))).collect();
    if !quiet {
        eprint!("{}", b.render(opts.real));
    }

    // Precondition: the exporter's target up and neither alert active anywhere, so
    // every stage below is caused by this outage.
    let pre_deadline = Instant::now() + b.target_up + b.am_resolved + EXPORTER_GRACE;
    let pre = tokio::select! {
        r = poll(pre_deadline, || async {
            let s = snapshot(client, &ep, &d.job, false).await;
            if !s.errors.is_empty() {
                return Err(s.errors.join("; "));
            }
            if !s.job_all("up") {
                return Err(format!("job `{}`'s target is not up ({:?}); is the host exporter running? (`stackproof deploy` starts it)", d.job, s.job_health));
            }
            for a in [&b.alert, &b.real_alert] {
                if let Some(st) = s.prom_state(a) {
                    return Err(format!("`{a}` is already {st} in Prometheus"));
                }
                if s.am_state(a).is_some() {
                    return Err(format!("`{a}` is still active in Alertmanager"));
                }
            }
            Ok(())
        }) => r,
        _ = &mut intr => return Err(Error::Interrupted),
    };
    if let Err(why) = pre {
        return Err(Error::remote(
            Kind::DrillPrecondition,
            format!("the drill cannot start: {why}"),
            "wait for the earlier outage to resolve, or run `stackproof deploy` to restart the host exporter",
        ));
    }
    let host_t0 = host_time(client, &ep).await;
    let metrics_before = if opts.real { auth::am_metrics(client, &ep.alertmanager).await } else { None };

    // A real drill pages a person with the stack's real alert: say in its annotations
    // that it is a drill. The rules read this marker (`stackproof_drill_until_seconds >
    // time()`), which expires by itself, so a marker a killed drill left behind never
    // labels a later real outage.
    if opts.real {
        let until = chrono::Utc::now().timestamp() + b.timeout.as_secs() as i64;
        layout::write_textfile(&conn.ssh, DRILL_MARKER, &drill_marker(until)).await?;
    }

    // Stop the exporter.
    let mode = choose_mode(conn.ssh.host().supervisor, conn.state.has_systemd, conn.state.linger);
    let he = &stack.manifest.host_exporter;
    let exp = Exporter { ssh: &conn.ssh, stack: &stack.manifest.name, cfg: he, mode };
    let stop = exp.stop().await;
    let t0 = Instant::now();
    if let Err(e) = stop {
        // It may or may not be running now: make sure it is, then give up.
        let _ = ensure_running(&exp, client, &ep, &he.metrics_path, quiet).await;
        return Err(e);
    }
    if !quiet {
        eprintln!("  ■   0.00 s  exporter stopped");
    }

    // Outage.
    let mut out = vec![
        Goal::new("target down", "outage", b.target_down),
        Goal::new(format!("{} pending", b.alert), "outage", b.pending),
        Goal::new(format!("{} firing", b.alert), "outage", b.firing),
        Goal::new(format!("{} active in Alertmanager", b.alert), "outage", b.am_active),
        Goal::new(format!("{} delivered to stackproof", b.alert), "outage", b.delivered),
        Goal::new(format!("{} pending", b.real_alert), "outage", b.real_pending),
    ];
    if opts.real {
        out.push(Goal::new(format!("{} firing", b.real_alert), "outage", b.real_firing));
        out.push(Goal::new(format!("{} handed to {}", b.real_alert, b.inputs.real_receivers.join(", ")), "outage", b.real_notified));
    }
    let mut real_fail_note = None::<String>;
    // Other alerts active in Alertmanager while the real drill runs (`--drill-real`): where
    // Alertmanager counts notifications per integration only (0.25), their pages count
    // alongside the real alert's and cannot be told from it.
    let mut others_active = std::collections::BTreeSet::<String>::new();
    let interrupted = tokio::select! {
        _ = watch(&mut out, t0, quiet, || snapshot(client, &ep, &d.job, opts.real), |s, g, start, quiet| {
            if s.job_all("down") { hit(&mut g[0], start, quiet) }
            match s.prom_state(&b.alert) {
                Some("firing") => { hit(&mut g[1], start, quiet); hit(&mut g[2], start, quiet) }
                Some("pending") => hit(&mut g[1], start, quiet),
                _ => {}
            }
            match s.am_state(&b.alert) {
                Some("active") => hit(&mut g[3], start, quiet),
                Some(other) if g[3].open() && Instant::now() > start + g[3].bound => g[3].failed = Some(format!("state `{other}` in Alertmanager (silenced or inhibited?)")),
                _ => {}
            }
            let got = hook.received();
            if let Some(r) = webhook::first(&got, start, &b.alert, "firing", host_t0) {
                if g[4].open() { g[4].seen = Some(r.at); hit_print(&g[4], start, quiet); }
            }
            match s.prom_state(&b.real_alert) {
                Some("firing") => { hit(&mut g[5], start, quiet); if opts.real { hit(&mut g[6], start, quiet) } }
                Some("pending") => hit(&mut g[5], start, quiet),
                _ => {}
            }
            if opts.real {
                others_active.extend(
                    s.am.iter()
                        .filter(|(n, st)| st == "active" && *n != b.alert && *n != b.real_alert && !n.starts_with("StackproofTwin_"))
                        .map(|(n, _)| n.clone()),
                );
            }
            if opts.real && g[6].seen.is_some() && g[7].open() {
                if let (Some(before), Some(now)) = (&metrics_before, &s.am_metrics) {
                    // Our own drill deliveries count under `webhook` too when Alertmanager
                    // only labels by integration.
                    let ours = got.iter().filter(|r| r.at >= start).count() as f64;
                    let by_receiver = per_receiver(now);
                    let (mut sent, mut failed) = (0.0, 0.0);
                    for (recv, int) in &real_ints {
                        sent += counter(now, "alertmanager_notifications_total", int, recv) - counter(before, "alertmanager_notifications_total", int, recv);
                        failed += counter(now, "alertmanager_notifications_failed_total", int, recv) - counter(before, "alertmanager_notifications_failed_total", int, recv);
                        if int == "webhook" && !by_receiver { sent -= ours; }
                    }
                    if failed > 0.0 {
                        let msg = format!("Alertmanager counted {failed} failed notification(s) for {} (alertmanager_notifications_failed_total{}): the real receiver did not take it — a placeholder URL? replace it in alertmanager.yml", b.inputs.real_receivers.join(", "), if by_receiver { "" } else { ", counted per integration" });
                        g[7].failed = Some(msg.clone());
                        real_fail_note = Some(msg);
                    } else if let Some(msg) = (sent >= 1.0).then(|| unattributable(by_receiver, &others_active, &b.real_alert)).flatten() {
                        g[7].failed = Some(msg.clone());
                        real_fail_note = Some(msg);
                    } else if sent >= 1.0 {
                        hit(&mut g[7], start, quiet);
                    }
                }
            }
        }) => false,
        _ = &mut intr => true,
    };

    // Always restart the exporter, whatever happened above.
    let restart_call = Instant::now();
    let restarted = ensure_running(&exp, client, &ep, &he.metrics_path, quiet).await;
    let t1 = Instant::now();
    let restart_after = restarted.is_ok().then(|| round2(t1.duration_since(restart_call).as_secs_f64()));
    let mut error = restarted.as_ref().err().map(|e| format!("restarting the host exporter: {e}"));
    if let Some(n) = real_fail_note {
        tracing::debug!("{n}");
    }

    // Recovery.
    let delivered = out[4].seen.is_some();
    let mut rec = vec![
        Goal::new("target up", "recovery", b.target_up),
        Goal::new("alerts gone from Prometheus", "recovery", b.prom_resolved),
        Goal::new("alerts gone from Alertmanager", "recovery", b.am_resolved),
    ];
    if delivered {
        rec.push(Goal::new(format!("{} resolved delivered to stackproof", b.alert), "recovery", b.resolved_delivered));
    }
    let mut interrupted2 = false;
    if !interrupted && restarted.is_ok() {
        let fire_t = out[4].seen.unwrap_or(t0);
        interrupted2 = tokio::select! {
            _ = watch(&mut rec, t1, quiet, || snapshot(client, &ep, &d.job, false), |s, g, start, quiet| {
                if s.job_all("up") { hit(&mut g[0], start, quiet) }
                if s.errors.is_empty() && s.prom_state(&b.alert).is_none() && s.prom_state(&b.real_alert).is_none() { hit(&mut g[1], start, quiet) }
                if s.errors.is_empty() && s.am_state(&b.alert).is_none() && s.am_state(&b.real_alert).is_none() { hit(&mut g[2], start, quiet) }
                if g.len() > 3 && g[3].open() {
                    let got = hook.received();
                    if let Some(r) = webhook::first(&got, fire_t, &b.alert, "resolved", host_t0) {
                        // Seen before the restart completed counts as at once.
                        g[3].seen = Some(r.at.max(start));
                        hit_print(&g[3], start, quiet);
                    }
                }
            }) => false,
            _ = &mut intr => true,
        };
    } else if restarted.is_err() {
        for g in rec.iter_mut() {
            g.failed = Some("the exporter did not come back".into());
        }
    } else {
        for g in rec.iter_mut() {
            g.failed = Some("interrupted".into());
        }
    }
    conn.ssh.close_reverse_tunnel(d.port, hook.port).await;
    // Every delivery the webhook took must be one Alertmanager counted.
    let taken = hook.received().len();
    if let Some(why) = auth::shortfall(am_before.as_deref(), auth::am_metrics(client, &ep.alertmanager).await.as_deref(), &b.inputs.receiver, taken) {
        if !quiet {
            eprintln!("  ✗ {why}");
        }
        error = Some(error.map(|e| format!("{e}; {why}")).unwrap_or(why));
    }
    let (unauthenticated, over_cap) = hook.refused();
    if !delivered && unauthenticated > 0 {
        let why = format!(
            "the drill webhook refused {unauthenticated} POST(s) without its token and took none with it: does the running Alertmanager config give the `{}` receiver `http_config.authorization.credentials_file: {}`? (`stackproof deploy` this stack); otherwise something other than Alertmanager posted to it",
            b.inputs.receiver, b.token_file
        );
        error = Some(error.map(|e| format!("{e}; {why}")).unwrap_or(why));
    }
    if let Some(note) = auth::refused_note(&hook) {
        if !quiet {
            eprintln!("  ! {note}");
        }
        tracing::warn!("{note}");
    }
    drop(hook);
    if opts.real {
        if let Err(e) = layout::remove_textfile(&conn.ssh, DRILL_MARKER).await {
            tracing::warn!("the drill marker stays until it expires: {e}");
        }
    }

    let mut stages: Vec<Stage> = out.iter().map(|g| g.stage(t0)).collect();
    stages.extend(rec.iter().map(|g| g.stage(t1)));
    let st = |i: usize| &stages[i];
    if interrupted || interrupted2 {
        error = Some(error.map(|e| format!("interrupted; {e}")).unwrap_or_else(|| "interrupted".into()));
    }
    let resolved_stage = stages.iter().find(|s| s.phase == "recovery" && s.name.ends_with("resolved delivered to stackproof"));
    let report = DrillReport {
        ok: error.is_none() && stages.iter().all(|s| s.ok) && delivered,
        alert: b.alert.clone(),
        real_alert: b.real_alert.clone(),
        real: opts.real,
        fired_after_s: st(2).after_s,
        fire_bound_s: st(2).bound_s,
        delivered,
        delivered_after_s: st(4).after_s,
        resolved_after_s: resolved_stage.and_then(|s| s.after_s),
        resolve_bound_s: round2(b.resolved_delivered.as_secs_f64()),
        restart_after_s: restart_after,
        exporter_restarted: restarted.is_ok(),
        total_s: round2(started.elapsed().as_secs_f64()),
        bounds: b.inputs.clone(),
        webhook_refused: report::Refused { unauthenticated, over_cap },
        error,
        stages,
    };
    let _ = layout::journal(
        &conn.ssh,
        &serde_json::json!({"event": "drill", "at": chrono::Utc::now().to_rfc3339(), "release": conn.state.current, "ok": report.ok, "interrupted": interrupted || interrupted2, "drill": report.to_json()}),
    )
    .await;
    if !quiet {
        eprintln!("  drill {} in {:.1} s", if report.ok { "passed" } else { "FAILED" }, report.total_s);
    }
    if interrupted || interrupted2 {
        return Err(Error::Interrupted);
    }
    Ok(report)
}

/// The textfile that marks a real drill in progress (node-exporter's textfile collector).
pub const DRILL_MARKER: &str = "stackproof-drill.prom";

/// The marker's content: until when (Unix seconds) the stack's alerts are a drill.
pub fn drill_marker(until_unix: i64) -> String {
    format!(
        "# HELP stackproof_drill_until_seconds A stackproof drill runs until this time: alerts firing before it are a drill.\n# TYPE stackproof_drill_until_seconds gauge\nstackproof_drill_until_seconds {until_unix}\n"
    )
}

/// Extra time for the precondition poll (an earlier outage still resolving).
const EXPORTER_GRACE: Duration = bounds::EXPORTER_START;

fn hit_print(g: &Goal, start: Instant, quiet: bool) {
    if !quiet {
        if let Some(t) = g.seen {
            let a = t.saturating_duration_since(start).as_secs_f64();
            let mark = if a <= g.bound.as_secs_f64() { "✓" } else { "✗" };
            eprintln!("  {mark} {a:>6.2} s  {} (bound {:.1} s)", g.name, g.bound.as_secs_f64());
        }
    }
}

/// Start the exporter unless it already answers, and wait until it answers.
pub(crate) async fn ensure_running(exp: &Exporter<'_>, client: &reqwest::Client, ep: &Endpoints, path: &str, quiet: bool) -> Result<()> {
    if exporter_answers(client, ep, path).await {
        return Ok(());
    }
    exp.start().await?;
    let deadline = Instant::now() + bounds::EXPORTER_START;
    let r = poll(deadline, || async {
        if exporter_answers(client, ep, path).await {
            Ok(())
        } else {
            Err(String::new())
        }
    })
    .await;
    if r.is_err() {
        let log = exp.log_tail().await;
        return Err(Error::remote(
            Kind::ExporterFailed,
            format!("the host exporter did not answer within {} s after the drill restarted it; last log lines:\n{log}", bounds::EXPORTER_START.as_secs()),
            "run `stackproof deploy` to restart it, and check <remote_dir>/run/host-exporter.log",
        ));
    }
    if !quiet {
        eprintln!("  ■ exporter restarted");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Status;

    #[test]
    fn a_page_counted_per_integration_is_the_real_alerts_only_when_nothing_else_was_active() {
        let none = std::collections::BTreeSet::new();
        let other: std::collections::BTreeSet<String> = ["TestErrorRateCritical".to_string()].into();
        assert_eq!(unattributable(false, &none, "HostExporterDown"), None);
        assert_eq!(unattributable(true, &other, "HostExporterDown"), None, "counted per receiver: attributable");
        let why = unattributable(false, &other, "HostExporterDown").unwrap();
        assert!(why.contains("TestErrorRateCritical") && why.contains("HostExporterDown"), "{why}");
    }

    #[test]
    fn counters_by_integration_and_receiver() {
        let old = "alertmanager_notifications_total{integration=\"webhook\"} 3\nalertmanager_notifications_total{integration=\"email\"} 1\nalertmanager_notifications_failed_total{integration=\"webhook\"} 2\n";
        assert_eq!(counter(old, "alertmanager_notifications_total", "webhook", "critical"), 3.0);
        assert_eq!(counter(old, "alertmanager_notifications_failed_total", "webhook", "critical"), 2.0);
        assert!(!per_receiver(old));
        let new = "alertmanager_notifications_total{integration=\"webhook\",receiver_name=\"critical\"} 4\nalertmanager_notifications_total{integration=\"webhook\",receiver_name=\"stackproof-drill\"} 9\n";
        assert_eq!(counter(new, "alertmanager_notifications_total", "webhook", "critical"), 4.0);
        assert!(per_receiver(new));
    }

    fn sample() -> DrillReport {
        let b = bounds(&Stack::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/stack"))).unwrap(), false).unwrap();
        let s = |name: &str, phase, after: Option<f64>, bound: f64| Stage {
            name: name.into(),
            phase,
            after_s: after,
            bound_s: bound,
            ok: after.is_some_and(|a| a <= bound),
            detail: String::new(),
        };
        DrillReport {
            ok: false,
            alert: "StackproofDrill".into(),
            real_alert: "HostExporterDown".into(),
            real: false,
            stages: vec![
                s("target down", "outage", Some(2.1), 10.0),
                s("StackproofDrill pending", "outage", Some(3.0), 12.0),
                s("StackproofDrill firing", "outage", Some(7.0), 16.0),
                s("StackproofDrill active in Alertmanager", "outage", Some(7.1), 16.0),
                s("StackproofDrill delivered to stackproof", "outage", None, 18.0),
                s("target up", "recovery", Some(1.0), 6.0),
            ],
            fired_after_s: Some(7.0),
            fire_bound_s: 16.0,
            delivered: false,
            delivered_after_s: None,
            resolved_after_s: None,
            resolve_bound_s: 13.0,
            restart_after_s: Some(0.3),
            exporter_restarted: true,
            total_s: 30.0,
            bounds: b.inputs,
            webhook_refused: Default::default(),
            error: None,
        }
    }

    #[test]
    fn json_has_the_contract_keys() {
        let j = sample().to_json();
        for k in ["alert", "stages", "fired_after_s", "fire_bound_s", "delivered", "delivered_after_s", "resolved_after_s", "resolve_bound_s"] {
            assert!(j.get(k).is_some(), "missing {k}: {j}");
        }
        assert_eq!(j["stages"][0]["name"], "target down");
        assert_eq!(j["stages"][0]["after_s"], 2.1);
        assert_eq!(j["stages"][0]["bound_s"], 10.0);
    }

    #[test]
    fn a_missed_delivery_fails_the_check_with_a_hint() {
        let c = sample().check();
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("delivered to stackproof: not seen within 18.0 s"), "{}", c.detail);
        assert!(c.hint.contains("stackproof-drill"), "{}", c.hint);
        let t = render_text(&sample());
        assert!(t.contains("✗ StackproofDrill delivered to stackproof"), "{t}");
        assert!(t.contains("after the exporter answered again:"), "{t}");
        assert!(t.contains("drill FAILED"), "{t}");
    }
}
