//! A release's files: read from the stack directory, sent to the host (only what
//! changed; the rest hard-linked), swapped in, fetched back for a rollback, pruned.

use super::decide::{self, Sync};
use super::Effects;
use crate::engine::spec::hex;
use crate::error::{Error, Kind, Result};
use crate::output::Progress;
use crate::plan::Plan;
use crate::remote::layout::{self, ReleaseInfo};
use crate::remote::{Conn, Ssh};
use crate::stack::Stack;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

/// Releases kept on the host besides the current and the last verified one.
pub const KEEP_RELEASES: usize = 5;

/// The local files of a release: path → (sha256, content, mode).
pub struct LocalFiles {
    pub files: BTreeMap<String, (String, Vec<u8>, u32)>,
}

impl LocalFiles {
    pub fn read(stack: &Stack) -> Result<LocalFiles> {
        let mut files = BTreeMap::new();
        for rel in stack.files()? {
            let p = stack.dir.join(&rel);
            // Through the stack, so a file rendered for the host (its Alertmanager
            // config) is what the release holds.
            let data = stack.read(&rel.to_string_lossy()).map_err(|e| Error::io(&p, e))?;
            let exec = std::fs::metadata(&p).map(|m| m.permissions().mode() & 0o111 != 0).unwrap_or(false);
            let rel = rel.to_string_lossy().to_string();
            if rel.contains('\n') {
                return Err(Error::config(Kind::StackInvalid, format!("file name with a newline in the stack: {rel:?}"), "rename the file"));
            }
            // Config files are read by the containers' own users (65534, 472): 0644.
            // Secrets never land here: they are copied into containers (0400, owned by
            // the container user) through the Docker API.
            let mode = if exec { 0o755 } else { 0o644 };
            files.insert(rel, (hex(&Sha256::digest(&data)), data, mode));
        }
        Ok(LocalFiles { files })
    }

    pub fn hashes(&self) -> BTreeMap<String, String> {
        self.files.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect()
    }

    /// `<utc-timestamp>-<short hash of the tree>`.
    pub fn release_id(&self) -> String {
        let mut h = Sha256::new();
        for (p, (sum, _, mode)) in &self.files {
            h.update(format!("{p}\0{sum}\0{mode:o}\n"));
        }
        format!("{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), &hex(&h.finalize())[..8])
    }
}

const FETCH_SCRIPT: &str = r#"set -eu
[ -f "$1/releases/$2/.release.json" ] || { echo "no release $2" >&2; exit 3; }
tar -c -f - -C "$1/releases/$2" .
"#;

/// Copy a release from the host into `dest` (to verify it against its own files).
pub async fn fetch_release(ssh: &Ssh, id: &str, dest: &std::path::Path) -> Result<()> {
    let (code, tar, stderr) = ssh.script_bytes(FETCH_SCRIPT, &[ssh.host().remote_dir.as_str(), id]).await?;
    if code != Some(0) {
        return Err(Error::remote(
            Kind::ReleaseMissing,
            format!("release {id} is not on {}: {}", ssh.host().name, stderr.trim()),
            "list the releases with `stackproof status`",
        ));
    }
    tar::Archive::new(tar.as_slice()).unpack(dest).map_err(|e| Error::remote(Kind::Transfer, format!("unpacking release {id}: {e}"), "run the command again"))
}

pub async fn prune(conn: &mut Conn) -> Result<()> {
    conn.refresh().await?;
    let st = &conn.state;
    let victims = layout::prune_candidates(&st.releases, KEEP_RELEASES, &[st.current.as_deref(), st.verified.as_deref(), st.exporter_release.as_deref()]);
    layout::prune(&conn.ssh, &victims).await
}

/// The remote dir must be writable (or creatable) by the SSH user: checked before the
/// lock, which lives in it.
pub fn ensure_writable(conn: &Conn) -> Result<()> {
    if conn.state.writable {
        return Ok(());
    }
    let h = conn.ssh.host();
    Err(Error::config(
        Kind::RemoteDir,
        format!("{} is not writable by {} on {}", h.remote_dir, h.user, h.name),
        format!("create it: `sudo install -d -o {} {}`", h.user, h.remote_dir),
    ))
}

/// The sync step: the release's files on the host and `current` pointing at them.
/// Touches the host only at the swap; a failed upload leaves `current` as it was.
pub async fn sync(conn: &Conn, stack: &Stack, plan: &mut Plan, local: &LocalFiles, existing: Option<&str>, fx: &mut Effects, quiet: bool) -> Result<()> {
    let st = &conn.state;
    let paths: Vec<String> = local.files.keys().cloned().collect();
    match decide::sync(plan, &paths, existing, st.current.as_deref(), st.current_info.is_some()) {
        Sync::Nothing => {
            if existing.is_none() {
                plan.release = st.current.clone().unwrap_or_default();
            }
        }
        Sync::SwapTo(id) => {
            fx.touch();
            layout::swap(&conn.ssh, &id).await?;
            if !quiet {
                eprintln!("✓ release {id} is current again");
            }
        }
        Sync::Upload { send, link } => {
            let step = Progress::step(format!("syncing release {}", plan.release), quiet);
            let info = ReleaseInfo {
                id: plan.release.clone(),
                stack: stack.manifest.name.clone(),
                created_at: chrono::Utc::now().to_rfc3339(),
                by: crate::remote::lock::who(),
                files: local.hashes(),
            };
            let prev = if link.is_empty() { None } else { st.current.as_deref() };
            let changed: Vec<(String, Vec<u8>, u32)> = send
                .iter()
                .map(|p| {
                    let (_, d, m) = &local.files[p];
                    (p.clone(), d.clone(), *m)
                })
                .collect();
            let sent = changed.len();
            layout::sync(&conn.ssh, &layout::Upload { id: &plan.release, prev, changed, keep: link, info: &info })
                .await
                .inspect_err(|e| step.fail(e.to_string()))?;
            // The new release is uploaded but not current: an interrupt noted by now
            // leaves the host as it was (a new release's pass only: a rollback goes on).
            if existing.is_none() {
                crate::signals::test_pause("sync").await;
                if crate::signals::seen() {
                    step.fail("interrupted before the release was made current");
                    return Err(Error::Interrupted);
                }
            }
            fx.touch();
            layout::swap(&conn.ssh, &plan.release).await.inspect_err(|e| step.fail(e.to_string()))?;
            step.finish(format!("release {} is current ({sent} files sent)", plan.release));
        }
    }
    Ok(())
}
