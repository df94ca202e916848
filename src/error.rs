//! Error types. Every user-facing error says what went wrong, where, and what to do next,
//! and maps to the exit codes of docs/architecture.md "Commands, flags and exit codes".

use std::path::PathBuf;

/// What went wrong, as a stable word (`error.kind` in JSON, the journal's `kind`).
/// Whether a failure left the host changed is not a property of its kind: the deploy
/// pipeline's steps report that (`deploy::Failure::touched`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    BadArgument,
    Docker,
    DockerUnreachable,
    DrillPrecondition,
    DrillRefused,
    ExporterFailed,
    ExporterStart,
    LingerOff,
    ExporterStop,
    ForwardFailed,
    GateEmpty,
    GateUnevaluated,
    GrafanaPassword,
    HostMissing,
    HostUnknown,
    HostsFileInvalid,
    HostsFileMissing,
    HostsFileUnreadable,
    ImageMissing,
    ImagePull,
    KeyMissing,
    KnownHostsMissing,
    LintPath,
    LockFailed,
    NoVerifiedRelease,
    PortInUse,
    ProtocolInvalid,
    ReceiverMissing,
    ReceiverUnknown,
    ReleaseMissing,
    ReloadFailed,
    RemoteDir,
    RemoteFailed,
    SecretMissing,
    Secrets,
    ServiceFailed,
    StackInvalid,
    StackMissing,
    SwapFailed,
    SyncFailed,
    Transfer,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::BadArgument => "bad_argument",
            Kind::Docker => "docker",
            Kind::DockerUnreachable => "docker_unreachable",
            Kind::DrillPrecondition => "drill_precondition",
            Kind::DrillRefused => "drill_refused",
            Kind::ExporterFailed => "exporter_failed",
            Kind::ExporterStart => "exporter_start",
            Kind::LingerOff => "linger_off",
            Kind::ExporterStop => "exporter_stop",
            Kind::ForwardFailed => "forward_failed",
            Kind::GateEmpty => "gate_empty",
            Kind::GateUnevaluated => "gate_unevaluated",
            Kind::GrafanaPassword => "grafana_password",
            Kind::HostMissing => "host_missing",
            Kind::HostUnknown => "host_unknown",
            Kind::HostsFileInvalid => "hosts_file_invalid",
            Kind::HostsFileMissing => "hosts_file_missing",
            Kind::HostsFileUnreadable => "hosts_file_unreadable",
            Kind::ImageMissing => "image_missing",
            Kind::ImagePull => "image_pull",
            Kind::KeyMissing => "key_missing",
            Kind::KnownHostsMissing => "known_hosts_missing",
            Kind::LintPath => "lint_path",
            Kind::LockFailed => "lock_failed",
            Kind::NoVerifiedRelease => "no_verified_release",
            Kind::PortInUse => "port_in_use",
            Kind::ProtocolInvalid => "protocol_invalid",
            Kind::ReceiverMissing => "receiver_missing",
            Kind::ReceiverUnknown => "receiver_unknown",
            Kind::ReleaseMissing => "release_missing",
            Kind::ReloadFailed => "reload_failed",
            Kind::RemoteDir => "remote_dir",
            Kind::RemoteFailed => "remote_failed",
            Kind::SecretMissing => "secret_missing",
            Kind::Secrets => "secrets",
            Kind::ServiceFailed => "service_failed",
            Kind::StackInvalid => "stack_invalid",
            Kind::StackMissing => "stack_missing",
            Kind::SwapFailed => "swap_failed",
            Kind::SyncFailed => "sync_failed",
            Kind::Transfer => "transfer",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error that stops a command from running (exit 2), or a domain failure (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    Config { kind: Kind, message: String, hint: String },

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
    Remote { kind: Kind, message: String, hint: String },

    #[error("{what} is not implemented yet")]
    NotImplemented { what: &'static str, issue: u32 },

    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn config(kind: Kind, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Config { kind, message: message.into(), hint: hint.into() }
    }

    pub fn remote(kind: Kind, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Remote { kind, message: message.into(), hint: hint.into() }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// The stable word printed as `error.kind` in JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config { kind, .. } | Error::Remote { kind, .. } => kind.as_str(),
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

    /// Every variant means "could not run": exit 2, but an interrupt (Ctrl-C / SIGTERM,
    /// after cleaning up): 130. Domain failures (lint errors, failed checks, red gate) are
    /// not errors but outcomes, and commands return their own codes.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Interrupted => 130,
            _ => 2,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"error": {"kind": self.kind(), "message": self.to_string(), "hint": self.hint()}})
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
