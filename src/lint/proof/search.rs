//! The search for a scenario that fires a rule: every combination of its inputs' candidate
//! shapes, in order of how likely each shape is (the sum of the shapes' ranks), the first
//! that fires under the own evaluator kept.

use super::eval::{Series, Unsupported};
use super::rule::{first_firing, Fired, RuleSpec};
use super::synth::{self, Input, Knowledge, NoTarget};
use crate::stack::promql;
use promql_parser::parser::Expr;

/// At most this many combinations are evaluated per rule.
const MAX_COMBINATIONS: usize = 3000;

#[derive(Debug, Clone)]
pub enum Outcome {
    Fires {
        fired: Fired,
        /// (selector, shape) per input.
        scenario: Vec<(String, String)>,
        series: Vec<Series>,
        /// The samples' spacing, seconds.
        step: f64,
        /// How many samples each series has (n + 1).
        n: usize,
    },
    Cannot(String),
    NotProven(String),
    NoTarget(NoTarget),
}

fn max_range(expr: &Expr) -> f64 {
    let mut r: f64 = 0.0;
    promql::walk(expr, &mut |e| {
        if let Expr::MatrixSelector(ms) = e {
            r = r.max(ms.range.as_secs_f64());
        }
    });
    r
}

/// Index tuples over `lens`, by increasing sum of indices.
fn combinations(lens: &[usize], cap: usize) -> Vec<Vec<usize>> {
    let max_sum: usize = lens.iter().map(|l| l.saturating_sub(1)).sum();
    let mut out = Vec::new();
    for sum in 0..=max_sum {
        let mut cur = vec![0; lens.len()];
        fill(lens, 0, sum, &mut cur, &mut out, cap);
        if out.len() >= cap {
            break;
        }
    }
    out
}

fn fill(lens: &[usize], i: usize, left: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>, cap: usize) {
    if out.len() >= cap {
        return;
    }
    if i == lens.len() {
        if left == 0 {
            out.push(cur.clone());
        }
        return;
    }
    for v in 0..lens[i].min(left + 1) {
        cur[i] = v;
        fill(lens, i + 1, left - v, cur, out, cap);
    }
}

/// Search the scenarios of one rule.
pub fn prove(spec: &RuleSpec, k: &Knowledge) -> Outcome {
    let inputs = match synth::inputs(spec.expr, k) {
        Ok(i) => i,
        Err(nt) => return Outcome::NoTarget(nt),
    };
    // Samples no closer than the group evaluates: a finer spacing changes no verdict and
    // multiplies promtool's work (it evaluates every rule over every sample).
    let step = inputs.iter().map(|i| i.step).fold(k.default_step, f64::min).max(spec.interval_s).max(0.001);
    let inputs: Vec<Input> = inputs
        .into_iter()
        .map(|mut i| {
            i.step = step;
            i
        })
        .collect();
    let horizon = spec.for_s + max_range(spec.expr) + 3.0 * spec.interval_s.max(step) + 60.0;
    let n = (horizon / step).ceil() as usize + 1;
    let lens: Vec<usize> = inputs.iter().map(|i| i.shapes.len()).collect();
    let combos = combinations(&lens, MAX_COMBINATIONS);
    let total = combos.len();
    for combo in combos {
        let mut series: Vec<Series> = Vec::new();
        for (input, &c) in inputs.iter().zip(&combo) {
            for s in synth::series(input, input.shapes[c], n) {
                if !series.iter().any(|x| x.labels == s.labels) {
                    series.push(s);
                }
            }
        }
        match first_firing(spec, &series, horizon) {
            Ok(Some(fired)) => {
                let scenario = inputs.iter().zip(&combo).map(|(i, &c)| (i.selector.clone(), i.shapes[c].describe(i))).collect();
                return Outcome::Fires { fired, scenario, series, step, n };
            }
            Ok(None) => {}
            Err(Unsupported(what)) => return Outcome::NotProven(format!("needs promtool: uses {what}")),
        }
    }
    let tried: Vec<String> =
        inputs.iter().map(|i| format!("{} in {{{}}}", i.selector, i.shapes.iter().map(|s| s.describe(i)).collect::<Vec<_>>().join(", "))).collect();
    let more = if total >= MAX_COMBINATIONS { format!(" (the first {MAX_COMBINATIONS} combinations)") } else { String::new() };
    Outcome::Cannot(format!("no input the stack can expose makes it fire within {}s: tried {}{more}", horizon.round(), tried.join("; ")))
}
