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
    for f in findings {
        let at = match (f.line, f.column) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}", f.file),
            (Some(l), None) => format!("{}:{l}", f.file),
            _ => f.file.clone(),
        };
        out.push_str(&format!("{at}: {}[{}]: {}\n", f.severity.as_str(), f.code, f.message));
        if !f.hint.is_empty() {
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
