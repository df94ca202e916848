//! Error types. Every user-facing error says what went wrong, where, and what to do next,
//! and maps to the exit codes of ARCHITECTURE.md's command table.

use std::path::PathBuf;

/// An error that stops a command from running (exit 2), or a domain failure (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    Config { kind: &'static str, message: String, hint: String },

    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("host {host} is unreachable: {message}")]
    HostUnreachable { host: String, message: String, hint: String },

    #[error("host key of {host} could not be verified: {message}")]
    HostKey { host: String, message: String, hint: String },

    #[error("{message}")]
    LockHeld { message: String, hint: String },

    #[error("{message}")]
    Remote { kind: &'static str, message: String, hint: String },

    #[error("{what} is not implemented yet")]
    NotImplemented { what: &'static str, issue: u32 },

    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn config(kind: &'static str, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Config { kind, message: message.into(), hint: hint.into() }
    }

    pub fn remote(kind: &'static str, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Remote { kind, message: message.into(), hint: hint.into() }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// The stable word printed as `error.kind` in JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config { kind, .. } | Error::Remote { kind, .. } => kind,
            Error::Io { .. } => "io",
            Error::HostUnreachable { .. } => "host_unreachable",
            Error::HostKey { .. } => "host_key",
            Error::LockHeld { .. } => "lock_held",
            Error::NotImplemented { .. } => "not_implemented",
            Error::Interrupted => "interrupted",
        }
    }

    /// What the user should do next.
    pub fn hint(&self) -> String {
        match self {
            Error::Config { hint, .. }
            | Error::Remote { hint, .. }
            | Error::HostUnreachable { hint, .. }
            | Error::HostKey { hint, .. }
            | Error::LockHeld { hint, .. } => hint.clone(),
            Error::Io { path, .. } => format!("check that {} exists and is readable", path.display()),
            Error::NotImplemented { issue, .. } => {
                format!("this command arrives with issue #{issue}; see README.md for what works today")
            }
            Error::Interrupted => "run the command again; nothing was left half-applied".into(),
        }
    }

    /// Every variant means "could not run": exit 2. Domain failures (lint errors, failed
    /// checks, red gate) are not errors but outcomes, and commands return their own codes.
    pub fn exit_code(&self) -> i32 {
        2
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"error": {"kind": self.kind(), "message": self.to_string(), "hint": self.hint()}})
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
