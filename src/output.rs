//! Output: text for people (progress on stderr), one JSON document for machines.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Progress for one long step: a spinner on a terminal, plain lines otherwise, nothing
/// on stdout (stdout is reserved for the result, so `--format json` stays parseable).
#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
}

impl Progress {
    /// Start a step. `quiet` hides everything but errors.
    pub fn step(msg: impl Into<String>, quiet: bool) -> Progress {
        let msg = msg.into();
        if quiet {
            return Progress { bar: None, plain: false };
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(ProgressStyle::with_template("{spinner:.cyan} {msg} [{elapsed}]").expect("static template").tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "));
            bar.set_message(msg);
            bar.enable_steady_tick(Duration::from_millis(100));
            Progress { bar: Some(bar), plain: false }
        } else {
            eprintln!("… {msg}");
            Progress { bar: None, plain: true }
        }
    }

    /// Was this progress created quiet (JSON output)?
    pub fn is_quiet(&self) -> bool {
        self.bar.is_none() && !self.plain
    }

    pub fn set_message(&self, msg: impl Into<String>) {
        if let Some(b) = &self.bar {
            b.set_message(msg.into());
        }
    }

    /// A byte/item counter for pulls and uploads.
    pub fn set_length(&self, len: u64, pos: u64) {
        if let Some(b) = &self.bar {
            if b.length() != Some(len) {
                b.set_length(len);
                b.set_style(ProgressStyle::with_template("{spinner:.cyan} {msg} {wide_bar} {bytes}/{total_bytes} [{elapsed}]").expect("static template"));
            }
            b.set_position(pos);
        }
    }

    /// Print a line above the bar (or plainly).
    pub fn println(&self, line: impl AsRef<str>) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("{}", line.as_ref())),
            None if self.plain => eprintln!("{}", line.as_ref()),
            None => {}
        }
    }

    pub fn finish(&self, msg: impl Into<String>) {
        let msg = msg.into();
        match &self.bar {
            Some(b) => b.finish_with_message(format!("✓ {msg}")),
            None if self.plain => eprintln!("✓ {msg}"),
            None => {}
        }
    }

    pub fn fail(&self, msg: impl Into<String>) {
        let msg = msg.into();
        match &self.bar {
            Some(b) => b.abandon_with_message(format!("✗ {msg}")),
            None if self.plain => eprintln!("✗ {msg}"),
            None => {}
        }
    }
}
