//! Synthetic input series for one alerting rule: which target each selector reads from
//! (its `job`/`instance`/static labels against the scrape configs), the labels the
//! exposition gives (the host exporter's `operation`, `test`, `le`), and the candidate
//! shapes tried per selector (gauge constants around the expression's numbers, counters
//! growing at several rates, histograms with every observation in one bucket, absent).

use super::eval::{matcher_ok, Labels, Series};
use crate::stack::promql;
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{Expr, VectorSelector};
use std::collections::BTreeMap;

/// One scrape target as Prometheus labels it.
#[derive(Debug, Clone)]
pub struct Target {
    pub labels: Labels,
    /// The stack's service behind it (by port), if any.
    pub service: Option<String>,
    /// Scrape interval, seconds.
    pub step: f64,
    /// Relabelling or service discovery: its labels are not known offline.
    pub opaque: bool,
}

/// What the stack tells about its series.
#[derive(Debug, Clone, Default)]
pub struct Knowledge {
    pub targets: Vec<Target>,
    /// Label values the stack's own exporter uses (`operation`, `test`).
    pub values: BTreeMap<String, Vec<String>>,
    /// The host exporter's histogram buckets (`le` as it writes them).
    pub host_buckets: Vec<String>,
    /// Which service exposes a name (`None`: unknown).
    pub exposes: BTreeMap<(String, String), Option<bool>>,
    pub default_step: f64,
}

/// Prometheus client libraries' default buckets.
const DEFAULT_BUCKETS: [&str; 12] = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Gauge,
    /// `up`: only 0 or 1.
    Up,
    Counter,
    Histogram,
}

/// One distinct selector of the rule and the series it stands for.
#[derive(Debug, Clone)]
pub struct Input {
    pub selector: String,
    pub kind: Kind,
    pub labels: Labels,
    /// For a histogram: its `le` values, lowest first (`+Inf` last).
    pub les: Vec<String>,
    pub step: f64,
    pub shapes: Vec<Shape>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    Absent,
    Const(f64),
    /// A counter growing by this much per second.
    Grow(f64),
    /// Every observation (one per second) in bucket `i` (index into `les`).
    Bucket(usize),
}

impl Shape {
    pub fn describe(&self, input: &Input) -> String {
        match self {
            Shape::Absent => "absent".into(),
            Shape::Const(v) => format!("{v}"),
            Shape::Grow(r) => format!("+{r}/s"),
            Shape::Bucket(i) => format!("every observation in le=\"{}\"", input.les.get(*i).map(String::as_str).unwrap_or("?")),
        }
    }
}

/// A selector that no scrape target can match.
#[derive(Debug, Clone, PartialEq)]
pub struct NoTarget {
    pub selector: String,
    pub label: String,
    pub existing: Vec<String>,
}

fn target_label_names(k: &Knowledge) -> Vec<String> {
    let mut names: Vec<String> = k.targets.iter().flat_map(|t| t.labels.keys().cloned()).collect();
    names.sort();
    names.dedup();
    names
}

/// Pick the target a selector reads from.
fn pick_target<'a>(vs: &VectorSelector, name: Option<&str>, k: &'a Knowledge) -> Result<Option<&'a Target>, NoTarget> {
    let tl = target_label_names(k);
    let matchers: Vec<&Matcher> = vs.matchers.matchers.iter().filter(|m| tl.contains(&m.name)).collect();
    let ok: Vec<&Target> = k.targets.iter().filter(|t| matchers.iter().all(|m| matcher_ok(m, &t.labels))).collect();
    if ok.is_empty() {
        if k.targets.iter().any(|t| t.opaque) || k.targets.is_empty() {
            return Ok(None);
        }
        // Name the first target label no target satisfies, with the values that exist.
        let m = matchers.iter().find(|m| !k.targets.iter().any(|t| matcher_ok(m, &t.labels))).unwrap_or(&matchers[0]);
        let mut existing: Vec<String> = k.targets.iter().filter_map(|t| t.labels.get(&m.name).cloned()).collect();
        existing.dedup();
        return Err(NoTarget { selector: vs.to_string(), label: m.name.clone(), existing });
    }
    let exposes = |t: &&Target| {
        let svc = t.service.clone().unwrap_or_default();
        name.and_then(|n| k.exposes.get(&(svc, n.to_string())).copied().flatten())
    };
    Ok(ok.iter().find(|t| exposes(t) == Some(true)).or_else(|| ok.iter().find(|t| exposes(t).is_none())).or(ok.first()).copied())
}

/// A value for a label that satisfies every matcher on it ("" = leave it out).
fn value_for(name: &str, ms: &[&Matcher], known: &[String]) -> String {
    let mut cands: Vec<String> = Vec::new();
    for m in ms {
        match &m.op {
            MatchOp::Equal => cands.push(m.value.clone()),
            MatchOp::Re(_) => {
                for alt in m.value.split('|') {
                    cands.push(alt.chars().filter(|c| c.is_ascii_alphanumeric() || "_-/:. ".contains(*c)).collect());
                }
            }
            _ => {}
        }
    }
    cands.extend(known.iter().cloned());
    cands.extend(["", "x", "synthetic"].map(String::from));
    let ok = |v: &String| ms.iter().all(|m| matcher_ok(m, &Labels::from([(name.to_string(), v.clone())])));
    cands.into_iter().find(ok).unwrap_or_default()
}

/// Numbers in the expression: literals and constant subexpressions (`15 * 60`).
pub fn constants(expr: &Expr) -> Vec<f64> {
    let mut out = Vec::new();
    fn rec(e: &Expr, out: &mut Vec<f64>) {
        if !promql::selectors(e).is_empty() || matches!(e, Expr::Call(_)) {
            match e {
                Expr::Binary(b) => {
                    rec(&b.lhs, out);
                    rec(&b.rhs, out);
                }
                Expr::Paren(p) => rec(&p.expr, out),
                Expr::Unary(u) => rec(&u.expr, out),
                Expr::Aggregate(a) => rec(&a.expr, out),
                Expr::Call(c) => c.args.args.iter().for_each(|a| rec(a, out)),
                _ => {}
            }
            return;
        }
        if let Ok(super::eval::Val::Scalar(v)) = super::eval::eval(e, &[], 0.0) {
            if v.is_finite() && !out.contains(&v) {
                out.push(v);
            }
        }
    }
    rec(expr, &mut out);
    out
}

/// Selectors that sit inside `absent(...)`/`absent_over_time(...)`, and under a rate-like function.
fn contexts(expr: &Expr) -> (Vec<String>, Vec<String>) {
    let (mut absent, mut counter) = (Vec::new(), Vec::new());
    promql::walk(expr, &mut |e| {
        if let Expr::Call(c) = e {
            let name = c.func.name;
            let target = if name.starts_with("absent") {
                Some(&mut absent)
            } else if ["rate", "irate", "increase", "resets"].contains(&name) {
                Some(&mut counter)
            } else {
                None
            };
            if let Some(t) = target {
                for a in &c.args.args {
                    t.extend(promql::selectors(a).into_iter().map(|vs| vs.to_string()));
                }
            }
        }
    });
    (absent, counter)
}

/// The inputs of a rule's expression, or the first selector no target can match.
pub fn inputs(expr: &Expr, k: &Knowledge) -> Result<Vec<Input>, NoTarget> {
    let consts = constants(expr);
    let (in_absent, in_counter) = contexts(expr);
    let mut out: Vec<Input> = Vec::new();
    for vs in promql::selectors(expr) {
        let key = vs.to_string();
        if out.iter().any(|i| i.selector == key) {
            continue;
        }
        let name = promql::selector_name(vs);
        let target = pick_target(vs, name, k)?;
        let mut labels = target.map(|t| t.labels.clone()).unwrap_or_default();
        if let Some(n) = name {
            labels.insert("__name__".into(), n.to_string());
        }
        let service = target.and_then(|t| t.service.clone()).unwrap_or_default();
        let n = name.unwrap_or("");
        if service == "host_exporter" {
            let extra = if n.starts_with("suite_operation_duration_seconds") {
                Some("operation")
            } else if n == "suite_test_success" {
                Some("test")
            } else {
                None
            };
            if let Some(l) = extra {
                if let Some(v) = k.values.get(l).and_then(|v| v.first()) {
                    labels.insert(l.into(), v.clone());
                }
            }
        }
        let mut by_name: BTreeMap<&str, Vec<&Matcher>> = BTreeMap::new();
        for m in &vs.matchers.matchers {
            by_name.entry(m.name.as_str()).or_default().push(m);
        }
        for (lname, ms) in &by_name {
            if ms.iter().all(|m| matcher_ok(m, &labels)) {
                continue;
            }
            let v = value_for(lname, ms, k.values.get(*lname).map(Vec::as_slice).unwrap_or(&[]));
            if v.is_empty() {
                labels.remove(*lname);
            } else {
                labels.insert(lname.to_string(), v);
            }
        }
        let histogram = n.ends_with("_bucket") && !by_name.contains_key("le");
        let kind = if histogram {
            Kind::Histogram
        } else if n == "up" {
            Kind::Up
        } else if in_counter.contains(&key) || ["_total", "_count", "_sum", "_bucket"].iter().any(|s| n.ends_with(s)) {
            Kind::Counter
        } else {
            Kind::Gauge
        };
        let les: Vec<String> = if !histogram {
            vec![]
        } else if service == "host_exporter" && !k.host_buckets.is_empty() {
            k.host_buckets.clone()
        } else {
            DEFAULT_BUCKETS.iter().map(|s| s.to_string()).collect()
        };
        let step = target.map(|t| t.step).unwrap_or(k.default_step);
        let mut input = Input { selector: key.clone(), kind, labels, les, step, shapes: vec![] };
        input.shapes = shapes(&input, &consts, in_absent.contains(&key));
        out.push(input);
    }
    Ok(out)
}

/// Candidate shapes of an input, most likely to fire first.
fn shapes(input: &Input, consts: &[f64], in_absent: bool) -> Vec<Shape> {
    let mut v: Vec<Shape> = Vec::new();
    if in_absent {
        v.push(Shape::Absent);
    }
    match input.kind {
        Kind::Up => v.extend([Shape::Const(1.0), Shape::Const(0.0)]),
        Kind::Gauge => {
            // Around each number of the expression, then 0, 1, large; negative values last
            // (a timestamp before the evaluation's start at Unix time 0), never for sizes.
            let margin = |c: f64| (c.abs() * 0.01).max(0.001);
            for &c in consts {
                v.extend([Shape::Const(c), Shape::Const(c - margin(c)), Shape::Const(c + margin(c))]);
            }
            v.extend([Shape::Const(0.0), Shape::Const(1.0), Shape::Const(1e9)]);
            let name = input.labels.get("__name__").map(String::as_str).unwrap_or("");
            if !name.ends_with("_bytes") && !name.ends_with("_ratio") {
                v.extend(consts.iter().map(|&c| Shape::Const(-c.abs() - margin(c))));
                v.push(Shape::Const(-1e9));
            }
        }
        Kind::Counter => {
            v.extend([Shape::Grow(1.0), Shape::Grow(0.0)]);
            for &c in consts.iter().filter(|c| **c > 0.0) {
                v.extend([Shape::Grow(c * 1.1), Shape::Grow(c * 0.9)]);
            }
            v.extend([Shape::Grow(1000.0), Shape::Grow(0.001)]);
        }
        Kind::Histogram => {
            let n = input.les.len();
            v.push(Shape::Bucket(n.saturating_sub(1)));
            v.push(Shape::Bucket(0));
            v.extend((1..n.saturating_sub(1)).rev().map(Shape::Bucket));
        }
    }
    if !in_absent {
        v.push(Shape::Absent);
    }
    let mut dedup: Vec<Shape> = Vec::new();
    for s in v {
        if !dedup.contains(&s) {
            dedup.push(s);
        }
    }
    // A value the metric cannot take does not prove anything: a threshold on the wrong
    // scale (a 0..1 ratio compared with 2, or with 98 for a percentage) must not "fire".
    let name = input.labels.get("__name__").map(String::as_str).unwrap_or("");
    if let (Kind::Gauge, Some((lo, hi))) = (input.kind, domain(name)) {
        dedup.retain(|s| !matches!(s, Shape::Const(c) if *c < lo || *c > hi));
    }
    dedup
}

/// The values a gauge can take, known from its name (Prometheus' naming conventions and
/// the host exporter's exposition): `None` when nothing is known.
pub fn domain(name: &str) -> Option<(f64, f64)> {
    const UNIT: (f64, f64) = (0.0, 1.0);
    if name == "up" || name.ends_with("_success") || name.ends_with("_up") {
        return Some(UNIT);
    }
    if name.ends_with("_ratio") || name.ends_with("_pass_rate") || name.ends_with("_fraction") {
        return Some(UNIT);
    }
    if name.ends_with("_percent") {
        return Some((0.0, 100.0));
    }
    if name.ends_with("_bytes") {
        return Some((0.0, f64::INFINITY));
    }
    None
}

/// The series of one input in one shape, `n + 1` samples `step` apart.
pub fn series(input: &Input, shape: Shape, n: usize) -> Vec<Series> {
    let step = input.step;
    let one = |labels: Labels, start: f64, inc: f64| Series { labels, start, inc, step, n };
    match shape {
        Shape::Absent => vec![],
        Shape::Const(c) => vec![one(input.labels.clone(), c, 0.0)],
        Shape::Grow(r) => vec![one(input.labels.clone(), 0.0, r * step)],
        Shape::Bucket(i) => input
            .les
            .iter()
            .enumerate()
            .map(|(j, le)| {
                let mut l = input.labels.clone();
                l.insert("le".into(), le.clone());
                one(l, 0.0, if j >= i { step } else { 0.0 })
            })
            .collect(),
    }
}
