//! Typed models of Prometheus' configuration and rule files, with Prometheus' own
//! duration syntax. `lint` validates them; the drill computes timing bounds from them
//! (scrape interval per job, evaluation interval, `for`).
//!
//! Structs keep keys they do not model in `extra`, so `lint` can tell unknown keys
//! (Prometheus reads its files strictly) from keys a newer release introduced.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::time::Duration;

pub type Extra = BTreeMap<String, serde_yaml::Value>;

/// Parse a Prometheus duration (`model.ParseDuration`): units `y w d h m s ms` in that
/// order, each at most once, integers only, e.g. `1h30m`, `5m`, `0`, `1w`.
/// Hand-written because no crate implements exactly Prometheus' grammar (humantime
/// accepts spaces, fractions and other units Prometheus rejects).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration string".into());
    }
    const UNITS: [(&str, u64); 7] =
        [("y", 365 * 86_400_000), ("w", 7 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)];
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut next_unit = 0; // index into UNITS: units must come in decreasing order
    let mut total: u64 = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(format!("not a valid duration string: {s:?}"));
        }
        let n: u64 = s[start..i].parse().map_err(|_| format!("not a valid duration string: {s:?}"))?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ustart..i];
        let pos = UNITS
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(|| format!("not a valid duration string: {s:?} (unknown unit {unit:?}; use y, w, d, h, m, s or ms)"))?;
        if pos < next_unit {
            return Err(format!("not a valid duration string: {s:?} (units must go from largest to smallest, each once)"));
        }
        next_unit = pos + 1;
        total = n.checked_mul(UNITS[pos].1).and_then(|v| total.checked_add(v)).ok_or_else(|| format!("duration out of range: {s:?}"))?;
    }
    Ok(Duration::from_millis(total))
}

/// A scalar read as text whatever its YAML type (`for: 5m`, `expr: 1`, `port: 9090`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_yaml::Value::deserialize(d)?;
        match v {
            serde_yaml::Value::String(s) => Ok(Text(s)),
            serde_yaml::Value::Number(n) => Ok(Text(n.to_string())),
            serde_yaml::Value::Bool(b) => Ok(Text(b.to_string())),
            serde_yaml::Value::Null => Ok(Text(String::new())),
            _ => Err(serde::de::Error::custom("expected a string")),
        }
    }
}

impl Text {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Parse as a Prometheus duration.
    pub fn duration(&self) -> Result<Duration, String> {
        parse_duration(&self.0)
    }
}

use super::null_as_default;

// ---------------------------------------------------------------------------------------
// prometheus.yml

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    #[serde(default, deserialize_with = "null_as_default")]
    pub global: Global,
    #[serde(default, deserialize_with = "null_as_default")]
    pub rule_files: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub scrape_configs: Vec<ScrapeConfig>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub alerting: Alerting,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Global {
    pub scrape_interval: Option<Text>,
    pub scrape_timeout: Option<Text>,
    pub evaluation_interval: Option<Text>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub external_labels: BTreeMap<String, Text>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub scrape_interval: Option<Text>,
    pub scrape_timeout: Option<Text>,
    pub metrics_path: Option<String>,
    pub scheme: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub static_configs: Vec<StaticConfig>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StaticConfig {
    #[serde(default, deserialize_with = "null_as_default")]
    pub targets: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, Text>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Alerting {
    #[serde(default, deserialize_with = "null_as_default")]
    pub alertmanagers: Vec<AlertmanagerConfig>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AlertmanagerConfig {
    pub scheme: Option<String>,
    pub path_prefix: Option<String>,
    pub timeout: Option<Text>,
    pub api_version: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub static_configs: Vec<StaticConfig>,
    #[serde(flatten)]
    pub extra: Extra,
}

pub const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(60);

impl Config {
    pub fn from_yaml(text: &str) -> Result<Config, serde_yaml::Error> {
        let c: Option<Config> = serde_yaml::from_str(text)?;
        Ok(c.unwrap_or_default())
    }

    pub fn global_scrape_interval(&self) -> Duration {
        self.global.scrape_interval.as_ref().and_then(|t| t.duration().ok()).unwrap_or(DEFAULT_SCRAPE_INTERVAL)
    }

    pub fn evaluation_interval(&self) -> Duration {
        self.global.evaluation_interval.as_ref().and_then(|t| t.duration().ok()).unwrap_or(DEFAULT_EVALUATION_INTERVAL)
    }

    pub fn job(&self, name: &str) -> Option<&ScrapeConfig> {
        self.scrape_configs.iter().find(|j| j.job_name == name)
    }

    /// The scrape interval a job really uses (its own, else the global one).
    pub fn scrape_interval(&self, job: &str) -> Option<Duration> {
        let j = self.job(job)?;
        Some(j.scrape_interval.as_ref().and_then(|t| t.duration().ok()).unwrap_or_else(|| self.global_scrape_interval()))
    }

    /// A job's scrape timeout as Prometheus applies it: its own, else the global one, else
    /// Prometheus' 10 s default, never more than its scrape interval.
    pub fn scrape_timeout(&self, job: &str) -> Option<Duration> {
        let j = self.job(job)?;
        let t = j
            .scrape_timeout
            .as_ref()
            .and_then(|t| t.duration().ok())
            .or_else(|| self.global.scrape_timeout.as_ref().and_then(|t| t.duration().ok()))
            .unwrap_or(Duration::from_secs(10));
        Some(t.min(self.scrape_interval(job)?))
    }
}

// ---------------------------------------------------------------------------------------
// Rule files

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuleFile {
    #[serde(default, deserialize_with = "null_as_default")]
    pub groups: Vec<RuleGroup>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuleGroup {
    pub name: String,
    pub interval: Option<Text>,
    pub limit: Option<Text>,
    pub query_offset: Option<Text>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, Text>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub rules: Vec<Rule>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Rule {
    pub alert: Option<String>,
    pub record: Option<String>,
    #[serde(default)]
    pub expr: Text,
    #[serde(rename = "for")]
    pub for_: Option<Text>,
    pub keep_firing_for: Option<Text>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, Text>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, Text>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RuleFile {
    /// Parse a rule file. A file that is just `null` (or empty) has no groups, as in
    /// Prometheus' rulefmt.
    pub fn from_yaml(text: &str) -> Result<RuleFile, serde_yaml::Error> {
        let f: Option<RuleFile> = serde_yaml::from_str(text)?;
        Ok(f.unwrap_or_default())
    }

    /// Find an alerting rule by name: (group, rule).
    pub fn alert(&self, name: &str) -> Option<(&RuleGroup, &Rule)> {
        self.groups.iter().find_map(|g| g.rules.iter().find(|r| r.alert.as_deref() == Some(name)).map(|r| (g, r)))
    }
}

impl Rule {
    /// `for`, or zero.
    pub fn for_duration(&self) -> Duration {
        self.for_.as_ref().and_then(|t| t.duration().ok()).unwrap_or(Duration::ZERO)
    }
    /// The rule's name (alert or record).
    pub fn name(&self) -> &str {
        self.alert.as_deref().or(self.record.as_deref()).unwrap_or("")
    }
}

impl RuleGroup {
    /// The group's evaluation interval: its own, else the global one.
    pub fn interval_or(&self, global: Duration) -> Duration {
        self.interval.as_ref().and_then(|t| t.duration().ok()).unwrap_or(global)
    }

    /// The rules Prometheus loads: alerting or recording ones (a rule with neither is invalid).
    pub fn named_rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|r| r.alert.is_some() || r.record.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_prometheus() {
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1w").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0m").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1500ms").unwrap(), Duration::from_millis(1500));
        for bad in ["", "5", "5 m", "1.5m", "30m1h", "1mm", "5min", "-1m", "m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn null_rule_file_has_no_groups() {
        assert!(RuleFile::from_yaml("null\n").unwrap().groups.is_empty());
        assert!(RuleFile::from_yaml("").unwrap().groups.is_empty());
    }

    #[test]
    fn config_intervals() {
        let c = Config::from_yaml("global: {scrape_interval: 15s}\nscrape_configs:\n- job_name: a\n  scrape_interval: 5s\n- job_name: b\n").unwrap();
        assert_eq!(c.scrape_interval("a"), Some(Duration::from_secs(5)));
        assert_eq!(c.scrape_interval("b"), Some(Duration::from_secs(15)));
        assert_eq!(c.evaluation_interval(), Duration::from_secs(60));
    }
}
