//! The double's "database": what Grafana keeps in SQLite (`grafana.db`)
//! under `GF_PATHS_DATA`. Saved as one JSON file there by [`crate::db`]
//! (kept in memory only when `GF_PATHS_DATA` is unset; see README).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Datasource {
    pub id: i64,
    pub uid: String,
    pub org_id: i64,
    pub name: String,
    pub ds_type: String,
    pub access: String,
    pub url: String,
    pub user: String,
    pub database: String,
    pub basic_auth: bool,
    pub basic_auth_user: String,
    pub with_credentials: bool,
    pub is_default: bool,
    pub json_data: Value,
    pub secure_json_data: BTreeMap<String, String>,
    pub read_only: bool,
    pub version: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Folder {
    pub id: i64,
    pub uid: String,
    pub org_id: i64,
    pub title: String,
    pub created: String,
    pub updated: String,
    pub version: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Dashboard {
    pub id: i64,
    pub uid: String,
    pub org_id: i64,
    pub title: String,
    pub tags: Vec<String>,
    /// `None` = the General (root) folder.
    pub folder_uid: Option<String>,
    /// The dashboard JSON as provisioned (id/uid/version rewritten on read).
    pub model: Value,
    pub version: i64,
    pub created: String,
    pub updated: String,
    pub provisioning: Option<Provisioning>,
}

/// Grafana's `dashboard_provisioning` row. `allowUiUpdates` and the
/// relative `provisionedExternalId` are not stored: the API computes them
/// from the provider's configuration when asked (pkg/api/dashboard.go).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Provisioning {
    pub provider: String,
    /// Grafana's `ExternalID`: the file's path under the provider's resolved
    /// path at the time of the save.
    pub file: String,
    /// Checksum of the file at its last save.
    pub checksum: String,
}

/// A row of Grafana's `user` table. The password is stored salted and
/// hashed (sha256 here; Grafana uses PBKDF2), never in clear.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub uid: String,
    pub login: String,
    pub email: String,
    pub name: String,
    pub salt: String,
    pub password: String,
    pub is_admin: bool,
    pub created: String,
    pub updated: String,
}

impl User {
    pub fn hash(salt: &str, password: &str) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(format!("{salt}:{password}").as_bytes()))
    }
    pub fn password_is(&self, password: &str) -> bool {
        Self::hash(&self.salt, password) == self.password
    }
    pub fn set_password(&mut self, password: &str) {
        self.salt = generate_uid();
        self.password = Self::hash(&self.salt, password);
        self.updated = now_rfc3339();
    }
}

/// A row of Grafana's `login_attempt` table: one failed password login.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoginAttempt {
    /// Lower-cased, as loginattemptimpl stores it.
    pub username: String,
    pub ip_address: String,
    /// Unix seconds.
    pub created: i64,
}

#[derive(Default, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Store {
    pub users: Vec<User>,
    pub login_attempts: Vec<LoginAttempt>,
    pub datasources: Vec<Datasource>,
    pub folders: Vec<Folder>,
    pub dashboards: BTreeMap<String, Dashboard>,
    next_ds_id: i64,
    next_dash_id: i64,
    next_user_id: i64,
    /// Which providers may write, as decided by the duplicate validator
    /// (Grafana keeps this in memory too).
    #[serde(skip)]
    pub provider_blocked: HashMap<String, bool>,
}

impl Store {
    pub fn next_datasource_id(&mut self) -> i64 {
        self.next_ds_id += 1;
        self.next_ds_id
    }

    /// Folders and dashboards share one id sequence (one table in Grafana's legacy store).
    pub fn next_dashboard_id(&mut self) -> i64 {
        self.next_dash_id += 1;
        self.next_dash_id
    }

    pub fn folder_by_uid(&self, uid: &str) -> Option<&Folder> {
        self.folders.iter().find(|f| f.uid == uid)
    }

    pub fn folder_by_title(&self, title: &str) -> Option<&Folder> {
        self.folders.iter().find(|f| f.title == title)
    }

    /// Gets the folder with this uid (or, without a uid, this title), creating it if needed.
    pub fn get_or_create_folder(&mut self, title: &str, uid: Option<&str>) -> Result<String, String> {
        if let Some(uid) = uid.filter(|u| !u.is_empty()) {
            if let Some(f) = self.folder_by_uid(uid) {
                return Ok(f.uid.clone());
            }
            validate_uid(uid)?;
        } else if let Some(f) = self.folder_by_title(title) {
            return Ok(f.uid.clone());
        }
        let uid = uid.filter(|u| !u.is_empty()).map(str::to_string).unwrap_or_else(generate_uid);
        let id = self.next_dashboard_id();
        let now = now_rfc3339();
        self.folders.push(Folder { id, uid: uid.clone(), org_id: 1, title: title.to_string(), created: now.clone(), updated: now, version: 1 });
        Ok(uid)
    }

    pub fn datasource_by_uid(&self, uid: &str) -> Option<&Datasource> {
        self.datasources.iter().find(|d| d.uid == uid)
    }

    /// Logins and emails compare case-insensitively, as in Grafana 10+.
    pub fn user_by_login_or_email(&self, name: &str) -> Option<&User> {
        let n = name.to_lowercase();
        self.users.iter().find(|u| u.login.to_lowercase() == n).or_else(|| self.users.iter().find(|u| u.email.to_lowercase() == n))
    }

    /// Grafana's first-start admin creation (sqlstore `ensureAdminUser`): only
    /// when the database has no user yet. Returns whether it created one.
    pub fn ensure_admin(&mut self, login: &str, password: &str, email: &str) -> bool {
        if !self.users.is_empty() {
            return false;
        }
        self.next_user_id += 1;
        let now = now_rfc3339();
        let mut u = User {
            id: self.next_user_id,
            uid: generate_uid(),
            login: login.to_string(),
            email: email.to_string(),
            name: String::new(),
            salt: String::new(),
            password: String::new(),
            is_admin: true,
            created: now.clone(),
            updated: now,
        };
        u.set_password(password);
        self.users.push(u);
        true
    }

    /// Failed logins of `username` (any case) since `since` (unix seconds).
    pub fn login_attempts_since(&self, username: &str, since: i64) -> i64 {
        let n = username.to_lowercase();
        self.login_attempts.iter().filter(|a| a.username == n && a.created >= since).count() as i64
    }
}

/// Grafana's dashboard/folder uid rule: at most 40 characters of `[a-zA-Z0-9_-]`.
pub fn validate_uid(uid: &str) -> Result<(), String> {
    if uid.len() > 40 {
        return Err("uid too long, max 40 characters".into());
    }
    if !uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err("uid contains illegal characters".into());
    }
    Ok(())
}

/// A 14-character lower-case uid, unique within this process (Grafana's
/// generated uids are 14 characters too; their exact alphabet does not matter).
pub fn generate_uid() -> String {
    use sha2::{Digest, Sha256};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = format!("{}-{}-{:?}", std::process::id(), n, std::time::SystemTime::now());
    let digest = Sha256::digest(seed.as_bytes());
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut s = String::from("d"); // start with a letter
    for b in digest.iter().take(13) {
        s.push(alphabet[(*b as usize) % alphabet.len()] as char);
    }
    s
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Grafana-like slug: lower-case ASCII letters and digits, everything else
/// collapsed to single dashes, no leading or trailing dash.
pub fn slugify(title: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            dash = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn slugs() {
        assert_eq!(slugify("Node Overview"), "node-overview");
        assert_eq!(slugify("  Host: CPU / Memory  "), "host-cpu-memory");
    }
    #[test]
    fn uids() {
        assert!(validate_uid("node-overview").is_ok());
        assert_eq!(validate_uid(&"a".repeat(41)).unwrap_err(), "uid too long, max 40 characters");
        assert_eq!(validate_uid("${DS}").unwrap_err(), "uid contains illegal characters");
        let a = generate_uid();
        assert_eq!(a.len(), 14);
        assert_ne!(a, generate_uid());
    }
}
