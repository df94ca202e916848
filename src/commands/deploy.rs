//! `stackproof deploy`: lint, then the pipeline (`crate::deploy`), then the report.

use super::{lint_gate, load, Common};
use crate::deploy::{deploy, DeployOptions, DeployReport};
use crate::error::Result;
use crate::output::Format;
use std::time::Duration;

pub struct Args {
    pub drill: Option<bool>,
    pub rollback: bool,
    pub lock_wait: Option<Duration>,
    pub skip_lint: bool,
}

pub async fn run(common: &Common, args: Args) -> Result<i32> {
    let (stack, host) = load(common)?;
    if !args.skip_lint {
        if let Some(code) = lint_gate(common)? {
            return Ok(code);
        }
    }
    let opts = DeployOptions { lock_wait: args.lock_wait, format: common.format, drill: args.drill, rollback: args.rollback };
    let (report, code) = deploy(&stack, &host, &opts).await?;
    match common.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report).expect("serializable")),
        Format::Text => {
            if let Some(v) = &report.verify {
                crate::report::print_text(v);
            }
            eprint!("{}", closing_lines(&report));
        }
    }
    Ok(code)
}

/// The closing lines for people, after the checks.
fn closing_lines(report: &DeployReport) -> String {
    let mut out = String::new();
    let secs = report.durations.get("total_ms").copied().unwrap_or(0) as f64 / 1000.0;
    if report.ok {
        out.push_str(&format!("✓ deployed and verified release {} in {secs:.1} s\n", report.release));
        return out;
    }
    out.push_str(&format!("✗ release {} failed verification ({secs:.1} s)\n", report.release));
    if let Some(rb) = &report.rollback {
        out.push_str(&match (&rb.to, rb.ok) {
            (Some(to), Some(true)) => format!("  rolled back to {to}, which verified again\n"),
            (Some(to), _) => format!("  rolled back to {to}, but it did not verify either: run `stackproof status`\n"),
            (None, _) => "  no verified release to roll back to\n".to_string(),
        });
    }
    out
}
