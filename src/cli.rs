//! Command-line interface: parse, call one command, return its exit code.

pub use crate::commands::Common;
use crate::error::{Error, Kind, Result};
use clap::{Parser, Subcommand};
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
    /// Prove alerts fire: the outage drill, or with --alert/--all every chosen alert live
    /// through its drill twin (the host exporter faulted) or offline
    Drill {
        #[command(flatten)]
        common: Common,
        /// Prove this alert (repeatable)
        #[arg(long = "alert", value_name = "NAME")]
        alerts: Vec<String>,
        /// Prove every alerting rule of the stack
        #[arg(long, conflicts_with = "alerts")]
        all: bool,
        /// Route through the real receivers (pages people: the real alerts are not silenced)
        #[arg(long)]
        real: bool,
        /// Write a self-contained HTML report with the alert coverage
        #[arg(long)]
        report: Option<PathBuf>,
        /// Wait up to this long for another command's lock (e.g. 2m)
        #[arg(long, value_parser = humantime::parse_duration)]
        lock_wait: Option<Duration>,
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
        /// Remove the lock even when its lease is still live (its holder may be running)
        #[arg(long)]
        force: bool,
    },
    /// Re-verify on a schedule, publish a dead-man's switch, evaluate the gate
    Watch {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_parser = interval, conflicts_with = "protocol")]
        every: Option<Duration>,
        #[arg(long)]
        protocol: Option<PathBuf>,
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        runs: Option<u64>,
        #[arg(long)]
        on_red: Option<String>,
        #[arg(long)]
        on_yellow: Option<String>,
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
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

/// The shortest `watch --every`: each run connects, verifies and evaluates the gate.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// `--every`: a duration of at least `MIN_INTERVAL`.
fn interval(s: &str) -> std::result::Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < MIN_INTERVAL {
        return Err(format!("`{s}` is shorter than {}: each run connects and verifies the whole stack", humantime::format_duration(MIN_INTERVAL)));
    }
    Ok(d)
}

/// Whether the command line asks for `--format json` (read before parsing, so a parse
/// error can honour it).
pub fn wants_json<S: AsRef<str>>(args: &[S]) -> bool {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).take_while(|a| *a != "--").collect();
    args.windows(2).any(|w| w[0] == "--format" && w[1] == "json") || args.contains(&"--format=json")
}

/// A parse error as the one JSON document `--format json` promises (exit 2, like clap).
pub fn parse_error_json(e: &clap::Error) -> serde_json::Value {
    let message = e.kind().as_str().map(str::to_string).unwrap_or_else(|| "invalid command line".into());
    let detail = e.to_string();
    let detail = detail.lines().next().unwrap_or("").trim_start_matches("error: ").to_string();
    serde_json::json!({"error": {"kind": "bad_argument", "message": if detail.is_empty() { message } else { detail }, "hint": "run `stackproof help` for the commands and their arguments"}})
}

impl Command {
    pub fn common(&self) -> &Common {
        match self {
            Command::Lint { common, .. }
            | Command::Plan { common }
            | Command::Deploy { common, .. }
            | Command::Verify { common, .. }
            | Command::Drill { common, .. }
            | Command::Rollback { common, .. }
            | Command::Status { common }
            | Command::Unlock { common, .. }
            | Command::Watch { common, .. }
            | Command::Gate { common } => common,
        }
    }
}

/// Run one command and return the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    use crate::commands::{self as cmd, load};
    match cli.command {
        Command::Lint { common, paths, with_promtool } => {
            let paths = if paths.is_empty() { vec![common.stack.clone()] } else { paths };
            cmd::lint::run(&paths, with_promtool, common.format)
        }
        Command::Plan { common } => {
            let (stack, host) = load(&common)?;
            if let Some(code) = cmd::lint_gate(&common)? {
                return Ok(code);
            }
            cmd::plan::run(&stack, &host, common.format).await
        }
        Command::Deploy { common, lock_wait, skip_lint, drill, no_drill, no_rollback } => {
            let drill = match (drill, no_drill) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            cmd::deploy::run(&common, cmd::deploy::Args { drill, rollback: !no_rollback, lock_wait, skip_lint }).await
        }
        Command::Verify { common, drill, drill_real, report } => {
            let (stack, host) = load(&common)?;
            let drill = (drill || drill_real).then_some(drill_real);
            cmd::verify::run(&stack, &host, common.format, report.as_deref(), drill).await
        }
        Command::Drill { common, alerts, all, real, report, lock_wait } => {
            let (stack, host) = load(&common)?;
            cmd::drill::run(&stack, &host, common.format, cmd::drill::Args { alerts, all, real, report, lock_wait }).await
        }
        Command::Rollback { common, to } => {
            let host = crate::hosts::load_host(common.require_host()?)?;
            cmd::rollback::run(&host, to.as_deref(), common.format).await
        }
        Command::Status { common } => {
            let (stack, host) = load(&common)?;
            cmd::status::run(&stack, &host, common.format).await
        }
        Command::Unlock { common, force } => {
            let host = crate::hosts::load_host(common.require_host()?)?;
            cmd::unlock::run(&host, force, common.format).await
        }
        Command::Watch { common, every, protocol, runs, on_red, on_yellow, drill_every, clear_on_exit } => {
            let (stack, host) = load(&common)?;
            let schedule = match (every, protocol) {
                (Some(d), _) => crate::watch::Schedule::Every(d),
                (None, Some(p)) => crate::watch::load_protocol(&p)?,
                (None, None) => crate::watch::Schedule::protocol(stack.manifest.watch.protocol.clone()).map_err(|e| {
                    Error::config(Kind::ProtocolInvalid, format!("watch.protocol in the manifest: {e}"), "fix `watch.protocol` in stackproof.yml")
                })?,
            };
            let opts = crate::watch::WatchOptions { schedule, runs, on_red, on_yellow, drill_every, clear_on_exit, format: common.format };
            cmd::watch::run(&host.name, &stack, opts).await
        }
        Command::Gate { common } => {
            let (stack, host) = load(&common)?;
            cmd::gate::run(&stack, &host, common.format).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Format;

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
