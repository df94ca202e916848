//! `stackproof lint`: offline preflight of a stack directory or single files.

use crate::error::Result;
use crate::lint::{lint_report, render_report_json, render_report_text, Options, Severity};
use crate::output::Format;
use std::path::PathBuf;

/// The `lint` command: exit 0 without error findings, 1 with; Err = could not run (2).
pub fn run(paths: &[PathBuf], with_promtool: bool, format: Format) -> Result<i32> {
    let report = lint_report(paths, &Options { with_promtool, ..Default::default() })?;
    match format {
        Format::Text => print!("{}", render_report_text(&report)),
        Format::Json => println!("{}", render_report_json(&report)),
    }
    Ok(if report.findings.iter().any(|f| f.severity == Severity::Error) { 1 } else { 0 })
}
