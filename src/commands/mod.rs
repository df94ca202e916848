//! One file per command: its arguments → one call into the library → rendering (text
//! for people on stderr/stdout, one JSON document for `--format json`). Exit codes are
//! those of docs/architecture.md's command table: 0 success; 1 lint errors, failed
//! checks or a red gate; 2 could not run; 3 yellow gate.

pub mod deploy;
pub mod gate;
pub mod lint;
pub mod plan;
pub mod rollback;
pub mod status;
pub mod unlock;
pub mod verify;
pub mod watch;

use crate::error::{Error, Kind, Result};
use crate::hosts::Host;
use crate::output::Format;
use crate::stack::Stack;
use clap::Args;
use std::path::PathBuf;

/// The arguments every command takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Host entry to act on (from .stackproof/hosts.yml)
    #[arg(long, global = true, env = "STACKPROOF_HOST")]
    pub host: Option<String>,
    /// Stack directory
    #[arg(long, global = true, default_value = "stack")]
    pub stack: PathBuf,
    /// Output format: text for people, json for machines (one document on stdout)
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

impl Common {
    /// The host name, or a could-not-run error saying how to name one.
    pub fn require_host(&self) -> Result<&str> {
        self.host.as_deref().ok_or_else(|| {
            Error::config(
                Kind::HostMissing,
                "this command needs a host",
                "pass --host NAME (a key under `hosts:` in .stackproof/hosts.yml), e.g. --host sandbox",
            )
        })
    }
}

/// The stack and host a remote command acts on.
pub fn load(common: &Common) -> Result<(Stack, Host)> {
    let host = crate::hosts::load_host(common.require_host()?)?;
    let stack = Stack::load(&common.stack)?;
    Ok((stack, host))
}

/// Lint before touching a host: `Some(1)` (after printing the error findings) when lint
/// finds errors, `None` when the stack is clean.
pub fn lint_gate(common: &Common) -> Result<Option<i32>> {
    // The alert proof with stackproof's own evaluator (~0.1 s): promtool's re-check costs
    // seconds, too much before every deploy/plan; `stackproof lint` runs it.
    let opts = crate::lint::Options { evaluator: crate::lint::proof::Evaluator::Own, ..Default::default() };
    let findings = crate::lint::lint_paths(std::slice::from_ref(&common.stack), &opts)?;
    let errors: Vec<_> = findings.into_iter().filter(|f| f.severity == crate::lint::Severity::Error).collect();
    if errors.is_empty() {
        return Ok(None);
    }
    match common.format {
        Format::Json => println!("{}", serde_json::json!({"ok": false, "lint": errors})),
        Format::Text => {
            eprint!("{}", crate::lint::render_text(&errors));
            eprintln!("nothing was changed on the host: fix the errors above (`stackproof lint`) and run again.");
        }
    }
    Ok(Some(1))
}
