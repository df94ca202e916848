//! Everything that touches the host over SSH: the session, the release layout (sync,
//! atomic swap, pruning), the deploy lock and the journal.
//!
//! Remote layout (ARCHITECTURE.md):
//! ```text
//! <remote_dir>/releases/<utc-timestamp>-<short-hash>/   every file of one deploy (+ .release.json)
//! <remote_dir>/current -> releases/...                   swapped atomically (rename)
//! <remote_dir>/verified                                  id of the last release that passed verify
//! <remote_dir>/journal.jsonl                             append-only audit log
//! <remote_dir>/lock                                      held during a deploy: who, when, what
//! <remote_dir>/run/                                      host exporter pid and log
//! <remote_dir>/textfile/                                 node-exporter textfile collector (watch)
//! ```

pub mod layout;
pub mod ssh;

pub use ssh::Ssh;
