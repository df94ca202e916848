//! Reading PromQL: parse (with the `promql-parser` crate), the metric names a query
//! uses, its selectors, the labels its result keeps, and selectors that can never match.
//!
//! Shared by `lint` (rules, panels), `verify`'s live metric check and the gate.

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr, LabelModifier, VectorMatchCardinality, VectorSelector};
use std::collections::BTreeSet;

pub use promql_parser::parser::Expr as Ast;

/// A parsed query.
#[derive(Debug, Clone)]
pub struct Query {
    pub ast: Expr,
}

/// Parse one PromQL expression. The error is the parser's message.
///
/// `promql-parser` takes time quadratic in the length of a chain of binary operators
/// (`up + up + ... + up`): each new node asks its left operand for its value type, and
/// `Expr::value_type` recurses down the whole left-deep chain (16,000 terms: 26 s). A long
/// chain of one precedence class of arithmetic (`+ -` or `* / %`, no modifiers) is read
/// regrouped as a balanced tree instead: which terms are grouped does not change whether
/// arithmetic on scalars and vectors is valid, nor which selectors it has, and a balanced
/// tree is O(log n) deep, so reading it is O(n log n).
pub fn parse(text: &str) -> Result<Query, String> {
    if text.trim().is_empty() {
        return Err("empty expression".into());
    }
    if let Some(terms) = long_chain(text) {
        let regrouped = balance(&terms);
        return parser::parse(&regrouped).map(|ast| Query { ast }).map_err(|e| format!("{e} (in a chain of {} terms, read regrouped)", terms.len()));
    }
    parser::parse(text).map(|ast| Query { ast })
}

/// Chains shorter than this are parsed as written.
const LONG_CHAIN: usize = 64;

/// The terms of `text` when it is a long chain of `+ -` or of `* / %` at the top level,
/// each with the operator before it (`""` for the first).
fn long_chain(text: &str) -> Option<Vec<(&str, &str)>> {
    let b = text.as_bytes();
    if b.len() < LONG_CHAIN * 3 {
        return None;
    }
    let (mut depth, mut i, mut start) = (0i32, 0usize, 0usize);
    let mut class: Option<bool> = None; // true: + -, false: * / %
    let mut terms: Vec<(&str, &str)> = Vec::new();
    let mut op_before = "";
    let mut expect_operand = true; // a `-`/`+` here is unary
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    i += if b[i] == b'\\' && c != b'`' { 2 } else { 1 };
                }
                expect_operand = false;
            }
            b'(' | b'{' | b'[' => depth += 1,
            b')' | b'}' | b']' => {
                depth -= 1;
                expect_operand = false;
            }
            b'#' if depth == 0 => return None, // a comment: read as written
            _ if depth > 0 => {}
            b'+' | b'-' | b'*' | b'/' | b'%' => {
                let additive = c == b'+' || c == b'-';
                let exponent = additive && i > 0 && matches!(b[i - 1], b'e' | b'E') && number_before(&text[..i - 1]);
                if !(expect_operand && additive) && !exponent {
                    if *class.get_or_insert(additive) != additive {
                        return None;
                    }
                    terms.push((op_before, &text[start..i]));
                    op_before = &text[i..i + 1];
                    start = i + 1;
                    expect_operand = true;
                }
            }
            b'^' | b'=' | b'!' | b'<' | b'>' => return None,
            _ if c.is_ascii_alphabetic() || c == b'_' => {
                let w = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                    i += 1;
                }
                if matches!(&text[w..i], "on" | "ignoring" | "group_left" | "group_right" | "bool" | "and" | "or" | "unless" | "atan2") {
                    return None;
                }
                expect_operand = false;
                continue;
            }
            _ if !c.is_ascii_whitespace() => expect_operand = false,
            _ => {}
        }
        i += 1;
    }
    terms.push((op_before, &text[start..]));
    (terms.len() > LONG_CHAIN && depth == 0 && terms.iter().all(|(_, t)| !t.trim().is_empty())).then_some(terms)
}

/// Whether `s` ends with a number's mantissa (`1.5` in `1.5e-3`).
fn number_before(s: &str) -> bool {
    let tail = s.rsplit(|c: char| !(c.is_ascii_digit() || c == '.')).next().unwrap_or("");
    !tail.is_empty() && s[..s.len() - tail.len()].chars().last().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
}

/// The chain as a balanced tree of parenthesised halves.
fn balance(terms: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(terms.iter().map(|(_, t)| t.len() + 4).sum::<usize>() * 2);
    build(terms, &mut out);
    out
}

fn build(terms: &[(&str, &str)], out: &mut String) {
    if terms.len() == 1 {
        out.push_str(terms[0].1);
        return;
    }
    let mid = terms.len() / 2;
    out.push('(');
    build(&terms[..mid], out);
    out.push_str(") ");
    out.push_str(terms[mid].0);
    out.push_str(" (");
    // The right half's first term has no operator before it inside its parentheses.
    let mut right: Vec<(&str, &str)> = terms[mid..].to_vec();
    right[0].0 = "";
    build(&right, out);
    out.push(')');
}

/// Every vector selector in the expression (also those inside range selectors).
pub fn selectors(ast: &Expr) -> Vec<&VectorSelector> {
    let mut out = Vec::new();
    walk(ast, &mut |e| match e {
        Expr::VectorSelector(vs) => out.push(vs),
        Expr::MatrixSelector(ms) => out.push(&ms.vs),
        _ => {}
    });
    out
}

/// Pre-order walk over every node.
pub fn walk<'a>(ast: &'a Expr, f: &mut dyn FnMut(&'a Expr)) {
    f(ast);
    match ast {
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                walk(p, f);
            }
            walk(&a.expr, f);
        }
        Expr::Unary(u) => walk(&u.expr, f),
        Expr::Binary(b) => {
            walk(&b.lhs, f);
            walk(&b.rhs, f);
        }
        Expr::Paren(p) => walk(&p.expr, f),
        Expr::Subquery(s) => walk(&s.expr, f),
        Expr::Call(c) => {
            for a in &c.args.args {
                walk(a, f);
            }
        }
        _ => {}
    }
}

/// The metric name a selector selects: its name, or an equality matcher on `__name__`.
pub fn selector_name(vs: &VectorSelector) -> Option<&str> {
    if let Some(n) = &vs.name {
        return Some(n);
    }
    vs.matchers.matchers.iter().find(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal)).map(|m| m.value.as_str())
}

/// Metric names the query selects by exact name (regex `__name__` matchers are skipped).
pub fn metric_names(ast: &Expr) -> BTreeSet<String> {
    selectors(ast).into_iter().filter_map(selector_name).map(str::to_owned).collect()
}

/// Labels named by any matcher of any selector (besides `__name__`).
pub fn matcher_labels(ast: &Expr) -> BTreeSet<String> {
    selectors(ast)
        .into_iter()
        .flat_map(|vs| vs.matchers.matchers.iter().chain(vs.matchers.or_matchers.iter().flatten()))
        .filter(|m| m.name != "__name__")
        .map(|m| m.name.clone())
        .collect()
}

/// Labels named in `by (...)` clauses anywhere in the query.
pub fn grouping_labels(ast: &Expr) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    walk(ast, &mut |e| {
        if let Expr::Aggregate(a) = e {
            if let Some(LabelModifier::Include(ls)) = &a.modifier {
                out.extend(ls.labels.iter().cloned());
            }
        }
    });
    out
}

/// The labels a query's result series can carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputLabels {
    /// The series' own labels pass through, except these (dropped by `without`, etc.).
    Open { dropped: BTreeSet<String> },
    /// At most these labels (after `by (...)`, `sum(...)`, `absent(...)`, `vector(...)`).
    Closed(BTreeSet<String>),
}

impl OutputLabels {
    fn closed<I: IntoIterator<Item = String>>(it: I) -> Self {
        OutputLabels::Closed(it.into_iter().collect())
    }

    /// Whether a result series may carry `label`.
    pub fn may_have(&self, label: &str) -> bool {
        match self {
            OutputLabels::Open { dropped } => !dropped.contains(label),
            OutputLabels::Closed(set) => set.contains(label),
        }
    }

    fn without(self, labels: &[String]) -> Self {
        match self {
            OutputLabels::Open { mut dropped } => {
                dropped.extend(labels.iter().cloned());
                OutputLabels::Open { dropped }
            }
            OutputLabels::Closed(mut set) => {
                for l in labels {
                    set.remove(l);
                }
                OutputLabels::Closed(set)
            }
        }
    }

    fn keep_only(self, labels: &[String]) -> Self {
        match self {
            OutputLabels::Open { dropped } => OutputLabels::closed(labels.iter().filter(|l| !dropped.contains(*l)).cloned()),
            OutputLabels::Closed(set) => OutputLabels::closed(labels.iter().filter(|l| set.contains(*l)).cloned()),
        }
    }

    fn with(self, labels: impl IntoIterator<Item = String>) -> Self {
        match self {
            OutputLabels::Open { mut dropped } => {
                for l in labels {
                    dropped.remove(&l);
                }
                OutputLabels::Open { dropped }
            }
            OutputLabels::Closed(mut set) => {
                set.extend(labels);
                OutputLabels::Closed(set)
            }
        }
    }

    fn union(self, other: Self) -> Self {
        match (self, other) {
            (OutputLabels::Closed(mut a), OutputLabels::Closed(b)) => {
                a.extend(b);
                OutputLabels::Closed(a)
            }
            (OutputLabels::Open { dropped: a }, OutputLabels::Open { dropped: b }) => OutputLabels::Open { dropped: a.intersection(&b).cloned().collect() },
            (OutputLabels::Open { dropped }, OutputLabels::Closed(set)) | (OutputLabels::Closed(set), OutputLabels::Open { dropped }) => {
                OutputLabels::Open { dropped: dropped.into_iter().filter(|l| !set.contains(l)).collect() }
            }
        }
    }
}

/// What labels the result of `ast` can carry, following Prometheus' evaluation rules
/// (aggregation grouping, `on`/`ignoring`/`group_left` in binary operations, `absent`).
pub fn output_labels(ast: &Expr) -> OutputLabels {
    match ast {
        Expr::VectorSelector(_) | Expr::MatrixSelector(_) => OutputLabels::Open { dropped: BTreeSet::new() },
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => OutputLabels::Closed(BTreeSet::new()),
        Expr::Paren(p) => output_labels(&p.expr),
        Expr::Unary(u) => output_labels(&u.expr),
        Expr::Subquery(s) => output_labels(&s.expr),
        Expr::Extension(_) => OutputLabels::Open { dropped: BTreeSet::new() },
        Expr::Aggregate(a) => {
            let inner = output_labels(&a.expr);
            let op = a.op.to_string().to_ascii_lowercase();
            match op.as_str() {
                // These select series from the input and keep their labels.
                "topk" | "bottomk" | "limitk" | "limit_ratio" => inner,
                _ => {
                    let grouped = match &a.modifier {
                        Some(LabelModifier::Include(ls)) => inner.keep_only(&ls.labels),
                        Some(LabelModifier::Exclude(ls)) => inner.without(&ls.labels),
                        None => OutputLabels::Closed(BTreeSet::new()),
                    };
                    if op == "count_values" {
                        if let Some(Expr::StringLiteral(s)) = a.param.as_deref() {
                            return grouped.with([s.val.clone()]);
                        }
                    }
                    grouped
                }
            }
        }
        Expr::Call(c) => {
            let args = &c.args.args;
            match c.func.name {
                "absent" | "absent_over_time" => {
                    // absent() yields the equality matchers of its selector as labels.
                    let mut set = BTreeSet::new();
                    if let Some(arg) = args.first() {
                        for vs in selectors(arg) {
                            for m in &vs.matchers.matchers {
                                if matches!(m.op, MatchOp::Equal) && m.name != "__name__" {
                                    set.insert(m.name.clone());
                                }
                            }
                        }
                    }
                    OutputLabels::Closed(set)
                }
                "vector" | "time" | "scalar" | "pi" | "minute" | "hour" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "month"
                | "year"
                    if args.first().map(|a| a.value_type() != ValueType::Vector).unwrap_or(true) =>
                {
                    OutputLabels::Closed(BTreeSet::new())
                }
                "label_replace" | "label_join" => {
                    let inner = args.first().map(|a| output_labels(a)).unwrap_or(OutputLabels::Closed(BTreeSet::new()));
                    match args.get(1).map(|a| a.as_ref()) {
                        Some(Expr::StringLiteral(dst)) => inner.with([dst.val.clone()]),
                        _ => inner,
                    }
                }
                "histogram_quantile" => args.get(1).map(|a| output_labels(a).without(&["le".to_string()])).unwrap_or(OutputLabels::Closed(BTreeSet::new())),
                _ => {
                    // Most functions keep the labels of their (first) vector argument.
                    match args.iter().find(|a| matches!(a.value_type(), ValueType::Vector | ValueType::Matrix)) {
                        Some(a) => output_labels(a),
                        None => OutputLabels::Closed(BTreeSet::new()),
                    }
                }
            }
        }
        Expr::Binary(b) => {
            let lt = b.lhs.value_type();
            let rt = b.rhs.value_type();
            let l = output_labels(&b.lhs);
            let r = output_labels(&b.rhs);
            if lt != ValueType::Vector {
                return r;
            }
            if rt != ValueType::Vector {
                return l;
            }
            let op = b.op.to_string().to_ascii_lowercase();
            match op.as_str() {
                "and" | "unless" => l,
                "or" => l.union(r),
                _ => {
                    let m = b.modifier.as_ref();
                    match m.map(|m| &m.card) {
                        Some(VectorMatchCardinality::ManyToOne(inc)) => l.with(inc.labels.iter().cloned()),
                        Some(VectorMatchCardinality::OneToMany(inc)) => r.with(inc.labels.iter().cloned()),
                        _ => match m.and_then(|m| m.matching.as_ref()) {
                            Some(LabelModifier::Include(ls)) => l.keep_only(&ls.labels),
                            Some(LabelModifier::Exclude(ls)) => l.without(&ls.labels),
                            None => l,
                        },
                    }
                }
            }
        }
    }
}

/// Why a selector can never select a series, if it cannot.
pub fn impossible_selector(vs: &VectorSelector) -> Option<String> {
    let ms = &vs.matchers.matchers;
    let mut all: Vec<Matcher> = ms.clone();
    if let Some(n) = &vs.name {
        all.push(Matcher::new(MatchOp::Equal, "__name__", n));
    }
    for m in &all {
        if let MatchOp::NotRe(_) = &m.op {
            // A regex that matches every value (`.*`) turns `!~` into "matches nothing":
            // every series, with or without the label, has a value `.*` matches.
            const SAMPLES: [&str; 5] = ["", "a", "0", "some value-1.2/x", "Z_9:"];
            if SAMPLES.iter().all(|s| !m.is_match(s)) {
                return Some(format!("`{}!~\"{}\"` excludes every value, so the selector matches no series", m.name, m.value));
            }
        }
    }
    for m in &all {
        if let MatchOp::Equal = m.op {
            for other in all.iter().filter(|o| o.name == m.name && !std::ptr::eq(*o, m)) {
                if !other.is_match(&m.value) {
                    return Some(format!("`{}=\"{}\"` and `{}{}\"{}\"` cannot both hold", m.name, m.value, other.name, other.op, other.value));
                }
            }
        }
    }
    None
}

/// Every impossible selector in a query, with the reason.
pub fn impossible_selectors(ast: &Expr) -> Vec<String> {
    selectors(ast).into_iter().filter_map(impossible_selector).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_chains_are_read_regrouped_in_linear_time() {
        let chain = vec!["up"; 50_000].join(" + ");
        let t = std::time::Instant::now();
        let q = parse(&chain).unwrap();
        assert!(t.elapsed() < std::time::Duration::from_secs(3), "{:?}", t.elapsed());
        assert_eq!(metric_names(&q.ast).into_iter().collect::<Vec<_>>(), vec!["up".to_string()]);
        // Mixed precedence, comparisons, modifiers and unary minus: read as written.
        let mixed = vec!["a * 2"; 100].join(" + ");
        assert!(long_chain(&mixed).is_none() && parse(&mixed).is_ok());
        assert!(long_chain(&vec!["a"; 100].join(" + on(x) ")).is_none());
        let signed = format!("-1e-3 + {}", vec!["-x{a=\"+-\"}"; 100].join(" - "));
        assert_eq!(long_chain(&signed).map(|t| t.len()), Some(101));
        assert!(parse(&signed).is_ok());
        // A broken term is still an error.
        let broken = format!("{} + rate(up)", vec!["up"; 100].join(" + "));
        assert!(parse(&broken).is_err());
    }

    fn out(q: &str) -> OutputLabels {
        output_labels(&parse(q).unwrap().ast)
    }

    #[test]
    fn names_and_labels() {
        let q = parse(r#"sum by (job) (rate(http_requests_total{code=~"5.."}[5m])) / on(job) group_left up"#).unwrap();
        assert_eq!(metric_names(&q.ast).into_iter().collect::<Vec<_>>(), vec!["http_requests_total", "up"]);
        assert!(matcher_labels(&q.ast).contains("code"));
    }

    #[test]
    fn aggregation_drops_labels() {
        assert!(!out("sum(up)").may_have("instance"));
        assert!(out("sum by (instance) (up)").may_have("instance"));
        assert!(!out("sum without (instance) (up)").may_have("instance"));
        assert!(out("up == 0").may_have("instance"));
        assert!(!out(r#"absent(up{job="x"})"#).may_have("instance"));
        assert!(out(r#"absent(up{job="x"})"#).may_have("job"));
        assert!(!out("vector(1)").may_have("instance"));
        assert!(!out("(sum(a) - sum(b + c)) / sum(a) * 100 > 85").may_have("instance"));
        assert!(out("topk(3, up)").may_have("instance"));
        assert!(out(r#"label_replace(sum(up), "x", "$1", "job", "(.*)")"#).may_have("x"));
        assert!(!out("histogram_quantile(0.9, rate(x_bucket[5m]))").may_have("le"));
        assert!(out("count_values(\"version\", build_info)").may_have("version"));
        assert!(!out("a * on (job) b").may_have("instance"));
        assert!(out("a * on (job) group_left (team) b").may_have("instance"));
    }

    #[test]
    fn impossible() {
        let q = parse(r#"x{integration!~".*"}"#).unwrap();
        assert_eq!(impossible_selectors(&q.ast).len(), 1);
        let q = parse(r#"x{integration!~".+"} + x{a="1", a="2"} + y{a="1", a=~"1|2"}"#).unwrap();
        assert_eq!(impossible_selectors(&q.ast).len(), 1);
        let q = parse(r#"x{alertmanager!~``}"#).unwrap();
        assert!(impossible_selectors(&q.ast).is_empty());
    }

    #[test]
    fn parse_error_is_reported() {
        assert!(parse("sum(rate(x[5m])").is_err());
        assert!(parse("").is_err());
    }
}
