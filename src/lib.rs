//! stackproof: deploy a monitoring stack to a VPS and prove that it works.
//!
//! Functional core, imperative shell: decisions are pure functions over plain data
//! (`plan`, lint checks, timing bounds, the gate); effects live in thin adapters
//! (`remote` for SSH, `engine` for the Docker API, `verify` for HTTP).

pub mod cli;
pub mod error;
pub mod hosts;
pub mod lint;
pub mod output;
pub mod report;
pub mod stack;
pub mod verify;

pub use error::{Error, Result};
pub mod deploy;
pub mod drill;
pub mod engine;
pub mod exporter;
pub mod gate;
pub mod live;
pub mod plan;
pub mod remote;
pub mod signals;
pub mod status;
pub mod watch;
