//! The connection layer: everything that talks to a host sits on this module, and it
//! imports nothing above it. The SSH session and its tunnels (`ssh`), the open
//! connection with Docker through it and the host's state (`conn`), the release layout
//! and the journal (`layout`), the deploy lock (`lock`), the HTTP client every check
//! uses (`http`) and the one poll loop (`poll`).
//!
//! Remote layout (docs/architecture.md):
//! ```text
//! <remote_dir>/releases/<utc-timestamp>-<short-hash>/   every file of one deploy (+ .release.json)
//! <remote_dir>/current -> releases/...                   swapped atomically (rename)
//! <remote_dir>/verified                                  id of the last release that passed verify
//! <remote_dir>/journal.jsonl                             append-only audit log
//! <remote_dir>/lock                                      held during a deploy: who, when, what
//! <remote_dir>/run/                                      host exporter pid and log
//! <remote_dir>/textfile/                                 node-exporter textfile collector (watch)
//! ```

pub mod conn;
pub mod http;
pub mod layout;
pub mod lock;
pub mod poll;
pub mod ssh;

pub use conn::{Conn, Endpoints};
pub use layout::RemoteState;
pub use ssh::Ssh;
