//! The drill's timing bounds, computed from the stack's own configuration (pure).
//!
//! Formulas: docs/research/prometheus-facts.md §2.2. Notation: `s` scrape interval of the
//! host exporter's job, `d` failure detection (its scrape timeout: a stopped process
//! refuses at once, but a hung one fails only after the timeout), `q` rule query offset,
//! `e` the rule group's evaluation interval, `f` the rule's `for` (`n_f = ceil(f/e)`
//! evaluations), `k` keep_firing_for, `gw`/`gi` the matched route's group_wait and
//! group_interval. Every stage also gets [`MARGIN`] for the poll interval and the
//! round trips through SSH.
//!
//! The outage stages are measured from the moment the exporter is stopped; the recovery
//! stages from the moment it answers again.

use crate::stack::alertmanager::Config as AmConfig;
use crate::stack::files::{Part, StackFiles};
use crate::stack::paths::arg_value;
use crate::stack::prometheus::{Config as PromConfig, Rule, RuleFile, RuleGroup};
use crate::stack::Stack;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Slack added to every stage: the 150 ms poll, HTTP through the SSH tunnels, the
/// notifier queue and the webhook hop.
pub const MARGIN: Duration = Duration::from_secs(1);
/// Time the restarted exporter may take to answer again (its process start, not the
/// alert path).
pub const EXPORTER_START: Duration = Duration::from_secs(10);
/// Prometheus' `--rules.alert.resend-delay` default.
pub const DEFAULT_RESEND_DELAY: Duration = Duration::from_secs(60);
/// Alertmanager's gossip settle delay after a fresh start when clustering is on
/// (docs/research/prometheus-facts.md §2.1 item 10, about 6–8 s).
pub const CLUSTER_SETTLE: Duration = Duration::from_secs(8);

/// What the bounds were computed from.
#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    pub job: String,
    pub scrape_interval_s: f64,
    pub scrape_timeout_s: f64,
    pub query_offset_s: f64,
    pub drill_group: String,
    pub drill_eval_s: f64,
    pub drill_for_s: f64,
    pub drill_keep_firing_s: f64,
    pub real_group: String,
    pub real_eval_s: f64,
    pub real_for_s: f64,
    pub real_keep_firing_s: f64,
    pub resend_delay_s: f64,
    pub receiver: String,
    pub group_wait_s: f64,
    pub group_interval_s: f64,
    pub real_receivers: Vec<String>,
    pub real_group_wait_s: f64,
    pub real_group_interval_s: f64,
    pub cluster_settle_s: f64,
    pub margin_s: f64,
}

/// Per-stage upper bounds.
#[derive(Debug, Clone, Serialize)]
pub struct Bounds {
    pub alert: String,
    pub real_alert: String,
    pub inputs: Inputs,
    /// The real alert's receivers (from the route tree) and their integrations
    /// (`webhook`, `email`, …): what `--drill-real` proves delivery to.
    #[serde(skip)]
    pub real_integrations: Vec<(String, Vec<String>)>,
    /// Where, in the Alertmanager container, the drill receiver reads its bearer token
    /// (`http_config.authorization.credentials_file`): the drill writes a fresh one there.
    #[serde(skip)]
    pub token_file: String,
    #[serde(skip)]
    pub timeout: Duration,
    // Outage, after the exporter stopped.
    #[serde(skip)]
    pub target_down: Duration,
    #[serde(skip)]
    pub pending: Duration,
    #[serde(skip)]
    pub firing: Duration,
    #[serde(skip)]
    pub am_active: Duration,
    #[serde(skip)]
    pub delivered: Duration,
    #[serde(skip)]
    pub real_pending: Duration,
    #[serde(skip)]
    pub real_firing: Duration,
    #[serde(skip)]
    pub real_notified: Duration,
    // Recovery, after the exporter answers again.
    #[serde(skip)]
    pub target_up: Duration,
    #[serde(skip)]
    pub prom_resolved: Duration,
    #[serde(skip)]
    pub am_resolved: Duration,
    #[serde(skip)]
    pub resolved_delivered: Duration,
}

impl Bounds {
    /// Longest the outage part lasts (until every awaited stage is due).
    pub fn outage(&self, real: bool) -> Duration {
        let mut d = self.delivered.max(self.real_pending).max(self.am_active);
        if real {
            d = d.max(self.real_notified);
        }
        d
    }

    /// Longest the recovery part lasts.
    pub fn recovery(&self) -> Duration {
        self.resolved_delivered.max(self.am_resolved).max(self.target_up)
    }

    /// The whole drill at worst: outage, restart, recovery.
    pub fn total(&self, real: bool) -> Duration {
        self.outage(real) + EXPORTER_START + self.recovery()
    }

    /// One line per bound, for the terminal before the drill starts.
    pub fn render(&self, real: bool) -> String {
        let i = &self.inputs;
        let mut s = format!(
            "drill bounds (scrape {}s + timeout {}s, eval {}s, for {}s, route {} group_wait {}s / group_interval {}s, margin {}s):\n",
            i.scrape_interval_s, i.scrape_timeout_s, i.drill_eval_s, i.drill_for_s, i.receiver, i.group_wait_s, i.group_interval_s, i.margin_s
        );
        let mut line = |name: &str, d: Duration| s.push_str(&format!("  {name:<38} ≤ {:>5.1} s\n", d.as_secs_f64()));
        line("target down", self.target_down);
        line(&format!("{} pending", self.alert), self.pending);
        line(&format!("{} firing", self.alert), self.firing);
        line(&format!("{} active in Alertmanager", self.alert), self.am_active);
        line(&format!("{} delivered to stackproof", self.alert), self.delivered);
        line(&format!("{} pending", self.real_alert), self.real_pending);
        if real {
            line(&format!("{} firing", self.real_alert), self.real_firing);
            line(&format!("{} handed to its receiver", self.real_alert), self.real_notified);
        }
        line("after restart: target up", self.target_up);
        line("after restart: alerts gone (Prometheus)", self.prom_resolved);
        line("after restart: alerts gone (Alertmanager)", self.am_resolved);
        line("after restart: resolved delivered", self.resolved_delivered);
        s.push_str(&format!("  whole drill at worst {:.0} s (drill.timeout {} s)\n", self.total(real).as_secs_f64(), self.timeout.as_secs()));
        s
    }
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// `n_f · e`: the evaluations needed to satisfy `for` (Prometheus fires at the first
/// evaluation where `E − ActiveAt ≥ for`).
fn for_evals(f: Duration, e: Duration) -> Duration {
    if f.is_zero() || e.is_zero() {
        return Duration::ZERO;
    }
    let n = f.as_millis().div_ceil(e.as_millis());
    e * n as u32
}

/// The alert's labels as Alertmanager sees them (for routing): the rule's labels, the
/// alert name, the target's `job`/`instance`, and Prometheus' external labels.
fn alert_labels(prom: &PromConfig, rule: &Rule, job: &str) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = prom.global.external_labels.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    l.insert("job".into(), job.into());
    if let Some(t) = prom.job(job).and_then(|j| j.static_configs.first()).and_then(|c| c.targets.first()) {
        l.insert("instance".into(), t.clone());
    }
    for (k, v) in &rule.labels {
        // A templated value is unknown here; `{{ $labels.job }}` is the common case.
        let v = if v.0.contains("$labels.job") { job.to_string() } else { v.0.clone() };
        l.insert(k.clone(), v);
    }
    l.insert("alertname".into(), rule.alert.clone().unwrap_or_default());
    l
}

fn find_alert<'a>(files: &'a [RuleFile], name: &str) -> Option<(&'a RuleGroup, &'a Rule)> {
    files.iter().find_map(|f| f.alert(name))
}

/// The Prometheus config, rule files and Alertmanager config of a stack, typed.
pub fn load_configs(stack: &Stack) -> Result<(PromConfig, Vec<RuleFile>, AmConfig), String> {
    let files = StackFiles::load(stack);
    let blocking: Vec<&str> = files.problems.iter().filter(|p| p.part != Part::Grafana).map(|p| p.message.as_str()).collect();
    let prom = files.prometheus.model.ok_or_else(|| format!("cannot read the Prometheus config: {} (run `stackproof lint`)", blocking.join("; ")))?;
    let am = files.alertmanager.model.ok_or_else(|| format!("cannot read the Alertmanager config: {} (run `stackproof lint`)", blocking.join("; ")))?;
    if !blocking.is_empty() {
        return Err(format!("cannot read the rule files: {} (run `stackproof lint`)", blocking.join("; ")));
    }
    Ok((prom, files.rules.into_iter().map(|r| r.value).collect(), am))
}

/// Compute every stage's bound from the stack's configuration, and refuse (before
/// anything is stopped) a drill that cannot finish within `drill.timeout`.
/// `real`: also bound the real alert's firing and notification (`--drill-real`).
pub fn bounds(stack: &Stack, real: bool) -> Result<Bounds, String> {
    let (prom, rules, am) = load_configs(stack)?;
    compute(stack, &prom, &rules, &am, real)
}

pub fn compute(stack: &Stack, prom: &PromConfig, rules: &[RuleFile], am: &AmConfig, real: bool) -> Result<Bounds, String> {
    let m = &stack.manifest;
    let d = &m.drill;
    prom.job(&d.job).ok_or_else(|| format!("the Prometheus config has no scrape job `{}` (drill.job)", d.job))?;
    let s = prom.scrape_interval(&d.job).unwrap_or_default();
    let timeout = prom.scrape_timeout(&d.job).unwrap_or_default();
    let global_offset = prom.global.extra.get("rule_query_offset").and_then(|v| v.as_str()).and_then(|t| crate::stack::prometheus::parse_duration(t).ok());
    let (dg, dr) = find_alert(rules, &d.alert).ok_or_else(|| format!("the drill alert `{}` is in no rule file of the stack", d.alert))?;
    let (rg, rr) = find_alert(rules, &d.real_alert).ok_or_else(|| format!("the real alert `{}` is in no rule file of the stack", d.real_alert))?;
    let q = |g: &RuleGroup| g.query_offset.as_ref().and_then(|t| t.duration().ok()).or(global_offset).unwrap_or_default();
    let keep = |r: &Rule| r.keep_firing_for.as_ref().and_then(|t| t.duration().ok()).unwrap_or_default();
    let e = dg.interval_or(prom.evaluation_interval());
    let re = rg.interval_or(prom.evaluation_interval());
    let (f, rf) = (dr.for_duration(), rr.for_duration());
    let (dq, rq) = (q(dg), q(rg));
    let prom_args = m.services.get("prometheus").map(|s| s.args.clone()).unwrap_or_default();
    let resend =
        arg_value(&prom_args, "--rules.alert.resend-delay").and_then(|v| crate::stack::prometheus::parse_duration(v).ok()).unwrap_or(DEFAULT_RESEND_DELAY);
    let am_args = m.services.get("alertmanager").map(|s| s.args.clone()).unwrap_or_default();
    let clustered = arg_value(&am_args, "--cluster.listen-address").map(|v| !v.is_empty()).unwrap_or(true);
    let settle = if clustered { CLUSTER_SETTLE } else { Duration::ZERO };

    let drill_route = am.route_alert(&alert_labels(prom, dr, &d.job));
    let dm = drill_route.iter().find(|r| r.receiver == d.receiver).ok_or_else(|| {
        let went: Vec<_> = drill_route.iter().map(|r| r.receiver.as_str()).collect();
        format!("Alertmanager routes `{}` to {} instead of the drill receiver `{}`", d.alert, went.join(", "), d.receiver)
    })?;
    let token_file = super::auth::token_file(am, &dm.receiver)?;
    let real_route = am.route_alert(&alert_labels(prom, rr, &d.job));
    let real_gw = real_route.iter().map(|r| r.group_wait).max().unwrap_or_default();
    let real_gi = real_route.iter().map(|r| r.group_interval).max().unwrap_or_default();
    let real_integrations = real_route
        .iter()
        .map(|r| {
            let ints = am
                .receiver(&r.receiver)
                .map(|rc| {
                    let mut v: Vec<String> = rc.extra.keys().filter_map(|k| k.strip_suffix("_configs")).map(String::from).collect();
                    if !rc.webhook_configs.is_empty() {
                        v.push("webhook".into());
                    }
                    v
                })
                .unwrap_or_default();
            (r.receiver.clone(), ints)
        })
        .collect();

    // Outage (after T0 = exporter stopped). The first failing scrape comes within
    // s + d; the rule sees it at its next evaluation (+e, +q); `for` adds n_f·e.
    let detect = s + timeout;
    let pending = detect + dq + e;
    let firing = pending + for_evals(f, e);
    // A newly firing alert is sent in the evaluation that makes it fire (its LastSentAt
    // is zero), so the resend delay adds nothing here; the notifier does not batch.
    let am_active = firing;
    // A new aggregation group flushes after group_wait; a group that still exists (a
    // drill within the last 15 minutes: Prometheus re-sends resolved alerts) flushes on
    // its next group_interval tick. Either may apply.
    let delivered = firing + dm.group_wait.max(dm.group_interval) + settle;
    let real_pending = detect + rq + re;
    let real_firing = real_pending + for_evals(rf, re);
    let real_notified = real_firing + real_gw.max(real_gi) + settle;
    // Recovery (after T1 = exporter answers): the next scrape is up within s; the next
    // evaluation (the slower group) finds nothing; keep_firing_for holds it longer.
    let target_up = s;
    let prom_resolved = s + e.max(re) + dq.max(rq) + for_evals(keep(dr), e).max(for_evals(keep(rr), re));
    // Resolved alerts are sent at once; Alertmanager drops them from its API then.
    let am_resolved = prom_resolved;
    // The resolved notification goes out on the group's next tick.
    let resolved_delivered = am_resolved + dm.group_interval;

    let mg = |x: Duration| x + MARGIN;
    let b = Bounds {
        alert: d.alert.clone(),
        real_alert: d.real_alert.clone(),
        inputs: Inputs {
            job: d.job.clone(),
            scrape_interval_s: secs(s),
            scrape_timeout_s: secs(timeout),
            query_offset_s: secs(dq),
            drill_group: dg.name.clone(),
            drill_eval_s: secs(e),
            drill_for_s: secs(f),
            drill_keep_firing_s: secs(keep(dr)),
            real_group: rg.name.clone(),
            real_eval_s: secs(re),
            real_for_s: secs(rf),
            real_keep_firing_s: secs(keep(rr)),
            resend_delay_s: secs(resend),
            receiver: dm.receiver.clone(),
            group_wait_s: secs(dm.group_wait),
            group_interval_s: secs(dm.group_interval),
            real_receivers: real_route.iter().map(|r| r.receiver.clone()).collect(),
            real_group_wait_s: secs(real_gw),
            real_group_interval_s: secs(real_gi),
            cluster_settle_s: secs(settle),
            margin_s: secs(MARGIN),
        },
        real_integrations,
        token_file,
        timeout: if real { d.real_timeout } else { d.timeout },
        target_down: mg(detect),
        pending: mg(pending),
        firing: mg(firing),
        am_active: mg(am_active),
        delivered: mg(delivered),
        real_pending: mg(real_pending),
        real_firing: mg(real_firing),
        real_notified: mg(real_notified),
        target_up: mg(target_up),
        prom_resolved: mg(prom_resolved),
        am_resolved: mg(am_resolved),
        resolved_delivered: mg(resolved_delivered),
    };
    let total = b.total(real);
    let limit = if real { d.real_timeout } else { d.timeout };
    if total > limit {
        // Name the slowest contributor: the longest `for` involved, and the route timing.
        let (name, rfor, group) = if real && rf >= f { (&d.real_alert, rf, &rg.name) } else { (&d.alert, f, &dg.name) };
        let mut msg = format!(
            "the drill cannot finish within drill.{} ({}): rule `{name}` (group `{group}`) has `for: {}`, and with scrape interval {}, evaluation interval {} and the route's group_wait {}/group_interval {} the drill may take up to {}",
            if real { "real_timeout" } else { "timeout" },
            humantime::format_duration(limit),
            humantime::format_duration(rfor),
            humantime::format_duration(s),
            humantime::format_duration(if real && rf >= f { re } else { e }),
            humantime::format_duration(if real { real_gw } else { dm.group_wait }),
            humantime::format_duration(if real { real_gi } else { dm.group_interval }),
            humantime::format_duration(Duration::from_secs(total.as_secs_f64().ceil() as u64)),
        );
        if real {
            msg.push_str(" (--drill-real waits for the real alert to fire and reach its receiver)");
        }
        return Err(msg);
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::stack::testing::{default_stack, edited};

    #[test]
    fn default_stack_bounds_follow_the_formulas() {
        let b = bounds(&default_stack(), false).unwrap();
        let i = &b.inputs;
        // prometheus.yml: host-exporter job 1s/1s; drill.yml: interval 1s, for 4s;
        // alertmanager.yml: drill route group_wait 1s, group_interval 2s; clustering off.
        assert_eq!((i.scrape_interval_s, i.scrape_timeout_s), (1.0, 1.0));
        assert_eq!((i.drill_eval_s, i.drill_for_s), (1.0, 4.0));
        assert_eq!((i.group_wait_s, i.group_interval_s), (1.0, 2.0));
        assert_eq!(i.receiver, "stackproof-drill");
        assert_eq!(i.cluster_settle_s, 0.0);
        assert_eq!(i.real_eval_s, 5.0); // stackproof-health uses the global 5s
        assert_eq!(b.target_down, Duration::from_secs(1 + 1 + 1));
        assert_eq!(b.pending, Duration::from_secs(1 + 1 + 1 + 1));
        assert_eq!(b.firing, Duration::from_secs(1 + 1 + 1 + 4 + 1));
        assert_eq!(b.delivered, Duration::from_secs(1 + 1 + 1 + 4 + 2 + 1));
        assert_eq!(b.real_pending, Duration::from_secs(1 + 1 + 5 + 1));
        assert_eq!(b.target_up, Duration::from_secs(1 + 1));
        assert_eq!(b.prom_resolved, Duration::from_secs(1 + 5 + 1));
        assert_eq!(b.resolved_delivered, Duration::from_secs(1 + 5 + 2 + 1));
        assert!(b.total(false) <= Duration::from_secs(120));
        // The template's `critical` takes its integrations from each host entry
        // (`receivers.from_host`); a rendered stack has them.
        assert_eq!(b.real_integrations, vec![("critical".to_string(), vec![])]);
        assert!(b.render(false).contains("StackproofDrill firing"));
    }

    #[test]
    fn a_long_for_is_refused_naming_rule_for_and_timeout() {
        let (_t, s) = edited("prometheus/rules/drill.yml", |t| t.replace("for: 4s", "for: 30m"));
        let e = bounds(&s, false).unwrap_err();
        assert!(e.contains("StackproofDrill"), "{e}");
        assert!(e.contains("for: 30m"), "{e}");
        assert!(e.contains("drill.timeout (2m)"), "{e}");
    }

    #[test]
    fn drill_real_on_the_default_stack_fits_its_own_timeout() {
        // HostExporterDown: for 1m at 5s evaluation, the critical route's group_interval
        // 1m: longer than a deploy's drill may take, within drill.real_timeout (5m).
        let b = bounds(&default_stack(), true).unwrap();
        assert_eq!(b.timeout, Duration::from_secs(300));
        assert!(b.total(true) > Duration::from_secs(120), "{:?}", b.total(true));
        assert_eq!(b.real_firing, Duration::from_secs(1 + 1 + 5 + 60 + 1));
        assert_eq!(b.real_notified, Duration::from_secs(1 + 1 + 5 + 60 + 60 + 1));
        let (_t, s) = edited("stackproof.yml", |t| t.replace("drill:\n", "drill:\n  real_timeout: 1m\n"));
        let e = bounds(&s, true).unwrap_err();
        assert!(e.contains("HostExporterDown") && e.contains("for: 1m") && e.contains("drill.real_timeout (1m)"), "{e}");
    }

    #[test]
    fn group_wait_comes_from_the_matching_route() {
        // A route before the drill route that matches it with continue: true would page
        // others (lint's job); here: the drill route's own timing is picked, not the
        // root's, and a child route under it refines it.
        let (_t, s) = edited("alertmanager/alertmanager.yml", |t| {
            t.replace(
                "      group_wait: 1s\n      group_interval: 2s\n",
                "      group_wait: 3s\n      group_interval: 7s\n      routes:\n        - matchers: [drill=\"true\"]\n          group_wait: 2s\n",
            )
        });
        let b = bounds(&s, false).unwrap();
        assert_eq!(b.inputs.group_wait_s, 2.0);
        assert_eq!(b.inputs.group_interval_s, 7.0);
        assert_eq!(b.delivered, Duration::from_secs(1 + 1 + 1 + 4 + 7 + 1));
        assert_eq!(b.resolved_delivered, Duration::from_secs(1 + 5 + 7 + 1));
    }

    #[test]
    fn a_drill_route_that_does_not_reach_the_receiver_is_refused() {
        let (_t, s) = edited("alertmanager/alertmanager.yml", |t| t.replace("matchers: [drill=\"true\"]", "matchers: [alertname=\"Other\"]"));
        let e = bounds(&s, false).unwrap_err();
        assert!(e.contains("instead of the drill receiver `stackproof-drill`"), "{e}");
    }

    #[test]
    fn for_rounds_up_to_evaluations() {
        assert_eq!(for_evals(Duration::from_secs(4), Duration::from_secs(2)), Duration::from_secs(4));
        assert_eq!(for_evals(Duration::from_secs(5), Duration::from_secs(2)), Duration::from_secs(6));
        assert_eq!(for_evals(Duration::ZERO, Duration::from_secs(2)), Duration::ZERO);
    }
}
