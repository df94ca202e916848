//! stackproof's own PromQL evaluator for the offline proof, over synthetic series.
//!
//! Written by hand on purpose: no Rust crate evaluates PromQL offline (promql-parser only
//! parses; the engines that evaluate it are Prometheus' own Go code, reached here through
//! `promtool test rules` when it is installed). It covers what alerting rules commonly
//! use and follows Prometheus 2.x semantics where it does: a 5m lookback for instant
//! selectors, ranges `[t-range, t]`, the extrapolation of `rate`/`increase`/`delta`,
//! `histogram_quantile`'s bucket interpolation. Anything else is an [`Unsupported`]
//! error naming the construct, and the rule is reported as needing promtool.

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, VectorMatchCardinality, VectorSelector};
use std::collections::BTreeMap;

pub type Labels = BTreeMap<String, String>;

/// Prometheus' lookback delta: an instant selector sees a sample at most 5m old.
pub const LOOKBACK_S: f64 = 300.0;

/// One synthetic series: samples at `t = i * step` for `i in 0..=n`, value `start + inc * i`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub start: f64,
    pub inc: f64,
    pub step: f64,
    pub n: usize,
}

impl Series {
    fn value(&self, i: usize) -> f64 {
        self.start + self.inc * i as f64
    }
    /// Sample indices with `lo <= t <= hi` (empty: `first > last`).
    fn range(&self, lo: f64, hi: f64) -> std::ops::Range<usize> {
        if hi < 0.0 {
            return 0..0;
        }
        let first = if lo <= 0.0 { 0 } else { (lo / self.step - 1e-9).ceil() as usize };
        let last = ((hi / self.step + 1e-9).floor() as usize).min(self.n);
        first..(last + 1).max(first)
    }
}

/// A construct the own evaluator does not handle.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsupported(pub String);

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub v: f64,
}

#[derive(Debug, Clone)]
pub enum Val {
    Scalar(f64),
    Vector(Vec<Sample>),
}

type R<T> = Result<T, Unsupported>;

fn unsupported<T>(what: impl Into<String>) -> R<T> {
    Err(Unsupported(what.into()))
}

pub fn matcher_ok(m: &Matcher, labels: &Labels) -> bool {
    let v = labels.get(&m.name).map(String::as_str).unwrap_or("");
    match &m.op {
        MatchOp::Equal => v == m.value,
        MatchOp::NotEqual => v != m.value,
        MatchOp::Re(_) | MatchOp::NotRe(_) => m.is_match(v),
    }
}

pub fn selector_ok(vs: &VectorSelector, labels: &Labels) -> bool {
    if let Some(n) = &vs.name {
        if labels.get("__name__") != Some(n) {
            return false;
        }
    }
    let ms = &vs.matchers;
    ms.matchers.iter().all(|m| matcher_ok(m, labels)) && (ms.or_matchers.is_empty() || ms.or_matchers.iter().any(|g| g.iter().all(|m| matcher_ok(m, labels))))
}

/// Evaluate `expr` at time `t` (seconds) over `series`.
pub fn eval(expr: &Expr, series: &[Series], t: f64) -> R<Val> {
    match expr {
        Expr::NumberLiteral(n) => Ok(Val::Scalar(n.val)),
        Expr::Paren(p) => eval(&p.expr, series, t),
        Expr::Unary(u) => match eval(&u.expr, series, t)? {
            Val::Scalar(v) => Ok(Val::Scalar(-v)),
            Val::Vector(vs) => Ok(Val::Vector(vs.into_iter().map(|s| Sample { labels: drop_name(s.labels), v: -s.v }).collect())),
        },
        Expr::VectorSelector(vs) => {
            if vs.offset.is_some() || vs.at.is_some() {
                return unsupported("offset/@");
            }
            let mut out = Vec::new();
            for s in series.iter().filter(|s| selector_ok(vs, &s.labels)) {
                if let Some(i) = s.range(t - LOOKBACK_S + 1e-9, t).last() {
                    out.push(Sample { labels: s.labels.clone(), v: s.value(i) });
                }
            }
            Ok(Val::Vector(out))
        }
        Expr::MatrixSelector(_) => unsupported("a range vector outside a function"),
        Expr::Subquery(_) => unsupported("a subquery"),
        Expr::StringLiteral(_) => unsupported("a string"),
        Expr::Extension(_) => unsupported("an extension"),
        Expr::Aggregate(a) => aggregate(a, series, t),
        Expr::Binary(b) => binary(b, series, t),
        Expr::Call(c) => call(c, series, t),
    }
}

fn drop_name(mut l: Labels) -> Labels {
    l.remove("__name__");
    l
}

fn vector(expr: &Expr, series: &[Series], t: f64) -> R<Vec<Sample>> {
    match eval(expr, series, t)? {
        Val::Vector(v) => Ok(v),
        Val::Scalar(_) => unsupported("a scalar where a vector is expected"),
    }
}

fn scalar(expr: &Expr, series: &[Series], t: f64) -> R<f64> {
    match eval(expr, series, t)? {
        Val::Scalar(v) => Ok(v),
        Val::Vector(_) => unsupported("a vector where a scalar is expected"),
    }
}

fn group_key(l: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    match modifier {
        None => Labels::new(),
        Some(LabelModifier::Include(ls)) => l.iter().filter(|(k, _)| ls.labels.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(LabelModifier::Exclude(ls)) => {
            l.iter().filter(|(k, _)| k.as_str() != "__name__" && !ls.labels.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
        }
    }
}

fn aggregate(a: &AggregateExpr, series: &[Series], t: f64) -> R<Val> {
    let op = a.op.to_string();
    if a.param.is_some() {
        return unsupported(format!("the aggregation {op}"));
    }
    let input = vector(&a.expr, series, t)?;
    let mut groups: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
    for s in input {
        groups.entry(group_key(&s.labels, &a.modifier)).or_default().push(s.v);
    }
    let mut out = Vec::new();
    for (labels, vs) in groups {
        let v = match op.as_str() {
            "sum" => vs.iter().sum(),
            "avg" => vs.iter().sum::<f64>() / vs.len() as f64,
            "min" => vs.iter().cloned().fold(f64::INFINITY, f64::min),
            "max" => vs.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            "count" => vs.len() as f64,
            "group" => 1.0,
            other => return unsupported(format!("the aggregation {other}")),
        };
        out.push(Sample { labels, v });
    }
    Ok(Val::Vector(out))
}

fn arith(op: &str, a: f64, b: f64) -> R<f64> {
    Ok(match op {
        "+" => a + b,
        "-" => a - b,
        "*" => a * b,
        "/" => a / b,
        "%" => a % b,
        "^" => a.powf(b),
        other => return unsupported(format!("the operator {other}")),
    })
}

fn compare(op: &str, a: f64, b: f64) -> Option<bool> {
    Some(match op {
        "==" => a == b,
        "!=" => a != b,
        ">" => a > b,
        "<" => a < b,
        ">=" => a >= b,
        "<=" => a <= b,
        _ => return None,
    })
}

fn match_key(l: &Labels, b: &BinaryExpr) -> Labels {
    match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
        Some(LabelModifier::Include(ls)) => l.iter().filter(|(k, _)| ls.labels.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(LabelModifier::Exclude(ls)) => {
            l.iter().filter(|(k, _)| k.as_str() != "__name__" && !ls.labels.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        None => drop_name(l.clone()),
    }
}

fn binary(b: &BinaryExpr, series: &[Series], t: f64) -> R<Val> {
    let op = b.op.to_string().to_lowercase();
    let ret_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    if let Some(m) = &b.modifier {
        if matches!(m.card, VectorMatchCardinality::ManyToOne(_) | VectorMatchCardinality::OneToMany(_)) {
            return unsupported("group_left/group_right");
        }
    }
    let lhs = eval(&b.lhs, series, t)?;
    let rhs = eval(&b.rhs, series, t)?;
    if matches!(op.as_str(), "and" | "or" | "unless") {
        let (Val::Vector(l), Val::Vector(r)) = (lhs, rhs) else { return unsupported("a set operator on scalars") };
        let rkeys: Vec<Labels> = r.iter().map(|s| match_key(&s.labels, b)).collect();
        let out = match op.as_str() {
            "and" => l.into_iter().filter(|s| rkeys.contains(&match_key(&s.labels, b))).collect(),
            "unless" => l.into_iter().filter(|s| !rkeys.contains(&match_key(&s.labels, b))).collect(),
            _ => {
                let lkeys: Vec<Labels> = l.iter().map(|s| match_key(&s.labels, b)).collect();
                let mut out = l;
                out.extend(r.into_iter().filter(|s| !lkeys.contains(&match_key(&s.labels, b))));
                out
            }
        };
        return Ok(Val::Vector(out));
    }
    let is_cmp = compare(&op, 0.0, 0.0).is_some();
    // One side's value against the other's: Some(result value) or None (filtered out).
    let apply = |a: f64, c: f64, keep: f64| -> R<Option<f64>> {
        match compare(&op, a, c) {
            Some(ok) if ret_bool => Ok(Some(if ok { 1.0 } else { 0.0 })),
            Some(ok) => Ok(ok.then_some(keep)),
            None => arith(&op, a, c).map(Some),
        }
    };
    let keep_name = is_cmp && !ret_bool;
    let relabel = |l: Labels| if keep_name { l } else { drop_name(l) };
    match (lhs, rhs) {
        (Val::Scalar(a), Val::Scalar(c)) => {
            if is_cmp && !ret_bool {
                return unsupported("a comparison of two scalars without bool");
            }
            Ok(Val::Scalar(apply(a, c, a)?.unwrap_or(0.0)))
        }
        (Val::Vector(l), Val::Scalar(c)) => {
            let mut out = Vec::new();
            for s in l {
                if let Some(v) = apply(s.v, c, s.v)? {
                    out.push(Sample { labels: relabel(s.labels), v });
                }
            }
            Ok(Val::Vector(out))
        }
        (Val::Scalar(a), Val::Vector(r)) => {
            let mut out = Vec::new();
            for s in r {
                if let Some(v) = apply(a, s.v, s.v)? {
                    out.push(Sample { labels: relabel(s.labels), v });
                }
            }
            Ok(Val::Vector(out))
        }
        (Val::Vector(l), Val::Vector(r)) => {
            let mut right: BTreeMap<Labels, f64> = BTreeMap::new();
            for s in &r {
                if right.insert(match_key(&s.labels, b), s.v).is_some() {
                    return unsupported("many-to-many matching (duplicate series on the right)");
                }
            }
            let mut out = Vec::new();
            for s in l {
                let key = match_key(&s.labels, b);
                let Some(&c) = right.get(&key) else { continue };
                if let Some(v) = apply(s.v, c, s.v)? {
                    let labels = if b.modifier.as_ref().is_some_and(|m| m.matching.as_ref().is_some_and(|x| x.is_include())) && !keep_name {
                        key
                    } else {
                        relabel(s.labels)
                    };
                    out.push(Sample { labels, v });
                }
            }
            Ok(Val::Vector(out))
        }
    }
}

/// Samples `(t, v)` of one series in a range.
type Points = Vec<(f64, f64)>;

/// The samples of a range-vector argument, per series.
fn matrix(expr: &Expr, series: &[Series], t: f64) -> R<Vec<(Labels, Points)>> {
    let Expr::MatrixSelector(ms) = expr else { return unsupported("a function of a range that is not a plain selector[range]") };
    if ms.vs.offset.is_some() || ms.vs.at.is_some() {
        return unsupported("offset/@");
    }
    let range = ms.range.as_secs_f64();
    Ok(series
        .iter()
        .filter(|s| selector_ok(&ms.vs, &s.labels))
        .map(|s| (s.labels.clone(), s.range(t - range, t).map(|i| (i as f64 * s.step, s.value(i))).collect::<Vec<_>>()))
        .filter(|(_, pts)| !pts.is_empty())
        .collect())
}

fn range_of(expr: &Expr) -> f64 {
    match expr {
        Expr::MatrixSelector(ms) => ms.range.as_secs_f64(),
        _ => 0.0,
    }
}

/// Prometheus' `extrapolatedRate` (2.x).
fn extrapolated(pts: &[(f64, f64)], t: f64, range: f64, counter: bool, rate: bool) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let (first, last) = (pts[0], pts[pts.len() - 1]);
    let mut result = last.1 - first.1;
    if counter {
        for w in pts.windows(2) {
            if w[1].1 < w[0].1 {
                result += w[0].1;
            }
        }
    }
    let range_start = t - range;
    let mut to_start = first.0 - range_start;
    let to_end = t - last.0;
    let sampled = last.0 - first.0;
    let avg = sampled / (pts.len() - 1) as f64;
    if counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold { to_start } else { avg / 2.0 };
    interval += if to_end < threshold { to_end } else { avg / 2.0 };
    result *= interval / sampled;
    if rate {
        result /= range;
    }
    Some(result)
}

fn call(c: &Call, series: &[Series], t: f64) -> R<Val> {
    let name = c.func.name;
    let args = &c.args.args;
    type RangeFn<'a> = &'a dyn Fn(&[(f64, f64)]) -> Option<f64>;
    let per_range = |f: RangeFn| -> R<Val> {
        let m = matrix(&args[0], series, t)?;
        Ok(Val::Vector(m.into_iter().filter_map(|(l, pts)| f(&pts).map(|v| Sample { labels: drop_name(l), v })).collect()))
    };
    let per_sample = |f: &dyn Fn(f64) -> f64| -> R<Val> {
        Ok(Val::Vector(vector(&args[0], series, t)?.into_iter().map(|s| Sample { labels: drop_name(s.labels), v: f(s.v) }).collect()))
    };
    match name {
        "rate" | "increase" | "delta" => {
            let range = range_of(&args[0]);
            per_range(&|p| extrapolated(p, t, range, name != "delta", name == "rate"))
        }
        "irate" | "idelta" => per_range(&|p| {
            let n = p.len();
            if n < 2 {
                return None;
            }
            let (a, b) = (p[n - 2], p[n - 1]);
            let d = if name == "irate" && b.1 < a.1 { b.1 } else { b.1 - a.1 };
            Some(if name == "irate" { d / (b.0 - a.0) } else { d })
        }),
        "deriv" => per_range(&|p| {
            if p.len() < 2 {
                return None;
            }
            let n = p.len() as f64;
            let (mx, my) = (p.iter().map(|x| x.0).sum::<f64>() / n, p.iter().map(|x| x.1).sum::<f64>() / n);
            let cov: f64 = p.iter().map(|x| (x.0 - mx) * (x.1 - my)).sum();
            let var: f64 = p.iter().map(|x| (x.0 - mx) * (x.0 - mx)).sum();
            Some(cov / var)
        }),
        "changes" | "resets" => {
            per_range(&|p| Some(p.windows(2).filter(|w| if name == "changes" { w[1].1 != w[0].1 } else { w[1].1 < w[0].1 }).count() as f64))
        }
        "avg_over_time" => per_range(&|p| Some(p.iter().map(|x| x.1).sum::<f64>() / p.len() as f64)),
        "sum_over_time" => per_range(&|p| Some(p.iter().map(|x| x.1).sum())),
        "min_over_time" => per_range(&|p| Some(p.iter().map(|x| x.1).fold(f64::INFINITY, f64::min))),
        "max_over_time" => per_range(&|p| Some(p.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max))),
        "count_over_time" => per_range(&|p| Some(p.len() as f64)),
        "last_over_time" => per_range(&|p| p.last().map(|x| x.1)),
        "present_over_time" => per_range(&|_| Some(1.0)),
        "abs" => per_sample(&f64::abs),
        "ceil" => per_sample(&f64::ceil),
        "floor" => per_sample(&f64::floor),
        "round" if args.len() == 1 => per_sample(&f64::round),
        "clamp_min" => {
            let m = scalar(&args[1], series, t)?;
            per_sample(&|v| v.max(m))
        }
        "clamp_max" => {
            let m = scalar(&args[1], series, t)?;
            per_sample(&|v| v.min(m))
        }
        "time" => Ok(Val::Scalar(t)),
        "vector" => Ok(Val::Vector(vec![Sample { labels: Labels::new(), v: scalar(&args[0], series, t)? }])),
        "scalar" => {
            let v = vector(&args[0], series, t)?;
            Ok(Val::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN }))
        }
        "absent" | "absent_over_time" => {
            let empty = if name == "absent" { vector(&args[0], series, t)?.is_empty() } else { matrix(&args[0], series, t)?.is_empty() };
            if !empty {
                return Ok(Val::Vector(vec![]));
            }
            let vs = match &*args[0] {
                Expr::VectorSelector(vs) => Some(vs),
                Expr::MatrixSelector(ms) => Some(&ms.vs),
                _ => None,
            };
            let mut labels = Labels::new();
            if let Some(vs) = vs {
                for m in vs.matchers.matchers.iter().filter(|m| matches!(m.op, MatchOp::Equal) && m.name != "__name__") {
                    labels.insert(m.name.clone(), m.value.clone());
                }
            }
            Ok(Val::Vector(vec![Sample { labels, v: 1.0 }]))
        }
        "histogram_quantile" => {
            let q = scalar(&args[0], series, t)?;
            let mut groups: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
            for s in vector(&args[1], series, t)? {
                let Some(le) = s.labels.get("le").and_then(|l| parse_le(l)) else { continue };
                let mut key = drop_name(s.labels);
                key.remove("le");
                groups.entry(key).or_default().push((le, s.v));
            }
            Ok(Val::Vector(groups.into_iter().filter_map(|(labels, b)| bucket_quantile(q, b).map(|v| Sample { labels, v })).collect()))
        }
        other => unsupported(format!("the function {other}()")),
    }
}

pub fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "inf" => Some(f64::INFINITY),
        _ => s.parse().ok(),
    }
}

/// Prometheus' `bucketQuantile` (classic histograms).
pub fn bucket_quantile(q: f64, mut b: Vec<(f64, f64)>) -> Option<f64> {
    if q.is_nan() {
        return Some(f64::NAN);
    }
    if q < 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return Some(f64::INFINITY);
    }
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    if b.len() < 2 || b.last()?.0 != f64::INFINITY {
        return Some(f64::NAN);
    }
    // Ensure monotonic counts, as Prometheus does.
    for i in 1..b.len() {
        if b[i].1 < b[i - 1].1 {
            b[i].1 = b[i - 1].1;
        }
    }
    let total = b.last()?.1;
    if total == 0.0 {
        return Some(f64::NAN);
    }
    let rank = q * total;
    let idx = b.iter().position(|x| x.1 >= rank).unwrap_or(b.len() - 1);
    if idx == b.len() - 1 {
        return Some(b[b.len() - 2].0);
    }
    if idx == 0 && b[0].0 <= 0.0 {
        return Some(b[0].0);
    }
    let (start, count_before) = if idx == 0 { (0.0, 0.0) } else { (b[idx - 1].0, b[idx - 1].1) };
    let end = b[idx].0;
    let count = b[idx].1 - count_before;
    Some(start + (end - start) * ((rank - count_before) / count))
}
