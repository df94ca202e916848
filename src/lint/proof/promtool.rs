//! `promtool test rules` as the reference evaluator: ONE generated test file for all the
//! stack's proven rules (a test per rule: its scenario's series in promtool's expanding
//! notation, an `alert_rule_test` at the time stackproof's evaluator says it fires, the
//! labels it expects), run once in a temporary directory on copies of the rule files
//! without their annotations (their templates may query; they are not asserted).

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

/// The test file (as YAML text) for the cases, rule files named as given.
pub fn test_file(rule_files: &[String], cases: &[Case], interval: f64) -> String {
    let tests: Vec<Value> = cases
        .iter()
        .map(|c| {
            let input: Vec<Value> =
                c.series.iter().map(|s| json!({"series": series_desc(&s.labels), "values": format!("{}+{}x{}", num(s.start), num(s.inc), s.n)})).collect();
            let exp: Vec<Value> = c
                .fired
                .alerts
                .iter()
                .map(|(l, _)| json!({"exp_labels": l.iter().filter(|(k, _)| k.as_str() != "alertname").collect::<BTreeMap<_, _>>()}))
                .collect();
            json!({
                "name": format!("stackproof-{}", c.index),
                "interval": dur(c.step),
                "input_series": input,
                "alert_rule_test": [{"eval_time": dur(eval_time(c, interval)), "alertname": c.alert, "exp_alerts": exp}],
            })
        })
        .collect();
    let doc = json!({"rule_files": rule_files, "evaluation_interval": dur(interval), "tests": tests});
    serde_yaml::to_string(&doc).unwrap_or_default()
}

/// A rule file without annotations.
fn strip_annotations(text: &str) -> String {
    let Ok(mut v) = serde_yaml::from_str::<serde_yaml::Value>(text) else { return text.to_string() };
    if let Some(groups) = v.get_mut("groups").and_then(|g| g.as_sequence_mut()) {
        for g in groups {
            if let Some(rules) = g.get_mut("rules").and_then(|r| r.as_sequence_mut()) {
                for r in rules {
                    if let Some(m) = r.as_mapping_mut() {
                        m.remove("annotations");
                    }
                }
            }
        }
    }
    serde_yaml::to_string(&v).unwrap_or_else(|_| text.to_string())
}

/// Run the cases; per case index, Ok or why promtool disagrees.
pub fn check(
    rule_paths: &[&Path],
    cases: &[Case],
    interval: f64,
    _external: &BTreeMap<String, String>,
) -> Result<Vec<(usize, std::result::Result<(), String>)>> {
    if cases.is_empty() {
        return Ok(vec![]);
    }
    let tmp = tempfile::tempdir().map_err(|e| Error::io(Path::new("/tmp"), e))?;
    let mut names = Vec::new();
    for (i, p) in rule_paths.iter().enumerate() {
        let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
        let name = format!("rules-{i}.yml");
        std::fs::write(tmp.path().join(&name), strip_annotations(&text)).map_err(|e| Error::io(tmp.path().join(&name), e))?;
        names.push(name);
    }
    let test = tmp.path().join("stackproof-alerts.test.yml");
    std::fs::write(&test, test_file(&names, cases, interval)).map_err(|e| Error::io(&test, e))?;
    let out = Command::new("promtool").arg("test").arg("rules").arg(&test).current_dir(tmp.path()).output().map_err(|e| Error::io(Path::new("promtool"), e))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        return Ok(cases.iter().map(|c| (c.index, Ok(()))).collect());
    }
    Ok(cases.iter().map(|c| (c.index, failure(&text, c))).collect())
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
    if blocks.is_empty() && !text.contains("SUCCESS") {
        // promtool refused the file itself: nothing was checked.
        let first: String = text.lines().filter(|l| !l.trim().is_empty()).take(3).collect::<Vec<_>>().join(" ");
        return Err(format!("promtool could not run the generated test: {}", first.chars().take(400).collect::<String>()));
    }
    Ok(())
}
