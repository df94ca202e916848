//! Helpers for the lint tests: a broken copy of the default stack in a tempdir.

use stackproof::lint::{lint_paths, Finding, Options, Severity};
use std::path::PathBuf;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// The end-to-end tests' stack copying, the one copy of it in the tree.
#[path = "../e2e/support/files.rs"]
mod files;
use files::copy_dir;

/// A copy of the default stack that a test may break.
pub struct Copy {
    pub tmp: tempfile::TempDir,
}

impl Copy {
    pub fn new() -> Copy {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(&repo().join("stack"), &tmp.path().join("stack"));
        Copy { tmp }
    }

    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("stack")
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir().join(rel)).unwrap()
    }

    pub fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.dir().join(rel), text).unwrap()
    }

    /// Replace the first `from` in `rel` by `to`; the 1-based line where `to` starts.
    pub fn replace(&self, rel: &str, from: &str, to: &str) -> usize {
        self.replace_nth(rel, from, to, 0)
    }

    /// Replace the `n`-th (0-based) occurrence of `from`; the line where `to` starts.
    pub fn replace_nth(&self, rel: &str, from: &str, to: &str, n: usize) -> usize {
        let text = self.read(rel);
        let (at, _) = text.match_indices(from).nth(n).unwrap_or_else(|| panic!("{from:?} not found in {rel}"));
        let new = format!("{}{}{}", &text[..at], to, &text[at + from.len()..]);
        self.write(rel, &new);
        text[..at].matches('\n').count() + 1
    }

    /// 1-based line of the first line containing `needle` (after edits).
    pub fn line_of(&self, rel: &str, needle: &str) -> usize {
        self.read(rel).lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle:?} not in {rel}")) + 1
    }

    /// Lint it; the alert proof with stackproof's own evaluator (promtool's agreement has
    /// its own test in `alerts`, and running it per broken copy costs seconds each).
    pub fn lint(&self) -> Vec<Finding> {
        lint_paths(&[self.dir()], &Options { evaluator: stackproof::lint::proof::Evaluator::Own, ..Default::default() }).unwrap()
    }
}

pub fn show(f: &[Finding]) -> String {
    stackproof::lint::render_text(f)
}

/// Assert a finding with this code, in a file ending with `file`, at `line`.
pub fn assert_finding(findings: &[Finding], sev: Severity, code: &str, file: &str, line: usize) -> Finding {
    findings
        .iter()
        .find(|f| f.code == code && f.file.ends_with(file) && f.line == Some(line) && f.severity == sev)
        .cloned()
        .unwrap_or_else(|| panic!("no {sev:?} {code} at {file}:{line} in:\n{}", show(findings)))
}

pub fn errors(findings: &[Finding]) -> Vec<&Finding> {
    findings.iter().filter(|f| f.severity == Severity::Error).collect()
}
