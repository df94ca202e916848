//! The stack: its manifest and the files it names. One home for the knowledge that
//! several stages share: the manifest, where each service finds its files (`paths`),
//! the typed models of those files (Prometheus, Alertmanager, Grafana provisioning,
//! dashboards, PromQL) and one reader of them all (`files`).

pub mod alertmanager;
pub mod dashboard;
pub mod files;
pub mod manifest;
pub mod paths;
pub mod prometheus;
pub mod promql;
pub mod provisioning;
#[cfg(test)]
pub(crate) mod testing;

pub use manifest::Manifest;

use crate::error::{Error, Kind, Result};
use std::path::{Path, PathBuf};

/// Deserialize a YAML `null` (a key written with nothing after it, as in `global:`) as
/// the type's default, the way Prometheus' and Alertmanager's Go YAML readers do.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(d)?.unwrap_or_default())
}

/// A loaded stack directory, possibly as deployed to one host: `overrides` holds files
/// whose content differs there (the Alertmanager config with the host's receivers).
#[derive(Debug, Clone)]
pub struct Stack {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub overrides: std::collections::BTreeMap<String, Vec<u8>>,
}

impl Stack {
    /// Load `DIR/stackproof.yml`. Parse errors are reported by `lint` with their line;
    /// here they are a could-not-run error that points at `lint`.
    pub fn load(dir: &Path) -> Result<Stack> {
        let path = dir.join("stackproof.yml");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::config(
                Kind::StackMissing,
                format!("cannot read the stack manifest {}: {e}", path.display()),
                "pass --stack DIR pointing at a directory with stackproof.yml (the default stack is ./stack)",
            )
        })?;
        let manifest = Manifest::from_yaml(&text).map_err(|e| {
            let at = e.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
            Error::config(
                Kind::StackInvalid,
                format!("{}{at}: {e}", path.display()),
                format!("run `stackproof lint --stack {}` for every finding", dir.display()),
            )
        })?;
        Ok(Stack { dir: dir.to_path_buf(), manifest, overrides: Default::default() })
    }

    /// The content of a stack file (stack-relative path with `/`), as deployed: an
    /// override when there is one, else the file.
    pub fn read(&self, rel: &str) -> std::io::Result<Vec<u8>> {
        match self.overrides.get(rel) {
            Some(v) => Ok(v.clone()),
            None => std::fs::read(self.dir.join(rel)),
        }
    }

    /// `read` as UTF-8 text.
    pub fn read_text(&self, rel: &str) -> std::result::Result<String, String> {
        let bytes = self.read(rel).map_err(|e| format!("{}: {e}", self.dir.join(rel).display()))?;
        String::from_utf8(bytes).map_err(|e| format!("{}: not UTF-8: {e}", self.dir.join(rel).display()))
    }

    /// Every regular file of the stack, as paths relative to its directory, sorted.
    /// Hidden files and editor leftovers are not part of a release.
    pub fn files(&self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        walk(&self.dir, Path::new(""), &mut out)?;
        out.sort();
        Ok(out)
    }
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let dir = root.join(rel);
    let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        let name = entry.file_name();
        let name_s = name.to_string_lossy();
        if name_s.starts_with('.') || name_s.ends_with('~') || name_s.ends_with(".swp") {
            continue;
        }
        let ft = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
        let child = rel.join(&name);
        if ft.is_dir() {
            walk(root, &child, out)?;
        } else if ft.is_file() {
            out.push(child);
        }
    }
    Ok(())
}
