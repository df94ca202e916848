//! The live drill's plan (pure): which alerts, their twins, the faults grouped by mode,
//! every bound computed from the configuration, the silences' ends.
//!
//! Notation as in [`crate::drill::bounds`]: `s` the drill job's scrape interval, `d` its
//! scrape timeout, `e` the twins' evaluation interval (the drill alert's group), `f` a
//! twin's `for`, `gw`/`gi` the drill route's group_wait/group_interval, `W` the twins'
//! window cap. Fault timing: the exporter reads its fault file every
//! [`FAULT_CHECK`]; a run in progress finishes its current test (at most the longest
//! test timeout `T`); a slow run adds [`SLOW_DELAY`] per test (`n` tests).

use super::twins::{catalogue, find, twin, Entry, Fault, Twin, SLOW_DELAY};
use crate::drill::bounds::{load_configs, CLUSTER_SETTLE, MARGIN};
use crate::stack::paths::arg_value;
use crate::stack::Stack;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// How often the exporter reads its fault file (exporter.py's FAULT_CHECK is 0.5 s).
pub const FAULT_CHECK: Duration = Duration::from_secs(1);

/// One alert the drill causes live, with its bounds.
#[derive(Debug, Clone, Serialize)]
pub struct Live {
    pub alert: String,
    pub fault: Fault,
    /// The alert the drill watches: the twin's name, or the drill alert itself.
    pub watch: String,
    pub twin: Option<Twin>,
    /// From the fault in force (the first faulted run reported, or the exporter stopped).
    pub fire_bound: Duration,
    pub deliver_bound: Duration,
    /// From the fault's end (a normal run reported, or the exporter answering again).
    pub resolve_bound: Duration,
}

/// A real alert silenced while a fault drives its expression.
#[derive(Debug, Clone, Serialize)]
pub struct Hush {
    pub alert: String,
    pub fault: Fault,
    /// How long after the fault ends its expression can stay true: its largest range
    /// window + keep_firing_for + its evaluation interval + `s` + margin.
    pub after: Duration,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub entries: Vec<Entry>,
    /// Indices of the chosen entries.
    pub chosen: Vec<usize>,
    pub live: Vec<Live>,
    /// Every fault to run, in order, with the real alerts it drives.
    pub faults: Vec<(Fault, Vec<Hush>)>,
    pub twin_eval: Duration,
    pub window: Duration,
    pub scrape: Duration,
    pub scrape_timeout: Duration,
    /// The fault in force, after the fault file is written (per fault).
    pub fault_bound: BTreeMap<Fault, Duration>,
    /// Back to normal after the fault file is removed.
    pub normal_bound: Duration,
}

impl Plan {
    /// How long a fault is held at most: in force, then every twin delivered.
    pub fn hold(&self, f: Fault) -> Duration {
        let deliver = self.live.iter().filter(|l| l.fault == f).map(|l| l.deliver_bound).max().unwrap_or_default();
        self.fault_bound.get(&f).copied().unwrap_or_default() + deliver + MARGIN * 2
    }
    pub fn twins(&self) -> Vec<Twin> {
        self.live.iter().filter_map(|l| l.twin.clone()).collect()
    }
    /// The whole drill at worst.
    pub fn total(&self) -> Duration {
        self.faults
            .iter()
            .map(|(f, _)| {
                let resolve = self.live.iter().filter(|l| l.fault == *f).map(|l| l.resolve_bound).max().unwrap_or_default();
                self.hold(*f) + self.normal_bound + resolve
            })
            .sum()
    }
}

/// `n_f · e` (as in bounds.rs).
fn for_evals(f: Duration, e: Duration) -> Duration {
    if f.is_zero() || e.is_zero() {
        return Duration::ZERO;
    }
    e * f.as_millis().div_ceil(e.as_millis()) as u32
}

/// The host exporter's run interval and its tests (count, longest timeout), from the
/// manifest's command and the stack's tests file.
fn exporter_facts(stack: &Stack) -> (Duration, usize, Duration) {
    let cmd = &stack.manifest.host_exporter.command;
    let interval = arg_value(cmd, "--interval").and_then(|v| crate::stack::prometheus::parse_duration(v).ok()).unwrap_or(Duration::from_secs(30));
    let tests = arg_value(cmd, "--tests")
        .and_then(|p| std::fs::read_to_string(stack.dir.join(p)).ok())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let list = tests.as_ref().and_then(|v| v["tests"].as_array().cloned()).unwrap_or_default();
    let n = list.len().max(1);
    let longest = list
        .iter()
        .map(|t| t["timeout"].as_str().and_then(|d| crate::stack::prometheus::parse_duration(d).ok()).unwrap_or(Duration::from_secs(10)))
        .max()
        .unwrap_or(Duration::from_secs(10));
    (interval, n, longest)
}

/// Plan the drill of `names` (or every alert with `all`). `real`: twins keep their
/// rule's labels (routed to the real receivers), the chosen alerts are not silenced.
pub fn plan(stack: &Stack, names: &[String], all: bool, real: bool) -> Result<Plan, String> {
    let (prom, rules, am) = load_configs(stack)?;
    let d = &stack.manifest.drill;
    let entries = catalogue(&rules, prom.evaluation_interval(), &d.job, &d.alert);
    let mut chosen = vec![];
    if all {
        chosen = (0..entries.len()).collect();
    } else {
        for n in names {
            let i = entries.iter().position(|e| &e.alert == n).ok_or_else(|| {
                format!("no alerting rule `{n}` in the stack (alerts: {})", entries.iter().map(|e| e.alert.as_str()).collect::<Vec<_>>().join(", "))
            })?;
            if !chosen.contains(&i) {
                chosen.push(i);
            }
        }
    }
    prom.job(&d.job).ok_or_else(|| format!("the Prometheus config has no scrape job `{}` (drill.job)", d.job))?;
    let s = prom.scrape_interval(&d.job).unwrap_or_default();
    let st = prom.scrape_timeout(&d.job).unwrap_or_default();
    let (dg, dr) = find(&rules, &d.alert).ok_or_else(|| format!("the drill alert `{}` is in no rule file of the stack", d.alert))?;
    let e = dg.interval_or(prom.evaluation_interval());
    let max_for = dr.for_duration().max(e);
    let mut labels: BTreeMap<String, String> = [("alertname".to_string(), d.alert.clone()), ("drill".to_string(), "true".to_string())].into();
    labels.insert("job".into(), d.job.clone());
    let route = am.route_alert(&labels);
    let dm = route.iter().find(|r| r.receiver == d.receiver).ok_or_else(|| {
        format!("Alertmanager routes the drill's alerts to {:?}, not to `{}`", route.iter().map(|r| &r.receiver).collect::<Vec<_>>(), d.receiver)
    })?;
    let am_args = stack.manifest.services.get("alertmanager").map(|s| s.args.clone()).unwrap_or_default();
    let settle = if arg_value(&am_args, "--cluster.listen-address").map(|v| !v.is_empty()).unwrap_or(true) { CLUSTER_SETTLE } else { Duration::ZERO };
    let (interval, n_tests, longest) = exporter_facts(stack);
    let slow_run = SLOW_DELAY * n_tests as u32;
    // The twins' window: holds two of the exporter's runs (a rate always sees the last
    // change), at least one whole slow run, and several scrapes and evaluations.
    let window = (interval * 2).max(slow_run * 2).max(s * 4).max(e * 4);
    let fault_bound: BTreeMap<Fault, Duration> = [Fault::Fail, Fault::Error, Fault::Slow]
        .into_iter()
        .map(|f| (f, FAULT_CHECK + longest + if f == Fault::Slow { slow_run + longest } else { Duration::ZERO } + MARGIN))
        .collect();
    let normal_bound = FAULT_CHECK + longest + MARGIN;

    let mut live = vec![];
    for &i in &chosen {
        let en = &entries[i];
        let Some(fault) = en.fault else { continue };
        let is_drill = en.alert == d.alert;
        let tw = (!is_drill).then(|| twin(en, max_for, window, real));
        let f = tw.as_ref().map(|t| Duration::from_secs_f64(t.for_s)).unwrap_or(dr.for_duration());
        let detect = if fault == Fault::Stop { s + st } else { s };
        let fire = detect + e + for_evals(f, e) + MARGIN;
        // `--real`: the twin takes its rule's own route (its group_wait, e.g. 10 s for
        // critical, or its group_interval when the group still exists).
        let wait = match (&tw, real) {
            (Some(t), true) => {
                let mut l = t.labels.clone();
                l.insert("alertname".into(), t.alert.clone());
                am.route_alert(&l).iter().map(|r| r.group_wait.max(r.group_interval)).max().unwrap_or_default()
            }
            _ => dm.group_wait.max(dm.group_interval),
        };
        let deliver = fire + wait + settle;
        let win = tw.as_ref().map(|t| super::twins::largest_window(&t.expr)).unwrap_or_default();
        let keep = en.rule.keep_firing_for.as_ref().and_then(|t| t.duration().ok()).unwrap_or_default().min(max_for);
        let resolve = win + s + e + for_evals(keep, e) + dm.group_interval + MARGIN;
        live.push(Live {
            alert: en.alert.clone(),
            fault,
            watch: tw.as_ref().map(|t| t.alert.clone()).unwrap_or_else(|| en.alert.clone()),
            twin: tw,
            fire_bound: fire,
            deliver_bound: deliver,
            resolve_bound: resolve,
        });
    }
    let mut modes: Vec<Fault> = live.iter().map(|l| l.fault).collect();
    modes.sort();
    modes.dedup();
    let faults = modes
        .into_iter()
        .map(|f| {
            let hush = entries
                .iter()
                .filter(|en| en.fault.is_some_and(|x| f.drives().contains(&x)))
                .filter(|en| en.rule.labels.get("drill").map(|v| v.0.as_str()) != Some("true"))
                .filter(|en| !(real && chosen.iter().any(|&i| entries[i].alert == en.alert)))
                .map(|en| Hush {
                    alert: en.alert.clone(),
                    fault: f,
                    after: super::twins::largest_window(&en.rule.expr.0)
                        + en.rule.keep_firing_for.as_ref().and_then(|t| t.duration().ok()).unwrap_or_default()
                        + en.eval
                        + s
                        + MARGIN,
                })
                .collect();
            (f, hush)
        })
        .collect();
    Ok(Plan { entries, chosen, live, faults, twin_eval: e, window, scrape: s, scrape_timeout: st, fault_bound, normal_bound })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_stack() -> Stack {
        Stack::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/stack"))).unwrap()
    }

    #[test]
    fn the_default_stack_plan_follows_the_formulas() {
        let p = plan(&default_stack(), &[], true, false).unwrap();
        assert_eq!(p.chosen.len(), 17);
        assert_eq!(p.live.len(), 8);
        // s = 1s, d = 1s, e = 1s (stackproof-drill group), twin for = 4s, gw 1s / gi 2s.
        assert_eq!((p.scrape, p.scrape_timeout, p.twin_eval), (Duration::from_secs(1), Duration::from_secs(1), Duration::from_secs(1)));
        // W = max(2 × 15s interval, 2 × 6 tests × 1.5s, 4s, 4s) = 30s.
        assert_eq!(p.window, Duration::from_secs(30));
        let l = |n: &str| p.live.iter().find(|l| l.alert == n).unwrap().clone();
        let down = l("HostExporterDown");
        assert_eq!(down.watch, "StackproofTwin_HostExporterDown");
        assert_eq!(down.fire_bound, Duration::from_secs(1 + 1 + 1 + 4 + 1));
        assert_eq!(down.deliver_bound, down.fire_bound + Duration::from_secs(2));
        assert_eq!(down.resolve_bound, Duration::from_secs(1 + 1 + 2 + 1));
        let err = l("TestErrorRateCritical");
        assert_eq!(err.fire_bound, Duration::from_secs(1 + 1 + 4 + 1));
        assert_eq!(err.resolve_bound, Duration::from_secs(30 + 1 + 1 + 2 + 1), "the capped window first");
        assert_eq!(l("StackproofDrill").watch, "StackproofDrill", "the drill alert is its own twin");
        // Faults in order, each with the real alerts it drives; the drill alert is never silenced.
        let modes: Vec<Fault> = p.faults.iter().map(|(f, _)| *f).collect();
        assert_eq!(modes, vec![Fault::Stop, Fault::Fail, Fault::Error, Fault::Slow]);
        let hush = |f: Fault| p.faults.iter().find(|(x, _)| *x == f).unwrap().1.iter().map(|h| (h.alert.clone(), h.after)).collect::<BTreeMap<_, _>>();
        assert!(!hush(Fault::Stop).contains_key("StackproofDrill"));
        assert_eq!(hush(Fault::Stop)["HostExporterDown"], Duration::from_secs(5 + 1 + 1));
        assert_eq!(hush(Fault::Error)["TestErrorRateCritical"], Duration::from_secs(300 + 5 + 1 + 1), "its real 5m window");
        assert!(hush(Fault::Error).contains_key("TestPassRateCritical"), "an error is a failed test too");
        assert_eq!(hush(Fault::Slow)["SlowOperation"], Duration::from_secs(600 + 5 + 1 + 1));
        assert!(p.total() < Duration::from_secs(300), "{:?}", p.total());
    }

    #[test]
    fn real_does_not_silence_the_chosen_alert_and_unknown_names_are_refused() {
        let p = plan(&default_stack(), &["TestPassRateCritical".into()], false, true).unwrap();
        assert_eq!(p.live.len(), 1);
        assert_eq!(p.live[0].twin.as_ref().unwrap().labels["severity"], "critical");
        // The critical route's group_interval (1m) bounds the delivery, not the drill route's.
        assert_eq!(p.live[0].deliver_bound, p.live[0].fire_bound + Duration::from_secs(60));
        let hushed: Vec<&str> = p.faults[0].1.iter().map(|h| h.alert.as_str()).collect();
        assert_eq!(hushed, vec!["TestPassRateLow"], "the other alert fail drives stays silenced");
        let e = plan(&default_stack(), &["NoSuchAlert".into()], false, false).unwrap_err();
        assert!(e.contains("no alerting rule `NoSuchAlert`") && e.contains("HostExporterDown"), "{e}");
    }
}
