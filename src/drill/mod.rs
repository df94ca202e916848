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
//! Used by `verify --drill` ([`verify_command`]) and by `deploy` ([`run`]).

pub mod bounds;
pub mod webhook;

use crate::error::{Error, Kind, Result};
use crate::exporter::{choose_mode, Exporter};
use crate::remote::layout;
use crate::remote::poll::{poll, POLL_INTERVAL};
use crate::remote::Conn;
use crate::stack::Stack;
use crate::verify::{Check, Endpoints, Status};
pub use bounds::{bounds, Bounds};
use futures_util::FutureExt;
use serde::Serialize;
use std::time::{Duration, Instant};
use webhook::Webhook;

pub struct DrillOptions {
    /// `--drill-real`: also wait for the real alert to fire and reach its receiver.
    pub real: bool,
    /// No progress lines on stderr (JSON output).
    pub quiet: bool,
}

/// One stage of the drill against its bound.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub name: String,
    /// `outage` (measured from the exporter's stop) or `recovery` (from the moment it
    /// answers again).
    pub phase: &'static str,
    /// Seconds after the phase's start; None when it was not seen.
    pub after_s: Option<f64>,
    pub bound_s: f64,
    pub ok: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The drill's outcome (`report.drill` in JSON).
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub ok: bool,
    pub alert: String,
    pub real_alert: String,
    pub real: bool,
    pub stages: Vec<Stage>,
    pub fired_after_s: Option<f64>,
    pub fire_bound_s: f64,
    pub delivered: bool,
    pub delivered_after_s: Option<f64>,
    pub resolved_after_s: Option<f64>,
    pub resolve_bound_s: f64,
    /// Seconds from the restart command until the exporter answered again.
    pub restart_after_s: Option<f64>,
    pub exporter_restarted: bool,
    /// Whole drill, wall time.
    pub total_s: f64,
    pub bounds: bounds::Inputs,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DrillReport {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a drill report serialises")
    }

    /// The drill as one check of a verification report.
    pub fn check(&self) -> Check {
        let missed: Vec<String> = self
            .stages
            .iter()
            .filter(|s| !s.ok)
            .map(|s| match s.after_s {
                Some(a) => format!("{} after {a:.1} s (bound {:.1} s)", s.name, s.bound_s),
                None => {
                    format!("{}: not seen within {:.1} s{}", s.name, s.bound_s, if s.detail.is_empty() { String::new() } else { format!(" ({})", s.detail) })
                }
            })
            .collect();
        let (status, detail, hint) = if self.ok {
            (
                Status::Pass,
                format!(
                    "{} fired after {:.1} s (bound {:.1} s), delivered after {:.1} s, resolved notification {:.1} s after the restart (bound {:.1} s)",
                    self.alert,
                    self.fired_after_s.unwrap_or_default(),
                    self.fire_bound_s,
                    self.delivered_after_s.unwrap_or_default(),
                    self.resolved_after_s.unwrap_or_default(),
                    self.resolve_bound_s
                ),
                String::new(),
            )
        } else {
            let mut d = missed.join("; ");
            if let Some(e) = &self.error {
                d = if d.is_empty() { e.clone() } else { format!("{e}; {d}") };
            }
            let hint = if !self.delivered && self.fired_after_s.is_some() {
                format!("the alert fired but no notification reached stackproof: check receiver `{}` in alertmanager.yml (a webhook to http://127.0.0.1:<drill.port>/) and Alertmanager's log", self.bounds.receiver)
            } else {
                "see the drill timeline; the bounds come from the scrape/evaluation intervals, `for` and the route's group_wait/group_interval".into()
            };
            (Status::Fail, d, hint)
        };
        Check { name: "outage drill".into(), status, detail, hint, duration_ms: (self.total_s * 1000.0) as u64 }
    }
}

/// A compact terminal timeline.
pub fn render_text(d: &DrillReport) -> String {
    let mut s = format!("outage drill ({}{}):\n", d.alert, if d.real { format!(" + {}", d.real_alert) } else { String::new() });
    let width = d.stages.iter().map(|s| s.name.chars().count()).max().unwrap_or(0);
    let mut phase = "";
    for st in &d.stages {
        if st.phase != phase {
            phase = st.phase;
            s.push_str(if phase == "outage" { "  after the exporter stopped:\n" } else { "  after the exporter answered again:\n" });
        }
        let at = st.after_s.map(|a| format!("{a:>5.1} s")).unwrap_or_else(|| "    – ".into());
        let mark = if st.ok { "✓" } else { "✗" };
        let detail = if st.ok || st.detail.is_empty() { String::new() } else { format!("  {}", st.detail) };
        s.push_str(&format!("    {mark} {:<width$}  {at}  (bound {:>5.1} s){detail}\n", st.name, st.bound_s));
    }
    if let Some(e) = &d.error {
        s.push_str(&format!("  ✗ {e}\n"));
    }
    s.push_str(&format!(
        "  drill {} in {:.1} s; exporter {}\n",
        if d.ok { "passed" } else { "FAILED" },
        d.total_s,
        if d.exporter_restarted { "running again" } else { "NOT confirmed running — check it" }
    ));
    s
}

// ---------------------------------------------------------------------------------------
// Reading the live state

/// One poll of Prometheus and Alertmanager.
#[derive(Debug, Default)]
struct Snapshot {
    /// Health of the drill job's targets (`up`/`down`/`unknown`).
    job_health: Vec<String>,
    /// (alertname, state) in Prometheus.
    prom: Vec<(String, String)>,
    /// (alertname, state) in Alertmanager.
    am: Vec<(String, String)>,
    am_metrics: Option<String>,
    errors: Vec<String>,
}

impl Snapshot {
    fn prom_state(&self, alert: &str) -> Option<&str> {
        // Firing wins over pending when several series exist.
        let states: Vec<&str> = self.prom.iter().filter(|(n, _)| n == alert).map(|(_, s)| s.as_str()).collect();
        if states.contains(&"firing") {
            Some("firing")
        } else {
            states.first().copied()
        }
    }
    fn am_state(&self, alert: &str) -> Option<&str> {
        self.am.iter().find(|(n, _)| n == alert).map(|(_, s)| s.as_str())
    }
    fn job_all(&self, health: &str) -> bool {
        !self.job_health.is_empty() && self.job_health.iter().all(|h| h == health)
    }
}

async fn get_json(client: &reqwest::Client, url: &str) -> std::result::Result<serde_json::Value, String> {
    let r = client.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("{url} answered {}", r.status()));
    }
    r.json().await.map_err(|e| format!("{url}: {e}"))
}

async fn snapshot(client: &reqwest::Client, ep: &Endpoints, job: &str, metrics: bool) -> Snapshot {
    let targets = format!("{}/api/v1/targets?state=active", ep.prometheus);
    let alerts = format!("{}/api/v1/alerts", ep.prometheus);
    let am = format!("{}/api/v2/alerts", ep.alertmanager);
    let am_metrics = format!("{}/metrics", ep.alertmanager);
    let (t, a, m, mm) = tokio::join!(get_json(client, &targets), get_json(client, &alerts), get_json(client, &am), async {
        if !metrics {
            return Ok(None);
        }
        let r = client.get(&am_metrics).send().await.map_err(|e| e.to_string())?;
        r.text().await.map(Some).map_err(|e| e.to_string())
    });
    let mut s = Snapshot::default();
    match t {
        Ok(v) => {
            s.job_health = v["data"]["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["labels"]["job"] == job)
                .map(|t| t["health"].as_str().unwrap_or("").to_string())
                .collect()
        }
        Err(e) => s.errors.push(e),
    }
    match a {
        Ok(v) => {
            s.prom = v["data"]["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| (a["labels"]["alertname"].as_str().unwrap_or("").to_string(), a["state"].as_str().unwrap_or("").to_string()))
                .collect()
        }
        Err(e) => s.errors.push(e),
    }
    match m {
        Ok(v) => {
            s.am = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| (a["labels"]["alertname"].as_str().unwrap_or("").to_string(), a["status"]["state"].as_str().unwrap_or("").to_string()))
                .collect()
        }
        Err(e) => s.errors.push(e),
    }
    match mm {
        Ok(v) => s.am_metrics = v,
        Err(e) => s.errors.push(format!("{am_metrics}: {e}")),
    }
    s
}

/// Sum of a counter over the lines with `integration="…"` (and, where Alertmanager
/// labels its counters by receiver — newer releases — `receiver_name="…"`).
/// Hand-written: one counter from a text exposition needs no parser crate.
pub fn counter(text: &str, name: &str, integration: &str, receiver: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter(|l| l.contains(&format!("integration=\"{integration}\"")))
        .filter(|l| !l.contains("receiver_name=") || l.contains(&format!("receiver_name=\"{receiver}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Whether Alertmanager counts notifications per receiver (not only per integration).
fn per_receiver(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("alertmanager_notifications_total{") && l.contains("receiver_name="))
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
    fn new(name: impl Into<String>, phase: &'static str, bound: Duration) -> Goal {
        Goal { name: name.into(), phase, bound, seen: None, failed: None }
    }
    fn open(&self) -> bool {
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

fn round2(x: f64) -> f64 {
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

/// Poll until every goal is seen or every open goal is past its bound (plus a grace of
/// one poll interval), or one failed.
async fn watch<F>(goals: &mut [Goal], start: Instant, quiet: bool, mut poll: impl FnMut() -> F, mut judge: impl FnMut(&Snapshot, &mut [Goal], Instant, bool))
where
    F: std::future::Future<Output = Snapshot>,
{
    loop {
        let snap = poll().await;
        judge(&snap, goals, start, quiet);
        let now = Instant::now();
        let open: Vec<&mut Goal> = goals.iter_mut().filter(|g| g.open()).collect();
        if open.is_empty() {
            return;
        }
        if open.iter().all(|g| now >= start + g.bound + POLL_INTERVAL) {
            let why = if snap.errors.is_empty() { String::new() } else { format!("last poll: {}", snap.errors.join("; ")) };
            for g in goals.iter_mut().filter(|g| g.open()) {
                g.failed = Some(if why.is_empty() { format!("not seen within {:.1} s", g.bound.as_secs_f64()) } else { why.clone() });
                if !quiet {
                    eprintln!("  ✗  {} not seen within {:.1} s", g.name, g.bound.as_secs_f64());
                }
            }
            return;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Seconds since the epoch on the host's clock (Prometheus' `time()`).
async fn host_time(client: &reqwest::Client, ep: &Endpoints) -> Option<f64> {
    let v = get_json(client, &format!("{}/api/v1/query?query=time()", ep.prometheus)).await.ok()?;
    v["data"]["result"][1].as_str()?.parse().ok()
}

/// Does the exporter answer with exposition text?
async fn exporter_answers(client: &reqwest::Client, ep: &Endpoints, path: &str) -> bool {
    match client.get(format!("{}{path}", ep.host_exporter)).send().await {
        Ok(r) if r.status().is_success() => r.text().await.map(|t| t.contains("# TYPE ")).unwrap_or(false),
        _ => false,
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
    let hook = Webhook::start().await.map_err(|e| Error::io("127.0.0.1:0 (drill webhook)", e))?;
    conn.ssh.reverse_tunnel(d.port, hook.port).await?;
    let http = crate::remote::http::Http::new();
    let client = http.client();
    let real_ints: Vec<(String, String)> = b.real_integrations.iter().flat_map(|(r, is)| is.iter().map(move |i| (r.clone(), i.clone()))).collect();
    if !quiet {
        eprint!("{}", b.render(opts.real));
    }

    // Precondition: the exporter's target up and neither alert active anywhere, so
    // every stage below is caused by this outage.
    let pre_deadline = Instant::now() + b.target_up + b.am_resolved + EXPORTER_GRACE;
    let pre = tokio::select! {
        r = poll(pre_deadline, || async {
            let s = snapshot(&client, &ep, &d.job, false).await;
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
    let host_t0 = host_time(&client, &ep).await;
    let metrics_before = if opts.real { client.get(format!("{}/metrics", ep.alertmanager)).send().await.ok() } else { None };
    let metrics_before = match metrics_before {
        Some(r) => r.text().await.ok(),
        None => None,
    };

    // Stop the exporter.
    let mode = choose_mode(conn.ssh.host().supervisor, conn.state.has_systemd);
    let he = &stack.manifest.host_exporter;
    let exp = Exporter { ssh: &conn.ssh, stack: &stack.manifest.name, cfg: he, mode };
    let stop = exp.stop().await;
    let t0 = Instant::now();
    if let Err(e) = stop {
        // It may or may not be running now: make sure it is, then give up.
        let _ = ensure_running(&exp, &client, &ep, &he.metrics_path, quiet).await;
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
    let interrupted = tokio::select! {
        _ = watch(&mut out, t0, quiet, || snapshot(&client, &ep, &d.job, opts.real), |s, g, start, quiet| {
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
    let restarted = ensure_running(&exp, &client, &ep, &he.metrics_path, quiet).await;
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
            _ = watch(&mut rec, t1, quiet, || snapshot(&client, &ep, &d.job, false), |s, g, start, quiet| {
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
    drop(hook);

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
async fn ensure_running(exp: &Exporter<'_>, client: &reqwest::Client, ep: &Endpoints, path: &str, quiet: bool) -> Result<()> {
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
