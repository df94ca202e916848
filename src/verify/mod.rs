//! `verify`: prove the deployed stack works the way a person would check it.
//!
//! The checks know nothing about SSH: they receive HTTP base URLs (the local ends of
//! the tunnels `on_host` opened through the connection layer) and the stack that was
//! deployed. Every check polls its
//! service until it passes or until a deadline derived from the stack's own timing
//! (scrape and evaluation intervals, Grafana's provider update interval) — capped by
//! the caller's overall deadline — and never sleeps a fixed time.
//!
//! Layout: pure decisions (config comparison, route evaluation, exposition validation,
//! data-vs-empty frame, template substitution) live in their own modules and are unit
//! tested; the `*_checks` functions are the thin HTTP shell around them.

pub mod alertmanager;
pub mod config_diff;
pub mod exposition;
pub mod exposure;
pub mod frames;
pub mod grafana;
pub mod host_exporter;
pub mod on_host;
pub mod panels;
pub mod prometheus;
pub mod receivers;

use serde::Serialize;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::remote::http;
pub(crate) use crate::remote::poll::{poll, Attempt, POLL_INTERVAL};
/// Base URLs of the four HTTP services, e.g. `http://127.0.0.1:43211`. On a real host
/// these are the local ends of SSH tunnels the connection layer opened.
pub use crate::remote::Endpoints;
use crate::stack::files::{StackFiles, Timing};

pub struct VerifyInput {
    /// The stack that was deployed (its files are the reference for "deployed config").
    pub stack: crate::stack::Stack,
    pub endpoints: Endpoints,
    pub grafana_user: String,
    pub grafana_password: crate::hosts::Secret,
    /// No check polls past this instant.
    pub deadline: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
    /// Not a failure, but something a person must know (e.g. a host that pages nobody
    /// on purpose): shown by verify, status and the gate, never silent.
    Warn,
}

/// One check: a stable name, its outcome, what was seen, and what to do next.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    /// What was seen. For a pass it may carry a `warning:` line (e.g. a rule that can
    /// never fire).
    pub detail: String,
    /// What to do next (empty when nothing to do).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hint: String,
    pub duration_ms: u64,
}

/// The result of a verification.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub ok: bool,
    pub checks: Vec<Check>,
    /// Every dashboard with each panel's outcome and the data it returned (HTML report).
    #[serde(skip)]
    pub dashboards: Vec<DashboardResult>,
    /// Filled by the outage drill (its own issue); rendered in the HTML report's drill
    /// section and emitted as the `drill` key of the JSON report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill: Option<serde_json::Value>,
    /// `alertmanager_notifications_failed_total` by integration when verified (journaled,
    /// so the next verification sees what rose).
    #[serde(skip)]
    pub notifications_failed: Option<std::collections::BTreeMap<String, f64>>,
}

impl Report {
    /// Add checks run outside `run` (they count towards `ok` like the others).
    pub fn add(&mut self, mut checks: Vec<Check>) {
        self.ok &= checks.iter().all(|c| c.status != Status::Fail);
        for c in &mut checks {
            c.detail = crate::redact::scrub_text(&c.detail);
            c.hint = crate::redact::scrub_text(&c.hint);
        }
        self.checks.extend(checks);
    }

    fn from_checks(mut checks: Vec<Check>, dashboards: Vec<DashboardResult>) -> Report {
        // Stable order: as produced (grouped by service); the text view puts failures first.
        checks.retain(|c| !c.name.is_empty());
        let ok = checks.iter().all(|c| c.status != Status::Fail);
        Report { ok, checks, dashboards, drill: None, notifications_failed: None }
    }

    /// Replace every occurrence of `secret` in the report's text, and hide whatever looks
    /// like a secret (`crate::redact::scrub_text`: URLs with userinfo or a query,
    /// `password=…`) — defence in depth: no check puts a credential in its detail, but an
    /// upstream error message might.
    pub fn redact(&mut self, secret: &str) {
        let scrub = |s: &mut String| {
            if secret.len() >= 4 && s.contains(secret) {
                *s = s.replace(secret, "***");
            }
            let t = crate::redact::scrub_text(s);
            if t != *s {
                *s = t;
            }
        };
        if let Some(d) = &mut self.drill {
            crate::redact::scrub_json(d);
        }
        for c in &mut self.checks {
            scrub(&mut c.detail);
            scrub(&mut c.hint);
        }
        for d in &mut self.dashboards {
            for p in &mut d.panels {
                for q in &mut p.queries {
                    scrub(&mut q.detail);
                    scrub(&mut q.expr);
                }
            }
        }
    }

    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DashboardResult {
    pub uid: String,
    pub title: String,
    pub folder: String,
    pub panels: Vec<PanelResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PanelResult {
    pub title: String,
    pub status: Status,
    pub queries: Vec<QueryResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryResult {
    pub ref_id: String,
    /// The expression as sent (dashboard variables substituted).
    pub expr: String,
    pub status: Status,
    pub detail: String,
    /// Returned series, thinned for the report's charts.
    pub series: Vec<frames::Series>,
}

/// What a check function returns; `timed` adds the name and the duration.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub status: Status,
    pub detail: String,
    pub hint: String,
}

impl Outcome {
    pub fn pass(detail: impl Into<String>) -> Outcome {
        Outcome { status: Status::Pass, detail: detail.into(), hint: String::new() }
    }
    pub fn fail(detail: impl Into<String>, hint: impl Into<String>) -> Outcome {
        Outcome { status: Status::Fail, detail: detail.into(), hint: hint.into() }
    }
    pub fn skip(detail: impl Into<String>) -> Outcome {
        Outcome { status: Status::Skip, detail: detail.into(), hint: String::new() }
    }
}

pub(crate) async fn timed(name: impl Into<String>, fut: impl Future<Output = Outcome>) -> Check {
    let start = Instant::now();
    let o = fut.await;
    Check { name: name.into(), status: o.status, detail: o.detail, hint: o.hint, duration_ms: start.elapsed().as_millis() as u64 }
}

pub(crate) fn skipped(name: impl Into<String>, why: impl Into<String>) -> Check {
    Check { name: name.into(), status: Status::Skip, detail: why.into(), hint: String::new(), duration_ms: 0 }
}

/// Everything the checks share: HTTP client, endpoints, the stack's files, deadlines.
pub(crate) struct Ctx<'a> {
    pub input: &'a VerifyInput,
    pub http: http::Http,
    pub files: StackFiles,
    pub bounds: Bounds,
}

/// Per-check deadlines, derived from the stack's timing and capped by the caller's.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub ready: Instant,
    pub targets: Instant,
    pub rules: Instant,
    pub alertmanagers: Instant,
    pub metrics: Instant,
    pub dashboards: Instant,
    pub panels: Instant,
}

/// How long after a (re)start each stage may legitimately take, from the stack's timing.
/// Prometheus throttles service-discovery updates to 5 s, so a new target's first sample
/// comes ~5.5 s after start (seen on this machine); the first scrape may come a whole
/// interval later; a rate needs two samples.
pub fn bounds_for(t: &Timing, start: Instant, cap: Instant) -> Bounds {
    const SD: Duration = Duration::from_secs(6);
    const SLACK: Duration = Duration::from_secs(3);
    let at = |d: Duration| (start + d).min(cap);
    let targets = SD + t.scrape * 2 + t.scrape_timeout + SLACK;
    Bounds {
        ready: cap,
        targets: at(targets),
        rules: at(t.evaluation * 2 + SLACK),
        alertmanagers: at(SD + SLACK),
        metrics: at(targets + t.evaluation),
        dashboards: at(t.provider_update * 2 + Duration::from_secs(10)),
        panels: at(targets + t.scrape * 2 + t.evaluation),
    }
}

impl<'a> Ctx<'a> {
    fn new(input: &'a VerifyInput) -> Ctx<'a> {
        let files = StackFiles::load(&input.stack);
        let bounds = bounds_for(&files.timing, Instant::now(), input.deadline);
        Ctx { input, http: http::Http::new(), files, bounds }
    }
}

/// A failing check naming every stack file `verify` could not read.
fn problems_as_checks(files: &StackFiles) -> Vec<Check> {
    if files.problems.is_empty() {
        return vec![];
    }
    vec![Check {
        name: "stack files readable".into(),
        status: Status::Fail,
        detail: files.problem_text(),
        hint: "run `stackproof lint` on the stack that was deployed".into(),
        duration_ms: 0,
    }]
}

/// `<service>: ready`: `/-/ready` answers 200 (Prometheus and Alertmanager), polled
/// until the readiness deadline.
pub(crate) async fn ready_check(ctx: &Ctx<'_>, service: &str, base: &str) -> Check {
    let url = http::join(base, "/-/ready");
    timed(&format!("{service}: ready"), async {
        let r = poll(ctx.bounds.ready, || async {
            match ctx.http.get(&url, None).await {
                Ok(a) if a.ok() => Attempt::Done(()),
                Ok(a) => Attempt::Retry(format!("/-/ready answered HTTP {}: {}", a.status, a.message())),
                Err(e) => Attempt::Retry(e),
            }
        })
        .await;
        match r {
            Ok(()) => Outcome::pass("ready"),
            Err(e) => Outcome::fail(e, format!("check the {service} container's log (`stackproof status`)")),
        }
    })
    .await
}

/// Run every check, concurrently where they are independent.
pub async fn run(input: &VerifyInput, progress: &crate::output::Progress) -> Report {
    let ctx = Ctx::new(input);
    progress.set_message("verify: Prometheus, Alertmanager, Grafana, host exporter");
    let (p, a, (g, dashboards), h) =
        tokio::join!(prometheus::checks(&ctx), alertmanager::checks(&ctx), grafana::checks(&ctx), host_exporter::checks(&ctx, true),);
    let mut checks = problems_as_checks(&ctx.files);
    checks.extend(p);
    checks.extend(a);
    checks.extend(g);
    checks.extend(h);
    let mut report = Report::from_checks(checks, dashboards);
    report.redact(input.grafana_password.expose());
    let failed = report.failed().count();
    if failed == 0 {
        progress.finish(format!("verify: {} checks passed", report.checks.len()));
    } else {
        progress.fail(format!("verify: {failed} of {} checks failed", report.checks.len()));
    }
    report
}

/// The quick reachability subset deploy uses: Prometheus and Alertmanager ready, Grafana
/// healthy, host exporter answering.
pub async fn fast_checks(input: &VerifyInput) -> Report {
    let ctx = Ctx::new(input);
    let (p, a, g, h) = tokio::join!(prometheus::ready(&ctx), alertmanager::ready(&ctx), grafana::healthy(&ctx), host_exporter::checks(&ctx, false),);
    let mut checks = vec![p, a, g];
    checks.extend(h);
    let mut report = Report::from_checks(checks, vec![]);
    report.redact(input.grafana_password.expose());
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(detail: &str) -> Check {
        Check { name: "c".into(), status: Status::Fail, detail: detail.into(), hint: "retry with password=pw123".into(), duration_ms: 0 }
    }

    #[test]
    fn reports_hide_secrets_before_anything_renders_them() {
        let mut r = Report::from_checks(vec![check("POST https://hooks.example/x?token=abc failed; admin pass is Sup3rSecret")], vec![]);
        r.drill = Some(serde_json::json!({"error": "http://u:pw@h/ refused"}));
        r.redact("Sup3rSecret");
        r.add(vec![check("login via smtp://ops:pw2@mail:25 failed")]);
        let text = serde_json::to_string(&r).unwrap();
        for leaked in ["abc", "Sup3rSecret", "pw123", "u:pw@", "pw2"] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }
        assert!(text.contains("https://hooks.example/x?***"), "{text}");
        assert!(!r.ok);
    }
}
