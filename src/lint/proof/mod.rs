//! Offline proof that every alerting rule of a stack can fire on what the stack exposes,
//! and where Alertmanager sends it (issue 13). For each alerting rule: synthetic input
//! series built from the rule's selectors and the stack's knowledge of its targets
//! ([`synth`]), a search over candidate scenarios evaluated over time with `for` and the
//! group's evaluation interval ([`search`], [`rule`], [`eval`]), the alert's labels, then
//! those labels routed through the Alertmanager routing tree. `promtool test rules`, when
//! installed, re-checks every proven rule as the reference evaluator ([`promtool`]).
//!
//! This is the contract `drill --alert/--all` (src/drill) builds on.

pub mod eval;
mod knowledge;
mod promtool;
pub mod rule;
pub mod search;
pub mod synth;
#[cfg(test)]
mod tests;

use super::ctx::StackCtx;
use super::{Severity, Sink, Source};
use crate::error::{Error, Kind, Result};
use crate::stack::alertmanager::Config as AmConfig;
use crate::stack::prometheus::{Config as PromConfig, RuleFile};
use crate::stack::promql;
use search::Outcome;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Which evaluator proves the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Evaluator {
    /// `promtool test rules` when promtool can be run, stackproof's own otherwise.
    #[default]
    Auto,
    /// stackproof's own evaluation only.
    Own,
    /// `promtool test rules` only (an error when it cannot be run).
    Promtool,
}

pub const HOW_OWN: &str = "stackproof";
pub const HOW_PROMTOOL: &str = "promtool test rules";

/// The offline verdict on one alerting rule.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertProof {
    pub alert: String,
    /// Stack-relative path of the rule file, and the line of `- alert:`.
    pub file: String,
    pub line: usize,
    pub group: String,
    /// The synthetic series made the alert fire.
    pub fires: bool,
    /// Which evaluator said so: "promtool test rules" or "stackproof".
    pub how: String,
    /// Seconds from the condition becoming true to the alert firing, offline.
    pub fired_after_s: Option<f64>,
    /// The alert's labels when it fires (alertname included).
    pub labels: BTreeMap<String, String>,
    /// The receivers the routing tree sends those labels to (empty: routes nowhere).
    pub receivers: Vec<String>,
    /// An inhibit rule or a receiver without integrations silences it.
    pub muted: bool,
    /// Why it cannot fire or was not proven; empty when proven.
    pub reason: String,
    /// The scenario that fired it: `selector: shape` per input series (empty when none did).
    pub scenario: Vec<String>,
}

/// Prove every alerting rule of the stack in `dir` (the findings of lint are dropped).
pub fn prove_stack(dir: &Path, evaluator: Evaluator) -> Result<Vec<AlertProof>> {
    if !dir.join("stackproof.yml").is_file() {
        return Err(Error::config(
            Kind::LintPath,
            format!("{} has no stackproof.yml", dir.display()),
            "pass the stack directory (the one with stackproof.yml)",
        ));
    }
    let mut sink = Sink::default();
    let opts = super::Options { with_promtool: false, evaluator };
    super::dir::lint_stack(dir, &opts, &mut sink)
}

/// One alerting rule with where it is.
struct Located<'a> {
    src: &'a Source,
    rel: String,
    g: usize,
    r: usize,
    group: &'a crate::stack::prometheus::RuleGroup,
    rule: &'a crate::stack::prometheus::Rule,
}

/// The proof inside `lint` (stack mode): one [`AlertProof`] per alerting rule, findings for
/// those that cannot fire, route nowhere or only to a muted receiver.
pub fn check_stack(
    ctx: &StackCtx,
    prom: &PromConfig,
    rules: &[(&Source, &RuleFile)],
    am: Option<&AmConfig>,
    evaluator: Evaluator,
    sink: &mut Sink,
) -> Result<Vec<AlertProof>> {
    let k = knowledge::build(ctx, prom, rules);
    let global_eval = prom.evaluation_interval();
    let mut located = Vec::new();
    for (src, rf) in rules {
        let rel = src.path.strip_prefix(&ctx.dir).map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|_| src.display.clone());
        for (g, group) in rf.groups.iter().enumerate() {
            for (r, rule) in group.rules.iter().enumerate().filter(|(_, r)| r.alert.is_some()) {
                located.push(Located { src, rel: rel.clone(), g, r, group, rule });
            }
        }
    }
    let mut proofs = Vec::new();
    let mut outcomes = Vec::new();
    for l in &located {
        let alert = l.rule.alert.clone().unwrap_or_default();
        let line = l.src.pos(&super::locate::path(&format!("groups/{}/rules/{}/alert", l.g, l.r))).map(|p| p.0).unwrap_or(0);
        let mut proof = AlertProof {
            alert: alert.clone(),
            file: l.rel.clone(),
            line,
            group: l.group.name.clone(),
            fires: false,
            how: HOW_OWN.into(),
            fired_after_s: None,
            labels: BTreeMap::new(),
            receivers: vec![],
            muted: false,
            reason: String::new(),
            scenario: vec![],
        };
        let Ok(q) = promql::parse(l.rule.expr.as_str()) else {
            proof.reason = "the expression does not parse (rules.promql)".into();
            outcomes.push(None);
            proofs.push(proof);
            continue;
        };
        let mut labels: BTreeMap<String, String> = l.group.labels.iter().map(|(k, v)| (k.clone(), v.as_str().to_string())).collect();
        labels.extend(l.rule.labels.iter().map(|(k, v)| (k.clone(), v.as_str().to_string())));
        let spec = rule::RuleSpec {
            alert: &alert,
            expr: &q.ast,
            for_s: l.rule.for_duration().as_secs_f64(),
            interval_s: l.group.interval_or(global_eval).as_secs_f64().max(0.001),
            labels,
        };
        let outcome = search::prove(&spec, &k);
        match &outcome {
            Outcome::Fires { fired, scenario, .. } => {
                proof.fires = true;
                proof.fired_after_s = Some(fired.at_s);
                proof.labels = fired.alerts[0].0.clone();
                proof.scenario = scenario.iter().map(|(s, v)| format!("{s}: {v}")).collect();
            }
            Outcome::Cannot(why) | Outcome::NotProven(why) => proof.reason = why.clone(),
            Outcome::NoTarget(nt) => {
                proof.reason = format!("selector `{}` matches no scrape target ({} is one of: {})", nt.selector, nt.label, nt.existing.join(", "))
            }
        }
        outcomes.push(Some(outcome));
        proofs.push(proof);
    }

    // The reference evaluator.
    let run_promtool = match evaluator {
        Evaluator::Own => false,
        Evaluator::Auto => promtool::available(),
        Evaluator::Promtool => {
            if !promtool::available() {
                return Err(Error::config(
                    Kind::LintPath,
                    "promtool is not installed (or not on PATH): the offline alert proof was asked to use it",
                    "install Prometheus' promtool (Debian/Ubuntu: apt-get install prometheus) or let stackproof use its own evaluator",
                ));
            }
            true
        }
    };
    if run_promtool {
        let rule_paths: Vec<&Path> = rules.iter().map(|(s, _)| s.path.as_path()).collect();
        let cases: Vec<promtool::Case> = proofs
            .iter()
            .zip(&outcomes)
            .enumerate()
            .filter_map(|(i, (p, o))| match o {
                Some(Outcome::Fires { fired, series, step, .. }) => Some(promtool::Case {
                    index: i,
                    alert: &p.alert,
                    fired,
                    series,
                    step: *step,
                    group_interval: located[i].group.interval_or(global_eval).as_secs_f64(),
                }),
                _ => None,
            })
            .collect();
        let external: BTreeMap<String, String> = prom.global.external_labels.iter().map(|(k, v)| (k.clone(), v.as_str().to_string())).collect();
        let verdicts = promtool::check(&rule_paths, &cases, &external)?;
        for (i, verdict) in verdicts {
            let p = &mut proofs[i];
            p.how = HOW_PROMTOOL.into();
            if let Err(why) = verdict {
                p.fires = false;
                p.reason = format!("stackproof's evaluator fires it, promtool test rules does not: {why}");
            }
        }
    }

    // Routing, then findings.
    let external: BTreeMap<String, String> = prom.global.external_labels.iter().map(|(k, v)| (k.clone(), v.as_str().to_string())).collect();
    let drill_timeout = ctx.manifest.drill.timeout.as_secs_f64();
    for ((p, l), o) in proofs.iter_mut().zip(&located).zip(&outcomes) {
        if p.fires {
            if let Some(am) = am {
                route(p, am, &external, &ctx.manifest.receivers.from_host);
            }
        }
        findings(p, l, o.as_ref(), drill_timeout, am.is_some(), sink);
    }
    Ok(proofs)
}

/// Route a fired alert's labels (with Prometheus' external labels) through the tree.
pub fn route(p: &mut AlertProof, am: &AmConfig, external: &BTreeMap<String, String>, from_host: &[String]) {
    let mut labels = p.labels.clone();
    for (k, v) in external {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let mut receivers: Vec<String> = Vec::new();
    for m in am.route_alert(&labels) {
        if !m.receiver.is_empty() && !receivers.contains(&m.receiver) {
            receivers.push(m.receiver);
        }
    }
    let real = |name: &String| from_host.contains(name) || am.receiver(name).is_some_and(|r| r.has_integrations());
    p.muted = !receivers.is_empty() && !receivers.iter().any(real);
    p.receivers = receivers;
}

fn findings(p: &AlertProof, l: &Located, o: Option<&Outcome>, drill_timeout: f64, has_am: bool, sink: &mut Sink) {
    let at = format!("groups/{}/rules/{}/alert", l.g, l.r);
    let name = &p.alert;
    match o {
        None => {}
        Some(Outcome::NoTarget(nt)) => sink.at(
            Severity::Error,
            "alerts.selector_no_target",
            l.src,
            &at,
            format!(
                "alert `{name}` can never fire: its selector `{}` matches no scrape target (no target has a `{}` it accepts; the {}s that exist: {})",
                nt.selector,
                nt.label,
                nt.label,
                nt.existing.join(", ")
            ),
            format!("use one of those {}s in the selector, or add a scrape config whose targets carry it", nt.label),
        ),
        Some(Outcome::Cannot(_)) => sink.at(
            Severity::Error,
            "alerts.cannot_fire",
            l.src,
            &at,
            format!("alert `{name}` cannot fire on what the stack exposes: {}", p.reason),
            "check the threshold against the metric's scale and range (a ratio is 0..1, up is 0 or 1, a histogram_quantile is at most its largest finite bucket), the labels the exporter sets and `for`",
        ),
        Some(Outcome::NotProven(_)) => sink.at(
            Severity::Info,
            "alerts.not_proven",
            l.src,
            &at,
            format!("alert `{name}` was not proven to fire offline: {}", p.reason),
            "install promtool and write a `promtool test rules` test for it, or simplify the expression",
        ),
        Some(Outcome::Fires { .. }) if !p.fires => sink.at(
            Severity::Info,
            "alerts.not_proven",
            l.src,
            &at,
            format!("alert `{name}` was not proven to fire offline: {}", p.reason),
            "compare the rule with promtool test rules; report the difference as a stackproof bug",
        ),
        Some(Outcome::Fires { .. }) => {
            if p.receivers.is_empty() && has_am {
                sink.at(
                    Severity::Error,
                    "alerts.unrouted",
                    l.src,
                    &at,
                    format!("alert `{name}` fires (labels {}) but the routing tree sends it to no receiver", show_labels(&p.labels)),
                    "give the route that takes it a receiver (the root route's receiver catches everything else)",
                );
            } else if p.muted {
                sink.at(
                    Severity::Warning,
                    "alerts.muted",
                    l.src,
                    &at,
                    format!("alert `{name}` fires but reaches only receivers with no integration ({}): it pages nobody", p.receivers.join(", ")),
                    "give the receiver an integration, list it under `receivers.from_host` in stackproof.yml, or route the alert elsewhere",
                );
            }
            let for_s = l.rule.for_duration().as_secs_f64();
            if for_s > drill_timeout {
                sink.at(
                    Severity::Info,
                    "alerts.for_outlasts_drill",
                    l.src,
                    &at,
                    format!("alert `{name}` has `for` {}s, longer than the drill waits ({}s, drill.timeout): a live drill proves it through a twin with a shorter `for`", for_s, drill_timeout),
                    "nothing to fix: it is proven offline; raise drill.timeout in stackproof.yml to drill it as written",
                );
            }
        }
    }
}

fn show_labels(l: &BTreeMap<String, String>) -> String {
    format!("{{{}}}", l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect::<Vec<_>>().join(", "))
}

/// The one summary line of lint's text output.
pub fn summary(alerts: &[AlertProof]) -> Option<String> {
    if alerts.is_empty() {
        return None;
    }
    let ok = alerts.iter().filter(|a| a.fires && !a.receivers.is_empty() && !a.muted).count();
    let mut how: Vec<&str> = alerts.iter().filter(|a| a.fires).map(|a| a.how.as_str()).collect();
    how.sort();
    how.dedup();
    let how = if how.is_empty() { "none fired".to_string() } else { how.join(" and ") };
    Some(format!("alerts: {ok} of {} fire offline and reach a receiver ({how})", alerts.len()))
}
