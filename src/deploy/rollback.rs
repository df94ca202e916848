//! Back to a release that is already on the host: fetch its files (the reference for
//! its checks), run the pipeline with it as the target, verify it, journal it.

use super::pipeline::{self, Durations, Outcome, Target};
use super::release::{fetch_release, LocalFiles};
use crate::error::{Error, Result};
use crate::hosts::Secret;
use crate::remote::lock::who;
use crate::remote::{layout, Conn};
use crate::stack::Stack;
use std::collections::BTreeMap;

/// Put release `to` back in place and verify it again.
pub async fn rollback_to(conn: &mut Conn, to: &str, secrets: &BTreeMap<String, Secret>, quiet: bool) -> Result<Outcome> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    fetch_release(&conn.ssh, to, dir.path()).await?;
    let stack = Stack::load(dir.path())?;
    let local = LocalFiles::read(&stack)?;
    let mut durations = Durations::new();
    let o = pipeline::apply(conn, &stack, Target::Existing(to, &local), secrets, quiet, &mut durations).await.map_err(|f| f.error)?;
    if o.report.ok {
        layout::mark_verified(&conn.ssh, to).await?;
    }
    let entry = serde_json::json!({"event": "rollback", "at": chrono::Utc::now().to_rfc3339(), "by": who(), "release": to, "ok": o.report.ok});
    let _ = layout::journal(&conn.ssh, &entry).await;
    Ok(o)
}
