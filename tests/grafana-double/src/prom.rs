//! The Prometheus datasource: runs PromQL against the datasource URL and
//! turns the answer into Grafana data frames (shape of promlib's golden
//! files; see README).

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::interval::{self, StepInput};
use crate::state::Datasource;

/// One query of a `/api/ds/query` request, already parsed.
#[derive(Clone, Debug)]
pub struct PromQuery {
    pub ref_id: String,
    pub expr: String,
    pub range: bool,
    pub instant: bool,
    pub legend_format: String,
    pub interval: String,
    pub interval_ms: i64,
    pub interval_factor: i64,
    pub max_data_points: i64,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// Grafana's per-query DataResponse.
#[derive(Debug, Default)]
pub struct DataResponse {
    pub frames: Vec<Value>,
    pub error: Option<String>,
    pub status: u16,
}

impl DataResponse {
    /// JSON in the plugin SDK's key order: error, errorSource, status, frames.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(e) = &self.error {
            m.insert("error".into(), json!(e));
            m.insert("errorSource".into(), json!("downstream"));
        }
        m.insert("status".into(), json!(self.status));
        if self.error.is_none() || !self.frames.is_empty() {
            m.insert("frames".into(), Value::Array(self.frames.clone()));
        }
        Value::Object(m)
    }
    fn err(msg: String, status: u16) -> Self {
        DataResponse { frames: Vec::new(), error: Some(msg), status }
    }
}

/// Runs one Prometheus query the way Grafana's backend does.
pub async fn execute(client: &reqwest::Client, ds: &Datasource, q: &PromQuery) -> DataResponse {
    let ds_interval = ds.json_data.get("timeInterval").and_then(Value::as_str).unwrap_or("");
    let range_ms = q.to_ms - q.from_ms;
    let inp = StepInput {
        query_interval: &q.interval,
        interval_ms: q.interval_ms,
        ds_time_interval: ds_interval,
        range_ms,
        max_data_points: q.max_data_points,
        interval_factor: q.interval_factor,
    };
    let step = match interval::calculate_step(&inp) {
        Ok(s) => s,
        Err(e) => return DataResponse::err(e, 400),
    };
    let rate = if interval::is_rate_interval(&q.interval) {
        step
    } else {
        match interval::scrape_interval(&inp) {
            Ok(s) => interval::rate_interval(step, s),
            Err(e) => return DataResponse::err(e, 400),
        }
    };
    let expr = interval::interpolate(&q.expr, step, range_ms, rate);
    let step_ms = step.as_millis() as i64;
    // start and end aligned down to a multiple of the step
    let start_ms = align(q.from_ms, step_ms);
    let end_ms = align(q.to_ms, step_ms);
    let executed = format!("Expr: {expr}\nStep: {}", interval::go_duration_string(step));

    let method_post = !ds.json_data.get("httpMethod").and_then(Value::as_str).is_some_and(|m| m.eq_ignore_ascii_case("GET"));
    let mut out = DataResponse { status: 200, ..Default::default() };
    let mut kinds = Vec::new();
    // neither range nor instant set: a range query
    if q.range || !q.instant {
        kinds.push(true);
    }
    if q.instant {
        kinds.push(false);
    }
    for is_range in kinds {
        let params: Vec<(&str, String)> = if is_range {
            vec![("query", expr.clone()), ("start", secs(start_ms)), ("end", secs(end_ms)), ("step", secs(step_ms))]
        } else {
            vec![("query", expr.clone()), ("time", secs(end_ms))]
        };
        let path = if is_range { "/api/v1/query_range" } else { "/api/v1/query" };
        match call(client, ds, path, &params, method_post).await {
            Ok(body) => {
                let frames = to_frames(&body, q, &expr, &executed, step_ms, out.frames.is_empty());
                out.frames.extend(frames);
            }
            Err((msg, status)) => return DataResponse::err(msg, status),
        }
    }
    out
}

fn align(t_ms: i64, step_ms: i64) -> i64 {
    if step_ms <= 0 {
        return t_ms;
    }
    t_ms.div_euclid(step_ms) * step_ms
}

/// Seconds as Go's `strconv.FormatFloat(x, 'f', -1, 64)` prints them.
fn secs(ms: i64) -> String {
    let v = ms as f64 / 1000.0;
    if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Performs the HTTP call; errors come back worded like Grafana's.
async fn call(client: &reqwest::Client, ds: &Datasource, path: &str, params: &[(&str, String)], post: bool) -> Result<Value, (String, u16)> {
    let url = format!("{}{}", ds.url.trim_end_matches('/'), path);
    let encoded = {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            s.append_pair(k, v);
        }
        s.finish()
    };
    let (req, shown_url, verb) = if post {
        (client.post(&url).header("Content-Type", "application/x-www-form-urlencoded").body(encoded.clone()), url.clone(), "Post")
    } else {
        let full = format!("{url}?{encoded}");
        (client.get(&full), full, "Get")
    };
    let req = if ds.basic_auth { req.basic_auth(&ds.basic_auth_user, ds.secure_json_data.get("basicAuthPassword")) } else { req };
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Err(go_transport_error(verb, &shown_url, &url, &e)),
    };
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let ok_json = matches!(status, 200..=299 | 400 | 422 | 503);
    if !ok_json {
        let mut body = text.clone();
        body.truncate(1024);
        return Err((format!("unexpected response with status code {status}: {body}"), status));
    }
    let body: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return Err((format!("error reading response: {e}"), 500)),
    };
    if body.get("status").and_then(Value::as_str) == Some("error") {
        let et = body.get("errorType").and_then(Value::as_str).unwrap_or("");
        let em = body.get("error").and_then(Value::as_str).unwrap_or("");
        return Err((format!("{et}: {em}"), if status < 300 { 500 } else { status }));
    }
    Ok(body)
}

/// Words a reqwest failure the way Go's net/http reports it, e.g.
/// `Post "http://127.0.0.1:9/api/v1/query": dial tcp 127.0.0.1:9: connect: connection refused`.
fn go_transport_error(verb: &str, shown_url: &str, url: &str, e: &reqwest::Error) -> (String, u16) {
    let parsed = reqwest::Url::parse(url).ok();
    let host = parsed.as_ref().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
    let port = parsed.as_ref().and_then(|u| u.port_or_known_default()).unwrap_or(80);
    let mut chain = String::new();
    let mut src: Option<&dyn std::error::Error> = Some(e);
    let mut io_kind = None;
    while let Some(s) = src {
        chain.push_str(&s.to_string().to_lowercase());
        chain.push(' ');
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        src = s.source();
    }
    let (inner, status) = if e.is_timeout() {
        ("context deadline exceeded (Client.Timeout exceeded while awaiting headers)".to_string(), 504)
    } else if io_kind == Some(std::io::ErrorKind::ConnectionRefused) || chain.contains("connection refused") {
        (format!("dial tcp {host}:{port}: connect: connection refused"), 502)
    } else if chain.contains("dns error") || chain.contains("failed to lookup") || chain.contains("name or service not known") {
        (format!("dial tcp: lookup {host}: no such host"), 502)
    } else if e.is_builder() {
        (format!("unsupported protocol scheme or invalid URL: {e}"), 500)
    } else {
        (chain.trim().to_string(), 502)
    };
    (format!("{verb} \"{shown_url}\": {inner}"), status)
}

fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

/// Prometheus sample value: numbers, or NaN/±Inf which go to `entities`.
fn sample(s: &Value) -> Result<f64, ()> {
    match s.as_str() {
        Some("NaN") => Ok(f64::NAN),
        Some("+Inf") | Some("Inf") => Ok(f64::INFINITY),
        Some("-Inf") => Ok(f64::NEG_INFINITY),
        Some(x) => x.parse().map_err(|_| ()),
        None => s.as_f64().ok_or(()),
    }
}

fn ts_ms(v: &Value) -> i64 {
    (v.as_f64().unwrap_or(0.0) * 1000.0).round() as i64
}

/// Legend as promlib's `getName` renders it into `displayNameFromDS`.
fn display_name(q: &PromQuery, expr: &str, labels: &Map<String, Value>) -> String {
    if q.legend_format == "__auto" {
        return if labels.is_empty() { expr.to_string() } else { String::new() };
    }
    if !q.legend_format.is_empty() {
        // {{ label }} -> value
        let mut out = String::new();
        let mut rest = q.legend_format.as_str();
        while let Some(i) = rest.find("{{") {
            out.push_str(&rest[..i]);
            match rest[i + 2..].find("}}") {
                Some(j) => {
                    let name = rest[i + 2..i + 2 + j].trim();
                    out.push_str(labels.get(name).and_then(Value::as_str).unwrap_or(""));
                    rest = &rest[i + 2 + j + 2..];
                }
                None => {
                    out.push_str(&rest[i..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        return out;
    }
    let name = labels.get("__name__").and_then(Value::as_str).unwrap_or("");
    let mut keys: Vec<&String> = labels.keys().filter(|k| *k != "__name__").collect();
    keys.sort();
    let inner: Vec<String> = keys.iter().map(|k| format!("{}={:?}", k, labels[*k].as_str().unwrap_or(""))).collect();
    let legend = format!("{name}{{{}}}", inner.join(", "));
    if legend == "{}" {
        expr.to_string()
    } else {
        legend
    }
}

fn meta(frame_type: &str, result_type: &str, first: Option<(&str, i64)>) -> Value {
    let mut custom = Map::new();
    let mut m = Map::new();
    m.insert("type".into(), json!(frame_type));
    m.insert("typeVersion".into(), json!([0, 1]));
    if let Some((_, step_ms)) = first {
        custom.insert("calculatedMinStep".into(), json!(step_ms));
    }
    custom.insert("resultType".into(), json!(result_type));
    m.insert("custom".into(), Value::Object(custom));
    if let Some((executed, _)) = first {
        m.insert("executedQueryString".into(), json!(executed));
    }
    Value::Object(m)
}

fn to_frames(body: &Value, q: &PromQuery, expr: &str, executed: &str, step_ms: i64, first_overall: bool) -> Vec<Value> {
    let data = body.get("data").cloned().unwrap_or(Value::Null);
    let result_type = data.get("resultType").and_then(Value::as_str).unwrap_or("").to_string();
    let frame_type = if result_type == "matrix" { "timeseries-multi" } else { "numeric-multi" };
    let mut series: Vec<(Map<String, Value>, Vec<(i64, f64)>)> = Vec::new();
    match result_type.as_str() {
        "matrix" | "vector" => {
            for s in data.get("result").and_then(Value::as_array).into_iter().flatten() {
                let labels = s.get("metric").and_then(Value::as_object).cloned().unwrap_or_default();
                let mut points = Vec::new();
                if let Some(vals) = s.get("values").and_then(Value::as_array) {
                    for p in vals {
                        if let (Some(t), Some(v)) = (p.get(0), p.get(1)) {
                            if let Ok(x) = sample(v) {
                                points.push((ts_ms(t), x));
                            }
                        }
                    }
                }
                if let Some(p) = s.get("value") {
                    if let (Some(t), Some(v)) = (p.get(0), p.get(1)) {
                        if let Ok(x) = sample(v) {
                            points.push((ts_ms(t), x));
                        }
                    }
                }
                series.push((labels, points));
            }
        }
        "scalar" => {
            if let Some(p) = data.get("result") {
                if let (Some(t), Some(v)) = (p.get(0), p.get(1)) {
                    if let Ok(x) = sample(v) {
                        series.push((Map::new(), vec![(ts_ms(t), x)]));
                    }
                }
            }
        }
        _ => {}
    }
    let notices: Vec<Value> = body
        .get("warnings")
        .and_then(Value::as_array)
        .map(|w| w.iter().filter_map(Value::as_str).map(|t| json!({"severity": "warning", "text": t})).collect())
        .unwrap_or_default();

    let mut frames = Vec::new();
    if series.is_empty() {
        let mut m = meta(frame_type, &result_type, if first_overall { Some((executed, step_ms)) } else { None });
        if !notices.is_empty() {
            m["notices"] = Value::Array(notices.clone());
        }
        frames.push(json!({"schema": {"refId": q.ref_id, "meta": m, "fields": []}, "data": {"values": []}}));
        return frames;
    }
    for (i, (labels, points)) in series.into_iter().enumerate() {
        let first = first_overall && i == 0;
        let mut m = meta(frame_type, &result_type, if first { Some((executed, step_ms)) } else { None });
        if first && !notices.is_empty() {
            m["notices"] = Value::Array(notices.clone());
        }
        let mut time_field = json!({"name": "Time", "type": "time", "typeInfo": {"frame": "time.Time"}});
        if result_type == "matrix" {
            time_field["config"] = json!({"interval": step_ms});
        }
        let name = labels.get("__name__").and_then(Value::as_str).unwrap_or("Value").to_string();
        let mut value_field = Map::new();
        value_field.insert("name".into(), json!(name));
        value_field.insert("type".into(), json!("number"));
        value_field.insert("typeInfo".into(), json!({"frame": "float64"}));
        if !labels.is_empty() {
            value_field.insert("labels".into(), Value::Object(labels.clone()));
        }
        let display = display_name(q, expr, &labels);
        if !display.is_empty() {
            value_field.insert("config".into(), json!({"displayNameFromDS": display}));
        }
        let times: Vec<Value> = points.iter().map(|(t, _)| json!(t)).collect();
        let mut values = Vec::new();
        let (mut nan, mut inf, mut neg) = (Vec::new(), Vec::new(), Vec::new());
        for (idx, (_, v)) in points.iter().enumerate() {
            if v.is_nan() {
                nan.push(idx);
                values.push(Value::Null);
            } else if *v == f64::INFINITY {
                inf.push(idx);
                values.push(Value::Null);
            } else if *v == f64::NEG_INFINITY {
                neg.push(idx);
                values.push(Value::Null);
            } else {
                values.push(number(*v));
            }
        }
        let mut data = json!({"values": [times, values]});
        if !(nan.is_empty() && inf.is_empty() && neg.is_empty()) {
            let mut ent = Map::new();
            if !nan.is_empty() {
                ent.insert("NaN".into(), json!(nan));
            }
            if !inf.is_empty() {
                ent.insert("Inf".into(), json!(inf));
            }
            if !neg.is_empty() {
                ent.insert("NegInf".into(), json!(neg));
            }
            data["entities"] = json!([Value::Null, Value::Object(ent)]);
        }
        frames.push(json!({"schema": {"refId": q.ref_id, "meta": m, "fields": [time_field, Value::Object(value_field)]}, "data": data}));
    }
    frames
}

/// The Prometheus datasource health check: instant query `1+1`.
pub async fn health(client: &reqwest::Client, ds: &Datasource) -> (bool, String) {
    let now = chrono::Utc::now().timestamp_millis();
    let q = PromQuery {
        ref_id: "__healthcheck__".into(),
        expr: "1+1".into(),
        range: false,
        instant: true,
        legend_format: String::new(),
        interval: String::new(),
        interval_ms: 0,
        interval_factor: 1,
        max_data_points: 100,
        from_ms: now - 60_000,
        to_ms: now,
    };
    let r = execute(client, ds, &q).await;
    match r.error {
        None => (true, "Successfully queried the Prometheus API.".into()),
        Some(e) => (false, format!("{e} - There was an error returned querying the Prometheus API.")),
    }
}

pub fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
