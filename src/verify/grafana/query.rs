//! What a browser sends to Grafana's `/api/ds/query` for one panel query: the datasource
//! a reference picks, the built-ins the browser fills in, the minimum interval and step.

use super::super::panels;
use crate::stack::dashboard::{Builtins, Dashboard, DsRef, JsonPath, PathSeg};
use crate::stack::prometheus::parse_duration;
use serde_json::{json, Value};

/// Grafana's datasources, as the browser knows them.
#[derive(Debug, Clone)]
pub(super) struct Ds {
    pub uid: String,
    pub name: String,
    pub kind: String,
    pub is_default: bool,
    pub time_interval: Option<String>,
}

impl Ds {
    /// Grafana's answer to `/api/datasources`.
    pub(super) fn list(v: &Value) -> Vec<Ds> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|d| Ds {
                uid: d.get("uid").and_then(Value::as_str).unwrap_or("").into(),
                name: d.get("name").and_then(Value::as_str).unwrap_or("").into(),
                kind: d.get("type").and_then(Value::as_str).unwrap_or("").into(),
                is_default: d.get("isDefault").and_then(Value::as_bool).unwrap_or(false),
                time_interval: d.pointer("/jsonData/timeInterval").and_then(Value::as_str).map(str::to_string),
            })
            .collect()
    }
}

pub(super) fn default_ds(list: &[Ds]) -> Option<&Ds> {
    list.iter().find(|d| d.is_default).or_else(|| list.first())
}

/// Whether every metric `expr` reads is one stackproof publishes itself (through
/// node-exporter's textfile collector): those have no data until stackproof wrote them.
pub(super) fn only_textfile(expr: &str, textfile: &[String]) -> bool {
    let re = regex::Regex::new(r"\$\{?__\w+\}?").expect("static regex");
    let e = re.replace_all(expr, "1m");
    match crate::stack::promql::parse(&e) {
        Ok(q) => {
            let names = crate::stack::promql::metric_names(&q.ast);
            !names.is_empty() && names.iter().all(|n| textfile.contains(n))
        }
        Err(_) => false,
    }
}

/// Grafana's backend substitutes the interval and range built-ins itself; the browser
/// only fills in `$__from`/`$__to`. So those are the only ones replaced here.
pub(super) fn browser_builtins(from: i64, to: i64) -> Builtins {
    Builtins {
        interval: "$__interval".into(),
        interval_ms: "$__interval_ms".into(),
        rate_interval: "$__rate_interval".into(),
        rate_interval_ms: "$__rate_interval_ms".into(),
        range: "$__range".into(),
        range_s: "$__range_s".into(),
        range_ms: "$__range_ms".into(),
        from: from.to_string(),
        to: to.to_string(),
    }
}

/// The JSON value at a path of the shared model (panels and targets keep their paths).
pub(super) fn value_at(raw: &Value, path: &JsonPath) -> Value {
    let mut v = raw;
    for seg in path {
        v = match seg {
            PathSeg::Key(k) => v.get(k.as_str()),
            PathSeg::Index(i) => v.get(*i),
        }
        .unwrap_or(&Value::Null);
    }
    v.clone()
}

/// Map a datasource reference to one of Grafana's datasources, as the browser does.
fn pick_ds<'a>(model: &Dashboard, r: &DsRef, b: &Builtins, ds_list: &'a [Ds]) -> Result<&'a Ds, String> {
    let by_var = |name: &str| -> Option<&'a Ds> {
        let v = model.variable(name)?;
        if v.kind != "datasource" {
            return None;
        }
        let kind = v.query.clone().unwrap_or_else(|| "prometheus".into());
        ds_list.iter().find(|d| d.kind == kind && d.is_default).or_else(|| ds_list.iter().find(|d| d.kind == kind))
    };
    match r {
        DsRef::Default | DsRef::Mixed => default_ds(ds_list).ok_or_else(|| "no default datasource in Grafana".to_string()),
        DsRef::Name(_) | DsRef::Uid { .. } => {
            let written = r.text().unwrap_or("");
            let s = model.substitute(written, b);
            if let Some(d) = ds_list.iter().find(|d| d.uid == s || d.name == s) {
                return Ok(d);
            }
            if let Some(d) = r.variable().and_then(by_var) {
                return Ok(d);
            }
            if written.contains('$') && model.inputs.iter().any(|i| written.contains(i.as_str())) || written.starts_with("${DS_") {
                return Err(format!(
                    "Datasource {written} was not found: an `__inputs` placeholder (dashboards exported for sharing externally do not work when provisioned)"
                ));
            }
            Err(format!("datasource `{written}` not found in Grafana"))
        }
        other => Err(format!("not a Prometheus query ({other:?})")),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn build_body(
    model: &Dashboard,
    panel: &Value,
    target: &Value,
    ds_ref: &DsRef,
    ref_id: &str,
    raw_expr: &str,
    expr: &str,
    b: &Builtins,
    ds_list: &[Ds],
    from: i64,
    to: i64,
) -> Result<Value, String> {
    if let Some(u) = model.unresolved(raw_expr).first() {
        return Err(format!("variable `${u}` is not defined in the dashboard"));
    }
    let ds = pick_ds(model, ds_ref, b, ds_list)?;
    let min_interval = target
        .get("interval")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| panel.get("interval").and_then(Value::as_str).filter(|s| !s.is_empty()))
        .map(|s| model.substitute(s, b))
        .unwrap_or_default();
    let min_ms = parse_duration(min_interval.trim_start_matches('>'))
        .ok()
        .or_else(|| ds.time_interval.as_deref().and_then(|t| parse_duration(t.trim_start_matches('>')).ok()))
        .map(|d| d.as_millis() as u64)
        .unwrap_or(15_000);
    let max_dp = panels::max_data_points(panel);
    let interval_ms = panels::interval_ms(to - from, max_dp, min_ms);
    let q = panels::query_json(target, ref_id, &ds.uid, &ds.kind, expr, &min_interval, interval_ms, max_dp);
    Ok(json!({"from": from.to_string(), "to": to.to_string(), "queries": [q]}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds_list() -> Vec<Ds> {
        Ds::list(&json!([
            {"uid": "other", "name": "Other", "type": "loki"},
            {"uid": "prometheus", "name": "Prometheus", "type": "prometheus", "isDefault": true, "jsonData": {"timeInterval": "10s"}}
        ]))
    }

    #[test]
    fn references_pick_grafanas_datasources_like_the_browser() {
        let list = ds_list();
        assert_eq!(list[1].time_interval.as_deref(), Some("10s"));
        let d = Dashboard::parse(r#"{"title": "t", "templating": {"list": [{"name": "ds", "type": "datasource", "query": "prometheus"}]}}"#).unwrap();
        let b = Builtins::default();
        assert_eq!(pick_ds(&d, &DsRef::Default, &b, &list).unwrap().uid, "prometheus");
        assert_eq!(pick_ds(&d, &DsRef::Name("Other".into()), &b, &list).unwrap().uid, "other");
        assert_eq!(pick_ds(&d, &DsRef::Uid { uid: "${ds}".into(), kind: None }, &b, &list).unwrap().uid, "prometheus");
        let e = pick_ds(&d, &DsRef::Uid { uid: "${DS_PROMETHEUS}".into(), kind: None }, &b, &list).unwrap_err();
        assert!(e.contains("__inputs"), "{e}");
    }

    #[test]
    fn the_step_follows_the_datasource_time_interval() {
        let list = ds_list();
        let d = Dashboard::parse(r#"{"title": "t"}"#).unwrap();
        let (from, to) = (0, 3_600_000);
        let b = browser_builtins(from, to);
        let body = build_body(&d, &json!({}), &json!({"expr": "up"}), &DsRef::Default, "A", "up", "up", &b, &list, from, to).unwrap();
        assert_eq!(body["queries"][0]["datasource"]["uid"], "prometheus");
        assert_eq!((body["from"].as_str(), body["to"].as_str()), (Some("0"), Some("3600000")));
        let err = build_body(&d, &json!({}), &json!({}), &DsRef::Default, "A", "up{a=\"$x\"}", "", &b, &list, from, to).unwrap_err();
        assert!(err.contains("`$x`"), "{err}");
    }
}
