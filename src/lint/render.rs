//! lint's output: text for people, JSON for machines.

use super::{proof, Finding, Report, Severity};

/// Text output for people.
pub fn render_text(findings: &[Finding]) -> String {
    render_report_text(&Report { findings: findings.to_vec(), alerts: vec![] })
}

/// Text output for people, with the offline alert proof's summary line.
pub fn render_report_text(report: &Report) -> String {
    let findings = &report.findings;
    let mut out = String::new();
    // A note's hint is said once: ten rules with the same note would repeat it ten times.
    let mut hinted = std::collections::BTreeSet::new();
    for f in findings {
        let at = match (f.line, f.column) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}", f.file),
            (Some(l), None) => format!("{}:{l}", f.file),
            _ => f.file.clone(),
        };
        out.push_str(&format!("{at}: {}[{}]: {}\n", f.severity.as_str(), f.code, f.message));
        if !f.hint.is_empty() && (f.severity != Severity::Info || hinted.insert((f.code, f.hint.as_str()))) {
            out.push_str(&format!("  = hint: {}\n", f.hint));
        }
    }
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let (e, w, i) = (count(Severity::Error), count(Severity::Warning), count(Severity::Info));
    let plural = |n: usize, s: &str| format!("{n} {s}{}", if n == 1 { "" } else { "s" });
    if let Some(line) = proof::summary(&report.alerts) {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!("lint: {}, {}, {}\n", plural(e, "error"), plural(w, "warning"), plural(i, "note")));
    out
}

/// JSON output: `{"findings": [...]}`.
pub fn render_json(findings: &[Finding]) -> serde_json::Value {
    serde_json::json!({ "findings": findings })
}

/// JSON output: `{"findings": [...], "alerts": [...]}` (alerts: the offline proofs).
pub fn render_report_json(report: &Report) -> serde_json::Value {
    serde_json::json!({ "findings": report.findings, "alerts": report.alerts })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(severity: Severity, line: usize) -> Finding {
        Finding { severity, code: "x.y", file: "r.yml".into(), line: Some(line), column: None, message: format!("m{line}"), hint: "do h".into() }
    }

    #[test]
    fn a_notes_hint_is_said_once_an_errors_every_time() {
        let notes = render_text(&[f(Severity::Info, 1), f(Severity::Info, 2), f(Severity::Info, 3)]);
        assert_eq!(notes.matches("= hint: do h").count(), 1, "{notes}");
        assert!(notes.contains("r.yml:3: info[x.y]: m3"), "{notes}");
        let errors = render_text(&[f(Severity::Error, 1), f(Severity::Error, 2)]);
        assert_eq!(errors.matches("= hint: do h").count(), 2, "{errors}");
    }
}
