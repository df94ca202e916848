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

/// How a `GF_*` variable is treated. Every variable the double reads is in
/// [`SETTINGS`]; any other non-empty `GF_*` variable makes it refuse to start
/// (Grafana would apply it, or silently ignore a typo: the double does neither).
pub struct Setting {
    pub name: &'static str,
    /// What the double does with it, for the refusal message and the README.
    pub handling: &'static str,
}

/// The settings the double models or explicitly accepts (see README "Settings").
pub const SETTINGS: &[Setting] = &[
    Setting { name: "GF_SERVER_HTTP_ADDR", handling: "modelled: bind address" },
    Setting { name: "GF_SERVER_HTTP_PORT", handling: "modelled: port" },
    Setting { name: "GF_SERVER_ROOT_URL", handling: "modelled only without a sub-path (links are relative)" },
    Setting { name: "GF_SERVER_SERVE_FROM_SUB_PATH", handling: "modelled only as false (Grafana's default)" },
    Setting { name: "GF_PATHS_DATA", handling: "modelled: the double's database file lives there" },
    Setting { name: "GF_PATHS_PROVISIONING", handling: "modelled: provisioning tree" },
    Setting { name: "GF_PATHS_PLUGINS", handling: "accepted: must hold no plugin (the double loads none)" },
    Setting { name: "GF_PATHS_CONFIG", handling: "accepted: the file must set nothing (the double reads no ini file)" },
    Setting { name: "GF_PATHS_HOME", handling: "accepted: logged as Path Home, not read" },
    Setting { name: "GF_PATHS_LOGS", handling: "accepted: logged as Path Logs; logs go to the console as in the image" },
    Setting { name: "GF_SECURITY_ADMIN_USER", handling: "modelled: applied when the database is created" },
    Setting { name: "GF_SECURITY_ADMIN_PASSWORD", handling: "modelled: applied when the database is created" },
    Setting { name: "GF_SECURITY_ADMIN_EMAIL", handling: "modelled: applied when the database is created" },
    Setting { name: "GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION", handling: "modelled" },
    Setting { name: "GF_SECURITY_DISABLE_BRUTE_FORCE_LOGIN_PROTECTION", handling: "modelled" },
    Setting { name: "GF_SECURITY_BRUTE_FORCE_LOGIN_PROTECTION_MAX_ATTEMPTS", handling: "modelled" },
    Setting { name: "GF_AUTH_BASIC_ENABLED", handling: "modelled" },
    Setting { name: "GF_AUTH_ANONYMOUS_ENABLED", handling: "modelled" },
    Setting { name: "GF_AUTH_ANONYMOUS_ORG_ROLE", handling: "modelled (Admin or Viewer-like)" },
    Setting { name: "GF_USERS_ALLOW_SIGN_UP", handling: "modelled only as false (Grafana's default; the double has no sign-up)" },
];

/// Double-only knobs (not Grafana).
pub const KNOBS: &[&str] = &["GRAFANA_DOUBLE_PROVISION_DELAY_MS", "GRAFANA_DOUBLE_DATASOURCE_TIMEOUT_MS", "GRAFANA_DOUBLE_STARTUP_DELAY_MS"];

/// `build-image.sh`'s own variable: may be exported in a shell that also
/// runs the double, and means nothing to the double itself.
pub const BUILD_VARS: &[&str] = &["GRAFANA_DOUBLE_IMAGE"];

/// Refuses command-line arguments: `run.sh` passes `"$@"` on to `grafana
/// server`, and the double models none of its flags or `cfg:` overrides.
pub fn check_args(args: &[String]) -> Result<(), String> {
    match args.first() {
        None => Ok(()),
        Some(a) => Err(format!(
            "grafana-double: command-line argument {a:?} is not modelled (the double reads only the GF_* variables listed in tests/grafana-double/README.md); refusing to start"
        )),
    }
}

/// go-ini's boolean words (`MustBool`); anything else is refused instead of
/// silently falling back to the default as Grafana would.
pub fn parse_bool(name: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" | "YES" | "yes" | "Yes" | "y" | "ON" | "on" | "On" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" | "NO" | "no" | "No" | "n" | "OFF" | "off" | "Off" => Ok(false),
        _ => Err(format!("{name}={v:?} is not a boolean (Grafana would silently use the default); refusing to start")),
    }
}

/// Every non-empty `GF_*` variable must be in [`SETTINGS`] and every
/// `GRAFANA_DOUBLE_*` one in [`KNOBS`]. Empty values are skipped: Grafana
/// ignores empty overrides and `run.sh` tests its own variables with `-z`.
/// `GF_<X>__FILE` variables left here name the setting they would set.
pub fn check_env(env: &Env) -> Result<(), String> {
    let mut refused = Vec::new();
    for (k, v) in env {
        if v.is_empty() {
            continue;
        }
        if let Some(rest) = k.strip_prefix("GRAFANA_DOUBLE_") {
            if !KNOBS.contains(&k.as_str()) && !BUILD_VARS.contains(&k.as_str()) {
                refused.push(format!("{k} (unknown double knob GRAFANA_DOUBLE_{rest}; known: {})", KNOBS.join(", ")));
            }
            continue;
        }
        if !k.starts_with("GF_") {
            continue;
        }
        let name = k.strip_suffix("__FILE").unwrap_or(k);
        if !SETTINGS.iter().any(|s| s.name == name) {
            refused.push(k.clone());
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "grafana-double does not model {}; refusing to start rather than ignoring it (modelled settings: tests/grafana-double/README.md)",
            refused.join(", ")
        ))
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// `[server] http_addr`; empty means all interfaces.
    pub http_addr: String,
    pub http_port: u16,
    pub provisioning: PathBuf,
    /// `GF_PATHS_DATA`; `None` when unset: the database is then kept in
    /// memory (not Grafana, which would use `<home>/data`; see README).
    pub data: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub logs: Option<PathBuf>,
    pub plugins: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
    pub admin_user: String,
    pub admin_password: String,
    pub admin_email: String,
    pub disable_initial_admin_creation: bool,
    pub anonymous_enabled: bool,
    pub anonymous_org_role: String,
    pub basic_auth_enabled: bool,
    pub brute_force_protection: bool,
    pub brute_force_max_attempts: i64,
    /// Double-only knob (`GRAFANA_DOUBLE_PROVISION_DELAY_MS`): how long after
    /// the HTTP server is listening provisioning starts.
    pub provision_delay: Duration,
    /// Double-only knob (`GRAFANA_DOUBLE_DATASOURCE_TIMEOUT_MS`), default 30 s
    /// like Grafana's data proxy timeout.
    pub datasource_timeout: Duration,
    /// Double-only knob (`GRAFANA_DOUBLE_STARTUP_DELAY_MS`): how long a first
    /// start (a new database) waits before listening, standing in for
    /// Grafana's first-start migrations.
    pub startup_delay: Duration,
}

fn knob_ms(env: &Env, name: &str, default: u64) -> Result<Duration, String> {
    match env.get(name).filter(|v| !v.is_empty()) {
        Some(v) => v.parse::<u64>().map(Duration::from_millis).map_err(|_| format!("{name} must be a number of milliseconds, got {v:?}")),
        None => Ok(Duration::from_millis(default)),
    }
}

impl Config {
    /// Reads settings the way Grafana applies `GF_<SECTION>_<KEY>` overrides
    /// (an empty value is ignored and the default stays), after
    /// [`check_env`] has refused everything the double does not model.
    pub fn from_env(env: &Env) -> Result<Config, String> {
        check_env(env)?;
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        let get_bool = |k: &str, default: bool| get(k).map(|v| parse_bool(k, &v)).unwrap_or(Ok(default));
        let http_port = match get("GF_SERVER_HTTP_PORT") {
            Some(p) => p.parse::<u16>().map_err(|_| format!("failed to parse \"GF_SERVER_HTTP_PORT\": invalid port {p:?}"))?,
            None => 3000,
        };
        if let Some(url) = get("GF_SERVER_ROOT_URL") {
            let Some((_, rest)) = url.split_once("://") else {
                return Err(format!("Invalid root_url({url}): missing protocol scheme"));
            };
            let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
            let sub = path.trim_end_matches('/');
            if !sub.is_empty() {
                return Err(format!(
                    "GF_SERVER_ROOT_URL={url} has the sub-path {sub:?}: grafana-double does not model serving under a sub-path; refusing to start"
                ));
            }
        }
        if get_bool("GF_SERVER_SERVE_FROM_SUB_PATH", false)? {
            return Err("GF_SERVER_SERVE_FROM_SUB_PATH=true is not modelled by grafana-double; refusing to start".into());
        }
        if get_bool("GF_USERS_ALLOW_SIGN_UP", false)? {
            return Err("GF_USERS_ALLOW_SIGN_UP=true is not modelled by grafana-double (it has no sign-up); refusing to start".into());
        }
        let role = get("GF_AUTH_ANONYMOUS_ORG_ROLE").unwrap_or_else(|| "Viewer".into());
        if !["Viewer", "Editor", "Admin"].contains(&role.as_str()) {
            return Err(format!("GF_AUTH_ANONYMOUS_ORG_ROLE={role:?} is not one of Viewer, Editor, Admin; refusing to start"));
        }
        let max_attempts = match get("GF_SECURITY_BRUTE_FORCE_LOGIN_PROTECTION_MAX_ATTEMPTS") {
            Some(v) => v.parse::<i64>().map_err(|_| {
                format!("GF_SECURITY_BRUTE_FORCE_LOGIN_PROTECTION_MAX_ATTEMPTS={v:?} is not an integer (Grafana would silently use 5); refusing to start")
            })?,
            None => 5,
        };
        let path = |k: &str| get(k).map(PathBuf::from);
        Ok(Config {
            http_addr: get("GF_SERVER_HTTP_ADDR").unwrap_or_default(),
            http_port,
            provisioning: path("GF_PATHS_PROVISIONING").unwrap_or_else(|| PathBuf::from("/etc/grafana/provisioning")),
            data: path("GF_PATHS_DATA"),
            home: path("GF_PATHS_HOME"),
            logs: path("GF_PATHS_LOGS"),
            plugins: path("GF_PATHS_PLUGINS"),
            config_file: path("GF_PATHS_CONFIG"),
            admin_user: get("GF_SECURITY_ADMIN_USER").unwrap_or_else(|| "admin".into()),
            admin_password: get("GF_SECURITY_ADMIN_PASSWORD").unwrap_or_else(|| "admin".into()),
            admin_email: get("GF_SECURITY_ADMIN_EMAIL").unwrap_or_else(|| "admin@localhost".into()),
            disable_initial_admin_creation: get_bool("GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION", false)?,
            anonymous_enabled: get_bool("GF_AUTH_ANONYMOUS_ENABLED", false)?,
            anonymous_org_role: role,
            basic_auth_enabled: get_bool("GF_AUTH_BASIC_ENABLED", true)?,
            brute_force_protection: !get_bool("GF_SECURITY_DISABLE_BRUTE_FORCE_LOGIN_PROTECTION", false)?,
            brute_force_max_attempts: max_attempts,
            provision_delay: knob_ms(env, "GRAFANA_DOUBLE_PROVISION_DELAY_MS", 300)?,
            datasource_timeout: knob_ms(env, "GRAFANA_DOUBLE_DATASOURCE_TIMEOUT_MS", 30_000)?,
            startup_delay: knob_ms(env, "GRAFANA_DOUBLE_STARTUP_DELAY_MS", 0)?,
        })
    }

    /// Checks on the file system that Grafana (or `run.sh`) would act on:
    /// an ini file that sets something, or plugins in the plugins dir, would
    /// change Grafana's behaviour, and the double reads neither.
    pub fn check_files(&self) -> Result<(), String> {
        if let Some(f) = &self.config_file {
            if let Ok(text) = std::fs::read_to_string(f) {
                let set: Vec<&str> =
                    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with(';') && !l.starts_with('#') && !l.starts_with('[')).collect();
                if let Some(first) = set.first() {
                    return Err(format!(
                        "{} (GF_PATHS_CONFIG) sets {first:?}{}: grafana-double reads no ini file; refusing to start",
                        f.display(),
                        if set.len() > 1 { format!(" and {} more line(s)", set.len() - 1) } else { String::new() }
                    ));
                }
            }
        }
        if let Some(dir) = &self.plugins {
            if let Ok(rd) = std::fs::read_dir(dir) {
                let mut names: Vec<String> =
                    rd.filter_map(|e| e.ok()).filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
                names.sort();
                if !names.is_empty() {
                    return Err(format!(
                        "plugins found in {} (GF_PATHS_PLUGINS): {}; grafana-double loads no plugins; refusing to start",
                        dir.display(),
                        names.join(", ")
                    ));
                }
            }
        }
        Ok(())
    }

    /// The `Config overridden from Environment variable` lines Grafana logs,
    /// secrets masked as Grafana masks them.
    pub fn override_lines(env: &Env) -> Vec<String> {
        env.iter()
            .filter(|(k, v)| !v.is_empty() && SETTINGS.iter().any(|s| s.name == k.as_str()))
            .map(|(k, v)| {
                let upper = k.to_uppercase();
                let secret =
                    ["PASSWORD", "SECRET", "PROVIDER_CONFIG", "PRIVATE_KEY", "SECRET_KEY", "CERTIFICATE", "ACCOUNT_KEY", "ENCRYPTION_KEY", "VAULT_TOKEN"]
                        .iter()
                        .any(|w| upper.contains(w));
                format!("{k}={}", if secret { "*********" } else { v.as_str() })
            })
            .collect()
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
    fn unknown_settings_and_knobs_are_refused() {
        let e = Config::from_env(&env(&[("GF_INSTALL_PLUGINS", "grafana-clock-panel"), ("GF_SERVER_HTTP_PORT", "3000")])).unwrap_err();
        assert!(e.contains("GF_INSTALL_PLUGINS") && e.contains("refusing to start"), "{e}");
        let e = Config::from_env(&env(&[("GRAFANA_DOUBLE_PROVISON_DELAY_MS", "1")])).unwrap_err();
        assert!(e.contains("GRAFANA_DOUBLE_PROVISON_DELAY_MS"), "{e}");
        // an empty value changes nothing in Grafana either
        assert!(Config::from_env(&env(&[("GF_INSTALL_PLUGINS", "")])).is_ok());
        // a __FILE variable names the setting it would set
        assert!(Config::from_env(&env(&[("GF_SMTP_PASSWORD__FILE", "/x")])).unwrap_err().contains("GF_SMTP_PASSWORD__FILE"));
    }

    #[test]
    fn values_not_modelled_are_refused() {
        for (k, v) in [
            ("GF_SERVER_ROOT_URL", "https://example.com/grafana/"),
            ("GF_SERVER_SERVE_FROM_SUB_PATH", "true"),
            ("GF_USERS_ALLOW_SIGN_UP", "true"),
            ("GF_AUTH_BASIC_ENABLED", "maybe"),
            ("GF_SECURITY_BRUTE_FORCE_LOGIN_PROTECTION_MAX_ATTEMPTS", "five"),
        ] {
            let e = Config::from_env(&env(&[(k, v)])).unwrap_err();
            assert!(e.contains(k) && e.contains("refusing to start"), "{k}: {e}");
        }
        let c =
            Config::from_env(&env(&[("GF_SERVER_ROOT_URL", "http://localhost:3000/"), ("GF_USERS_ALLOW_SIGN_UP", "false"), ("GF_AUTH_BASIC_ENABLED", "0")]))
                .unwrap();
        assert!(!c.basic_auth_enabled);
    }

    #[test]
    fn arguments_are_refused() {
        assert!(check_args(&[]).is_ok());
        assert!(check_args(&["cfg:default.paths.data=/x".into()]).unwrap_err().contains("cfg:default.paths.data=/x"));
    }

    #[test]
    fn secrets_are_masked_in_override_lines() {
        let l = Config::override_lines(&env(&[("GF_SECURITY_ADMIN_PASSWORD", "s3cret"), ("GF_SERVER_HTTP_PORT", "3000"), ("PATH", "/bin")]));
        assert_eq!(l, ["GF_SECURITY_ADMIN_PASSWORD=*********", "GF_SERVER_HTTP_PORT=3000"]);
    }

    #[test]
    fn missing_file_leaves_default() {
        let (e, rep) = apply_file_vars(env(&[("GF_SECURITY_ADMIN_PASSWORD__FILE", "/nonexistent/pw")])).unwrap();
        assert_eq!(e.get("GF_SECURITY_ADMIN_PASSWORD").unwrap(), "");
        assert!(rep.stderr[0].contains("No such file or directory"));
        assert_eq!(Config::from_env(&e).unwrap().admin_password, "admin");
    }
}
