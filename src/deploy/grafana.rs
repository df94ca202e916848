//! Grafana's admin password across a changed secret. Grafana applies
//! `GF_SECURITY_ADMIN_PASSWORD` only when it creates its database, so on a kept
//! `grafana-data` volume a new secret changes nothing by itself and every check would
//! get 401. When the secret changed, deploy reads the old one back from the running
//! container before replacing it, and afterwards changes the password through Grafana's
//! API (`PUT /api/user/password`) with the old one.

use crate::engine::spec::ContainerSpec;
use crate::engine::Observed;
use crate::error::{Error, Kind, Result};
use crate::hosts::Secret;
use crate::remote::http::{Auth, Http};
use crate::remote::Conn;
use crate::stack::Stack;
use std::collections::BTreeMap;

/// The host secret holding Grafana's admin password.
pub const ADMIN_SECRET: &str = "grafana_admin_password";

/// `(old, new)` when `spec` carries the admin secret, a running container of its service
/// holds a different value, and that value can be read back.
pub async fn old_admin_secret(conn: &Conn, spec: &ContainerSpec, observed: &[Observed], secrets: &BTreeMap<String, Secret>) -> Option<(String, String)> {
    let (_, dest) = spec.secrets.iter().find(|(name, _)| name == ADMIN_SECRET)?;
    let new = secrets.get(ADMIN_SECRET)?.expose().to_string();
    let running = observed.iter().find(|o| o.service == spec.service && o.state == "running")?;
    let old = String::from_utf8(conn.engine.read_file(&running.id, dest).await?).ok()?;
    rotation_needed(&old, &new).then_some((old, new))
}

/// Only a real change needs Grafana's API (pure).
pub fn rotation_needed(old: &str, new: &str) -> bool {
    !old.is_empty() && old != new
}

/// Make `new` the admin password in force. The old one is tried first (on a kept volume it
/// is the one in force); when it is refused the database was new and took the new secret,
/// which is then checked. At most one failed login, against Grafana's lockout of 5.
pub async fn rotate_admin(conn: &Conn, stack: &Stack, old: &str, new: &str) -> Result<()> {
    let port = stack
        .manifest
        .service_port("grafana")
        .ok_or_else(|| Error::config(Kind::StackInvalid, "service `grafana` has no port in the manifest", "add `ports:`"))?;
    let base = format!("http://127.0.0.1:{}", conn.ssh.tunnel(port).await?);
    let user = stack.manifest.grafana_admin();
    let http = Http::new();
    let fail = |why: String| {
        Error::remote(
            Kind::GrafanaPassword,
            format!("changing Grafana's admin password to the new secret failed: {why}"),
            "reset it on the host: `docker exec <grafana container> grafana cli admin reset-admin-password NEW` (NEW = the host entry's grafana_admin_password), then deploy again",
        )
    };
    let as_old = Some(Auth { user: &user, password: old });
    let who = http.get(&format!("{base}/api/user"), as_old).await.map_err(fail)?;
    if who.ok() {
        let body = serde_json::json!({"oldPassword": old, "newPassword": new, "confirmNew": new});
        let a = http.put_json(&format!("{base}/api/user/password"), as_old, &body).await.map_err(fail)?;
        if !a.ok() {
            return Err(fail(format!("PUT /api/user/password answered HTTP {}: {}", a.status, a.message())));
        }
    }
    let check = http.get(&format!("{base}/api/user"), Some(Auth { user: &user, password: new })).await.map_err(fail)?;
    if check.ok() {
        Ok(())
    } else {
        Err(fail(format!("neither the old nor the new secret logs in as `{user}` (HTTP {}: {})", check.status, check.message())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_only_for_a_changed_known_secret() {
        assert!(rotation_needed("old", "new"));
        assert!(!rotation_needed("same", "same"));
        assert!(!rotation_needed("", "new"), "an empty read-back is not a password");
    }
}
