//! stackproof: deploy a monitoring stack to a VPS and prove that it works.
//!
//! Functional core, imperative shell: decisions are pure functions over plain data
//! (`plan`, `deploy::decide`, lint checks, timing bounds, the gate); effects live in thin
//! adapters (`remote` for SSH, tunnels, HTTP and the lock, `engine` for the Docker API).
//! Layers, each importing only those above it in this list:
//!
//! 1. `error`, `output`, `redact`, `signals`, `hosts`: the basics
//! 2. `stack`: the one reader of the stack's files (manifest, Prometheus, Alertmanager,
//!    Grafana provisioning and dashboards, PromQL)
//! 3. `engine`: the Docker Engine API
//! 4. `remote`: the connection layer (SSH, Docker forward, tunnels, HTTP, polling, lock)
//! 5. `plan`, `exporter`, `lint`, `paging`: pure plan, host exporter lifecycle, offline
//!    checks, where alerts go (receivers rendered per host, probed from the host)
//! 6. `verify`: the live checks; `drill`: the outage drill
//! 7. `deploy`: the pipeline; `gate`, `watch`: re-verification and the go/no-go gate
//! 8. `report`: text, JSON and HTML rendering
//! 9. `commands`, `cli`: one file per command; argument parsing
//!
//! docs/design.md draws the pipeline and says where to add a check, a command or a
//! stack file kind.

pub mod error;
pub mod hosts;
pub mod output;
pub mod redact;
pub mod signals;

pub mod stack;

pub mod engine;

pub mod remote;

pub mod exporter;
pub mod lint;
pub mod paging;
pub mod plan;

pub mod drill;
pub mod verify;

pub mod deploy;
pub mod gate;
pub mod watch;

pub mod report;

pub mod cli;
pub mod commands;

pub use error::{Error, Result};
