//! Host entries: where a stack is deployed and with which credentials.
//!
//! Read from `$STACKPROOF_HOSTS`, else `.stackproof/hosts.yml` in the current directory,
//! else `$XDG_CONFIG_HOME/stackproof/hosts.yml` (`~/.config/...`). Relative paths are
//! relative to the file's directory. The file is never committed: it points at keys.

pub mod receivers;

use crate::error::{Error, Kind, Result};
pub use receivers::ReceiverEntry;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsFile {
    hosts: BTreeMap<String, RawHost>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    address: String,
    #[serde(default = "default_port")]
    port: u16,
    user: String,
    identity_file: PathBuf,
    known_hosts: Option<PathBuf>,
    #[serde(default = "default_remote_dir")]
    remote_dir: String,
    #[serde(default = "default_docker_socket")]
    docker_socket: String,
    #[serde(default)]
    images: BTreeMap<String, String>,
    #[serde(default)]
    secrets: BTreeMap<String, SecretSource>,
    /// Prefer a systemd unit for the host exporter (`auto` detects systemd on the host).
    #[serde(default)]
    supervisor: Supervisor,
    /// Endpoints of the stack's host-given receivers (`receivers.from_host` in the manifest).
    #[serde(default)]
    receivers: BTreeMap<String, ReceiverEntry>,
    /// Why this host knowingly pages nobody yet (a staging box): receiver checks warn.
    #[serde(default)]
    unpaged: Option<String>,
}

fn default_port() -> u16 {
    22
}
fn default_remote_dir() -> String {
    "/srv/stackproof".into()
}
fn default_docker_socket() -> String {
    "/var/run/docker.sock".into()
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Supervisor {
    #[default]
    Auto,
    Systemd,
    Process,
}

/// Where a secret's value comes from. The value itself is only read when needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// `{file: PATH}` or `{env: VAR}`: serde_yaml reads enums as YAML tags, so the map form
/// is read through this struct and checked by hand.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    file: Option<PathBuf>,
    env: Option<String>,
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match RawSecret::deserialize(d)? {
            RawSecret { file: Some(f), env: None } => Ok(SecretSource::File(f)),
            RawSecret { file: None, env: Some(v) } => Ok(SecretSource::Env(v)),
            _ => Err(serde::de::Error::custom("a secret is either {file: PATH} or {env: VAR}")),
        }
    }
}

/// A secret value. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One resolved host entry.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub identity_file: PathBuf,
    pub known_hosts: Option<PathBuf>,
    pub remote_dir: String,
    pub docker_socket: String,
    pub images: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, SecretSource>,
    pub supervisor: Supervisor,
    pub receivers: BTreeMap<String, ReceiverEntry>,
    /// Why this host knowingly pages nobody yet; `None` on a host that must page.
    pub unpaged: Option<String>,
    /// The hosts file this entry came from (for error messages).
    pub source: PathBuf,
}

impl Host {
    /// Read the named secrets from this entry (before connecting, so a missing one
    /// stops the command before the host is touched).
    pub fn secrets(&self, names: &[String]) -> Result<BTreeMap<String, Secret>> {
        names.iter().map(|n| Ok((n.clone(), self.secret(n)?))).collect()
    }

    /// Read a secret named in this entry. Errors name the secret, never its value.
    pub fn secret(&self, name: &str) -> Result<Secret> {
        let src = self.secrets.get(name).ok_or_else(|| {
            Error::config(
                Kind::SecretMissing,
                format!("host {} has no value for secret `{name}` in {}", self.name, self.source.display()),
                format!("add `secrets: {{{name}: {{file: PATH}}}}` (or `{{env: VAR}}`) to the `{}` entry", self.name),
            )
        })?;
        self.read_secret(name, src)
    }

    /// Read a secret from its source; `name` says which (in errors, never the value).
    pub fn read_secret(&self, name: &str, src: &SecretSource) -> Result<Secret> {
        let value = match src {
            SecretSource::File(p) => std::fs::read_to_string(p).map_err(|e| {
                Error::config(
                    Kind::SecretMissing,
                    format!("secret `{name}` of host {}: cannot read {}: {e}", self.name, p.display()),
                    "create the file (mode 0600) or point the host entry at the right path",
                )
            })?,
            SecretSource::Env(var) => std::env::var(var).map_err(|_| {
                Error::config(
                    Kind::SecretMissing,
                    format!("secret `{name}` of host {}: environment variable {var} is not set", self.name),
                    format!("export {var}=... before running stackproof"),
                )
            })?,
        };
        let value = value.trim_end_matches(['\n', '\r']).to_string();
        if value.is_empty() {
            return Err(Error::config(Kind::SecretMissing, format!("secret `{name}` of host {} is empty", self.name), "set a non-empty value"));
        }
        Ok(Secret(value))
    }

    /// `user@address` for messages.
    pub fn display_target(&self) -> String {
        format!("{}@{}:{}", self.user, self.address, self.port)
    }
}

/// Which hosts file applies, in the documented order.
pub fn hosts_file_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STACKPROOF_HOSTS") {
        return Some(PathBuf::from(p));
    }
    let local = PathBuf::from(".stackproof/hosts.yml");
    if local.exists() {
        return Some(local);
    }
    let config_home = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    let p = config_home.join("stackproof/hosts.yml");
    p.exists().then_some(p)
}

/// Flow collections (`[`, `{`) nested deeper than this are refused before parsing: the
/// YAML reader checks every open flow level at each token, so depth d costs d² time (an
/// 80 KB file of brackets took 20 s).
pub const MAX_FLOW_DEPTH: usize = 512;

/// Line and column (1-based) where flow nesting first exceeds `MAX_FLOW_DEPTH`; quoted
/// scalars and comments are skipped. One linear pass.
pub fn flow_too_deep(text: &str) -> Option<(usize, usize)> {
    let (mut depth, mut line, mut col) = (0usize, 1usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut comment = false;
    let mut prev = '\n';
    for c in text.chars() {
        col += 1;
        if c == '\n' {
            line += 1;
            col = 0;
            comment = false;
        } else if comment {
        } else if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if q == '"' && c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
        } else {
            match c {
                '#' if prev.is_whitespace() => comment = true,
                '"' | '\'' if depth > 0 || prev.is_whitespace() || prev == ':' => quote = Some(c),
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Some((line, col));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        prev = c;
    }
    None
}

/// Load the named host from the hosts file that applies.
pub fn load_host(name: &str) -> Result<Host> {
    let path = hosts_file_path().ok_or_else(|| {
        Error::config(
            Kind::HostsFileMissing,
            "no hosts file: neither $STACKPROOF_HOSTS, .stackproof/hosts.yml nor ~/.config/stackproof/hosts.yml exists",
            "create .stackproof/hosts.yml (see README.md, \"Host entries\"), or run scripts/sandbox up for a local sandbox",
        )
    })?;
    load_host_from(&path, name)
}

pub fn load_host_from(path: &Path, name: &str) -> Result<Host> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::config(Kind::HostsFileUnreadable, format!("cannot read hosts file {}: {e}", path.display()), "check the path and its permissions")
    })?;
    if let Some((line, col)) = flow_too_deep(&text) {
        return Err(Error::config(
            Kind::HostsFileInvalid,
            format!("{}:{line}:{col}: `[`/`{{` nested more than {MAX_FLOW_DEPTH} deep", path.display()),
            "no host entry nests like this; a YAML reader spends time quadratic in the depth on it: fix the file",
        ));
    }
    let file: HostsFile = serde_yaml::from_str(&text).map_err(|e| {
        let at = e.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
        Error::config(Kind::HostsFileInvalid, format!("{}{at}: {e}", path.display()), "fix the entry; the keys are listed in README.md, \"Host entries\"")
    })?;
    let raw = file.hosts.get(name).cloned().ok_or_else(|| {
        let known: Vec<_> = file.hosts.keys().map(String::as_str).collect();
        Error::config(
            Kind::HostUnknown,
            format!("no host named `{name}` in {}", path.display()),
            if known.is_empty() { "the file defines no hosts; add one under `hosts:`".to_string() } else { format!("known hosts: {}", known.join(", ")) },
        )
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let abs = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
    let identity_file = abs(&raw.identity_file);
    if !identity_file.is_file() {
        return Err(Error::config(
            Kind::KeyMissing,
            format!("host `{name}` in {}: identity_file {} does not exist", path.display(), identity_file.display()),
            "point identity_file at the private key used to log in (relative paths are relative to the hosts file)",
        ));
    }
    let known_hosts = raw.known_hosts.as_deref().map(abs);
    if let Some(kh) = &known_hosts {
        if !kh.is_file() {
            return Err(Error::config(
                Kind::KnownHostsMissing,
                format!("host `{name}` in {}: known_hosts {} does not exist", path.display(), kh.display()),
                format!(
                    "write the host's key into it, e.g. `ssh-keyscan -p {} {} > {}` after checking the fingerprint out of band",
                    raw.port,
                    raw.address,
                    kh.display()
                ),
            ));
        }
    }
    if raw.address.is_empty() || raw.address.starts_with('-') || raw.address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::config(
            Kind::HostsFileInvalid,
            format!("host `{name}` in {}: address `{}` is not a host name or IP address", path.display(), raw.address.escape_debug()),
            "write a host name or an IP address (one starting with `-` would reach ssh as an option)",
        ));
    }
    if !raw.remote_dir.starts_with('/') {
        return Err(Error::config(
            Kind::HostsFileInvalid,
            format!("host `{name}` in {}: remote_dir `{}` must be an absolute path", path.display(), raw.remote_dir),
            "use e.g. /srv/stackproof",
        ));
    }
    let secrets = raw
        .secrets
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                SecretSource::File(p) => SecretSource::File(abs(&p)),
                other => other,
            };
            (k, v)
        })
        .collect();
    let mut receivers = raw.receivers;
    for (r, entry) in receivers.iter_mut() {
        if let Some(why) = receivers::problem(r, entry) {
            return Err(Error::config(
                Kind::HostsFileInvalid,
                format!("host `{name}` in {}: {why}", path.display()),
                "fix the entry under `receivers:` (see README.md, \"Pages: where alerts go\")",
            ));
        }
        for src in entry.sources_mut() {
            if let SecretSource::File(p) = src {
                *p = abs(p);
            }
        }
    }
    Ok(Host {
        name: name.to_string(),
        address: raw.address,
        port: raw.port,
        user: raw.user,
        identity_file,
        known_hosts,
        remote_dir: raw.remote_dir.trim_end_matches('/').to_string(),
        docker_socket: raw.docker_socket,
        images: raw.images,
        secrets,
        supervisor: raw.supervisor,
        receivers,
        unpaged: raw.unpaged.filter(|u| !u.trim().is_empty()),
        source: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn resolves_relative_paths_and_secrets() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sandbox")).unwrap();
        write(&d.path().join("sandbox"), "id", "key");
        write(&d.path().join("sandbox"), "kh", "[127.0.0.1]:2222 ssh-ed25519 AAAA");
        write(&d.path().join("sandbox"), "pw", "s3cret\n");
        let f = write(
            d.path(),
            "hosts.yml",
            "hosts:\n  sandbox:\n    address: 127.0.0.1\n    port: 2222\n    user: deploy\n    identity_file: sandbox/id\n    known_hosts: sandbox/kh\n    remote_dir: /srv/x/\n    images: {prometheus: 'r/p:1'}\n    secrets:\n      grafana_admin_password: {file: sandbox/pw}\n",
        );
        let h = load_host_from(&f, "sandbox").unwrap();
        assert_eq!(h.identity_file, d.path().join("sandbox/id"));
        assert_eq!(h.remote_dir, "/srv/x");
        assert_eq!(h.images["prometheus"], "r/p:1");
        let s = h.secret("grafana_admin_password").unwrap();
        assert_eq!(s.expose(), "s3cret");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
    }

    #[test]
    fn missing_host_names_the_file_and_known_hosts() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "hosts.yml", "hosts:\n  a:\n    address: x\n    user: u\n    identity_file: /nonexistent\n");
        let e = load_host_from(&f, "b").unwrap_err();
        assert_eq!(e.kind(), "host_unknown");
        assert!(e.to_string().contains("hosts.yml"), "{e}");
        assert!(e.hint().contains("known hosts: a"));
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn missing_key_file_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "hosts.yml", "hosts:\n  a:\n    address: x\n    user: u\n    identity_file: nope/id\n");
        let e = load_host_from(&f, "a").unwrap_err();
        assert_eq!(e.kind(), "key_missing");
        assert!(e.to_string().contains("nope/id"), "{e}");
    }

    #[test]
    fn unknown_key_in_entry_is_reported_with_line() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "hosts.yml", "hosts:\n  a:\n    address: x\n    user: u\n    identity_fil: k\n");
        let e = load_host_from(&f, "a").unwrap_err();
        assert_eq!(e.kind(), "hosts_file_invalid");
        assert!(e.to_string().contains("identity_fil"), "{e}");
        assert!(e.to_string().contains("hosts.yml:5"), "{e}");
    }

    #[test]
    fn env_secret_missing_names_variable_not_value() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "id", "k");
        let f = write(
            d.path(),
            "hosts.yml",
            "hosts:\n  a:\n    address: x\n    user: u\n    identity_file: id\n    secrets: {pw: {env: STACKPROOF_TEST_UNSET_VAR_XYZ}}\n",
        );
        let h = load_host_from(&f, "a").unwrap();
        let e = h.secret("pw").unwrap_err();
        assert!(e.to_string().contains("STACKPROOF_TEST_UNSET_VAR_XYZ"));
    }

    #[test]
    fn deep_flow_nesting_is_refused_fast_with_its_position() {
        let d = tempfile::tempdir().unwrap();
        let deep = format!("hosts:\n  a: {}{}\n", "[".repeat(40_000), "]".repeat(40_000));
        let f = write(d.path(), "hosts.yml", &deep);
        let t = std::time::Instant::now();
        let e = load_host_from(&f, "a").unwrap_err();
        assert!(t.elapsed() < std::time::Duration::from_millis(500), "{:?}", t.elapsed());
        assert!(e.to_string().contains("hosts.yml:2:518: `[`/`{` nested more than 512 deep"), "{e}");
        assert_eq!(e.exit_code(), 2);
        // Brackets inside quotes and comments do not count; real nesting is fine.
        let quoted = format!("a: '{}'\nb: \"{}\" # {}\nc: [[1], {{x: [2]}}]\n", "[".repeat(600), "{".repeat(600), "[".repeat(600));
        assert_eq!(flow_too_deep(&quoted), None);
        assert_eq!(flow_too_deep(&format!("a: {}", "{x: ".repeat(513))), Some((1, 4 + 4 * 512)));
    }

    #[test]
    fn an_address_that_ssh_would_read_as_an_option_is_refused() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "id", "key");
        for bad in ["-oProxyCommand=touch /tmp/x", "'-p 1'", "'a b'", "''"] {
            let f = write(d.path(), "hosts.yml", &format!("hosts:\n  a:\n    address: {bad}\n    user: u\n    identity_file: id\n"));
            let e = load_host_from(&f, "a").unwrap_err();
            assert!(e.to_string().contains("is not a host name or IP address"), "{bad}: {e}");
        }
    }
}
