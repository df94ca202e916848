//! Reports of a verification: a terminal summary a person reads in five seconds, the JSON
//! document of `--format json`, and a self-contained HTML page (`--report FILE.html`).

mod html;

use crate::verify::{Report, Status};
use std::path::Path;

pub use html::{coverage_section, render_drill_html, render_html};

fn mark(s: Status) -> &'static str {
    match s {
        Status::Pass => "✓",
        Status::Fail => "✗",
        Status::Skip => "–",
        Status::Warn => "!",
    }
}

/// The terminal summary: failures first (with what was seen and what to do next), then
/// one line per other check, then the verdict.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    let failed: Vec<_> = r.checks.iter().filter(|c| c.status == Status::Fail).collect();
    for c in &failed {
        out.push_str(&format!("✗ {}\n    {}\n", c.name, c.detail));
        if !c.hint.is_empty() {
            out.push_str(&format!("    → {}\n", c.hint));
        }
    }
    if !failed.is_empty() {
        out.push('\n');
    }
    let width = r.checks.iter().map(|c| c.name.chars().count()).max().unwrap_or(0);
    for c in r.checks.iter().filter(|c| c.status != Status::Fail) {
        let detail = c.detail.lines().next().unwrap_or("");
        out.push_str(&format!("{} {:<width$}  {}\n", mark(c.status), c.name, detail));
    }
    let total_ms = r.checks.iter().map(|c| c.duration_ms).max().unwrap_or(0);
    let passed = r.checks.iter().filter(|c| c.status == Status::Pass).count();
    let skipped = r.checks.iter().filter(|c| c.status == Status::Skip).count();
    let warned: Vec<_> = r.checks.iter().filter(|c| c.status == Status::Warn).collect();
    out.push('\n');
    if r.ok {
        out.push_str(&format!(
            "verify: OK — {passed} checks passed{}{} (slowest {:.1} s)\n",
            if skipped > 0 { format!(", {skipped} skipped") } else { String::new() },
            if warned.is_empty() { String::new() } else { format!(", {} WARNINGS", warned.len()) },
            total_ms as f64 / 1000.0
        ));
        for c in &warned {
            out.push_str(&format!("  ! {}: {}\n", c.name, c.detail.lines().next().unwrap_or("")));
        }
    } else {
        out.push_str(&format!(
            "verify: FAILED — {} of {} checks failed; fix the first one above, then run `stackproof verify` again\n",
            failed.len(),
            r.checks.len()
        ));
    }
    out
}

pub fn print_text(r: &Report) {
    print!("{}", render_text(r));
}

/// `{"ok", "checks": [{"name", "status", "detail", "duration_ms"}]}` (plus `hint` when
/// there is one, and `drill` once the drill has run).
pub fn to_json(r: &Report) -> serde_json::Value {
    serde_json::to_value(r).expect("a report always serialises")
}

pub fn write_html(r: &Report, path: &Path) -> std::io::Result<()> {
    std::fs::write(path, render_html(r))
}

/// `stackproof drill --report FILE`: the drill's JSON document as a page.
pub fn write_coverage_html(j: &serde_json::Value, path: &Path) -> std::io::Result<()> {
    std::fs::write(path, render_drill_html(j))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Check, DashboardResult, PanelResult, QueryResult};

    pub(crate) fn sample() -> Report {
        let c = |name: &str, status, detail: &str, hint: &str| Check { name: name.into(), status, detail: detail.into(), hint: hint.into(), duration_ms: 12 };
        Report {
            ok: false,
            notifications_failed: None,
            checks: vec![
                c("prometheus: ready", Status::Pass, "ready", ""),
                c("prometheus: targets up", Status::Fail, "job `host-exporter` target 127.0.0.1:9101 is down: connection refused", "start it"),
                c("metrics live: rules", Status::Skip, "Prometheus is not ready", ""),
            ],
            dashboards: vec![DashboardResult {
                uid: "d".into(),
                title: "Dash <1>".into(),
                folder: "F".into(),
                panels: vec![PanelResult {
                    title: "Up".into(),
                    status: Status::Pass,
                    queries: vec![QueryResult {
                        ref_id: "A".into(),
                        expr: "up{job=\"x\"}".into(),
                        status: Status::Pass,
                        detail: "1 series".into(),
                        series: vec![crate::verify::frames::Series { name: "up".into(), points: vec![(1, 0.0), (2, 1.0), (3, 1.0)] }],
                    }],
                }],
            }],
            drill: None,
        }
    }

    #[test]
    fn text_puts_failures_first_and_ends_with_the_verdict() {
        let t = render_text(&sample());
        assert!(t.starts_with("✗ prometheus: targets up\n    job `host-exporter`"), "{t}");
        assert!(t.contains("    → start it"));
        assert!(t.contains("✓ prometheus: ready"));
        assert!(t.contains("– metrics live: rules"));
        assert!(t.trim_end().lines().last().unwrap().starts_with("verify: FAILED — 1 of 3 checks failed"));
    }

    #[test]
    fn the_drill_page_has_the_alert_coverage() {
        let j = serde_json::json!({"ok": false, "total_s": 96.1, "alerts": [
            {"alert": "TestErrorRateCritical", "offline": true, "live": true, "tried": true, "fault": "error", "how": "host exporter fault: tests cannot run",
             "fired_after_s": 5.6, "fire_bound_s": 7.0, "delivered": true, "delivered_after_s": 6.5, "resolved_after_s": 23.5, "resolve_bound_s": 35.0, "reason": ""},
            {"alert": "HostMemoryHigh", "offline": true, "live": false, "tried": false, "how": "offline only", "reason": "offline only: <harm> a production host"},
            {"alert": "SlowOperation", "offline": false, "live": false, "tried": true, "fault": "slow", "how": "slow", "fired_after_s": null, "fire_bound_s": 7.0,
             "delivered": false, "resolved_after_s": null, "resolve_bound_s": 35.0, "reason": "not fired within 7.0 s"}],
            "silences": [{"alert": "TestErrorRateCritical", "until": "2026-11-30T12:30:29Z"}]});
        let h = render_drill_html(&j);
        assert!(h.contains("<h2 id=\"coverage\">Alert coverage</h2>"), "{h}");
        assert!(h.contains("1 of 3 alerts proven live"), "{h}");
        assert!(h.contains("5.6 s / 7.0 s") && h.contains("23.5 s / 35.0 s"), "{h}");
        assert!(h.contains("&lt;harm&gt;") && !h.contains("<harm>"), "escaped");
        assert!(h.contains("<tr class=\"fail\"><td class=\"s\">✗</td><td>SlowOperation"), "a failed live proof is a failed row");
        assert!(h.contains("TestErrorRateCritical until 2026-11-30T12:30:29Z"));
    }

    #[test]
    fn json_has_the_contract_keys() {
        let j = to_json(&sample());
        assert_eq!(j["ok"], false);
        let c = &j["checks"][1];
        assert_eq!(c["name"], "prometheus: targets up");
        assert_eq!(c["status"], "fail");
        assert_eq!(c["duration_ms"], 12);
        assert!(c["detail"].as_str().unwrap().contains("down"));
        assert!(j.get("dashboards").is_none());
        assert!(j.get("drill").is_none());
        assert_eq!(j["checks"][0].get("hint"), None);
    }
}
