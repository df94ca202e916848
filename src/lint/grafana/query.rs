//! Panel queries: read once per distinct text, and where an undefined variable sits.

use crate::stack::promql;
use std::collections::{BTreeSet, HashMap};

/// Whether every use of variable `name` in `expr` sits inside a PromQL string literal.
pub(super) fn only_in_strings(expr: &str, name: &str) -> bool {
    let b = expr.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) if c == b'\\' && q != b'`' => i += 1,
            Some(q) if c == q => quote = None,
            None if matches!(c, b'"' | b'\'' | b'`') => quote = Some(c),
            _ if c == b'$' || (c == b'[' && b.get(i + 1) == Some(&b'[')) => {
                let rest = &expr[i..];
                let uses = [format!("${name}"), format!("${{{name}"), format!("[[{name}")]
                    .iter()
                    .any(|p| rest.starts_with(p.as_str()) && !rest[p.len()..].starts_with(|ch: char| ch.is_ascii_alphanumeric() || ch == '_'));
                if uses && quote.is_none() {
                    return false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    true
}

/// What lint needs from one panel query.
pub(super) struct QueryFacts {
    pub names: BTreeSet<String>,
    pub impossible: Vec<String>,
}

thread_local! {
    /// Panel queries repeat across dashboards (the same panel copied, the same variable
    /// defaults), and promql-parser compiles a regex for every `=~`/`!~` matcher; reading
    /// each distinct query once keeps 1,000 dashboards well under the time budget.
    static QUERIES: std::cell::RefCell<HashMap<String, std::rc::Rc<Result<QueryFacts, String>>>> = Default::default();
}

pub(super) fn read_query(e: &str) -> std::rc::Rc<Result<QueryFacts, String>> {
    if let Some(hit) = QUERIES.with(|c| c.borrow().get(e).cloned()) {
        return hit;
    }
    let facts =
        std::rc::Rc::new(promql::parse(e).map(|q| QueryFacts { names: promql::metric_names(&q.ast), impossible: promql::impossible_selectors(&q.ast) }));
    QUERIES.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() > 200_000 {
            c.clear(); // bound the memory on pathological inputs
        }
        c.insert(e.to_string(), facts.clone());
    });
    facts
}
