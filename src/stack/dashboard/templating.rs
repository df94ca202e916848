//! Template variables (`templating.list[]`) and their substitution, with Grafana's
//! built-ins, into a query (grafana-facts.md §4).

use super::{key, Dashboard, DsRef, JsonPath, PathSeg};
use serde_json::Value;
use std::sync::OnceLock;

/// A template variable (`templating.list[]`).
#[derive(Debug, Clone)]
pub struct Variable {
    pub name: String,
    /// `query`, `custom`, `constant`, `textbox`, `interval`, `datasource`, `adhoc`, ...
    pub kind: String,
    /// For `datasource` variables: the plugin type (`prometheus`); for others the
    /// query text when it is a string.
    pub query: Option<String>,
    /// The selected value(s), from `current.value` (else `current.text`).
    pub current: Vec<String>,
    /// Option values, from `options[]` (or a custom variable's comma list).
    pub options: Vec<String>,
    pub include_all: bool,
    pub all_value: Option<String>,
    pub multi: bool,
    pub datasource: DsRef,
    pub path: JsonPath,
}

/// Values for Grafana's built-in variables. Defaults suit a 1 h range, 15 s step and a
/// 15 s scrape interval (`$__rate_interval` = max(4 × scrape, step + scrape) = 1m).
#[derive(Debug, Clone)]
pub struct Builtins {
    pub interval: String,
    pub interval_ms: String,
    pub rate_interval: String,
    pub rate_interval_ms: String,
    pub range: String,
    pub range_s: String,
    pub range_ms: String,
    pub from: String,
    pub to: String,
}

impl Default for Builtins {
    fn default() -> Self {
        Builtins {
            interval: "15s".into(),
            interval_ms: "15000".into(),
            rate_interval: "1m".into(),
            rate_interval_ms: "60000".into(),
            range: "3600s".into(),
            range_s: "3600".into(),
            range_ms: "3600000".into(),
            from: "1700000000000".into(),
            to: "1700003600000".into(),
        }
    }
}

impl Builtins {
    fn get(&self, name: &str) -> Option<&str> {
        Some(match name {
            // `$__auto` (Grafana 11+): the auto interval, like `$__interval`.
            "__interval" | "__auto" => &self.interval,
            "__interval_ms" => &self.interval_ms,
            "__rate_interval" => &self.rate_interval,
            "__rate_interval_ms" => &self.rate_interval_ms,
            "__range" => &self.range,
            "__range_s" => &self.range_s,
            "__range_ms" => &self.range_ms,
            "__from" => &self.from,
            "__to" => &self.to,
            "__dashboard" => "dashboard",
            "__org" => "1",
            "__user" => "admin",
            _ => return None,
        })
    }
}

fn var_regex() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"\$\{(\w+)(?::([\w]+))?\}|\[\[(\w+)(?::([\w]+))?\]\]|\$(\w+)").expect("static regex"))
}

/// Escape regex metacharacters the way Grafana's Prometheus datasource does for a
/// multi-value variable: the value lands inside a PromQL string literal, so each
/// backslash of the regex escape is itself escaped (`a.b` → `a\\.b`, which PromQL
/// reads as the regex `a\.b`). A single backslash would be an invalid string escape.
fn regex_escape(s: &str) -> String {
    regex::escape(s).replace('\\', "\\\\")
}

impl Dashboard {
    /// Replace the dashboard's variables and Grafana's built-ins in `expr`.
    /// Unknown variables are left as written (see [`Dashboard::unresolved`]).
    pub fn substitute(&self, expr: &str, b: &Builtins) -> String {
        self.substitute_inner(expr, b, 0)
    }

    fn substitute_inner(&self, expr: &str, b: &Builtins, depth: u8) -> String {
        if !expr.contains('$') && !expr.contains("[[") {
            return expr.to_string();
        }
        let out = var_regex()
            .replace_all(expr, |c: &regex::Captures| {
                let whole = c.get(0).map(|m| m.as_str()).unwrap_or("");
                let name = c.get(1).or(c.get(3)).or(c.get(5)).map(|m| m.as_str()).unwrap_or("");
                let fmt = c.get(2).or(c.get(4)).map(|m| m.as_str());
                if let Some(v) = b.get(name) {
                    return v.to_string();
                }
                match self.variable(name) {
                    Some(v) => self.render(v, fmt, b),
                    None => whole.to_string(),
                }
            })
            .into_owned();
        // A variable's value may itself use variables (chained `$__auto_interval`, etc.).
        if depth < 2 && out.contains('$') && out != expr {
            return self.substitute_inner(&out, b, depth + 1);
        }
        out
    }

    /// The value(s) a variable takes by default: `current`, else the first option;
    /// "All" becomes `allValue` (or `.*`).
    pub fn default_values(&self, v: &Variable, b: &Builtins) -> (Vec<String>, bool) {
        let mut vals: Vec<String> = v.current.clone();
        if vals.is_empty() || vals.iter().all(|s| s.is_empty()) {
            vals = v.options.iter().take(1).cloned().collect();
        }
        let is_all = vals.iter().any(|s| s == "$__all" || s == "All");
        if is_all || (vals.is_empty() && (v.include_all || v.kind == "query")) {
            return (vec![v.all_value.clone().unwrap_or_else(|| ".*".into())], true);
        }
        if v.kind == "interval" {
            vals = vals.into_iter().map(|s| if s.starts_with("$__auto_interval") || s == "auto" { b.interval.clone() } else { s }).collect();
        }
        if vals.is_empty() {
            vals.push(match v.kind.as_str() {
                "constant" | "textbox" => v.query.clone().unwrap_or_default(),
                _ => String::new(),
            });
        }
        (vals, false)
    }

    fn render(&self, v: &Variable, fmt: Option<&str>, b: &Builtins) -> String {
        if self.is_repeated(&v.name) {
            // A repeated row or panel: each copy gets one plain value of the variable,
            // which may sit anywhere (even inside a metric name), never "All" or a regex.
            let one = v.current.iter().chain(&v.options).find(|s| !s.is_empty() && *s != "$__all" && *s != "All" && !s.contains(['*', '|', '$']));
            return one.cloned().unwrap_or_else(|| "repeated".to_string());
        }
        let (vals, raw_all) = self.default_values(v, b);
        if raw_all {
            return vals.into_iter().next().unwrap_or_default();
        }
        match fmt {
            Some("raw") | Some("text") => vals.join(","),
            Some("csv") => vals.join(","),
            Some("pipe") => vals.join("|"),
            Some("regex") => join_regex(&vals),
            _ if v.multi || v.include_all => join_regex(&vals),
            _ => vals.into_iter().next().unwrap_or_default(),
        }
    }

    /// Variable names `expr` uses that the dashboard does not define (built-ins excluded;
    /// `$1`-style regex back-references are not variables).
    pub fn unresolved(&self, expr: &str) -> Vec<String> {
        let b = Builtins::default();
        var_regex()
            .captures_iter(expr)
            .filter_map(|c| c.get(1).or(c.get(3)).or(c.get(5)).map(|m| m.as_str().to_string()))
            .filter(|n| !n.starts_with(|c: char| c.is_ascii_digit()))
            .filter(|n| b.get(n).is_none() && self.variable(n).is_none())
            .collect()
    }
}

fn join_regex(vals: &[String]) -> String {
    if vals.len() == 1 {
        regex_escape(&vals[0])
    } else {
        format!("({})", vals.iter().map(|v| regex_escape(v)).collect::<Vec<_>>().join("|"))
    }
}

fn strings_of(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
        Some(Value::Number(n)) => vec![n.to_string()],
        _ => vec![],
    }
}

pub(super) fn parse_variables(raw: &Value) -> Vec<Variable> {
    let Some(list) = raw.pointer("/templating/list").and_then(Value::as_array) else { return vec![] };
    list.iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let name = v.get("name")?.as_str()?.to_string();
            let kind = v.get("type").and_then(Value::as_str).unwrap_or("query").to_string();
            let query = match v.get("query") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Object(o)) => o.get("query").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            };
            let current = v.get("current").map(|c| {
                let vals = strings_of(c.get("value"));
                if vals.is_empty() {
                    strings_of(c.get("text"))
                } else {
                    vals
                }
            });
            let mut options: Vec<String> = v
                .get("options")
                .and_then(Value::as_array)
                .map(|a| a.iter().flat_map(|o| strings_of(o.get("value"))).filter(|s| s != "$__all").collect())
                .unwrap_or_default();
            if options.is_empty() && kind == "custom" {
                options = query.as_deref().unwrap_or("").split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
            }
            Some(Variable {
                name,
                kind,
                query,
                current: current.unwrap_or_default(),
                options,
                include_all: v.get("includeAll").and_then(Value::as_bool).unwrap_or(false),
                all_value: v.get("allValue").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned),
                multi: v.get("multi").and_then(Value::as_bool).unwrap_or(false),
                datasource: DsRef::from_json(v.get("datasource")),
                path: vec![key("templating"), key("list"), PathSeg::Index(i)],
            })
        })
        .collect()
}
