//! Command-line interface: parse, call one command, return its exit code.

use crate::error::{Error, Result};
use crate::output::Format;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "stackproof",
    version,
    about = "Deploy a monitoring stack to a VPS and prove that it works",
    long_about = "Deploy a monitoring stack to a VPS and prove that it works: a person would see data and get paged.\n\n\
Exit codes: 0 success; 1 lint errors, failed checks or a red gate; 2 could not run; 3 yellow gate."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Offline preflight of a stack directory or single files
    Lint {
        #[command(flatten)]
        common: Common,
        /// Stack directories or single files (dashboards, rules, configs); default: --stack
        paths: Vec<PathBuf>,
        /// Also run promtool/amtool from the local images in a throwaway container
        #[arg(long)]
        with_promtool: bool,
    },
    /// Show what a deploy would change on the host
    Plan {
        #[command(flatten)]
        common: Common,
    },
    /// Sync the stack into a new release, bring it up, verify it (with the drill)
    Deploy {
        #[command(flatten)]
        common: Common,
        /// Force the outage drill
        #[arg(long, conflicts_with = "no_drill")]
        drill: bool,
        /// Skip the outage drill
        #[arg(long)]
        no_drill: bool,
        /// Leave a release that failed verification in place
        #[arg(long)]
        no_rollback: bool,
        /// Wait up to this long for another deploy's lock (e.g. 2m)
        #[arg(long, value_parser = humantime::parse_duration)]
        lock_wait: Option<Duration>,
        /// Deploy even when lint finds errors (for testing verify's live checks)
        #[arg(long, hide = true)]
        skip_lint: bool,
    },
    /// Check the deployed stack as a person would
    Verify {
        #[command(flatten)]
        common: Common,
        /// Run the outage drill
        #[arg(long)]
        drill: bool,
        /// Also wait for the real alert to fire and reach its real receiver
        #[arg(long)]
        drill_real: bool,
        /// Write a self-contained HTML report
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Go back to the last verified release (or --to RELEASE)
    Rollback {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        to: Option<String>,
    },
    /// Releases, containers, host exporter, lock and last verification
    Status {
        #[command(flatten)]
        common: Common,
    },
    /// Release a lock left by a crashed deploy
    Unlock {
        #[command(flatten)]
        common: Common,
    },
    /// Re-verify on a schedule, publish a dead-man's switch, evaluate the gate
    Watch {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "protocol")]
        every: Option<Duration>,
        #[arg(long)]
        protocol: Option<PathBuf>,
        #[arg(long)]
        runs: Option<u64>,
        #[arg(long)]
        on_red: Option<String>,
        #[arg(long)]
        on_yellow: Option<String>,
        #[arg(long)]
        drill_every: Option<u64>,
        /// On a clean stop, remove the dead-man's-switch textfile from the host
        #[arg(long)]
        clear_on_exit: bool,
    },
    /// Evaluate the go/no-go gate once: exit 0 green, 1 red, 3 yellow, 2 could not evaluate
    Gate {
        #[command(flatten)]
        common: Common,
    },
}

impl Command {
    pub fn common(&self) -> &Common {
        match self {
            Command::Lint { common, .. }
            | Command::Plan { common }
            | Command::Deploy { common, .. }
            | Command::Verify { common, .. }
            | Command::Rollback { common, .. }
            | Command::Status { common }
            | Command::Unlock { common }
            | Command::Watch { common, .. }
            | Command::Gate { common } => common,
        }
    }
}

impl Common {
    /// The host name, or a could-not-run error saying how to name one.
    pub fn require_host(&self) -> Result<&str> {
        self.host.as_deref().ok_or_else(|| {
            Error::config("host_missing", "this command needs a host", "pass --host NAME (a key under `hosts:` in .stackproof/hosts.yml), e.g. --host sandbox")
        })
    }
}

/// Run one command and return the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Lint { common, paths, with_promtool } => {
            let paths = if paths.is_empty() { vec![common.stack.clone()] } else { paths };
            crate::lint::command(&paths, with_promtool, common.format)
        }
        Command::Plan { common } => {
            let (stack, host) = load(&common)?;
            if let Some(code) = lint_gate(&common)? {
                return Ok(code);
            }
            crate::deploy::plan_command(&stack, &host, common.format).await
        }
        Command::Deploy { common, lock_wait, skip_lint, drill, no_drill, no_rollback } => {
            let (stack, host) = load(&common)?;
            if !skip_lint {
                if let Some(code) = lint_gate(&common)? {
                    return Ok(code);
                }
            }
            let drill = if drill {
                Some(true)
            } else if no_drill {
                Some(false)
            } else {
                None
            };
            let opts = crate::deploy::DeployOptions { lock_wait, skip_lint, format: common.format, drill, rollback: !no_rollback };
            let (report, code) = crate::deploy::deploy(&stack, &host, &opts).await?;
            match common.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report).expect("serializable")),
                Format::Text => {
                    if let Some(v) = &report.verify {
                        crate::report::print_text(v);
                    }
                    let secs = report.durations.get("total_ms").copied().unwrap_or(0) as f64 / 1000.0;
                    if report.ok {
                        eprintln!("✓ deployed and verified release {} in {secs:.1} s", report.release);
                    } else {
                        eprintln!("✗ release {} failed verification ({secs:.1} s)", report.release);
                        if let Some(rb) = &report.rollback {
                            match (rb["to"].as_str(), rb["ok"].as_bool()) {
                                (Some(to), Some(true)) => eprintln!("  rolled back to {to}, which verified again"),
                                (Some(to), _) => eprintln!("  rolled back to {to}, but it did not verify either: run `stackproof status`"),
                                (None, _) => eprintln!("  no verified release to roll back to"),
                            }
                        }
                    }
                }
            }
            Ok(code)
        }
        Command::Verify { common, drill, drill_real, report } => {
            let (stack, host) = load(&common)?;
            if drill || drill_real {
                return crate::drill::verify_command(&stack, &host, common.format, report.as_deref(), drill_real).await;
            }
            crate::live::verify_command(&stack, &host, common.format, report.as_deref()).await
        }
        Command::Rollback { common, to } => {
            let host = crate::hosts::load_host(common.require_host()?)?;
            crate::deploy::rollback_command(&host, to.as_deref(), common.format).await
        }
        Command::Status { common } => {
            let (stack, host) = load(&common)?;
            crate::status::command(&stack, &host, common.format).await
        }
        Command::Unlock { common } => {
            let host = crate::hosts::load_host(common.require_host()?)?;
            crate::deploy::unlock_command(&host, common.format).await
        }
        Command::Watch { common, every, protocol, runs, on_red, on_yellow, drill_every, clear_on_exit } => {
            let (stack, host) = load(&common)?;
            let schedule = match (every, protocol) {
                (Some(d), _) => crate::watch::Schedule::Every(d),
                (None, Some(p)) => crate::watch::load_protocol(&p)?,
                (None, None) => crate::watch::Schedule::protocol(stack.manifest.watch.protocol.clone())
                    .map_err(|e| Error::config("protocol_invalid", format!("watch.protocol in the manifest: {e}"), "fix `watch.protocol` in stackproof.yml"))?,
            };
            let opts = crate::watch::WatchOptions { schedule, runs, on_red, on_yellow, drill_every, clear_on_exit, format: common.format };
            crate::watch::command(&host.name, &stack, opts).await
        }
        Command::Gate { common } => {
            let (stack, host) = load(&common)?;
            crate::gate::command(&stack, &host, common.format).await
        }
    }
}

/// The stack and host a remote command acts on.
fn load(common: &Common) -> Result<(crate::stack::Stack, crate::hosts::Host)> {
    let host = crate::hosts::load_host(common.require_host()?)?;
    let stack = crate::stack::Stack::load(&common.stack)?;
    Ok((stack, host))
}

/// Lint before touching a host: `Some(1)` (after printing the error findings) when lint
/// finds errors, `None` when the stack is clean.
fn lint_gate(common: &Common) -> Result<Option<i32>> {
    let findings = crate::lint::lint_paths(std::slice::from_ref(&common.stack), &crate::lint::Options::default())?;
    let errors: Vec<_> = findings.into_iter().filter(|f| f.severity == crate::lint::Severity::Error).collect();
    if errors.is_empty() {
        return Ok(None);
    }
    match common.format {
        Format::Json => println!("{}", serde_json::json!({"ok": false, "lint": crate::lint::render_json(&errors)["findings"]})),
        Format::Text => {
            eprint!("{}", crate::lint::render_text(&errors));
            eprintln!("nothing was changed on the host: fix the errors above (`stackproof lint`) and run again.");
        }
    }
    Ok(Some(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_flags_after_subcommand() {
        let cli = Cli::try_parse_from(["stackproof", "deploy", "--host", "sandbox", "--format", "json", "--no-drill"]).unwrap();
        let c = cli.command.common();
        assert_eq!(c.host.as_deref(), Some("sandbox"));
        assert_eq!(c.format, Format::Json);
    }

    #[test]
    fn drill_flags_conflict() {
        assert!(Cli::try_parse_from(["stackproof", "deploy", "--drill", "--no-drill"]).is_err());
    }

    #[test]
    fn lock_wait_takes_a_duration() {
        let cli = Cli::try_parse_from(["stackproof", "deploy", "--lock-wait", "2m"]).unwrap();
        match cli.command {
            Command::Deploy { lock_wait, .. } => assert_eq!(lock_wait, Some(Duration::from_secs(120))),
            _ => panic!("not deploy"),
        }
    }
}
