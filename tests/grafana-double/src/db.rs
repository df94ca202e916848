//! Where the double's database lives: one JSON file under `GF_PATHS_DATA`
//! standing in for Grafana's SQLite `grafana.db`. Like the SQLite file it
//! survives restarts on the same data dir (a container volume), so what
//! Grafana sets only when the database is created (the admin user and
//! password), provisioned rows and failed-login counts stay.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::state::Store;

/// File name under the data dir. Deliberately not `grafana.db`: it is JSON.
pub const FILE: &str = "grafana-double.db.json";

/// The database file, or `None` when `GF_PATHS_DATA` is unset (memory only).
#[derive(Clone, Debug)]
pub struct Db {
    pub path: Option<PathBuf>,
    /// What was last written, so a pass that changed nothing writes nothing.
    last: Arc<Mutex<Option<Vec<u8>>>>,
}

/// Outcome of opening: the stored rows and whether the database was created now.
pub struct Opened {
    pub store: Store,
    pub created: bool,
}

impl Db {
    pub fn new(data_dir: Option<&Path>) -> Db {
        Db { path: data_dir.map(|d| d.join(FILE)), last: Arc::default() }
    }

    /// Opens (or creates) the database. Errors are fatal at startup, as a
    /// data dir Grafana cannot create or write is (sqlstore init).
    pub fn open(&self) -> Result<Opened, String> {
        let Some(path) = &self.path else {
            return Ok(Opened { store: Store::default(), created: true });
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| format!("failed to create data directory {:?}: {}", dir.display().to_string(), go_err("mkdir", dir, &e)))?;
        match std::fs::read(path) {
            Ok(bytes) => {
                let store: Store = serde_json::from_slice(&bytes).map_err(|e| format!("failed to read database file {:?}: {e}", path.display().to_string()))?;
                *self.last.lock().unwrap() = serde_json::to_vec_pretty(&store).ok();
                Ok(Opened { store, created: false })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let store = Store::default();
                self.save(&store).map_err(|e| format!("failed to create database file {:?}: {e}", path.display().to_string()))?;
                Ok(Opened { store, created: true })
            }
            Err(e) => Err(format!("failed to read database file {:?}: {}", path.display().to_string(), go_err("open", path, &e))),
        }
    }

    /// Writes the whole database (temp file + rename, so a crash never
    /// leaves half a file).
    pub fn save(&self, store: &Store) -> Result<(), String> {
        let Some(path) = &self.path else { return Ok(()) };
        let text = serde_json::to_vec_pretty(store).map_err(|e| e.to_string())?;
        let mut last = self.last.lock().unwrap();
        if last.as_deref() == Some(text.as_slice()) && path.exists() {
            return Ok(());
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, &text).map_err(|e| go_err("open", &tmp, &e))?;
        std::fs::rename(&tmp, path).map_err(|e| go_err("rename", path, &e))?;
        *last = Some(text);
        Ok(())
    }

    /// The stand-in for Grafana's `SELECT 1` health probe (pkg/api/health.go):
    /// the file can be read and parsed, and the data dir can be written.
    pub fn check(&self) -> Result<(), String> {
        let Some(path) = &self.path else { return Ok(()) };
        let bytes = std::fs::read(path).map_err(|e| go_err("open", path, &e))?;
        serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| e.to_string())?;
        let probe = path.with_extension("json.probe");
        std::fs::write(&probe, b"1").map_err(|e| go_err("open", &probe, &e))?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }
}

/// Go-style `op path: reason` error text.
pub fn go_err(op: &str, path: &Path, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        std::io::ErrorKind::ReadOnlyFilesystem => "read-only file system".to_string(),
        std::io::ErrorKind::NotADirectory => "not a directory".to_string(),
        std::io::ErrorKind::IsADirectory => "is a directory".to_string(),
        _ => e.to_string(),
    };
    format!("{op} {}: {why}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_a_reopen() {
        let dir = tempfile_dir();
        let db = Db::new(Some(&dir));
        let mut o = db.open().unwrap();
        assert!(o.created);
        assert!(o.store.ensure_admin("admin", "first", "admin@localhost"));
        db.save(&o.store).unwrap();
        let o2 = db.open().unwrap();
        assert!(!o2.created);
        assert!(o2.store.users[0].password_is("first"));
        assert!(db.check().is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(db.check().is_err(), "a vanished data dir fails the check");
    }

    #[test]
    fn memory_only_without_data_dir() {
        let db = Db::new(None);
        assert!(db.open().unwrap().created);
        assert!(db.check().is_ok());
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("gd-db-{}-{}", std::process::id(), crate::state::generate_uid()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
