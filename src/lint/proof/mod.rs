//! Offline proof that every alerting rule of a stack can fire on what the stack exposes,
//! and where Alertmanager sends it (issue 13). For each alerting rule: synthetic input
//! series built from the rule's selectors and the stack's knowledge of its targets, an
//! evaluation over time (`for`, the group's evaluation interval), the alert's labels,
//! then those labels routed through the Alertmanager routing tree.
//!
//! This is the contract `drill --alert/--all` (src/drill) builds on. The evaluation is
//! being written; until then [`prove_stack`] reports every rule as not proven.

use crate::error::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Which evaluator proves the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evaluator {
    /// `promtool test rules` when promtool can be run, stackproof's own otherwise.
    Auto,
    /// stackproof's own evaluation only.
    Own,
    /// `promtool test rules` only (an error when it cannot be run).
    Promtool,
}

/// The offline verdict on one alerting rule.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertProof {
    pub alert: String,
    /// Stack-relative path of the rule file, and the line of `- alert:`.
    pub file: String,
    pub line: usize,
    pub group: String,
    /// The synthetic series made the alert fire.
    pub fires: bool,
    /// Which evaluator said so: "promtool test rules" or "stackproof".
    pub how: String,
    /// Seconds from the condition becoming true to the alert firing, offline.
    pub fired_after_s: Option<f64>,
    /// The alert's labels when it fires (alertname included).
    pub labels: BTreeMap<String, String>,
    /// The receivers the routing tree sends those labels to (empty: routes nowhere).
    pub receivers: Vec<String>,
    /// An inhibit rule or a receiver without integrations silences it.
    pub muted: bool,
    /// Why it cannot fire or was not proven; empty when proven.
    pub reason: String,
}

/// Prove every alerting rule of the stack in `dir`.
pub fn prove_stack(_dir: &Path, _evaluator: Evaluator) -> Result<Vec<AlertProof>> {
    Ok(Vec::new())
}
