//! The go/no-go gate: each criterion of the manifest's `gate.criteria` is a PromQL
//! instant query whose value is compared with its thresholds; the gate's level is the
//! worst criterion's.
//!
//! The decisions (`classify`, `pick_value`, `overall`, the exit code) are pure and
//! unit-tested at their boundaries; `evaluate` is the thin HTTP shell that asks
//! Prometheus' `/api/v1/query` (docs/research/prometheus-facts.md §1.1, §1.3).

use crate::remote::Ssh;
use crate::stack::manifest::{Better, GateCriterion, Level};
use crate::stack::Stack;
use serde::Serialize;
use serde_json::Value;
use std::time::Instant;

/// One criterion's outcome.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    pub name: String,
    pub query: String,
    /// The value compared with the thresholds; `None` when the query returned nothing.
    pub value: Option<f64>,
    pub level: Level,
    /// Why this level, in words (thresholds, empty result, NaN, several series).
    pub note: String,
}

/// The gate's verdict.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    pub level: Level,
    pub findings: Vec<Finding>,
    pub duration_ms: u64,
}

/// The gate level as a number, for the textfile metric `stackproof_gate_level`.
pub fn level_number(l: Level) -> u8 {
    match l {
        Level::Green => 0,
        Level::Yellow => 1,
        Level::Red => 2,
    }
}

pub fn level_word(l: Level) -> &'static str {
    match l {
        Level::Green => "green",
        Level::Yellow => "yellow",
        Level::Red => "red",
    }
}

/// `stackproof gate`'s exit code (docs/architecture.md "Commands, flags and exit codes"): 0 green, 1 red, 3 yellow.
pub fn exit_code(l: Level) -> i32 {
    match l {
        Level::Green => 0,
        Level::Red => 1,
        Level::Yellow => 3,
    }
}

/// Classify one value against a criterion's thresholds.
///
/// - `better: higher`: green when `v >= yellow`, red when `v < red`, else yellow.
/// - `better: lower`: green when `v < yellow`, red when `v > red`, else yellow.
/// - no sample: the criterion's `when_empty`; NaN: yellow (an undefined ratio, e.g. 0/0,
///   proves neither health nor failure).
pub fn classify(c: &GateCriterion, v: Option<f64>) -> (Level, String) {
    let Some(v) = v else {
        return (c.when_empty, format!("no sample: {} (when_empty)", level_word(c.when_empty)));
    };
    if v.is_nan() {
        return (Level::Yellow, "the query returned NaN (e.g. 0/0 with no traffic): cannot judge, yellow".into());
    }
    match c.better {
        Better::Higher => {
            if v >= c.yellow {
                (Level::Green, format!("{} >= {}", fmt(v), fmt(c.yellow)))
            } else if c.red.is_some_and(|r| v < r) {
                (Level::Red, format!("{} < {}", fmt(v), fmt(c.red.unwrap_or_default())))
            } else {
                (Level::Yellow, format!("{} < {}", fmt(v), fmt(c.yellow)))
            }
        }
        Better::Lower => {
            if v < c.yellow {
                (Level::Green, format!("{} < {}", fmt(v), fmt(c.yellow)))
            } else if c.red.is_some_and(|r| v > r) {
                (Level::Red, format!("{} > {}", fmt(v), fmt(c.red.unwrap_or_default())))
            } else {
                (Level::Yellow, format!("{} >= {}", fmt(v), fmt(c.yellow)))
            }
        }
    }
}

/// A value for people: four significant digits, no trailing zeros (0.03705, 0.98, 2).
fn fmt(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let decimals = (3 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The worst level; green for no criteria.
pub fn overall(findings: &[Finding]) -> Level {
    findings.iter().map(|f| f.level).max().unwrap_or(Level::Green)
}

/// The value of a query result (`data` of `/api/v1/query`): a scalar's value, or a
/// vector's single sample. A vector of several samples is judged by its worst one (the
/// minimum when higher is better, the maximum when lower is better), said in the note.
pub fn pick_value(data: &Value, better: Better) -> std::result::Result<(Option<f64>, String), String> {
    let rtype = data.get("resultType").and_then(Value::as_str).unwrap_or("");
    let parse = |pair: &Value| -> std::result::Result<f64, String> {
        let s = pair.get(1).and_then(Value::as_str).ok_or_else(|| format!("unexpected sample {pair}"))?;
        parse_sample(s).ok_or_else(|| format!("unparsable sample value {s:?}"))
    };
    match rtype {
        "scalar" => Ok((Some(parse(&data["result"])?), String::new())),
        "vector" => {
            let samples = data.get("result").and_then(Value::as_array).ok_or("vector without result")?;
            let values = samples.iter().map(|s| parse(&s["value"])).collect::<std::result::Result<Vec<f64>, String>>()?;
            match values.len() {
                0 => Ok((None, String::new())),
                1 => Ok((Some(values[0]), String::new())),
                n => {
                    // NaN first: one undefined series makes the whole criterion undecidable.
                    if let Some(nan) = values.iter().find(|v| v.is_nan()) {
                        return Ok((Some(*nan), format!("{n} series, one is NaN")));
                    }
                    let worst = match better {
                        Better::Higher => values.iter().copied().fold(f64::INFINITY, f64::min),
                        Better::Lower => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    };
                    Ok((Some(worst), format!("{n} series, judged by the worst")))
                }
            }
        }
        other => Err(format!("the query returned a {other:?}, not a number (use an aggregation such as min() or count())")),
    }
}

/// Prometheus writes sample values as Go's strconv does: `1`, `0.5`, `NaN`, `+Inf`, `-Inf`.
pub fn parse_sample(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Classify one criterion from a query's `data`.
pub fn judge(c: &GateCriterion, data: &Value) -> std::result::Result<Finding, String> {
    let (value, many) = pick_value(data, c.better)?;
    let (level, note) = classify(c, value);
    let note = if many.is_empty() { note } else { format!("{note} ({many})") };
    Ok(Finding { name: c.name.clone(), query: c.query.clone(), value, level, note })
}

/// Evaluate every criterion against Prometheus at `prometheus` (a base URL, e.g. the
/// local end of a tunnel). Any criterion that cannot be evaluated makes the whole gate
/// unevaluated (`Err`, naming the criterion): a gate with a blind spot is not green.
pub async fn evaluate(client: &reqwest::Client, prometheus: &str, criteria: &[GateCriterion]) -> std::result::Result<Verdict, String> {
    let t0 = Instant::now();
    let url = format!("{}/api/v1/query", prometheus.trim_end_matches('/'));
    let queries = criteria.iter().map(|c| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let resp = client
                .get(&url)
                .query(&[("query", c.query.as_str())])
                .send()
                .await
                .map_err(|e| format!("criterion `{}`: Prometheus did not answer: {e}", c.name))?;
            let status = resp.status();
            let body: Value = resp.json().await.map_err(|e| format!("criterion `{}`: Prometheus answered {status} without JSON: {e}", c.name))?;
            if body.get("status").and_then(Value::as_str) != Some("success") {
                let et = body.get("errorType").and_then(Value::as_str).unwrap_or("?");
                let msg = body.get("error").and_then(Value::as_str).unwrap_or("");
                return Err(format!("criterion `{}`: query `{}` failed ({status}, {et}): {msg}", c.name, c.query));
            }
            judge(c, &body["data"]).map_err(|e| format!("criterion `{}`: {e}", c.name))
        }
    });
    let findings = futures_util::future::join_all(queries).await.into_iter().collect::<std::result::Result<Vec<_>, String>>()?;
    Ok(Verdict { level: overall(&findings), findings, duration_ms: t0.elapsed().as_millis() as u64 })
}

/// Evaluate the gate of `stack` on `host` through an SSH tunnel to its Prometheus.
pub async fn evaluate_on(ssh: &Ssh, stack: &Stack) -> std::result::Result<Verdict, String> {
    let port = stack.manifest.service_port("prometheus").ok_or("the manifest gives prometheus no port")?;
    let local = ssh.tunnel(port).await.map_err(|e| e.to_string())?;
    let http = crate::remote::http::Http::new();
    let mut v = evaluate(http.client(), &format!("http://127.0.0.1:{local}"), &stack.manifest.gate.criteria).await?;
    unpaged(&mut v, ssh.host().unpaged.as_deref());
    if let Some(am) = stack.manifest.service_port("alertmanager") {
        // Best effort: an Alertmanager that does not answer leaves the verdict as it is.
        let silences = async {
            let local = ssh.tunnel(am).await.ok()?;
            let r = http.client().get(format!("http://127.0.0.1:{local}/api/v2/silences")).send().await.ok()?;
            r.json::<Value>().await.ok()
        };
        if let Some(s) = silences.await {
            drill_aftermath(&mut v, &drill_silences(&s, chrono::Utc::now()));
        }
    }
    Ok(v)
}

/// The live drill's silences still in force (from Alertmanager's `/api/v2/silences`):
/// the silenced alert's name and when the silence ends (pure).
pub fn drill_silences(silences: &Value, now: chrono::DateTime<chrono::Utc>) -> Vec<(String, chrono::DateTime<chrono::Utc>)> {
    let mut latest: std::collections::BTreeMap<String, chrono::DateTime<chrono::Utc>> = Default::default();
    let found = silences
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["createdBy"] == crate::drill::live::host::SILENCE_BY && s["status"]["state"] == "active")
        .filter_map(|s| {
            let ends = chrono::DateTime::parse_from_rfc3339(s["endsAt"].as_str()?).ok()?.with_timezone(&chrono::Utc);
            let alert = s["matchers"].as_array()?.iter().find(|m| m["name"] == "alertname")?["value"].as_str()?.to_string();
            (ends > now).then_some((alert, ends))
        });
    for (alert, ends) in found {
        let e = latest.entry(alert).or_insert(ends);
        *e = (*e).max(ends);
    }
    latest.into_iter().collect()
}

/// While a live drill's aftermath lasts (its faults are still inside the windows of the
/// real rules they drove, which fire then, silenced), the suite criteria and the firing
/// alerts read what the drill caused on purpose: the gate says so and holds at yellow
/// (neither go nor the `--on-red` rollback) until the last of its silences ends (pure).
pub fn drill_aftermath(v: &mut Verdict, active: &[(String, chrono::DateTime<chrono::Utc>)]) {
    let Some(until) = active.iter().map(|(_, t)| *t).max() else { return };
    let alerts: Vec<&str> = active.iter().map(|(a, _)| a.as_str()).collect();
    v.findings.push(Finding {
        name: "drill aftermath".into(),
        query: String::new(),
        value: None,
        level: Level::Yellow,
        note: format!(
            "a live drill (`stackproof drill`) caused {} on purpose; its effects last until {} (silenced): held at yellow",
            alerts.join(", "),
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    });
    v.level = Level::Yellow;
}

/// A host that knowingly pages nobody (`unpaged:` in its entry) is never green: the gate
/// keeps saying so, at yellow, for as long as the entry says it (pure).
pub fn unpaged(v: &mut Verdict, why: Option<&str>) {
    let Some(why) = why else { return };
    v.findings.push(Finding {
        name: "paging".into(),
        query: String::new(),
        value: None,
        level: Level::Yellow,
        note: format!("nobody is paged on this host (its entry says: {why})"),
    });
    v.level = overall(&v.findings);
}

/// The findings as the JSON the hooks (`STACKPROOF_GATE_FINDINGS`) and the journal get.
pub fn findings_json(v: &Verdict) -> Value {
    serde_json::to_value(&v.findings).expect("serializable")
}

/// One line per criterion, for people.
pub fn render_text(v: &Verdict) -> String {
    let mut out = String::new();
    let width = v.findings.iter().map(|f| f.name.len()).max().unwrap_or(0);
    for f in &v.findings {
        let mark = match f.level {
            Level::Green => "✓",
            Level::Yellow => "!",
            Level::Red => "✗",
        };
        let value = f.value.map(fmt).unwrap_or_else(|| "—".into());
        out.push_str(&format!("{mark} {:<width$}  {:<6}  {:>10}  {}\n", f.name, level_word(f.level), value, f.note));
    }
    out.push_str(&format!("gate: {} ({} criteria)\n", level_word(v.level).to_uppercase(), v.findings.len()));
    out
}

#[cfg(test)]
mod aftermath_tests {
    use super::*;

    fn silence(by: &str, state: &str, alert: &str, ends: &str) -> Value {
        serde_json::json!({"createdBy": by, "status": {"state": state}, "endsAt": ends,
            "matchers": [{"name": "alertname", "value": alert}, {"name": "job", "value": "host-exporter"}]})
    }

    #[test]
    fn a_live_drills_silences_hold_a_red_gate_at_yellow_until_they_end() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-30T13:00:00Z").unwrap().with_timezone(&chrono::Utc);
        let all = Value::Array(vec![
            silence("stackproof drill", "active", "TestErrorRateCritical", "2026-11-30T13:05:00Z"),
            silence("stackproof drill", "active", "TestErrorRateCritical", "2026-11-30T13:04:00Z"),
            silence("stackproof drill", "active", "SlowOperation", "2026-11-30T13:10:00Z"),
            silence("stackproof drill", "expired", "HostExporterDown", "2026-11-30T12:59:00Z"),
            silence("alice", "active", "HostCpuHigh", "2026-11-30T14:00:00Z"),
        ]);
        let active = drill_silences(&all, now);
        assert_eq!(
            active.iter().map(|(a, t)| format!("{a} {}", t.format("%H:%M"))).collect::<Vec<_>>(),
            ["SlowOperation 13:10", "TestErrorRateCritical 13:05"]
        );

        let red = Finding { name: "error rate".into(), query: "q".into(), value: Some(1.0), level: Level::Red, note: String::new() };
        let mut v = Verdict { level: Level::Red, findings: vec![red], duration_ms: 1 };
        drill_aftermath(&mut v, &active);
        assert_eq!(v.level, Level::Yellow, "held, neither go nor rollback");
        let note = &v.findings.last().unwrap().note;
        assert!(note.contains("SlowOperation, TestErrorRateCritical") && note.contains("2026-11-30T13:10:00Z"), "{note}");

        // Once the silences have ended, nothing is held.
        let later = now + chrono::Duration::minutes(11);
        let mut v = Verdict { level: Level::Red, findings: vec![], duration_ms: 1 };
        drill_aftermath(&mut v, &drill_silences(&all, later));
        assert_eq!(v.level, Level::Red);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unpaged_host_is_never_green() {
        let mut v = Verdict { level: Level::Green, findings: vec![], duration_ms: 1 };
        unpaged(&mut v, None);
        assert_eq!(v.level, Level::Green);
        unpaged(&mut v, Some("staging box"));
        assert_eq!(v.level, Level::Yellow);
        assert!(v.findings[0].note.contains("staging box"));
        let mut red = Verdict {
            level: Level::Red,
            findings: vec![Finding { name: "x".into(), query: "q".into(), value: None, level: Level::Red, note: String::new() }],
            duration_ms: 1,
        };
        unpaged(&mut red, Some("s"));
        assert_eq!(red.level, Level::Red, "a red gate stays red");
    }
    use serde_json::json;

    fn crit(better: Better, yellow: f64, red: Option<f64>) -> GateCriterion {
        GateCriterion { name: "c".into(), query: "q".into(), better, yellow, red, when_empty: Level::Yellow }
    }

    fn lvl(c: &GateCriterion, v: f64) -> Level {
        classify(c, Some(v)).0
    }

    #[test]
    fn pass_rate_boundaries_98_and_95() {
        let c = crit(Better::Higher, 0.98, Some(0.95));
        assert_eq!(lvl(&c, 1.0), Level::Green);
        assert_eq!(lvl(&c, 0.98), Level::Green, "98 % is green (>= yellow)");
        assert_eq!(lvl(&c, 0.9799), Level::Yellow);
        assert_eq!(lvl(&c, 0.95), Level::Yellow, "95 % is still yellow (red is < 95 %)");
        assert_eq!(lvl(&c, 0.9499), Level::Red);
        assert_eq!(lvl(&c, 0.0), Level::Red);
    }

    #[test]
    fn error_rate_boundaries_01_and_05_percent() {
        let c = crit(Better::Lower, 0.001, Some(0.005));
        assert_eq!(lvl(&c, 0.0), Level::Green);
        assert_eq!(lvl(&c, 0.000999), Level::Green);
        assert_eq!(lvl(&c, 0.001), Level::Yellow, "0.1 % is yellow (green is < 0.1 %)");
        assert_eq!(lvl(&c, 0.005), Level::Yellow, "0.5 % is yellow (red is > 0.5 %)");
        assert_eq!(lvl(&c, 0.00501), Level::Red);
    }

    #[test]
    fn p95_latency_boundaries_200_and_500_ms() {
        let c = crit(Better::Lower, 0.2, Some(0.5));
        assert_eq!(lvl(&c, 0.199), Level::Green);
        assert_eq!(lvl(&c, 0.2), Level::Yellow);
        assert_eq!(lvl(&c, 0.5), Level::Yellow);
        assert_eq!(lvl(&c, 0.501), Level::Red);
        assert_eq!(lvl(&c, f64::INFINITY), Level::Red, "+Inf latency (all in the top bucket) is red");
    }

    #[test]
    fn counts_with_equal_thresholds_and_without_red() {
        // `services down for 2m`: yellow 0.5, red 0.5 → 0 green, 1 red.
        let c = crit(Better::Lower, 0.5, Some(0.5));
        assert_eq!(lvl(&c, 0.0), Level::Green);
        assert_eq!(lvl(&c, 1.0), Level::Red);
        // `services down now`: no red → at worst yellow.
        let c = crit(Better::Lower, 0.5, None);
        assert_eq!(lvl(&c, 4.0), Level::Yellow);
        // warnings: 1–2 yellow, 3 red.
        let c = crit(Better::Lower, 0.5, Some(2.5));
        assert_eq!((lvl(&c, 1.0), lvl(&c, 2.0), lvl(&c, 3.0)), (Level::Yellow, Level::Yellow, Level::Red));
    }

    #[test]
    fn empty_and_nan() {
        let mut c = crit(Better::Lower, 0.5, Some(0.5));
        c.when_empty = Level::Green;
        assert_eq!(classify(&c, None).0, Level::Green);
        c.when_empty = Level::Red;
        assert_eq!(classify(&c, None).0, Level::Red);
        let (l, note) = classify(&c, Some(f64::NAN));
        assert_eq!(l, Level::Yellow);
        assert!(note.contains("NaN"), "{note}");
    }

    #[test]
    fn default_criteria_classify_as_the_rollout_plan_says() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/stack/stackproof.yml")).unwrap();
        let m = crate::stack::Manifest::from_yaml(&text).unwrap();
        let by = |n: &str| m.gate.criteria.iter().find(|c| c.name.contains(n)).unwrap_or_else(|| panic!("criterion {n}")).clone();
        let pass = by("pass rate");
        assert_eq!((lvl(&pass, 0.98), lvl(&pass, 0.97), lvl(&pass, 0.94)), (Level::Green, Level::Yellow, Level::Red));
        let err = by("error rate");
        assert_eq!((lvl(&err, 0.0009), lvl(&err, 0.003), lvl(&err, 0.006)), (Level::Green, Level::Yellow, Level::Red));
        let p95 = by("p95");
        assert_eq!((lvl(&p95, 0.15), lvl(&p95, 0.3), lvl(&p95, 0.6)), (Level::Green, Level::Yellow, Level::Red));
        let crit_alerts = by("critical");
        assert_eq!((classify(&crit_alerts, None).0, lvl(&crit_alerts, 1.0)), (Level::Green, Level::Red));
    }

    #[test]
    fn values_for_people() {
        assert_eq!(fmt(0.037045454545454534), "0.03705");
        assert_eq!(fmt(0.98), "0.98");
        assert_eq!(fmt(2.0), "2");
        assert_eq!(fmt(1234.5678), "1235");
        assert_eq!(fmt(0.0), "0");
        assert_eq!(fmt(f64::INFINITY), "inf");
    }

    #[test]
    fn overall_is_the_worst() {
        let f = |level| Finding { name: String::new(), query: String::new(), value: None, level, note: String::new() };
        assert_eq!(overall(&[]), Level::Green);
        assert_eq!(overall(&[f(Level::Green), f(Level::Yellow)]), Level::Yellow);
        assert_eq!(overall(&[f(Level::Red), f(Level::Yellow), f(Level::Green)]), Level::Red);
        assert_eq!((exit_code(Level::Green), exit_code(Level::Red), exit_code(Level::Yellow)), (0, 1, 3));
        assert_eq!((level_number(Level::Green), level_number(Level::Yellow), level_number(Level::Red)), (0, 1, 2));
    }

    #[test]
    fn values_from_query_results() {
        let v = json!({"resultType": "vector", "result": [{"metric": {}, "value": [1.0, "0.97"]}]});
        assert_eq!(pick_value(&v, Better::Higher).unwrap().0, Some(0.97));
        let v = json!({"resultType": "vector", "result": []});
        assert_eq!(pick_value(&v, Better::Higher).unwrap().0, None);
        let v = json!({"resultType": "scalar", "result": [1.0, "2"]});
        assert_eq!(pick_value(&v, Better::Lower).unwrap().0, Some(2.0));
        let v = json!({"resultType": "vector", "result": [{"value": [1.0, "0.99"]}, {"value": [1.0, "0.90"]}]});
        let (x, note) = pick_value(&v, Better::Higher).unwrap();
        assert_eq!(x, Some(0.90));
        assert!(note.contains("2 series"));
        assert_eq!(pick_value(&v, Better::Lower).unwrap().0, Some(0.99));
        let v = json!({"resultType": "vector", "result": [{"value": [1.0, "NaN"]}]});
        assert!(pick_value(&v, Better::Lower).unwrap().0.unwrap().is_nan());
        let v = json!({"resultType": "vector", "result": [{"value": [1.0, "+Inf"]}]});
        assert_eq!(pick_value(&v, Better::Lower).unwrap().0, Some(f64::INFINITY));
        assert!(pick_value(&json!({"resultType": "matrix", "result": []}), Better::Lower).is_err());
    }
}
