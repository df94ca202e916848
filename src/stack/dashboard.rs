//! THE dashboard model, parsed once and asked by `lint` and `verify`: panels in rows,
//! collapsed rows and legacy `rows[]`, their targets, datasource references in all
//! their forms, template variables, and the substitution of variables and Grafana's
//! built-ins into a query (docs/research/grafana-facts.md §4).
//!
//! ```
//! use stackproof::stack::dashboard::{Dashboard, Builtins};
//! let d = Dashboard::parse(r#"{"title":"t","uid":"u","panels":[{"type":"timeseries","title":"Up",
//!   "datasource":{"type":"prometheus","uid":"prom"},
//!   "targets":[{"refId":"A","expr":"rate(up[$__rate_interval])"}]}]}"#).unwrap();
//! let p = &d.panels()[0];
//! assert_eq!(d.substitute(p.targets[0].expr.as_deref().unwrap(), &Builtins::default()), "rate(up[1m])");
//! ```

use serde_json::Value;
use std::collections::HashMap;

mod templating;
use templating::parse_variables;
pub use templating::{Builtins, Variable};

/// One step of a path into the dashboard JSON (for finding the line of a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

pub type JsonPath = Vec<PathSeg>;

fn push(path: &JsonPath, segs: &[PathSeg]) -> JsonPath {
    let mut p = path.clone();
    p.extend_from_slice(segs);
    p
}
fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.to_string())
}

/// A datasource reference, in any of the forms Grafana has used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DsRef {
    /// `null`, missing, `"default"`: the default datasource.
    Default,
    /// Legacy string form (schemaVersion < 33): a datasource *name* (or a `$var`).
    Name(String),
    /// Object form `{"type": ..., "uid": ...}` (the uid may be a `${var}`).
    Uid { uid: String, kind: Option<String> },
    /// `-- Mixed --`: each target names its own.
    Mixed,
    /// Grafana's built-in datasource (`-- Grafana --`, uid `grafana`).
    Grafana,
    /// `-- Dashboard --`: reuses another panel's results.
    Dashboard,
    /// Server-side expressions (`__expr__`).
    Expression,
}

impl DsRef {
    pub fn from_json(v: Option<&Value>) -> DsRef {
        match v {
            None | Some(Value::Null) => DsRef::Default,
            Some(Value::String(s)) => match s.as_str() {
                "" | "default" => DsRef::Default,
                "-- Mixed --" => DsRef::Mixed,
                "-- Grafana --" | "grafana" => DsRef::Grafana,
                "-- Dashboard --" => DsRef::Dashboard,
                "__expr__" => DsRef::Expression,
                _ => DsRef::Name(s.clone()),
            },
            Some(Value::Object(o)) => {
                let kind = o.get("type").and_then(Value::as_str).map(str::to_owned);
                match o.get("uid").and_then(Value::as_str) {
                    None | Some("") => match kind.as_deref() {
                        Some("datasource") => DsRef::Grafana,
                        _ => DsRef::Default,
                    },
                    Some("-- Mixed --") => DsRef::Mixed,
                    Some("-- Grafana --") | Some("grafana") => DsRef::Grafana,
                    Some("-- Dashboard --") => DsRef::Dashboard,
                    Some("__expr__") => DsRef::Expression,
                    Some(uid) => DsRef::Uid { uid: uid.to_string(), kind },
                }
            }
            Some(_) => DsRef::Default,
        }
    }

    /// The template variable this reference goes through (`$ds`, `${ds}`, `[[ds]]`), if any.
    pub fn variable(&self) -> Option<&str> {
        let s = match self {
            DsRef::Name(s) => s,
            DsRef::Uid { uid, .. } => uid,
            _ => return None,
        };
        var_name_of(s)
    }

    /// The text written in the reference (name or uid).
    pub fn text(&self) -> Option<&str> {
        match self {
            DsRef::Name(s) => Some(s),
            DsRef::Uid { uid, .. } => Some(uid),
            _ => None,
        }
    }

    /// Whether a target with this reference goes to Prometheus (or may: default, names).
    pub fn may_be_prometheus(&self) -> bool {
        match self {
            DsRef::Uid { kind: Some(k), .. } => k == "prometheus",
            DsRef::Default | DsRef::Name(_) | DsRef::Uid { kind: None, .. } => true,
            _ => false,
        }
    }
}

/// `$x`, `${x}`, `${x:fmt}` or `[[x]]` as the whole string: the variable name.
fn var_name_of(s: &str) -> Option<&str> {
    let s = s.trim();
    let inner = if let Some(r) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        r.split(':').next().unwrap_or(r)
    } else if let Some(r) = s.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
        r.split(':').next().unwrap_or(r)
    } else {
        s.strip_prefix('$')?
    };
    (!inner.is_empty() && inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(inner)
}

/// One query of a panel.
#[derive(Debug, Clone)]
pub struct Target {
    pub ref_id: String,
    /// The PromQL (`expr`), if the target has one.
    pub expr: Option<String>,
    /// The target's own datasource; `None` when it inherits the panel's.
    pub datasource: Option<DsRef>,
    /// `hide: true` targets are not run by Grafana.
    pub hide: bool,
    pub path: JsonPath,
}

/// One panel (not a row), wherever it sits.
#[derive(Debug, Clone)]
pub struct PanelRef {
    pub title: String,
    pub id: Option<i64>,
    pub kind: String,
    pub path: JsonPath,
    /// The panel's datasource (after a row's default, if the panel has none).
    pub datasource: DsRef,
    pub targets: Vec<Target>,
    /// `libraryPanel` uid: its targets live in the library, not here.
    pub library_panel: Option<String>,
}

impl PanelRef {
    /// The datasource a target really uses (its own, else the panel's).
    pub fn target_datasource<'a>(&'a self, t: &'a Target) -> &'a DsRef {
        match &t.datasource {
            Some(DsRef::Default) | None => &self.datasource,
            Some(d) => d,
        }
    }

    /// Targets Grafana runs against Prometheus: not hidden, non-empty `expr`.
    pub fn prometheus_targets(&self) -> impl Iterator<Item = &Target> {
        self.targets.iter().filter(move |t| !t.hide && t.expr.as_deref().is_some_and(|e| !e.trim().is_empty()) && self.target_datasource(t).may_be_prometheus())
    }
}

/// A parsed dashboard.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub raw: Value,
    pub title: Option<String>,
    pub uid: Option<String>,
    pub schema_version: Option<i64>,
    /// `__inputs[].name` (an export "for sharing externally").
    pub inputs: Vec<String>,
    pub variables: Vec<Variable>,
    panels: Vec<PanelRef>,
    values: HashMap<String, usize>,
    /// Variables a row or panel repeats over: each copy gets one value of the variable.
    repeats: std::collections::HashSet<String>,
}

impl Dashboard {
    /// Parse dashboard JSON text.
    pub fn parse(text: &str) -> Result<Dashboard, serde_json::Error> {
        Ok(Dashboard::from_value(serde_json::from_str(text)?))
    }

    /// Build the model from a JSON value (never fails: missing parts are empty).
    pub fn from_value(raw: Value) -> Dashboard {
        let title = raw.get("title").and_then(Value::as_str).map(str::to_owned);
        let uid = raw.get("uid").and_then(Value::as_str).map(str::to_owned);
        let schema_version = raw.get("schemaVersion").and_then(Value::as_i64);
        let inputs = raw
            .get("__inputs")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|i| i.get("name").and_then(Value::as_str).map(str::to_owned)).collect())
            .unwrap_or_default();
        let variables = parse_variables(&raw);
        let mut panels = Vec::new();
        if let Some(list) = raw.get("panels").and_then(Value::as_array) {
            collect_panels(list, &vec![key("panels")], &DsRef::Default, &mut panels);
        }
        if let Some(rows) = raw.get("rows").and_then(Value::as_array) {
            for (i, row) in rows.iter().enumerate() {
                let row_ds = DsRef::from_json(row.get("datasource"));
                if let Some(list) = row.get("panels").and_then(Value::as_array) {
                    collect_panels(list, &vec![key("rows"), PathSeg::Index(i), key("panels")], &row_ds, &mut panels);
                }
            }
        }
        let values = variables.iter().enumerate().map(|(i, v)| (v.name.clone(), i)).collect();
        let mut repeats = std::collections::HashSet::new();
        let rows = raw.get("rows").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        collect_repeats(raw.get("panels").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default(), &mut repeats);
        collect_repeats(rows, &mut repeats);
        for r in rows {
            collect_repeats(r.get("panels").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default(), &mut repeats);
        }
        Dashboard { raw, title, uid, schema_version, inputs, variables, panels, values, repeats }
    }

    /// Whether the file is the API's wrapper `{"dashboard": {...}}` rather than a model.
    pub fn is_wrapped(&self) -> bool {
        self.title.is_none() && self.raw.get("dashboard").is_some_and(Value::is_object)
    }

    /// Every panel with its targets (rows are walked, not returned).
    pub fn panels(&self) -> &[PanelRef] {
        &self.panels
    }

    pub fn variable(&self, name: &str) -> Option<&Variable> {
        self.values.get(name).map(|&i| &self.variables[i])
    }

    /// Whether a row or panel repeats over this variable (each copy sees one value).
    pub fn is_repeated(&self, name: &str) -> bool {
        self.repeats.contains(name)
    }

    /// Whether a reference may go to Prometheus, resolving a datasource variable to the
    /// plugin it picks (`{"uid": "$loki"}` with `loki` a `datasource` variable of query
    /// `loki` does not).
    pub fn may_be_prometheus(&self, r: &DsRef) -> bool {
        if let Some(v) = r.variable().and_then(|n| self.variable(n)) {
            if v.kind == "datasource" {
                if let Some(plugin) = v.query.as_deref().filter(|q| !q.is_empty()) {
                    return plugin == "prometheus";
                }
            }
        }
        r.may_be_prometheus()
    }

    /// Every datasource reference with its path: panels, targets, variables and annotations.
    pub fn datasource_refs(&self) -> Vec<(JsonPath, DsRef)> {
        let mut out = Vec::new();
        for p in &self.panels {
            out.push((push(&p.path, &[key("datasource")]), p.datasource.clone()));
            for t in &p.targets {
                if let Some(d) = &t.datasource {
                    out.push((push(&t.path, &[key("datasource")]), d.clone()));
                }
            }
        }
        for v in &self.variables {
            if v.kind == "query" {
                out.push((push(&v.path, &[key("datasource")]), v.datasource.clone()));
            }
        }
        if let Some(list) = self.raw.pointer("/annotations/list").and_then(Value::as_array) {
            for (i, a) in list.iter().enumerate() {
                if a.get("datasource").is_some() {
                    out.push((vec![key("annotations"), key("list"), PathSeg::Index(i), key("datasource")], DsRef::from_json(a.get("datasource"))));
                }
            }
        }
        out
    }
}

fn collect_repeats(list: &[Value], out: &mut std::collections::HashSet<String>) {
    for p in list {
        if let Some(r) = p.get("repeat").and_then(Value::as_str).filter(|r| !r.is_empty()) {
            out.insert(r.trim_start_matches('$').to_string());
        }
        if let Some(children) = p.get("panels").and_then(Value::as_array) {
            collect_repeats(children, out);
        }
    }
}

fn collect_panels(list: &[Value], base: &JsonPath, inherited: &DsRef, out: &mut Vec<PanelRef>) {
    for (i, p) in list.iter().enumerate() {
        let path = push(base, &[PathSeg::Index(i)]);
        let kind = p.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        if kind == "row" {
            // A collapsed row keeps its children inside; an expanded row's follow it.
            if let Some(children) = p.get("panels").and_then(Value::as_array) {
                let row_ds = match p.get("datasource") {
                    Some(d) if !d.is_null() => DsRef::from_json(Some(d)),
                    _ => inherited.clone(),
                };
                collect_panels(children, &push(&path, &[key("panels")]), &row_ds, out);
            }
            continue;
        }
        let datasource = match p.get("datasource") {
            Some(d) if !d.is_null() => DsRef::from_json(Some(d)),
            _ => inherited.clone(),
        };
        let targets = p
            .get("targets")
            .and_then(Value::as_array)
            .map(|ts| {
                ts.iter()
                    .enumerate()
                    .map(|(j, t)| Target {
                        ref_id: t.get("refId").and_then(Value::as_str).unwrap_or("").to_string(),
                        expr: t.get("expr").and_then(Value::as_str).map(str::to_owned),
                        datasource: t.get("datasource").map(|d| DsRef::from_json(Some(d))),
                        hide: t.get("hide").and_then(Value::as_bool).unwrap_or(false),
                        path: push(&path, &[key("targets"), PathSeg::Index(j)]),
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(PanelRef {
            title: p.get("title").and_then(Value::as_str).unwrap_or("").to_string(),
            id: p.get("id").and_then(Value::as_i64),
            kind,
            path: path.clone(),
            datasource,
            targets,
            library_panel: p.pointer("/libraryPanel/uid").and_then(Value::as_str).map(str::to_owned),
        });
        // Some old dashboards nest panels in non-row panels too; walk them.
        if let Some(children) = p.get("panels").and_then(Value::as_array) {
            collect_panels(children, &push(&path, &[key("panels")]), inherited, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = r#"{
      "title": "T", "uid": "u",
      "templating": {"list": [
        {"name": "ds", "type": "datasource", "query": "prometheus"},
        {"name": "job", "type": "query", "multi": true, "includeAll": true, "current": {"value": ["$__all"]}},
        {"name": "node", "type": "query", "current": {"text": "a:9100", "value": "a:9100"}},
        {"name": "env", "type": "custom", "query": "prod,dev"}
      ]},
      "panels": [
        {"type": "row", "collapsed": true, "panels": [
          {"type": "graph", "title": "inner", "datasource": {"type": "prometheus", "uid": "${ds}"},
           "targets": [{"refId": "A", "expr": "rate(x{job=~\"$job\",instance=\"$node\",env=\"${env}\"}[$__rate_interval])"}]}
        ]},
        {"type": "stat", "title": "top", "datasource": "Prometheus",
         "targets": [{"refId": "A", "expr": "up", "hide": true}, {"refId": "B", "expr": "up", "datasource": {"uid": "other", "type": "prometheus"}}]}
      ],
      "rows": [{"panels": [{"type": "graph", "title": "legacy", "targets": [{"refId": "A", "expr": "[[job]]"}]}]}]
    }"#;

    #[test]
    fn walks_rows_collapsed_and_legacy() {
        let d = Dashboard::parse(D).unwrap();
        let titles: Vec<_> = d.panels().iter().map(|p| p.title.as_str()).collect();
        assert_eq!(titles, ["inner", "top", "legacy"]);
        assert_eq!(d.panels()[0].datasource.variable(), Some("ds"));
        assert_eq!(d.panels()[1].datasource, DsRef::Name("Prometheus".into()));
        assert_eq!(d.panels()[1].prometheus_targets().count(), 1);
        let t = &d.panels()[1].targets[1];
        assert_eq!(d.panels()[1].target_datasource(t), &DsRef::Uid { uid: "other".into(), kind: Some("prometheus".into()) });
        assert_eq!(d.panels()[2].datasource, DsRef::Default);
    }

    #[test]
    fn substitutes_variables_and_builtins() {
        let d = Dashboard::parse(D).unwrap();
        let e = d.panels()[0].targets[0].expr.clone().unwrap();
        assert_eq!(d.substitute(&e, &Builtins::default()), r#"rate(x{job=~".*",instance="a:9100",env="prod"}[1m])"#);
        assert_eq!(d.substitute("[[job]]", &Builtins::default()), ".*");
        assert!(d.unresolved(&e).is_empty());
        assert_eq!(d.unresolved("x{a=\"$nope\"} + label_replace(y, \"a\", \"$1\", \"b\", \"(.*)\")"), ["nope"]);
    }

    #[test]
    fn multi_value_variables_escape_for_a_promql_string() {
        let d = Dashboard::parse(
            r#"{"title": "m", "templating": {"list": [{"name": "inst", "type": "custom", "multi": true,
                "current": {"value": ["127.0.0.1:9100", "b"]}}]},
                "panels": [{"title": "p", "targets": [{"refId": "A", "expr": "up{instance=~\"$inst\"}"}]}]}"#,
        )
        .unwrap();
        let e = d.substitute(r#"up{instance=~"$inst"}"#, &Builtins::default());
        assert_eq!(e, r#"up{instance=~"(127\\.0\\.0\\.1:9100|b)"}"#);
        assert!(crate::stack::promql::parse(&e).is_ok(), "{e} must parse as PromQL");
    }

    #[test]
    fn wrapped_dashboard_is_recognised() {
        let d = Dashboard::parse(r#"{"dashboard": {"title": "x"}, "overwrite": true}"#).unwrap();
        assert!(d.is_wrapped());
    }
}
