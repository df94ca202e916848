//! How a browser asks Grafana for a panel's data: the dashboard's default time range,
//! the `maxDataPoints` and `intervalMs` it sends, and the query object of
//! `/api/ds/query`. The dashboard itself (panels, rows, targets, datasource references,
//! variables) is read with the shared model, `crate::stack::dashboard`.
//! Facts: docs/research/grafana-facts.md §3.8, §4.

use serde_json::{json, Value};

/// Parse Grafana's relative time (`now`, `now-6h`, `now-7d`) or epoch ms.
pub fn parse_time(s: &str, now_ms: i64) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    let rest = s.strip_prefix("now")?;
    let rest = rest.split('/').next().unwrap_or("");
    if rest.is_empty() {
        return Some(now_ms);
    }
    let re = regex::Regex::new(r"^([+-])(\d+)(s|m|h|d|w|M|y)$").expect("static regex");
    let c = re.captures(rest)?;
    let n: i64 = c[2].parse().ok()?;
    let unit: i64 = match &c[3] {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        "M" => 2_592_000_000,
        _ => 31_536_000_000,
    };
    let d = n * unit;
    Some(if &c[1] == "-" { now_ms - d } else { now_ms + d })
}

/// The dashboard's default time range in epoch ms (Grafana's default: last 6 hours).
pub fn time_range(dash: &Value, now_ms: i64) -> (i64, i64) {
    let from = dash.pointer("/time/from").and_then(Value::as_str).and_then(|s| parse_time(s, now_ms));
    let to = dash.pointer("/time/to").and_then(Value::as_str).and_then(|s| parse_time(s, now_ms));
    match (from, to) {
        (Some(f), Some(t)) if f < t => (f, t),
        _ => (now_ms - 6 * 3_600_000, now_ms),
    }
}

/// Nice step values a browser rounds its interval to.
const NICE_MS: [u64; 24] = [
    10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 20_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000, 1_200_000, 1_800_000,
    3_600_000, 7_200_000, 10_800_000, 21_600_000,
];

/// The `intervalMs` a browser sends: range / maxDataPoints rounded up to a nice step, not
/// below the minimum interval (the panel's, else the datasource's `timeInterval`).
pub fn interval_ms(range_ms: i64, max_data_points: u64, min_ms: u64) -> u64 {
    let raw = (range_ms.max(1) as u64) / max_data_points.max(1);
    let nice = NICE_MS.iter().copied().find(|n| *n >= raw).unwrap_or(raw);
    nice.max(min_ms).max(1)
}

/// maxDataPoints as a browser computes it: the panel's setting, else its pixel width on a
/// 1920 px wide screen (24 grid columns).
pub fn max_data_points(panel: &Value) -> u64 {
    if let Some(m) = panel.get("maxDataPoints").and_then(Value::as_u64) {
        return m;
    }
    let w = panel.pointer("/gridPos/w").and_then(Value::as_u64).unwrap_or(12).clamp(1, 24);
    w * 1900 / 24
}

/// One query of `/api/ds/query`, shaped like the one Grafana's frontend sends.
#[allow(clippy::too_many_arguments)]
pub fn query_json(target: &Value, ref_id: &str, ds_uid: &str, ds_type: &str, expr: &str, interval: &str, interval_ms: u64, max_dp: u64) -> Value {
    let instant = target.get("instant").and_then(Value::as_bool).unwrap_or(false);
    let range = target.get("range").and_then(Value::as_bool).unwrap_or(!instant);
    json!({
        "refId": ref_id,
        "datasource": {"type": ds_type, "uid": ds_uid},
        "expr": expr,
        "range": range,
        "instant": instant,
        "exemplar": false,
        "format": target.get("format").and_then(Value::as_str).unwrap_or("time_series"),
        "legendFormat": target.get("legendFormat").and_then(Value::as_str).unwrap_or(""),
        "interval": interval,
        "intervalMs": interval_ms,
        "maxDataPoints": max_dp,
        "utcOffsetSec": 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_range_step_and_width() {
        let d = json!({"time": {"from": "now-1h", "to": "now"}});
        assert_eq!(time_range(&d, 10_000_000), (10_000_000 - 3_600_000, 10_000_000));
        assert_eq!(time_range(&json!({}), 100_000_000).0, 100_000_000 - 21_600_000);
        assert_eq!(parse_time("now-7d/d", 1_000_000_000_000), Some(1_000_000_000_000 - 7 * 86_400_000));
        assert_eq!(parse_time("1700000000000", 0), Some(1_700_000_000_000));
        assert_eq!(parse_time("yesterday", 0), None);
        assert_eq!(interval_ms(3_600_000, 950, 15_000), 15_000);
        assert_eq!(interval_ms(21_600_000, 950, 1_000), 30_000);
        assert_eq!(max_data_points(&json!({"gridPos": {"w": 12}})), 950);
        assert_eq!(max_data_points(&json!({"maxDataPoints": 100})), 100);
    }

    #[test]
    fn query_object_like_the_frontend() {
        let q = query_json(&json!({"refId": "A", "expr": "up", "instant": true}), "A", "prom", "prometheus", "up", "", 15000, 950);
        assert_eq!(q["datasource"], json!({"type": "prometheus", "uid": "prom"}));
        assert_eq!(q["instant"], true);
        assert_eq!(q["range"], false);
        assert_eq!(q["intervalMs"], 15000);
        let q = query_json(&json!({}), "B", "p", "prometheus", "x", "30s", 30000, 10);
        assert_eq!(q["range"], true);
        assert_eq!(q["format"], "time_series");
    }
}
