//! `promtool test rules` as the reference evaluator: one generated test file per proven
//! rule (its scenario's series in promtool's expanding notation, an `alert_rule_test` at
//! the time stackproof's evaluator says it fires, the labels it expects) on a rule file
//! holding that rule alone without its annotations (their templates may query; they are
//! not asserted), all run by one promtool in a temporary directory.

use super::eval::Series;
use super::rule::Fired;
use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

pub struct Case<'a> {
    /// Index into the proofs.
    pub index: usize,
    pub alert: &'a str,
    pub fired: &'a Fired,
    pub series: &'a [Series],
    pub step: f64,
    /// The rule group's evaluation interval, seconds.
    pub group_interval: f64,
}

/// promtool can be run.
pub fn available() -> bool {
    Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success())
}

fn dur(s: f64) -> String {
    format!("{}ms", (s * 1000.0).round() as u64)
}

fn num(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "Inf".into() } else { "-Inf".into() };
    }
    format!("{v}")
}

fn series_desc(labels: &BTreeMap<String, String>) -> String {
    let name = labels.get("__name__").cloned().unwrap_or_default();
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect();
    format!("{name}{{{}}}", rest.join(","))
}

/// When to look: promtool evaluates every group on the file's grid; a group evaluated more
/// often than that may become active up to one grid step later there.
fn eval_time(c: &Case, interval: f64) -> f64 {
    if c.group_interval < interval {
        ((c.fired.at_s + interval) / interval).ceil() * interval
    } else {
        c.fired.at_s
    }
}

/// The test file (as YAML text) of one case, on the rule file named as given: the case's
/// rule alone, evaluated at its group's interval.
pub fn test_file(rule_file: &str, c: &Case) -> String {
    let input: Vec<Value> =
        c.series.iter().map(|s| json!({"series": series_desc(&s.labels), "values": format!("{}+{}x{}", num(s.start), num(s.inc), s.n)})).collect();
    let exp: Vec<Value> =
        c.fired.alerts.iter().map(|(l, _)| json!({"exp_labels": l.iter().filter(|(k, _)| k.as_str() != "alertname").collect::<BTreeMap<_, _>>()})).collect();
    let test = json!({
        "name": format!("stackproof-{}", c.index),
        "interval": dur(c.step),
        "input_series": input,
        "alert_rule_test": [{"eval_time": dur(eval_time(c, c.group_interval)), "alertname": c.alert, "exp_alerts": exp}],
    });
    let doc = json!({"rule_files": [rule_file], "evaluation_interval": dur(c.group_interval), "tests": [test]});
    serde_yaml::to_string(&doc).unwrap_or_default()
}

/// The groups of the rule files holding the alerting rules named `alert` (and no other
/// rule), without annotations: what one case's test evaluates. Every other rule would be
/// evaluated at every step of every test for nothing (seconds for a stack's worth).
fn only_alert(files: &[serde_yaml::Value], alert: &str) -> String {
    let mut groups = Vec::new();
    for v in files {
        for g in v.get("groups").and_then(|g| g.as_sequence()).into_iter().flatten() {
            let rules: Vec<serde_yaml::Value> = g
                .get("rules")
                .and_then(|r| r.as_sequence())
                .into_iter()
                .flatten()
                .filter(|r| r.get("alert").and_then(|a| a.as_str()) == Some(alert))
                .map(|r| {
                    let mut r = r.clone();
                    if let Some(m) = r.as_mapping_mut() {
                        m.remove("annotations");
                    }
                    r
                })
                .collect();
            if !rules.is_empty() {
                let mut g = g.clone();
                if let Some(m) = g.as_mapping_mut() {
                    m.insert("rules".into(), serde_yaml::Value::Sequence(rules));
                }
                groups.push(g);
            }
        }
    }
    let mut doc = serde_yaml::Mapping::new();
    doc.insert("groups".into(), serde_yaml::Value::Sequence(groups));
    serde_yaml::to_string(&doc).unwrap_or_default()
}

/// Run the cases (one test file each, one promtool run for all); per case index, Ok or
/// why promtool disagrees.
pub fn check(rule_paths: &[&Path], cases: &[Case], _external: &BTreeMap<String, String>) -> Result<Vec<(usize, std::result::Result<(), String>)>> {
    if cases.is_empty() {
        return Ok(vec![]);
    }
    let tmp = tempfile::tempdir().map_err(|e| Error::io(Path::new("/tmp"), e))?;
    let mut files = Vec::new();
    for p in rule_paths {
        let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
        files.push(serde_yaml::from_str::<serde_yaml::Value>(&text).unwrap_or(serde_yaml::Value::Null));
    }
    let mut tests = Vec::new();
    for c in cases {
        let rules = format!("rules-{}.yml", c.index);
        std::fs::write(tmp.path().join(&rules), only_alert(&files, c.alert)).map_err(|e| Error::io(tmp.path().join(&rules), e))?;
        let test = format!("test-{}.yml", c.index);
        std::fs::write(tmp.path().join(&test), test_file(&rules, c)).map_err(|e| Error::io(tmp.path().join(&test), e))?;
        tests.push(test);
    }
    let run = |files: &[String]| -> Result<(bool, String)> {
        let out =
            Command::new("promtool").arg("test").arg("rules").args(files).current_dir(tmp.path()).output().map_err(|e| Error::io(Path::new("promtool"), e))?;
        Ok((out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))))
    };
    if run(&tests)?.0 {
        return Ok(cases.iter().map(|c| (c.index, Ok(()))).collect());
    }
    // Something failed. promtool prints every file's "Unit Testing:" line on stdout and the
    // failures on stderr, so its combined output does not say which file failed to load:
    // each case again on its own (the rare path).
    let mut verdicts = Vec::new();
    for (c, test) in cases.iter().zip(&tests) {
        let (ok, text) = run(std::slice::from_ref(test))?;
        verdicts.push((c.index, if ok { Ok(()) } else { failure(&text, c) }));
    }
    Ok(verdicts)
}

/// Whether promtool's output names this case's alert at its time as failed.
fn failure(text: &str, c: &Case) -> std::result::Result<(), String> {
    let needle = format!("alertname: {}, time: ", c.alert);
    let blocks: Vec<&str> = text.split("alertname: ").skip(1).collect();
    if text.contains(&needle) {
        let at = text.find(&needle).unwrap_or(0);
        let snippet: String = text[at..].lines().take(3).map(str::trim).collect::<Vec<_>>().join(" ");
        return Err(snippet.chars().take(400).collect());
    }
    if blocks.is_empty() {
        // promtool refused the file itself: nothing was checked.
        let first: String = text.lines().filter(|l| !l.trim().is_empty()).take(3).collect::<Vec<_>>().join(" ");
        return Err(format!("promtool could not run the generated test: {}", first.chars().take(400).collect::<String>()));
    }
    Ok(())
}
