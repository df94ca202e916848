//! The offline alert proof inside `lint` (issue 13): every alerting rule of the default
//! stack fires on synthetic series and reaches the receiver its severity routes to; broken
//! copies give `alerts.*` findings at the rule's `- alert:` line.

use crate::support::{assert_finding, repo, show, Copy};
use stackproof::lint::proof::{AlertProof, Evaluator, HOW_OWN, HOW_PROMTOOL};
use stackproof::lint::Severity::{Error, Warning};
use stackproof::lint::{lint_report, Options, Report};
use std::path::Path;

const HEALTH: &str = "prometheus/rules/health.yml";

fn report(dir: &Path, evaluator: Evaluator) -> Report {
    lint_report(&[dir.to_path_buf()], &Options { with_promtool: false, evaluator }).unwrap()
}

fn table(alerts: &[AlertProof]) -> String {
    alerts.iter().map(|a| format!("{} fires={} after={:?} -> {:?} ({}) {}\n", a.alert, a.fires, a.fired_after_s, a.receivers, a.how, a.reason)).collect()
}

/// Every alert of the default stack fires and reaches the receiver its severity names
/// (the drill alert: stackproof's own receiver).
fn assert_default_stack(alerts: &[AlertProof], how: &str) {
    assert_eq!(alerts.len(), 17, "{}", table(alerts));
    for a in alerts {
        assert!(a.fires && a.reason.is_empty(), "{} does not fire:\n{}", a.alert, table(alerts));
        assert_eq!(a.how, how, "{}", table(alerts));
        let expected = if a.alert == "StackproofDrill" { "stackproof-drill".to_string() } else { a.labels["severity"].clone() };
        assert_eq!(a.receivers, [expected], "{}", table(alerts));
        assert!(!a.muted);
        assert_eq!(a.labels["alertname"], a.alert);
        assert!(a.line > 0 && a.file.starts_with("prometheus/rules/"), "{}:{}", a.file, a.line);
    }
    let by = |n: &str| alerts.iter().find(|a| a.alert == n).unwrap();
    assert_eq!(by("StackproofDrill").fired_after_s, Some(4.0));
    assert_eq!(by("ServiceDown").labels["component"], by("ServiceDown").labels["job"], "the label template was expanded");
    assert_ne!(by("ServiceDown").labels["job"], "host-exporter");
    assert_eq!(by("OperationLatencyP95Critical").labels["severity"], "critical");
}

#[test]
fn default_stack_alerts_all_fire_offline_and_reach_their_receivers() {
    let r = report(&repo().join("stack"), Evaluator::Own);
    assert_default_stack(&r.alerts, HOW_OWN);
    let text = stackproof::lint::render_report_text(&r);
    assert!(text.contains("alerts: 17 of 17 fire offline and reach a receiver (stackproof)"), "{text}");
    let json = stackproof::lint::render_report_json(&r);
    assert_eq!(json["alerts"].as_array().unwrap().len(), 17);
    assert!(json["findings"].is_array());
}

/// The reference evaluator agrees. Needs promtool (CI's e2e pass installs the package).
#[test]
#[ignore]
fn promtool_and_the_own_evaluator_agree_on_the_default_stack() {
    assert!(
        std::process::Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success()),
        "promtool is not installed: apt-get install prometheus (this test checks stackproof's evaluator against it)"
    );
    let r = lint_report(&[repo().join("stack")], &Options { with_promtool: false, evaluator: Evaluator::Promtool }).expect("promtool runs");
    assert_default_stack(&r.alerts, HOW_PROMTOOL);
}

#[test]
fn a_selector_no_target_matches_is_an_error_naming_the_jobs() {
    let c = Copy::new();
    c.replace(HEALTH, "expr: up{job=\"host-exporter\"} == 0\n        for: 1m", "expr: up{job=\"nosuch\"} == 0\n        for: 1m");
    let line = c.line_of(HEALTH, "- alert: HostExporterDown");
    let r = report(&c.dir(), Evaluator::Own);
    let f = assert_finding(&r.findings, Error, "alerts.selector_no_target", HEALTH, line);
    assert!(f.message.contains("up{job=\"nosuch\"}"), "{}", f.message);
    for job in ["prometheus", "alertmanager", "node-exporter", "host-exporter"] {
        assert!(f.message.contains(job), "{}", f.message);
    }
    assert!(!r.alerts.iter().find(|a| a.alert == "HostExporterDown").unwrap().fires);
}

#[test]
fn an_alert_that_cannot_fire_is_an_error() {
    let c = Copy::new();
    // up is 0 or 1.
    c.replace(HEALTH, "expr: stackproof_gate_level{job=\"node-exporter\"} == 2", "expr: up{job=\"prometheus\"} > 1");
    // The host exporter's largest finite bucket is 60 s.
    c.replace("prometheus/rules/performance.yml", "          > 1\n        for: 10m", "          > 100\n        for: 10m");
    let r = report(&c.dir(), Evaluator::Own);
    let f = assert_finding(&r.findings, Error, "alerts.cannot_fire", HEALTH, c.line_of(HEALTH, "- alert: StackproofGateRed"));
    assert!(f.message.contains("up{job=\"prometheus\"}"), "{}", f.message);
    assert_finding(
        &r.findings,
        Error,
        "alerts.cannot_fire",
        "prometheus/rules/performance.yml",
        c.line_of("prometheus/rules/performance.yml", "- alert: SlowOperation"),
    );
    assert_eq!(r.alerts.iter().filter(|a| !a.fires).count(), 2, "{}", table(&r.alerts));
}

/// A threshold on the wrong scale: the pass rate is a 0..1 ratio, so "below 98" is always
/// true and "above 2" never is. The second must not pass as proven.
#[test]
fn a_threshold_on_the_wrong_scale_cannot_fire() {
    let c = Copy::new();
    let warnings = "prometheus/rules/warnings.yml";
    c.replace(warnings, "expr: suite_test_pass_rate{job=\"host-exporter\"} < 0.99", "expr: suite_test_pass_rate{job=\"host-exporter\"} > 2");
    let r = report(&c.dir(), Evaluator::Own);
    let f = assert_finding(&r.findings, Error, "alerts.cannot_fire", warnings, c.line_of(warnings, "- alert: TestPassRateLow"));
    assert!(f.message.contains("suite_test_pass_rate"), "{}", f.message);
    assert_eq!(r.alerts.iter().filter(|a| !a.fires).map(|a| a.alert.as_str()).collect::<Vec<_>>(), ["TestPassRateLow"], "{}", table(&r.alerts));
}

#[test]
fn an_alert_routed_only_to_a_receiver_without_integration_is_muted() {
    let c = Copy::new();
    let am = "alertmanager/alertmanager.yml";
    c.replace(
        am,
        "    - matchers: [severity=\"critical\"]",
        "    - matchers: [alertname=\"StackproofGateRed\"]\n      receiver: nobody\n\n    - matchers: [severity=\"critical\"]",
    );
    c.replace(am, "  - name: info", "  - name: info\n  - name: nobody");
    let r = report(&c.dir(), Evaluator::Own);
    assert_finding(&r.findings, Warning, "alerts.muted", HEALTH, c.line_of(HEALTH, "- alert: StackproofGateRed"));
    let a = r.alerts.iter().find(|a| a.alert == "StackproofGateRed").unwrap();
    assert!(a.muted && a.receivers == ["nobody"], "{}", table(&r.alerts));
    assert!(!r.findings.iter().any(|f| f.code == "alerts.muted" && !f.message.contains("StackproofGateRed")), "{}", show(&r.findings));
}

#[test]
fn prove_stack_is_the_api_drill_uses() {
    let a = stackproof::lint::proof::prove_stack(&repo().join("stack"), Evaluator::Own).unwrap();
    assert_default_stack(&a, HOW_OWN);
    assert!(stackproof::lint::proof::prove_stack(&repo().join("stack/prometheus"), Evaluator::Own).is_err());
}
