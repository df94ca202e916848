//! The stack manifest, `stack/stackproof.yml`: what runs where, which files each service
//! reads, and what `verify`, the drill, `watch` and the gate expect.
//!
//! Every struct denies unknown keys, so a misspelt key is a lint error with its line.
//! The manifest knows every key of docs/architecture.md "The stack manifest" from the start, also those whose
//! feature arrives later.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where the remote directory is mounted (read-only) in every container. Services read
/// their files through `<CONTAINER_ROOT>/current/...`, so a new release becomes visible
/// to a running container when `current` is swapped (a reload, not a recreate).
pub const CONTAINER_ROOT: &str = "/stackproof";
/// `CONTAINER_ROOT` + `/current`: the current release as seen from inside a container.
pub const CONTAINER_CURRENT: &str = "/stackproof/current";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub services: BTreeMap<String, Service>,
    pub host_exporter: HostExporter,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub metrics: Metrics,
    #[serde(default)]
    pub deploy: DeployConfig,
    #[serde(default)]
    pub receivers: ReceiversConfig,
    #[serde(default)]
    pub verify: VerifyConfig,
    #[serde(default)]
    pub drill: DrillConfig,
    #[serde(default)]
    pub watch: WatchConfig,
    #[serde(default)]
    pub gate: GateConfig,
}

/// The four service names docs/architecture.md "The stack manifest" fixes.
pub const SERVICE_NAMES: [&str; 4] = ["prometheus", "grafana", "alertmanager", "node_exporter"];

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Official image reference; a host entry's `images:` may override it.
    pub image: String,
    /// `uid[:gid]` the container runs as; secrets are owned by it.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<Port>,
    /// Stack paths (files or directories, relative to the stack dir) this service reads.
    /// A change in them reloads the service (if it has `reload`) or recreates it.
    #[serde(default)]
    pub files: Vec<String>,
    /// Stack paths the service re-reads by itself (Grafana polls its dashboard folder):
    /// a change there needs neither a reload nor a new container.
    #[serde(default)]
    pub watched: Vec<String>,
    /// Secrets copied into the container (owned by `user`, mode 0400) before it starts.
    #[serde(default)]
    pub secrets: Vec<SecretMount>,
    /// Named Docker volumes (labelled like every stackproof object).
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    /// HTTP path that answers 200 when the service is ready (on the first port).
    #[serde(default)]
    pub health: Option<String>,
    /// HTTP path to POST to reload the configuration without a restart.
    #[serde(default)]
    pub reload: Option<String>,
    /// Share the host's PID namespace (node-exporter).
    #[serde(default)]
    pub host_pid: bool,
    /// Mount the host's root filesystem read-only at `/host` (node-exporter).
    #[serde(default)]
    pub host_rootfs: bool,
    /// Memory limit (`512m`, `1g`; binary units). Default `DEFAULT_MEMORY`.
    #[serde(default)]
    pub memory: Option<Memory>,
    /// Capabilities added back after every one is dropped (none of the default stack's
    /// images needs one: they all run as an unprivileged user).
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// Read-only root filesystem (the service writes only to its volumes and a `/tmp`
    /// tmpfs). Default: true, unless the service has `secrets` (they are copied into the
    /// container's filesystem before it starts, which a read-only root refuses).
    #[serde(default)]
    pub read_only: Option<bool>,
}

/// A service's memory limit when the manifest gives none: a ceiling that keeps one
/// runaway service from taking the host down, not a tuning.
pub const DEFAULT_MEMORY: u64 = 1 << 30;

/// A memory size in bytes, written `512m`, `1g`, `65536k` or a plain number of bytes.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Memory(pub u64);

impl Memory {
    /// Docker refuses limits under 6 MiB.
    pub const MIN: u64 = 6 << 20;

    pub fn parse(s: &str) -> Result<Memory, String> {
        let t = s.trim().to_ascii_lowercase();
        let t = t.strip_suffix("ib").or_else(|| t.strip_suffix('b').filter(|r| r.ends_with(['k', 'm', 'g']))).unwrap_or(&t);
        let (num, mult) = match t.chars().last() {
            Some('k') => (&t[..t.len() - 1], 1u64 << 10),
            Some('m') => (&t[..t.len() - 1], 1 << 20),
            Some('g') => (&t[..t.len() - 1], 1 << 30),
            _ => (t, 1),
        };
        let n: u64 = num.trim().parse().map_err(|_| format!("invalid memory size `{s}`: write e.g. `512m` or `1g`"))?;
        let bytes = n.checked_mul(mult).ok_or_else(|| format!("memory size `{s}` is too large"))?;
        if bytes < Memory::MIN {
            return Err(format!("memory size `{s}` is below Docker's minimum of 6m"));
        }
        Ok(Memory(bytes))
    }
}

impl<'de> Deserialize<'de> for Memory {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Memory, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        let s = match Raw::deserialize(d)? {
            Raw::N(n) => n.to_string(),
            Raw::S(s) => s,
        };
        Memory::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Service {
    pub fn memory_bytes(&self) -> u64 {
        self.memory.map(|m| m.0).unwrap_or(DEFAULT_MEMORY)
    }

    pub fn read_only_root(&self) -> bool {
        self.read_only.unwrap_or(self.secrets.is_empty())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub port: u16,
    /// Bind on all interfaces instead of 127.0.0.1 (the service's own flag must agree).
    #[serde(default)]
    pub public: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SecretMount {
    pub name: String,
    pub dest: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    pub name: String,
    pub dest: String,
}

/// The host exporter: a plain process on the VPS (not a container), supervised.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostExporter {
    /// argv, run with the current release as working directory.
    pub command: Vec<String>,
    /// Stack paths the exporter needs; a change restarts it.
    #[serde(default)]
    pub files: Vec<String>,
    pub port: u16,
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_metrics_path() -> String {
    "/metrics".into()
}

/// Metric names the stack's own programs expose (beyond the catalogues of the pinned
/// Prometheus, Alertmanager and node-exporter).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Series names the host exporter exposes (histograms with their _bucket/_sum/_count).
    #[serde(default)]
    pub host_exporter: Vec<String>,
    /// Series names stackproof publishes through node-exporter's textfile collector.
    #[serde(default)]
    pub textfile: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// Prometheus job names that must be `up`.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Dashboard uids that must be visible in Grafana.
    #[serde(default)]
    pub dashboards: Vec<String>,
    /// Upper bound for the whole verification (checks poll within it).
    #[serde(default = "default_verify_timeout", with = "humantime_serde_str")]
    pub timeout: std::time::Duration,
}

/// Receivers of the Alertmanager config whose endpoints each host entry gives
/// (`receivers:` in hosts.yml): the stack keeps the routing tree, the host the pager.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReceiversConfig {
    /// Declared in alertmanager.yml by name only (no integration); stackproof renders
    /// each host's integrations into the config it deploys there.
    #[serde(default)]
    pub from_host: Vec<String>,
}

/// Budgets of a deploy's own steps (before the checks' `verify.timeout` starts).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// Upper bound for pulling the images a deploy needs; the readiness deadline of the
    /// containers (`verify.timeout`) starts only after the pulls, so a slow registry
    /// does not eat the verification's time.
    #[serde(default = "default_pull_timeout", with = "humantime_serde_str")]
    pub pull_timeout: std::time::Duration,
}

fn default_pull_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(600)
}

impl Default for DeployConfig {
    fn default() -> Self {
        DeployConfig { pull_timeout: default_pull_timeout() }
    }
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig { targets: vec![], dashboards: vec![], timeout: default_verify_timeout() }
    }
}

fn default_verify_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    /// The drill alert (short `for`), in rule group `stackproof-drill`.
    #[serde(default = "default_drill_alert")]
    pub alert: String,
    /// The stack's real alert on the same condition.
    #[serde(default = "default_real_alert")]
    pub real_alert: String,
    /// Alertmanager receiver that reaches stackproof's own webhook.
    #[serde(default = "default_drill_receiver")]
    pub receiver: String,
    /// Port on the host's loopback where the reverse tunnel to the webhook listens.
    #[serde(default = "default_drill_port")]
    pub port: u16,
    /// The whole drill must finish within this; longer bounds are refused up front.
    #[serde(default = "default_drill_timeout", with = "humantime_serde_str")]
    pub timeout: std::time::Duration,
    /// The same for `--drill-real`, which waits for the stack's real alert (its own
    /// `for`) to reach its real receiver: longer than a drill a deploy runs.
    #[serde(default = "default_drill_real_timeout", with = "humantime_serde_str")]
    pub real_timeout: std::time::Duration,
    /// Prometheus job of the host exporter (the drill stops it).
    #[serde(default = "default_drill_job")]
    pub job: String,
}

impl Default for DrillConfig {
    fn default() -> Self {
        DrillConfig {
            alert: default_drill_alert(),
            real_alert: default_real_alert(),
            receiver: default_drill_receiver(),
            port: default_drill_port(),
            timeout: default_drill_timeout(),
            real_timeout: default_drill_real_timeout(),
            job: default_drill_job(),
        }
    }
}

fn default_drill_alert() -> String {
    "StackproofDrill".into()
}
fn default_real_alert() -> String {
    "HostExporterDown".into()
}
fn default_drill_receiver() -> String {
    "stackproof-drill".into()
}
fn default_drill_port() -> u16 {
    9799
}
fn default_drill_real_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(300)
}

fn default_drill_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(120)
}
fn default_drill_job() -> String {
    "host-exporter".into()
}

/// The re-verification schedule: `every` until `until` after the start, step by step.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    #[serde(default = "default_protocol")]
    pub protocol: Vec<WatchStep>,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig { protocol: default_protocol() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WatchStep {
    #[serde(with = "humantime_serde_str")]
    pub until: std::time::Duration,
    #[serde(with = "humantime_serde_str")]
    pub every: std::time::Duration,
}

fn default_protocol() -> Vec<WatchStep> {
    let h = |n: u64| std::time::Duration::from_secs(n * 3600);
    vec![
        WatchStep { until: h(12), every: std::time::Duration::from_secs(1800) },
        WatchStep { until: h(24), every: h(1) },
        WatchStep { until: h(48), every: h(2) },
    ]
}

/// Go/no-go criteria, each a PromQL query whose value is compared with thresholds.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    #[serde(default)]
    pub criteria: Vec<GateCriterion>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GateCriterion {
    pub name: String,
    /// PromQL returning one value (or none, see `when_empty`).
    pub query: String,
    /// Whether larger values are better (`higher`, pass rate) or worse (`lower`, error rate).
    pub better: Better,
    /// Boundary between green and yellow.
    pub yellow: f64,
    /// Boundary between yellow and red; without it the criterion is never red.
    #[serde(default)]
    pub red: Option<f64>,
    /// Level when the query returns no sample (e.g. `count()` of nothing).
    #[serde(default = "default_when_empty")]
    pub when_empty: Level,
}

fn default_when_empty() -> Level {
    Level::Yellow
}

/// A gate level. Ordered: green < yellow < red.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Green,
    Yellow,
    Red,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

/// Durations in the manifest are written like `30s`, `5m`, `12h` (humantime), at least 1s.
mod humantime_serde_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        let v = humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("invalid duration `{s}`: {e}")))?;
        // Every duration of the manifest bounds or spaces network round trips: `0s`
        // would fail every check at once (or spin), so it is refused where it is written.
        if v < Duration::from_secs(1) {
            return Err(serde::de::Error::custom(format!("duration `{s}` is too short: at least 1s")));
        }
        Ok(v)
    }
}

impl Manifest {
    /// The port a service listens on (its first manifest port).
    pub fn service_port(&self, service: &str) -> Option<u16> {
        self.services.get(service).and_then(|s| s.ports.first()).map(|p| p.port)
    }

    /// Every listening port of the stack and who listens there: service name, or
    /// `host_exporter` for the host exporter.
    pub fn ports(&self) -> BTreeMap<u16, String> {
        let mut out: BTreeMap<u16, String> = self.services.iter().flat_map(|(name, s)| s.ports.iter().map(move |p| (p.port, name.clone()))).collect();
        out.insert(self.host_exporter.port, "host_exporter".into());
        out
    }

    /// The Grafana admin user the stack configures (`GF_SECURITY_ADMIN_USER`, default admin).
    pub fn grafana_admin(&self) -> String {
        self.services.get("grafana").and_then(|g| g.env.get("GF_SECURITY_ADMIN_USER").cloned()).unwrap_or_else(|| "admin".into())
    }

    /// Parse a manifest; errors carry the parser's line and column.
    pub fn from_yaml(text: &str) -> Result<Manifest, serde_yaml::Error> {
        serde_yaml::from_str(text)
    }

    /// The image to run for a service on a host: the host's override, else the manifest's.
    pub fn image_for<'a>(&'a self, service: &str, overrides: &'a BTreeMap<String, String>) -> Option<&'a str> {
        overrides.get(service).map(String::as_str).or_else(|| self.services.get(service).map(|s| s.image.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_stack_manifest_parses() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/stack/stackproof.yml")).unwrap();
        let m = Manifest::from_yaml(&text).unwrap();
        for s in SERVICE_NAMES {
            assert!(m.services.contains_key(s), "service {s} missing");
        }
        assert_eq!(m.drill.alert, "StackproofDrill");
        assert_eq!(m.watch.protocol.len(), 3);
        assert_eq!(m.service_port("grafana"), Some(3000));
        let ports = m.ports();
        assert_eq!(ports.get(&9090).map(String::as_str), Some("prometheus"));
        assert_eq!(ports.get(&m.host_exporter.port).map(String::as_str), Some("host_exporter"));
    }

    #[test]
    fn unknown_key_is_rejected_with_line() {
        let e = Manifest::from_yaml("name: x\nservices: {}\nhost_exporter: {command: [a], port: 1}\nverfy: {}\n").unwrap_err();
        assert!(e.to_string().contains("verfy"), "{e}");
        assert_eq!(e.location().unwrap().line(), 4);
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(Memory::parse("512m"), Ok(Memory(512 << 20)));
        assert_eq!(Memory::parse("1g"), Ok(Memory(1 << 30)));
        assert_eq!(Memory::parse("1GiB"), Ok(Memory(1 << 30)));
        assert_eq!(Memory::parse("65536k"), Ok(Memory(64 << 20)));
        assert_eq!(Memory::parse("10485760"), Ok(Memory(10 << 20)));
        assert!(Memory::parse("1m").unwrap_err().contains("minimum"));
        assert!(Memory::parse("lots").is_err());
        assert!(Memory::parse("99999999999g").is_err());
        let e = Manifest::from_yaml("name: x\nservices: {p: {image: i, memory: 12x}}\nhost_exporter: {command: [a], port: 1}\n").unwrap_err();
        assert!(e.to_string().contains("invalid memory size"), "{e}");
        let m = Manifest::from_yaml(
            "name: x\nservices: {p: {image: i, memory: 64m}, q: {image: i, secrets: [{name: s, dest: /s}]}}\nhost_exporter: {command: [a], port: 1}\n",
        )
        .unwrap();
        assert_eq!(m.services["p"].memory_bytes(), 64 << 20);
        assert_eq!(m.services["q"].memory_bytes(), DEFAULT_MEMORY);
        assert!(m.services["p"].read_only_root() && !m.services["q"].read_only_root());
    }

    #[test]
    fn zero_and_sub_second_durations_are_refused_with_their_line() {
        let base = "name: x\nservices: {}\nhost_exporter: {command: [a], port: 1}\n";
        for (k, v) in [("verify", "timeout: 0s"), ("drill", "timeout: 0s"), ("drill", "real_timeout: 500ms"), ("deploy", "pull_timeout: 0s")] {
            let e = Manifest::from_yaml(&format!("{base}{k}:\n  {v}\n")).unwrap_err();
            assert!(e.to_string().contains("too short: at least 1s"), "{k}.{v}: {e}");
            assert_eq!(e.location().map(|l| l.line()), Some(5), "{k}.{v}: {e}");
        }
        assert!(Manifest::from_yaml(&format!("{base}watch:\n  protocol: [{{until: 1h, every: 0s}}]\n")).is_err());
        assert!(Manifest::from_yaml(&format!("{base}verify:\n  timeout: 1s\n")).is_ok());
    }
}
