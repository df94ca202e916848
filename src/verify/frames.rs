//! Did a Grafana query return data? Reading `/api/ds/query` answers.
//!
//! A Prometheus query with no series still answers with one frame (schema only, no
//! values), so "there is a frame" proves nothing: data means at least one non-null
//! number in some frame. NaN/±Inf come as `null` and are not data either.

use serde::Serialize;
use serde_json::Value;

/// One returned series, thinned for a small chart: (epoch ms, value) points.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(i64, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Data(Vec<Series>),
    NoData,
    Error(String),
}

/// Most points kept per series, most series kept per query (the report only draws them).
const MAX_POINTS: usize = 120;
const MAX_SERIES: usize = 6;

/// Judge `results.<refId>` of a `/api/ds/query` answer.
pub fn judge(result: Option<&Value>) -> Outcome {
    let Some(r) = result else {
        return Outcome::Error("the answer has no result for this query".into());
    };
    if let Some(e) = r.get("error").and_then(Value::as_str).filter(|e| !e.is_empty()) {
        return Outcome::Error(e.to_string());
    }
    let mut series = vec![];
    let mut any = false;
    for frame in r.get("frames").and_then(Value::as_array).into_iter().flatten() {
        let fields = frame.pointer("/schema/fields").and_then(Value::as_array).cloned().unwrap_or_default();
        let values = frame.pointer("/data/values").and_then(Value::as_array).cloned().unwrap_or_default();
        let time_idx = fields.iter().position(|f| f.get("type").and_then(Value::as_str) == Some("time"));
        for (i, f) in fields.iter().enumerate() {
            let ty = f.get("type").and_then(Value::as_str).unwrap_or("");
            if Some(i) == time_idx || !(ty == "number" || ty.is_empty()) {
                continue;
            }
            let Some(col) = values.get(i).and_then(Value::as_array) else { continue };
            let nums: Vec<Option<f64>> = col.iter().map(Value::as_f64).collect();
            if !nums.iter().any(Option::is_some) {
                continue;
            }
            any = true;
            if series.len() >= MAX_SERIES {
                continue;
            }
            let times: Vec<i64> = match time_idx.and_then(|t| values.get(t)).and_then(Value::as_array) {
                Some(t) => t.iter().map(|x| x.as_i64().or_else(|| x.as_f64().map(|f| f as i64)).unwrap_or(0)).collect(),
                None => (0..nums.len() as i64).collect(),
            };
            let pts: Vec<(i64, f64)> = times.into_iter().zip(nums).filter_map(|(t, v)| v.map(|v| (t, v))).collect();
            series.push(Series { name: series_name(f), points: thin(pts) });
        }
    }
    if any {
        Outcome::Data(series)
    } else {
        Outcome::NoData
    }
}

fn series_name(field: &Value) -> String {
    if let Some(d) = field.pointer("/config/displayNameFromDS").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        return d.to_string();
    }
    let name = field.get("name").and_then(Value::as_str).unwrap_or("Value");
    match field.get("labels").and_then(Value::as_object) {
        Some(l) if !l.is_empty() => {
            let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or(""))).collect();
            format!("{name}{{{}}}", inner.join(", "))
        }
        _ => name.to_string(),
    }
}

/// Keep at most MAX_POINTS evenly spaced points (always the last one).
fn thin(pts: Vec<(i64, f64)>) -> Vec<(i64, f64)> {
    if pts.len() <= MAX_POINTS {
        return pts;
    }
    let step = pts.len() as f64 / MAX_POINTS as f64;
    let mut out: Vec<(i64, f64)> = (0..MAX_POINTS).map(|i| pts[(i as f64 * step) as usize]).collect();
    if let (Some(l), Some(o)) = (pts.last(), out.last_mut()) {
        *o = *l;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_empty_frame_is_not_data() {
        // What Grafana answers for a query with no series: one frame, meta only.
        let r = json!({"status": 200, "frames": [{"schema": {"refId": "A", "meta": {"type": "timeseries-multi"}, "fields": []}, "data": {"values": []}}]});
        assert_eq!(judge(Some(&r)), Outcome::NoData);
        assert_eq!(judge(Some(&json!({"frames": []}))), Outcome::NoData);
    }

    #[test]
    fn all_null_values_are_not_data() {
        let r = json!({"frames": [{"schema": {"fields": [{"name": "Time", "type": "time"}, {"name": "Value", "type": "number"}]},
            "data": {"values": [[1, 2], [null, null]]}}]});
        assert_eq!(judge(Some(&r)), Outcome::NoData);
    }

    #[test]
    fn one_value_is_data_with_a_named_series() {
        let r = json!({"frames": [{"schema": {"fields": [{"name": "Time", "type": "time"},
            {"name": "up", "type": "number", "labels": {"job": "node"}}]},
            "data": {"values": [[1000, 2000], [null, 1.0]]}}]});
        match judge(Some(&r)) {
            Outcome::Data(s) => {
                assert_eq!(s.len(), 1);
                assert_eq!(s[0].name, "up{job=\"node\"}");
                assert_eq!(s[0].points, vec![(2000, 1.0)]);
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn errors_are_reported() {
        let r = json!({"error": "bad_data: parse error", "status": 400, "frames": []});
        assert_eq!(judge(Some(&r)), Outcome::Error("bad_data: parse error".into()));
        assert!(matches!(judge(None), Outcome::Error(_)));
    }

    #[test]
    fn long_series_are_thinned_keeping_the_last_point() {
        let pts: Vec<(i64, f64)> = (0..1000).map(|i| (i, i as f64)).collect();
        let t = thin(pts);
        assert_eq!(t.len(), MAX_POINTS);
        assert_eq!(t.last(), Some(&(999, 999.0)));
    }
}
