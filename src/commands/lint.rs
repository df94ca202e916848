//! `stackproof lint`: offline preflight of a stack directory or single files.

use crate::error::Result;
use crate::lint::{lint_paths, render_json, render_text, Options, Severity};
use crate::output::Format;
use std::path::PathBuf;

/// The `lint` command: exit 0 without error findings, 1 with; Err = could not run (2).
pub fn run(paths: &[PathBuf], with_promtool: bool, format: Format) -> Result<i32> {
    let findings = lint_paths(paths, &Options { with_promtool })?;
    match format {
        Format::Text => print!("{}", render_text(&findings)),
        Format::Json => println!("{}", render_json(&findings)),
    }
    Ok(if findings.iter().any(|f| f.severity == Severity::Error) { 1 } else { 0 })
}
