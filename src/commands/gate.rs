//! `stackproof gate`: evaluate the go/no-go gate once.

use crate::error::{Error, Kind, Result};
use crate::gate::{evaluate_on, exit_code, render_text};
use crate::hosts::Host;
use crate::output::Format;
use crate::remote::Ssh;
use crate::stack::Stack;

/// `stackproof gate`: evaluate once; exit 0 green, 1 red, 3 yellow, 2 could not evaluate.
pub async fn run(stack: &Stack, host: &Host, format: Format) -> Result<i32> {
    if stack.manifest.gate.criteria.is_empty() {
        return Err(Error::config(Kind::GateEmpty, "the manifest has no gate criteria", "add `gate: {criteria: [...]}` to stackproof.yml (see docs/watch.md)"));
    }
    let ssh = Ssh::connect(host).await?;
    let r = evaluate_on(&ssh, stack).await;
    ssh.close().await;
    let v = r.map_err(|e| {
        Error::remote(
            Kind::GateUnevaluated,
            format!("the gate could not be evaluated on {}: {e}", host.name),
            "check that Prometheus runs (`stackproof verify`) and that the criteria's PromQL is valid (`stackproof lint`)",
        )
    })?;
    match format {
        Format::Json => println!("{}", serde_json::json!({"host": host.name, "level": v.level, "findings": v.findings, "duration_ms": v.duration_ms})),
        Format::Text => print!("{}", render_text(&v)),
    }
    Ok(exit_code(v.level))
}
