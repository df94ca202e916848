use super::eval::{bucket_quantile, eval, Labels, Series, Val};
use super::rule::{expand, first_firing, RuleSpec};
use super::search::{prove, Outcome};
use super::synth::{inputs, Knowledge, Target};
use crate::stack::alertmanager::Config as AmConfig;
use crate::stack::promql;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn series(pairs: &[(&str, &str)], start: f64, inc: f64, step: f64, n: usize) -> Series {
    Series { labels: labels(pairs), start, inc, step, n }
}

fn vector(q: &str, s: &[Series], t: f64) -> Vec<(Labels, f64)> {
    match eval(&promql::parse(q).unwrap().ast, s, t).unwrap() {
        Val::Vector(v) => v.into_iter().map(|x| (x.labels, x.v)).collect(),
        Val::Scalar(v) => vec![(Labels::new(), v)],
    }
}

#[test]
fn rate_of_a_steady_counter_is_its_slope() {
    // +2 every 10s: 0.2/s, whatever the window's alignment (Prometheus' extrapolation).
    let s = [series(&[("__name__", "c_total"), ("job", "a")], 0.0, 2.0, 10.0, 100)];
    let v = vector("rate(c_total[5m])", &s, 600.0);
    assert_eq!(v.len(), 1);
    assert!((v[0].1 - 0.2).abs() < 1e-9, "{v:?}");
    assert!(!v[0].0.contains_key("__name__"));
    let inc = vector("increase(c_total[1m])", &s, 600.0);
    assert!((inc[0].1 - 12.0).abs() < 1e-9, "{inc:?}");
    // One sample in the window: no rate.
    assert!(vector("rate(c_total[5s])", &s, 600.0).is_empty());
}

#[test]
fn histogram_quantile_interpolates_and_caps_at_the_largest_bucket() {
    let b = vec![(0.1, 10.0), (0.5, 20.0), (f64::INFINITY, 20.0)];
    // rank 0.5*20 = 10: the end of the first bucket.
    assert!((bucket_quantile(0.5, b.clone()).unwrap() - 0.1).abs() < 1e-12);
    // rank 15: halfway through (0.1, 0.5].
    assert!((bucket_quantile(0.75, b).unwrap() - 0.3).abs() < 1e-12);
    // Everything in +Inf: the largest finite bound.
    let inf = vec![(0.1, 0.0), (0.5, 0.0), (f64::INFINITY, 7.0)];
    assert_eq!(bucket_quantile(0.95, inf), Some(0.5));
    let s: Vec<Series> = ["0.1", "0.5", "+Inf"].iter().map(|le| series(&[("__name__", "h_bucket"), ("le", le)], 0.0, 1.0, 1.0, 400)).collect();
    let v = vector("histogram_quantile(0.95, sum by (le) (rate(h_bucket[5m])))", &s, 300.0);
    assert!((v[0].1 - 0.095).abs() < 1e-9, "{v:?}");
}

#[test]
fn lookback_and_staleness() {
    // Samples until t=100: an instant selector still sees the last one 5m later, not after.
    let s = [series(&[("__name__", "g")], 7.0, 0.0, 10.0, 10)];
    assert_eq!(vector("g", &s, 399.0).len(), 1);
    assert!(vector("g", &s, 401.0).is_empty());
    assert_eq!(vector("absent(g{job=\"x\"})", &s, 401.0), vec![(labels(&[("job", "x")]), 1.0)]);
    assert!(vector("absent(g)", &s, 50.0).is_empty());
}

#[test]
fn for_holds_the_alert_pending_then_fires() {
    let q = promql::parse("up{job=\"a\"} == 0").unwrap();
    let spec =
        RuleSpec { alert: "Down", expr: &q.ast, for_s: 60.0, interval_s: 15.0, labels: [("component".to_string(), "{{ $labels.job }}".to_string())].into() };
    let s = [series(&[("__name__", "up"), ("job", "a"), ("instance", "i:1")], 0.0, 0.0, 15.0, 20)];
    let f = first_firing(&spec, &s, 300.0).unwrap().unwrap();
    assert_eq!(f.at_s, 60.0);
    assert_eq!(f.alerts[0].0, labels(&[("alertname", "Down"), ("component", "a"), ("instance", "i:1"), ("job", "a")]));
    // Not long enough: never fires.
    assert!(first_firing(&spec, &s, 45.0).unwrap().is_none());
    // up is 1: never.
    let up = [series(&[("__name__", "up"), ("job", "a")], 1.0, 0.0, 15.0, 20)];
    assert!(first_firing(&spec, &up, 300.0).unwrap().is_none());
}

#[test]
fn vector_matching_on_and_bool() {
    let s = [
        series(&[("__name__", "a"), ("job", "j"), ("x", "1")], 3.0, 0.0, 10.0, 10),
        series(&[("__name__", "b"), ("job", "j"), ("y", "2")], 2.0, 0.0, 10.0, 10),
    ];
    assert_eq!(vector("a / on (job) b", &s, 50.0), vec![(labels(&[("job", "j")]), 1.5)]);
    assert!(vector("a / b", &s, 50.0).is_empty(), "different label sets do not match");
    assert_eq!(vector("a > bool 5", &s, 50.0)[0].1, 0.0);
    assert_eq!(vector("a > 2", &s, 50.0)[0].0.get("__name__").map(String::as_str), Some("a"));
    assert_eq!(vector("a or b", &s, 50.0).len(), 2);
    assert_eq!(vector("sum without (x) (a)", &s, 50.0), vec![(labels(&[("job", "j")]), 3.0)]);
}

#[test]
fn templates_and_unsupported_constructs() {
    let l = labels(&[("job", "j")]);
    assert_eq!(expand("{{ $labels.job }}-{{ $value }}", &l, 2.5).unwrap(), "j-2.5");
    assert!(expand("{{ $labels.job | toUpper }}", &l, 0.0).is_err());
    let q = promql::parse("topk(3, up) > 0").unwrap();
    let spec = RuleSpec { alert: "X", expr: &q.ast, for_s: 0.0, interval_s: 15.0, labels: Default::default() };
    match prove(&spec, &knowledge()) {
        Outcome::NotProven(why) => assert!(why.starts_with("needs promtool: uses the aggregation topk"), "{why}"),
        o => panic!("{o:?}"),
    }
}

fn knowledge() -> Knowledge {
    let t = |job: &str, inst: &str, svc: &str, step: f64| Target {
        labels: labels(&[("job", job), ("instance", inst)]),
        service: Some(svc.into()),
        step,
        opaque: false,
    };
    Knowledge {
        targets: vec![t("prometheus", "127.0.0.1:9090", "prometheus", 10.0), t("host-exporter", "127.0.0.1:9101", "host_exporter", 1.0)],
        values: [("operation".to_string(), vec!["smoke".to_string()])].into(),
        host_buckets: ["0.1", "1.0", "+Inf"].iter().map(|s| s.to_string()).collect(),
        exposes: ["suite_operation_duration_seconds_bucket", "suite_errors_total", "suite_operation_duration_seconds_count"]
            .iter()
            .flat_map(|n| [(("host_exporter".to_string(), n.to_string()), Some(true)), (("prometheus".to_string(), n.to_string()), Some(false))])
            .collect(),
        default_step: 10.0,
    }
}

#[test]
fn series_synthesis_follows_targets_and_exposition() {
    let k = knowledge();
    let q = promql::parse("histogram_quantile(0.9, sum by (le) (rate(suite_operation_duration_seconds_bucket{job=\"host-exporter\"}[5m]))) > 0.5").unwrap();
    let i = inputs(&q.ast, &k).unwrap();
    assert_eq!(i.len(), 1);
    assert_eq!(i[0].labels.get("instance").map(String::as_str), Some("127.0.0.1:9101"));
    assert_eq!(i[0].labels.get("operation").map(String::as_str), Some("smoke"));
    assert_eq!(i[0].les, ["0.1", "1.0", "+Inf"]);
    // A negative matcher takes another job.
    let q = promql::parse("up{job!=\"host-exporter\"} == 0").unwrap();
    assert_eq!(inputs(&q.ast, &k).unwrap()[0].labels.get("job").map(String::as_str), Some("prometheus"));
    // A job no target has.
    let q = promql::parse("up{job=\"nosuch\"} == 0").unwrap();
    let nt = inputs(&q.ast, &k).unwrap_err();
    assert_eq!(nt.label, "job");
    assert_eq!(nt.existing, ["prometheus", "host-exporter"]);
}

#[test]
fn search_finds_a_firing_scenario_or_says_why_not() {
    let k = knowledge();
    let fire = |expr: &str| {
        let q = promql::parse(expr).unwrap();
        let spec = RuleSpec { alert: "X", expr: &q.ast, for_s: 60.0, interval_s: 5.0, labels: Default::default() };
        prove(&spec, &k)
    };
    assert!(matches!(fire("up{job=\"prometheus\"} == 0"), Outcome::Fires { .. }));
    assert!(matches!(fire("up{job=\"prometheus\"} > 1"), Outcome::Cannot(_)));
    // The largest finite bucket is 1.0: a P95 above 2 cannot happen.
    assert!(matches!(fire("histogram_quantile(0.95, rate(suite_operation_duration_seconds_bucket[5m])) > 2"), Outcome::Cannot(_)));
    assert!(matches!(fire("histogram_quantile(0.95, rate(suite_operation_duration_seconds_bucket[5m])) > 0.5"), Outcome::Fires { .. }));
    match fire("sum(rate(suite_errors_total[5m])) / sum(rate(suite_operation_duration_seconds_count[5m])) > 0.01") {
        Outcome::Fires { fired, .. } => assert!(fired.at_s >= 60.0),
        o => panic!("{o:?}"),
    }
}

#[test]
fn routing_with_continue_and_muted_receivers() {
    let am = AmConfig::from_yaml(
        r#"
route:
  receiver: default
  routes:
    - matchers: [severity="critical"]
      receiver: pager
      continue: true
    - matchers: [severity=~"critical|warning"]
      receiver: silent
receivers: [{name: default}, {name: pager}, {name: silent}]
"#,
    )
    .unwrap();
    let mut p = super::AlertProof {
        alert: "A".into(),
        file: "r.yml".into(),
        line: 1,
        group: "g".into(),
        fires: true,
        how: super::HOW_OWN.into(),
        fired_after_s: Some(0.0),
        labels: labels(&[("alertname", "A"), ("severity", "critical")]),
        receivers: vec![],
        muted: false,
        reason: String::new(),
        scenario: vec![],
    };
    super::route(&mut p, &am, &Default::default(), &["pager".to_string()]);
    assert_eq!(p.receivers, ["pager", "silent"]);
    assert!(!p.muted);
    p.labels.insert("severity".into(), "warning".into());
    super::route(&mut p, &am, &Default::default(), &["pager".to_string()]);
    assert_eq!(p.receivers, ["silent"]);
    assert!(p.muted);
    // External labels route too (the alert's own label wins).
    p.labels.remove("severity");
    super::route(&mut p, &am, &labels(&[("severity", "critical")]), &["pager".to_string()]);
    assert_eq!(p.receivers, ["pager", "silent"]);
}

#[test]
fn gauges_keep_to_the_values_their_names_allow() {
    use super::synth::domain;
    assert_eq!(domain("up"), Some((0.0, 1.0)));
    assert_eq!(domain("suite_test_pass_rate"), Some((0.0, 1.0)));
    assert_eq!(domain("node_filesystem_avail_bytes"), Some((0.0, f64::INFINITY)));
    assert_eq!(domain("node_load1"), None);
}
