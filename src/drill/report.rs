//! The drill's outcome: its stages against their bounds, as JSON (`report.drill`), as
//! one check of a verification report, and as text a person reads in one look.

use super::bounds;
use crate::verify::{Check, Status};
use serde::Serialize;

/// One stage of the drill against its bound.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub name: String,
    /// `outage` (measured from the exporter's stop) or `recovery` (from the moment it
    /// answers again).
    pub phase: &'static str,
    /// Seconds after the phase's start; None when it was not seen.
    pub after_s: Option<f64>,
    pub bound_s: f64,
    pub ok: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The drill's outcome (`report.drill` in JSON).
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub ok: bool,
    pub alert: String,
    pub real_alert: String,
    pub real: bool,
    pub stages: Vec<Stage>,
    pub fired_after_s: Option<f64>,
    pub fire_bound_s: f64,
    pub delivered: bool,
    pub delivered_after_s: Option<f64>,
    pub resolved_after_s: Option<f64>,
    pub resolve_bound_s: f64,
    /// Seconds from the restart command until the exporter answered again.
    pub restart_after_s: Option<f64>,
    pub exporter_restarted: bool,
    /// Whole drill, wall time.
    pub total_s: f64,
    pub bounds: bounds::Inputs,
    /// POSTs the drill's webhook refused: without the drill's token (401), or past its
    /// inbox cap (507). Neither counts as a delivery.
    pub webhook_refused: Refused,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Refused {
    pub unauthenticated: usize,
    pub over_cap: usize,
}

impl DrillReport {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a drill report serialises")
    }

    /// The drill as one check of a verification report.
    pub fn check(&self) -> Check {
        let missed: Vec<String> = self
            .stages
            .iter()
            .filter(|s| !s.ok)
            .map(|s| match s.after_s {
                Some(a) => format!("{} after {a:.1} s (bound {:.1} s)", s.name, s.bound_s),
                None => {
                    format!("{}: not seen within {:.1} s{}", s.name, s.bound_s, if s.detail.is_empty() { String::new() } else { format!(" ({})", s.detail) })
                }
            })
            .collect();
        let (status, detail, hint) = if self.ok {
            (
                Status::Pass,
                format!(
                    "{} fired after {:.1} s (bound {:.1} s), delivered after {:.1} s, resolved notification {:.1} s after the restart (bound {:.1} s)",
                    self.alert,
                    self.fired_after_s.unwrap_or_default(),
                    self.fire_bound_s,
                    self.delivered_after_s.unwrap_or_default(),
                    self.resolved_after_s.unwrap_or_default(),
                    self.resolve_bound_s
                ),
                String::new(),
            )
        } else {
            let mut d = missed.join("; ");
            if let Some(e) = &self.error {
                d = if d.is_empty() { e.clone() } else { format!("{e}; {d}") };
            }
            let hint = if !self.delivered && self.fired_after_s.is_some() {
                format!("the alert fired but no notification reached stackproof: check receiver `{}` in alertmanager.yml (a webhook to http://127.0.0.1:<drill.port>/) and Alertmanager's log", self.bounds.receiver)
            } else {
                "see the drill timeline; the bounds come from the scrape/evaluation intervals, `for` and the route's group_wait/group_interval".into()
            };
            (Status::Fail, d, hint)
        };
        Check { name: "outage drill".into(), status, detail, hint, duration_ms: (self.total_s * 1000.0) as u64 }
    }
}

/// A compact terminal timeline.
pub fn render_text(d: &DrillReport) -> String {
    let mut s = format!("outage drill ({}{}):\n", d.alert, if d.real { format!(" + {}", d.real_alert) } else { String::new() });
    let width = d.stages.iter().map(|s| s.name.chars().count()).max().unwrap_or(0);
    let mut phase = "";
    for st in &d.stages {
        if st.phase != phase {
            phase = st.phase;
            s.push_str(if phase == "outage" { "  after the exporter stopped:\n" } else { "  after the exporter answered again:\n" });
        }
        let at = st.after_s.map(|a| format!("{a:>5.1} s")).unwrap_or_else(|| "    – ".into());
        let mark = if st.ok { "✓" } else { "✗" };
        let detail = if st.ok || st.detail.is_empty() { String::new() } else { format!("  {}", st.detail) };
        s.push_str(&format!("    {mark} {:<width$}  {at}  (bound {:>5.1} s){detail}\n", st.name, st.bound_s));
    }
    if let Some(e) = &d.error {
        s.push_str(&format!("  ✗ {e}\n"));
    }
    s.push_str(&format!(
        "  drill {} in {:.1} s; exporter {}\n",
        if d.ok { "passed" } else { "FAILED" },
        d.total_s,
        if d.exporter_restarted { "running again" } else { "NOT confirmed running — check it" }
    ));
    s
}
