//! An alerting rule evaluated over time the way Prometheus' rule manager does: on the
//! group's evaluation grid, an alert per output series (its labels with `__name__`
//! dropped, the rule's labels templated and added, `alertname`), pending until `for` has
//! passed since it became active, then firing.

use super::eval::{eval, Labels, Series, Unsupported, Val};
use promql_parser::parser::Expr;
use std::collections::BTreeMap;

pub struct RuleSpec<'a> {
    pub alert: &'a str,
    pub expr: &'a Expr,
    /// Seconds.
    pub for_s: f64,
    pub interval_s: f64,
    /// The rule's labels (templates allowed), then the group's.
    pub labels: BTreeMap<String, String>,
}

/// The first evaluation at which the alert fires, and every alert firing then.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    pub at_s: f64,
    pub alerts: Vec<(Labels, f64)>,
}

/// Expand a label template: `{{ $labels.x }}`, `{{ .Labels.x }}`, `{{ $value }}`, `{{ .Value }}`,
/// `{{ $labels.x | toUpper }}`-style pipelines are not handled (an [`Unsupported`]).
pub fn expand(template: &str, labels: &Labels, value: f64) -> Result<String, Unsupported> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find("}}") else { return Err(Unsupported(format!("the label template {template}"))) };
        let inner = rest[i + 2..i + j].trim().trim_start_matches('-').trim_end_matches('-').trim();
        if let Some(name) = inner.strip_prefix("$labels.").or_else(|| inner.strip_prefix(".Labels.")) {
            if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.push_str(labels.get(name).map(String::as_str).unwrap_or(""));
            } else {
                return Err(Unsupported(format!("the label template {{{{ {inner} }}}}")));
            }
        } else if inner == "$value" || inner == ".Value" {
            out.push_str(&format_value(value));
        } else {
            return Err(Unsupported(format!("the label template {{{{ {inner} }}}}")));
        }
        rest = &rest[i + j + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A float as Go's `strconv.FormatFloat(v, 'f', -1, 64)` writes it for usual values.
fn format_value(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    format!("{v}")
}

/// The labels of the alert for one output sample.
fn alert_labels(spec: &RuleSpec, sample: &Labels, v: f64) -> Result<Labels, Unsupported> {
    let mut l = sample.clone();
    l.remove("__name__");
    for (k, t) in &spec.labels {
        let value = expand(t, sample, v)?;
        if value.is_empty() {
            l.remove(k);
        } else {
            l.insert(k.clone(), value);
        }
    }
    l.insert("alertname".into(), spec.alert.to_string());
    Ok(l)
}

/// Evaluate the rule from t=0 to `horizon_s`; the first time it fires.
pub fn first_firing(spec: &RuleSpec, series: &[Series], horizon_s: f64) -> Result<Option<Fired>, Unsupported> {
    let mut active: BTreeMap<Labels, f64> = BTreeMap::new();
    let mut k = 0u64;
    loop {
        let t = k as f64 * spec.interval_s;
        if t > horizon_s {
            return Ok(None);
        }
        let out = match eval(spec.expr, series, t)? {
            Val::Vector(v) => v,
            Val::Scalar(_) => return Err(Unsupported("an expression that is a scalar".into())),
        };
        let mut now: BTreeMap<Labels, (f64, f64)> = BTreeMap::new();
        for s in out {
            let l = alert_labels(spec, &s.labels, s.v)?;
            let since = active.get(&l).copied().unwrap_or(t);
            now.insert(l, (since, s.v));
        }
        active = now.iter().map(|(l, (since, _))| (l.clone(), *since)).collect();
        let firing: Vec<(Labels, f64)> = now.into_iter().filter(|(_, (since, _))| t - since >= spec.for_s - 1e-9).map(|(l, (_, v))| (l, v)).collect();
        if !firing.is_empty() {
            return Ok(Some(Fired { at_s: t, alerts: firing }));
        }
        k += 1;
    }
}
