//! Which alerting rules the host exporter can cause, and their drill twins (pure).
//!
//! A rule is live-drillable when its expression reads a series the host exporter itself
//! produces in the drill's job (`drill.job`), through a fault the exporter can inject:
//! `up` / `absent()` of that job (the exporter stopped), the pass rate (fail), the error
//! counter (error), the duration histogram (slow). Every other rule is proven offline
//! only, with the reason.
//!
//! A twin has the rule's expression with every range window capped at [`Twin::window`]
//! (so it resolves within the drill: the real window is proven offline), a `for` no
//! longer than the drill alert's, the rule's labels minus `severity` plus
//! `drill: "true"` and `drill_of: <rule>`, so it reaches only the drill route (the first
//! route matches `drill="true"`), never inhibits or is inhibited, and is not counted by
//! the gate (which counts ALERTS by severity).

use crate::stack::prometheus::{parse_duration, Rule, RuleFile, RuleGroup};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// A fault the drill can cause on the host exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fault {
    /// The exporter process stopped (as the plain drill does).
    Stop,
    /// Every test reports failure.
    Fail,
    /// Every test cannot run (an error).
    Error,
    /// Every test takes [`SLOW_DELAY`] longer.
    Slow,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Stop => "stop",
            Fault::Fail => "fail",
            Fault::Error => "error",
            Fault::Slow => "slow",
        }
    }
    /// What the drill does, for people.
    pub fn how(self) -> &'static str {
        match self {
            Fault::Stop => "host exporter stopped",
            Fault::Fail => "host exporter fault: tests fail",
            Fault::Error => "host exporter fault: tests cannot run",
            Fault::Slow => "host exporter fault: tests slow",
        }
    }
    /// The modes whose real expressions this fault also drives (an error is also a
    /// failed test): their real alerts are silenced too.
    pub fn drives(self) -> &'static [Fault] {
        match self {
            Fault::Error => &[Fault::Error, Fault::Fail],
            Fault::Stop => &[Fault::Stop],
            Fault::Fail => &[Fault::Fail],
            Fault::Slow => &[Fault::Slow],
        }
    }
}

/// The extra time each test takes in the slow fault: above the stack's latency
/// thresholds (0.2 s and 1 s) and inside the histogram bucket (1, 2.5] of the exporter, so
/// a P95 over a window holding one slow run interpolates above 1 s.
pub const SLOW_DELAY: Duration = Duration::from_millis(1500);

/// One alerting rule of the stack and how the drill can prove it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub alert: String,
    pub group: String,
    pub eval: Duration,
    pub rule: Rule,
    /// None: proven offline only (`reason` says why).
    pub fault: Option<Fault>,
    pub reason: String,
}

fn selects_job(expr: &str, metric: &str, job: &str) -> bool {
    // `metric{... job="<job>" ...}`; not `job!=`, not `job=~`.
    let re =
        regex::Regex::new(&format!(r#"(?:^|[^A-Za-z0-9_:]){}\s*\{{[^}}]*\bjob\s*=\s*"{}""#, regex::escape(metric), regex::escape(job))).expect("valid regex");
    re.is_match(expr)
}

/// How the drill can cause the rule's condition on job `job`, or why it cannot.
pub fn classify(expr: &str, job: &str) -> Result<Fault, String> {
    let absent = regex::Regex::new(&format!(r#"absent\(\s*[A-Za-z_:][A-Za-z0-9_:]*\s*\{{[^}}]*\bjob\s*=\s*"{}""#, regex::escape(job))).expect("valid regex");
    if selects_job(expr, "up", job) || absent.is_match(expr) {
        return Ok(Fault::Stop);
    }
    if selects_job(expr, "suite_errors_total", job) {
        return Ok(Fault::Error);
    }
    if selects_job(expr, "suite_test_pass_rate", job) || selects_job(expr, "suite_test_success", job) || selects_job(expr, "suite_tests_failed_total", job) {
        return Ok(Fault::Fail);
    }
    if selects_job(expr, "suite_operation_duration_seconds_bucket", job) {
        return Ok(Fault::Slow);
    }
    Err(offline_reason(expr, job))
}

fn offline_reason(expr: &str, job: &str) -> String {
    if expr.contains("node_memory") || expr.contains("node_cpu") || expr.contains("node_filesystem") {
        return "memory, CPU or disk of the host: causing it would harm a production host".into();
    }
    if expr.contains("up{") || expr.contains("up {") {
        return "stopping Prometheus, Alertmanager or node-exporter would blind the drill that watches it".into();
    }
    if expr.contains("suite_last_run_timestamp_seconds") {
        return "needs the test suite silent for 15 minutes, longer than a drill may take".into();
    }
    if expr.contains("suite_operation_duration_seconds_count") {
        return "needs minutes of a silent test suite (a throughput over 5 m for 10 m), longer than a drill may take".into();
    }
    if expr.contains("stackproof_") {
        return "a series stackproof's own watch/gate writes: faking it would fake their results".into();
    }
    format!("reads no series of job `{job}` that the host exporter's faults change")
}

/// Every alerting rule of the stack, in file order, classified.
pub fn catalogue(files: &[RuleFile], global_eval: Duration, job: &str, drill_alert: &str) -> Vec<Entry> {
    let mut out = vec![];
    for f in files {
        for g in &f.groups {
            for r in g.rules.iter().filter(|r| r.alert.is_some()) {
                let name = r.name().to_string();
                let (fault, reason) = if name == drill_alert {
                    (Some(Fault::Stop), String::new())
                } else {
                    match classify(&r.expr.0, job) {
                        Ok(f) => (Some(f), String::new()),
                        Err(why) => (None, why),
                    }
                };
                out.push(Entry { alert: name, group: g.name.clone(), eval: g.interval_or(global_eval), rule: r.clone(), fault, reason });
            }
        }
    }
    out
}

/// The group and rule of `name`.
pub fn find<'a>(files: &'a [RuleFile], name: &str) -> Option<(&'a RuleGroup, &'a Rule)> {
    files.iter().find_map(|f| f.alert(name))
}

/// The twin's alert name.
pub fn twin_name(alert: &str) -> String {
    format!("StackproofTwin_{alert}")
}

/// The largest range window (`[5m]`, `[10m:1m]`) in an expression; zero for none.
pub fn largest_window(expr: &str) -> Duration {
    windows(expr).into_iter().map(|(_, _, d)| d).max().unwrap_or_default()
}

/// (start, end, duration) of every bracketed range duration in `expr` (the part before a
/// subquery's `:`).
fn windows(expr: &str) -> Vec<(usize, usize, Duration)> {
    let re = regex::Regex::new(r"\[\s*([0-9][0-9smhdwy]*)\s*(?::[^\]]*)?\]").expect("valid regex");
    re.captures_iter(expr).filter_map(|c| c.get(1)).filter_map(|m| parse_duration(m.as_str()).ok().map(|d| (m.start(), m.end(), d))).collect()
}

/// The expression with every range window longer than `cap` cut to `cap`.
pub fn cap_windows(expr: &str, cap: Duration) -> String {
    let mut out = expr.to_string();
    for (s, e, d) in windows(expr).into_iter().rev() {
        if d > cap {
            out.replace_range(s..e, &format!("{}s", cap.as_secs().max(1)));
        }
    }
    out
}

/// The twin rule of `e`.
#[derive(Debug, Clone, Serialize)]
pub struct Twin {
    pub alert: String,
    pub of: String,
    pub expr: String,
    pub for_s: f64,
    /// The range windows' cap in the twin (the real window is proven offline).
    pub window_s: f64,
    pub labels: BTreeMap<String, String>,
}

/// Build the twin of `e`: `for` at most `max_for`, range windows capped at `window`.
/// `real`: keep the rule's own labels (severity included) so the real routes take it
/// (`drill --real`), marked only by `drill_of`.
pub fn twin(e: &Entry, max_for: Duration, window: Duration, real: bool) -> Twin {
    let mut labels: BTreeMap<String, String> = e.rule.labels.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    if !real {
        labels.remove("severity");
        labels.insert("drill".into(), "true".into());
    }
    labels.insert("drill_of".into(), e.alert.clone());
    Twin {
        alert: twin_name(&e.alert),
        of: e.alert.clone(),
        expr: cap_windows(e.rule.expr.0.trim(), window),
        for_s: e.rule.for_duration().min(max_for).as_secs_f64(),
        window_s: window.as_secs_f64(),
        labels,
    }
}

/// The twins' group name in the twins file.
pub const TWIN_GROUP: &str = "stackproof-drill-twins";

/// The rule file holding `twins` (JSON, which Prometheus reads as YAML: no quoting to get
/// wrong), evaluated every `eval`.
pub fn rule_file(twins: &[Twin], eval: Duration) -> String {
    let rules: Vec<serde_json::Value> = twins
        .iter()
        .map(|t| {
            serde_json::json!({
                "alert": t.alert,
                "expr": t.expr,
                "for": format!("{}ms", (t.for_s * 1000.0).round() as u64),
                "labels": t.labels,
                "annotations": {
                    "summary": format!("stackproof drill twin of {}: nothing to do", t.of),
                    "description": format!("Loaded by `stackproof drill` only while it runs; it proves that {} can fire and reach a receiver.", t.of),
                },
            })
        })
        .collect();
    let doc = serde_json::json!({"groups": [{"name": TWIN_GROUP, "interval": format!("{}ms", eval.as_millis()), "rules": rules}]});
    serde_json::to_string_pretty(&doc).expect("serializable") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::Stack;

    fn default_catalogue() -> Vec<Entry> {
        let s = Stack::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/stack"))).unwrap();
        let (prom, rules, _) = crate::drill::bounds::load_configs(&s).unwrap();
        catalogue(&rules, prom.evaluation_interval(), "host-exporter", "StackproofDrill")
    }

    #[test]
    fn the_default_stack_has_eight_live_rules_and_the_rest_offline_with_reasons() {
        let c = default_catalogue();
        assert_eq!(c.len(), 17, "{:?}", c.iter().map(|e| &e.alert).collect::<Vec<_>>());
        let live: BTreeMap<&str, Fault> = c.iter().filter_map(|e| e.fault.map(|f| (e.alert.as_str(), f))).collect();
        let want: BTreeMap<&str, Fault> = [
            ("HostExporterDown", Fault::Stop),
            ("ObservabilityMetricsAbsent", Fault::Stop),
            ("StackproofDrill", Fault::Stop),
            ("TestPassRateCritical", Fault::Fail),
            ("TestPassRateLow", Fault::Fail),
            ("TestErrorRateCritical", Fault::Error),
            ("OperationLatencyP95Critical", Fault::Slow),
            ("SlowOperation", Fault::Slow),
        ]
        .into();
        assert_eq!(live, want);
        for e in c.iter().filter(|e| e.fault.is_none()) {
            assert!(!e.reason.is_empty(), "{} has no reason", e.alert);
        }
        let reason = |n: &str| c.iter().find(|e| e.alert == n).unwrap().reason.clone();
        assert!(reason("HostMemoryHigh").contains("harm a production host"));
        assert!(reason("ServiceDown").contains("blind the drill"));
        assert!(reason("TestSuiteNotReporting").contains("15 minutes"));
    }

    #[test]
    fn a_job_not_equal_is_not_the_drill_job() {
        assert!(classify(r#"up{job!="host-exporter"} == 0"#, "host-exporter").is_err());
        assert!(classify(r#"up{job=~"host-exporter"} == 0"#, "host-exporter").is_err());
        assert_eq!(classify(r#"up{job="host-exporter"} == 0"#, "host-exporter"), Ok(Fault::Stop));
        assert_eq!(classify(r#"absent(suite_tests_total{job="host-exporter"}) or absent(x{job="n"})"#, "host-exporter"), Ok(Fault::Stop));
        // A selector on another job than the drill's is not caused by its faults.
        assert!(classify(r#"suite_test_pass_rate{job="other"} < 0.9"#, "host-exporter").is_err());
    }

    #[test]
    fn windows_are_capped_and_only_when_longer() {
        let e = r#"histogram_quantile(0.95, sum by (le) (rate(x_bucket{job="a"}[10m]))) > 1 and rate(y[15s]) > 0 and max_over_time(z[1h:1m]) > 0"#;
        assert_eq!(largest_window(e), Duration::from_secs(3600));
        let c = cap_windows(e, Duration::from_secs(30));
        assert_eq!(c, r#"histogram_quantile(0.95, sum by (le) (rate(x_bucket{job="a"}[30s]))) > 1 and rate(y[15s]) > 0 and max_over_time(z[30s:1m]) > 0"#);
        assert!(promql_parser::parser::parse(&c).is_ok(), "{c}");
        assert_eq!(largest_window("up == 0"), Duration::ZERO);
    }

    #[test]
    fn a_twin_routes_to_the_drill_and_not_by_severity() {
        let c = default_catalogue();
        let e = c.iter().find(|e| e.alert == "TestErrorRateCritical").unwrap();
        let t = twin(e, Duration::from_secs(4), Duration::from_secs(30), false);
        assert_eq!(t.alert, "StackproofTwin_TestErrorRateCritical");
        assert_eq!(t.for_s, 4.0, "for 2m shortened to the drill alert's 4s");
        assert!(!t.labels.contains_key("severity"), "{:?}", t.labels);
        assert_eq!(t.labels["drill"], "true");
        assert_eq!(t.labels["drill_of"], "TestErrorRateCritical");
        assert_eq!(t.labels["component"], "test-suite");
        assert!(t.expr.contains("[30s]") && !t.expr.contains("[5m]"), "{}", t.expr);
        let real = twin(e, Duration::from_secs(4), Duration::from_secs(30), true);
        assert_eq!(real.labels["severity"], "critical");
        assert!(!real.labels.contains_key("drill"));
        // The file Prometheus loads: valid YAML with the twin's group, interval and rule.
        let text = rule_file(&[t], Duration::from_secs(1));
        let f: RuleFile = serde_yaml::from_str(&text).unwrap();
        assert_eq!(f.groups[0].name, TWIN_GROUP);
        assert_eq!(f.groups[0].interval_or(Duration::ZERO), Duration::from_secs(1));
        let r = &f.groups[0].rules[0];
        assert_eq!(r.for_duration(), Duration::from_secs(4));
        assert_eq!(r.labels["drill"].0, "true");
        assert!(promql_parser::parser::parse(&r.expr.0).is_ok());
        // Alertmanager sends the twin to the drill receiver only.
        let s = Stack::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/stack"))).unwrap();
        let (_, _, am) = crate::drill::bounds::load_configs(&s).unwrap();
        let mut labels: BTreeMap<String, String> = r.labels.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect();
        labels.insert("alertname".into(), r.name().into());
        let dest: Vec<String> = am.route_alert(&labels).into_iter().map(|m| m.receiver).collect();
        assert_eq!(dest, vec!["stackproof-drill".to_string()]);
    }
}
