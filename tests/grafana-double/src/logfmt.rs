//! Grafana-style logfmt lines on stdout:
//! `logger=provisioning.dashboard type=file name=default t=2025-06-20T10:11:12.123456789Z level=error msg="failed to load dashboard from " file=/x.json error="Dashboard title cannot be empty"`
//!
//! Hand-written (a few lines) rather than a `tracing-subscriber` layer because
//! Grafana's key order (logger + context keys, then `t`, `level`, `msg`) and its
//! quoting rules are the contract here, and the fmt layers of tracing-subscriber
//! do not produce them.

use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Logger {
    /// When set, every line is also kept here (used by in-process tests).
    capture: Option<Arc<Mutex<Vec<String>>>>,
    /// When true, nothing is printed to stdout (in-process tests keep output quiet).
    quiet: bool,
}

impl Logger {
    pub fn stdout() -> Self {
        Logger { capture: None, quiet: false }
    }

    /// A logger that keeps its lines in memory; `echo` also prints them.
    pub fn capturing(echo: bool) -> Self {
        Logger { capture: Some(Arc::new(Mutex::new(Vec::new()))), quiet: !echo }
    }

    pub fn lines(&self) -> Vec<String> {
        match &self.capture {
            Some(c) => c.lock().unwrap().clone(),
            None => Vec::new(),
        }
    }

    /// `logger` is the Grafana logger name, `ctx` the logger's context pairs
    /// (printed before `t=`), `kv` the call's pairs (printed after `msg=`).
    pub fn log(&self, logger: &str, ctx: &[(&str, &str)], level: &str, msg: &str, kv: &[(&str, &str)]) {
        let mut line = String::new();
        push_pair(&mut line, "logger", logger);
        for (k, v) in ctx {
            push_pair(&mut line, k, v);
        }
        let t = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        push_pair(&mut line, "t", &t);
        push_pair(&mut line, "level", level);
        push_pair(&mut line, "msg", msg);
        for (k, v) in kv {
            push_pair(&mut line, k, v);
        }
        if !self.quiet {
            let out = std::io::stdout();
            let mut out = out.lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        if let Some(c) = &self.capture {
            c.lock().unwrap().push(line);
        }
    }

    pub fn info(&self, logger: &str, msg: &str, kv: &[(&str, &str)]) {
        self.log(logger, &[], "info", msg, kv)
    }
    pub fn warn(&self, logger: &str, msg: &str, kv: &[(&str, &str)]) {
        self.log(logger, &[], "warn", msg, kv)
    }
    pub fn error(&self, logger: &str, msg: &str, kv: &[(&str, &str)]) {
        self.log(logger, &[], "error", msg, kv)
    }
}

fn push_pair(line: &mut String, k: &str, v: &str) {
    if !line.is_empty() {
        line.push(' ');
    }
    line.push_str(k);
    line.push('=');
    line.push_str(&quote(v));
}

/// go-kit logfmt rules: empty values print as nothing; values with spaces,
/// `=`, `"` or control characters are quoted with Go escapes.
pub fn quote(v: &str) -> String {
    let needs = v.chars().any(|c| c == ' ' || c == '=' || c == '"' || c.is_control() || c == '\u{fffd}');
    if !needs {
        return v.to_string();
    }
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if c.is_control() => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn quoting_follows_logfmt() {
        assert_eq!(quote("abc"), "abc");
        assert_eq!(quote(""), "");
        assert_eq!(quote("failed to load dashboard from "), "\"failed to load dashboard from \"");
        assert_eq!(quote("a\"b\nc"), "\"a\\\"b\\nc\"");
    }
}
