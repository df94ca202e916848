//! Validation of Prometheus' text exposition format (version 0.0.4).
//!
//! Hand-written because what is needed is *validation* with line numbers (TYPE after a
//! sample, duplicate series, ungrouped families, a histogram without its `+Inf` bucket),
//! which the parsing crates on crates.io do not report; the grammar is a few lines.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct Exposition {
    /// Sample names (series names, e.g. `x_bucket`) with how many series each has.
    pub samples: BTreeMap<String, usize>,
    /// Declared family types.
    pub types: BTreeMap<String, String>,
}

const TYPES: [&str; 5] = ["counter", "gauge", "histogram", "summary", "untyped"];

fn name_re() -> regex::Regex {
    regex::Regex::new(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$").expect("static regex")
}

/// Parse and validate; every problem found is reported (with its line), not just the first.
pub fn validate(text: &str) -> Result<Exposition, Vec<String>> {
    let mut errs = vec![];
    let mut ex = Exposition::default();
    let name_ok = name_re();
    let label_re = regex::Regex::new(r#"^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)"#).expect("static regex");
    if !text.is_empty() && !text.ends_with('\n') {
        errs.push("the last line does not end with a newline".to_string());
    }
    let mut helps = BTreeSet::new();
    let mut seen_series = BTreeSet::new();
    let mut sampled_families = BTreeSet::new();
    let mut closed = BTreeSet::new();
    let mut current: Option<String> = None;
    // histogram family -> label set (without le) -> (+Inf bucket value, count value)
    let mut hist: BTreeMap<(String, String), (Option<f64>, Option<f64>)> = BTreeMap::new();

    for (i, line) in text.lines().enumerate() {
        let ln = i + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut parts = rest.trim_start().splitn(3, ' ');
            let kw = parts.next().unwrap_or("");
            if kw != "HELP" && kw != "TYPE" {
                continue;
            }
            let name = parts.next().unwrap_or("");
            if !name_ok.is_match(name) {
                errs.push(format!("line {ln}: invalid metric name `{name}` in # {kw}"));
                continue;
            }
            if kw == "HELP" {
                if !helps.insert(name.to_string()) {
                    errs.push(format!("line {ln}: second # HELP for {name}"));
                }
            } else {
                let ty = parts.next().unwrap_or("").trim();
                if !TYPES.contains(&ty) {
                    errs.push(format!("line {ln}: unknown type `{ty}` for {name}"));
                }
                if ex.types.insert(name.to_string(), ty.to_string()).is_some() {
                    errs.push(format!("line {ln}: second # TYPE for {name}"));
                }
                if sampled_families.contains(name) {
                    errs.push(format!("line {ln}: # TYPE for {name} comes after its samples"));
                }
            }
            continue;
        }
        // sample: name[{labels}] value [timestamp]
        let name_end = line.find(|c: char| c == '{' || c.is_whitespace()).unwrap_or(line.len());
        let name = &line[..name_end];
        if !name_ok.is_match(name) {
            errs.push(format!("line {ln}: invalid metric name `{name}`"));
            continue;
        }
        let mut rest = &line[name_end..];
        let mut labels: Vec<(String, String)> = vec![];
        if let Some(r) = rest.strip_prefix('{') {
            let Some(close) = find_close(r) else {
                errs.push(format!("line {ln}: unterminated label set"));
                continue;
            };
            let mut inner = &r[..close];
            while !inner.trim().is_empty() {
                match label_re.captures(inner) {
                    Some(c) => {
                        labels.push((c[1].to_string(), c[2].to_string()));
                        inner = &inner[c.get(0).map(|m| m.end()).unwrap_or(inner.len())..];
                    }
                    None => {
                        errs.push(format!("line {ln}: malformed labels `{}`", &r[..close]));
                        break;
                    }
                }
            }
            rest = &r[close + 1..];
        }
        let mut fields = rest.split_whitespace();
        let value = match fields.next().map(parse_value) {
            Some(Some(v)) => v,
            _ => {
                errs.push(format!("line {ln}: `{name}` has no valid value"));
                continue;
            }
        };
        if let Some(ts) = fields.next() {
            if ts.parse::<i64>().is_err() {
                errs.push(format!("line {ln}: invalid timestamp `{ts}`"));
            }
        }
        if fields.next().is_some() {
            errs.push(format!("line {ln}: trailing text after the value"));
        }
        let family = family_of(name, &ex.types);
        if current.as_deref() != Some(family.as_str()) {
            if closed.contains(&family) {
                errs.push(format!("line {ln}: samples of {family} are not grouped together"));
            }
            if let Some(c) = current.take() {
                closed.insert(c);
            }
            current = Some(family.clone());
        }
        sampled_families.insert(family.clone());
        let mut sorted = labels.clone();
        sorted.sort();
        let key = format!("{name}{sorted:?}");
        if !seen_series.insert(key) {
            errs.push(format!("line {ln}: duplicate series {name}{{{}}}", fmt_labels(&sorted)));
        }
        *ex.samples.entry(name.to_string()).or_default() += 1;
        if ex.types.get(&family).map(String::as_str) == Some("histogram") {
            let without_le: Vec<&(String, String)> = sorted.iter().filter(|(k, _)| k != "le").collect();
            let lk = (family.clone(), format!("{without_le:?}"));
            if name.ends_with("_bucket") {
                if sorted.iter().any(|(k, v)| k == "le" && parse_value(v) == Some(f64::INFINITY)) {
                    hist.entry(lk).or_default().0 = Some(value);
                }
            } else if name.ends_with("_count") {
                hist.entry(lk).or_default().1 = Some(value);
            }
        }
    }
    for ((fam, labels), (inf, count)) in hist {
        match (inf, count) {
            (None, _) => errs.push(format!("histogram {fam}{labels} has no le=\"+Inf\" bucket")),
            (Some(i), Some(c)) if i != c => errs.push(format!("histogram {fam}{labels}: +Inf bucket {i} differs from _count {c}")),
            _ => {}
        }
    }
    if errs.is_empty() {
        Ok(ex)
    } else {
        Err(errs)
    }
}

fn fmt_labels(l: &[(String, String)]) -> String {
    l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect::<Vec<_>>().join(",")
}

/// Index of the `}` closing a label set, skipping quoted values.
fn find_close(s: &str) -> Option<usize> {
    let mut in_q = false;
    let mut esc = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if esc => esc = false,
            '\\' if in_q => esc = true,
            '"' => in_q = !in_q,
            '}' if !in_q => return Some(i),
            _ => {}
        }
    }
    None
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// The family a sample belongs to: `x_bucket`/`x_sum`/`x_count` of a declared histogram
/// or summary `x` belong to `x`.
fn family_of(name: &str, types: &BTreeMap<String, String>) -> String {
    for suf in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suf) {
            if matches!(types.get(base).map(String::as_str), Some("histogram" | "summary")) {
                return base.to_string();
            }
        }
    }
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\na_total{x=\"2\"} 4 1700000000000\n\
# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.3\nh_count 2\ng NaN\n";

    #[test]
    fn valid_text_is_read() {
        let ex = validate(GOOD).unwrap();
        assert_eq!(ex.samples.get("a_total"), Some(&2));
        assert!(ex.samples.contains_key("h_bucket"));
        assert!(ex.samples.contains_key("g"));
    }

    #[test]
    fn problems_are_found_with_lines() {
        let bad = "a 1\n# TYPE a gauge\na 2\nb{x=\"1\"} oops\n9bad 1\n";
        let e = validate(bad).unwrap_err();
        let all = e.join("\n");
        assert!(all.contains("line 2: # TYPE for a comes after its samples"), "{all}");
        assert!(all.contains("line 3: duplicate series a"), "{all}");
        assert!(all.contains("line 4: `b` has no valid value"), "{all}");
        assert!(all.contains("line 5: invalid metric name `9bad`"), "{all}");
    }

    #[test]
    fn histogram_needs_inf_bucket_and_matching_count() {
        let e = validate("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\n").unwrap_err();
        assert!(e[0].contains("no le=\"+Inf\""), "{e:?}");
        let e = validate("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 1\n").unwrap_err();
        assert!(e[0].contains("differs"), "{e:?}");
    }

    #[test]
    fn ungrouped_family_and_missing_newline() {
        let e = validate("a 1\nb 1\na{x=\"y\"} 1").unwrap_err();
        assert!(e.iter().any(|l| l.contains("not grouped")), "{e:?}");
        assert!(e.iter().any(|l| l.contains("newline")), "{e:?}");
    }
}
