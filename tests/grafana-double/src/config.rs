//! Environment handling: the `run.sh` `__FILE` expansion and the `GF_*`
//! settings the double honours.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub type Env = BTreeMap<String, String>;

/// What `run.sh` printed while expanding `__FILE` variables.
#[derive(Debug, Default)]
pub struct FileVarReport {
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

/// Mirror of the `__FILE` loop in grafana/grafana `packaging/docker/run.sh`:
/// every `GF_<X>__FILE=/path` (non-empty) becomes `GF_<X>=<contents of /path>`
/// (trailing newlines stripped, as `$(< file)` does) and the `__FILE`
/// variable is removed. Setting both `GF_<X>` and `GF_<X>__FILE` is fatal.
/// A missing file makes bash print an error and the variable becomes empty;
/// run.sh carries on (it has no `set -e`), and Grafana ignores empty
/// overrides, so the default applies.
pub fn apply_file_vars(mut env: Env) -> Result<(Env, FileVarReport), (String, FileVarReport)> {
    let mut report = FileVarReport::default();
    let names: Vec<String> = env
        .iter()
        .filter(|(k, v)| k.starts_with("GF_") && k.ends_with("__FILE") && k.len() >= "GF_X__FILE".len() && !v.is_empty())
        .map(|(k, _)| k.clone())
        .collect();
    for file_var in names {
        let var = file_var.trim_end_matches("__FILE").to_string();
        if env.get(&var).is_some_and(|v| !v.is_empty()) {
            let msg = format!("ERROR: Both {var} and {file_var} are set (but are exclusive)");
            report.stderr.push(msg.clone());
            return Err((msg, report));
        }
        let path = env.get(&file_var).cloned().unwrap_or_default();
        report.stdout.push(format!("Getting secret {var} from {path}"));
        let value = match std::fs::read(&path) {
            Ok(bytes) => {
                let mut s = String::from_utf8_lossy(&bytes).into_owned();
                while s.ends_with('\n') {
                    s.pop();
                }
                s
            }
            Err(e) => {
                let why = match e.kind() {
                    std::io::ErrorKind::NotFound => "No such file or directory".to_string(),
                    std::io::ErrorKind::PermissionDenied => "Permission denied".to_string(),
                    _ if std::path::Path::new(&path).is_dir() => "Is a directory".to_string(),
                    _ => e.to_string(),
                };
                report.stderr.push(format!("/run.sh: line 60: {path}: {why}"));
                String::new()
            }
        };
        env.insert(var, value);
        env.remove(&file_var);
    }
    Ok((env, report))
}

#[derive(Clone, Debug)]
pub struct Config {
    /// `[server] http_addr`; empty means all interfaces.
    pub http_addr: String,
    pub http_port: u16,
    pub provisioning: PathBuf,
    pub admin_user: String,
    pub admin_password: String,
    pub anonymous_enabled: bool,
    pub anonymous_org_role: String,
    /// Double-only knob (`GRAFANA_DOUBLE_PROVISION_DELAY_MS`): how long after
    /// the HTTP server is listening provisioning starts.
    pub provision_delay: Duration,
    /// Double-only knob (`GRAFANA_DOUBLE_DATASOURCE_TIMEOUT_MS`), default 30 s
    /// like Grafana's data proxy timeout.
    pub datasource_timeout: Duration,
}

impl Config {
    /// Reads settings the way Grafana applies `GF_<SECTION>_<KEY>` overrides:
    /// an empty value is ignored and the default stays.
    pub fn from_env(env: &Env) -> Result<Config, String> {
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        let http_port = match get("GF_SERVER_HTTP_PORT") {
            Some(p) => p.parse::<u16>().map_err(|_| format!("failed to parse \"GF_SERVER_HTTP_PORT\": invalid port {p:?}"))?,
            None => 3000,
        };
        let delay_ms = match env.get("GRAFANA_DOUBLE_PROVISION_DELAY_MS").filter(|v| !v.is_empty()) {
            Some(v) => v.parse::<u64>().map_err(|_| format!("GRAFANA_DOUBLE_PROVISION_DELAY_MS must be a number of milliseconds, got {v:?}"))?,
            None => 300,
        };
        let timeout_ms = match env.get("GRAFANA_DOUBLE_DATASOURCE_TIMEOUT_MS").filter(|v| !v.is_empty()) {
            Some(v) => v.parse::<u64>().map_err(|_| format!("GRAFANA_DOUBLE_DATASOURCE_TIMEOUT_MS must be a number of milliseconds, got {v:?}"))?,
            None => 30_000,
        };
        Ok(Config {
            http_addr: get("GF_SERVER_HTTP_ADDR").unwrap_or_default(),
            http_port,
            provisioning: PathBuf::from(get("GF_PATHS_PROVISIONING").unwrap_or_else(|| "/etc/grafana/provisioning".into())),
            admin_user: get("GF_SECURITY_ADMIN_USER").unwrap_or_else(|| "admin".into()),
            admin_password: get("GF_SECURITY_ADMIN_PASSWORD").unwrap_or_else(|| "admin".into()),
            anonymous_enabled: get("GF_AUTH_ANONYMOUS_ENABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            anonymous_org_role: get("GF_AUTH_ANONYMOUS_ORG_ROLE").unwrap_or_else(|| "Viewer".into()),
            provision_delay: Duration::from_millis(delay_ms),
            datasource_timeout: Duration::from_millis(timeout_ms),
        })
    }

    pub fn bind_addr(&self) -> String {
        let host = if self.http_addr.is_empty() { "0.0.0.0" } else { self.http_addr.as_str() };
        if host.contains(':') {
            format!("[{host}]:{}", self.http_port)
        } else {
            format!("{host}:{}", self.http_port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_grafanas() {
        let c = Config::from_env(&env(&[])).unwrap();
        assert_eq!((c.admin_user.as_str(), c.admin_password.as_str()), ("admin", "admin"));
        assert_eq!(c.http_port, 3000);
        assert_eq!(c.provisioning, PathBuf::from("/etc/grafana/provisioning"));
        assert_eq!(c.bind_addr(), "0.0.0.0:3000");
    }

    #[test]
    fn empty_override_is_ignored() {
        let c = Config::from_env(&env(&[("GF_SECURITY_ADMIN_PASSWORD", "")])).unwrap();
        assert_eq!(c.admin_password, "admin");
    }

    #[test]
    fn file_form_reads_and_strips_newlines() {
        let dir = std::env::temp_dir().join(format!("gd-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        std::fs::write(&f, "s3cret\n\n").unwrap();
        let (e, rep) = apply_file_vars(env(&[("GF_SECURITY_ADMIN_PASSWORD__FILE", f.to_str().unwrap())])).unwrap();
        assert_eq!(e.get("GF_SECURITY_ADMIN_PASSWORD").unwrap(), "s3cret");
        assert!(!e.contains_key("GF_SECURITY_ADMIN_PASSWORD__FILE"));
        assert!(rep.stdout[0].starts_with("Getting secret GF_SECURITY_ADMIN_PASSWORD from"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn both_forms_is_fatal() {
        let r = apply_file_vars(env(&[("GF_SECURITY_ADMIN_PASSWORD", "x"), ("GF_SECURITY_ADMIN_PASSWORD__FILE", "/nope")]));
        let (msg, _) = r.unwrap_err();
        assert_eq!(msg, "ERROR: Both GF_SECURITY_ADMIN_PASSWORD and GF_SECURITY_ADMIN_PASSWORD__FILE are set (but are exclusive)");
    }

    #[test]
    fn missing_file_leaves_default() {
        let (e, rep) = apply_file_vars(env(&[("GF_SECURITY_ADMIN_PASSWORD__FILE", "/nonexistent/pw")])).unwrap();
        assert_eq!(e.get("GF_SECURITY_ADMIN_PASSWORD").unwrap(), "");
        assert!(rep.stderr[0].contains("No such file or directory"));
        assert_eq!(Config::from_env(&e).unwrap().admin_password, "admin");
    }
}
