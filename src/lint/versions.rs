//! Which keys each Prometheus/Alertmanager release reads. Both read their files strictly
//! (Go `UnmarshalStrict`), so a key the pinned release does not know stops it from
//! starting. Inside a stack the pinned image's version decides; lone files are read
//! with the versions stackproof pins by default (`Version::PINNED_*`).
//!
//! Versions come from the upstream changelogs and config structs (research notes and
//! the realworld README: `tracing` in Alertmanager 0.30, route `labels` in 0.34).

use super::{Severity, Sink, Source};
use crate::stack::prometheus::Extra;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// Read with current syntax.
    pub const CURRENT: Version = Version(u32::MAX, 0, 0);
    /// What a lone file is checked against: the releases stackproof pins (the default
    /// stack's images, `stack/stackproof.yml`), so a key they refuse is an error alone too.
    pub const PINNED_PROMETHEUS: Version = Version(2, 42, 0);
    pub const PINNED_ALERTMANAGER: Version = Version(0, 25, 0);

    /// The version in an image reference's tag: `prom/alertmanager:v0.25.0` -> 0.25.0.
    pub fn from_image(image: &str) -> Option<Version> {
        let tag = image.rsplit_once(':').map(|(_, t)| t).filter(|t| !t.contains('/'))?;
        let tag = tag.trim_start_matches('v');
        let core = tag.split(['-', '+']).next()?;
        let mut it = core.split('.').map(|p| p.parse::<u32>());
        Some(Version(it.next()?.ok()?, it.next().unwrap_or(Ok(0)).ok()?, it.next().unwrap_or(Ok(0)).ok()?))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Version::CURRENT {
            write!(f, "current")
        } else {
            write!(f, "v{}.{}.{}", self.0, self.1, self.2)
        }
    }
}

const fn v(a: u32, b: u32) -> Version {
    Version(a, b, 0)
}
const ALWAYS: Version = Version(0, 0, 0);

/// (key, first version that reads it)
pub type Keys = &'static [(&'static str, Version)];

pub const PROM_TOP: Keys = &[
    ("global", ALWAYS),
    ("rule_files", ALWAYS),
    ("scrape_configs", ALWAYS),
    ("alerting", ALWAYS),
    ("remote_write", ALWAYS),
    ("remote_read", ALWAYS),
    ("storage", ALWAYS),
    ("tracing", v(2, 32)),
    ("scrape_config_files", v(2, 43)),
    ("otlp", v(2, 55)),
    ("runtime", v(2, 53)),
];
pub const PROM_GLOBAL: Keys = &[
    ("scrape_interval", ALWAYS),
    ("scrape_timeout", ALWAYS),
    ("evaluation_interval", ALWAYS),
    ("external_labels", ALWAYS),
    ("query_log_file", ALWAYS),
    ("body_size_limit", ALWAYS),
    ("sample_limit", ALWAYS),
    ("label_limit", ALWAYS),
    ("label_name_length_limit", ALWAYS),
    ("label_value_length_limit", ALWAYS),
    ("target_limit", ALWAYS),
    ("keep_dropped_targets", v(2, 47)),
    ("scrape_protocols", v(2, 49)),
    ("rule_query_offset", v(2, 53)),
    ("metric_name_validation_scheme", v(3, 0)),
    ("scrape_failure_log_file", v(2, 55)),
    ("always_scrape_classic_histograms", v(3, 0)),
    ("convert_classic_histograms_to_nhcb", v(3, 0)),
];
pub const PROM_SCRAPE: Keys = &[
    ("job_name", ALWAYS),
    ("scrape_interval", ALWAYS),
    ("scrape_timeout", ALWAYS),
    ("metrics_path", ALWAYS),
    ("scheme", ALWAYS),
    ("params", ALWAYS),
    ("honor_labels", ALWAYS),
    ("honor_timestamps", ALWAYS),
    ("static_configs", ALWAYS),
    ("file_sd_configs", ALWAYS),
    ("dns_sd_configs", ALWAYS),
    ("http_sd_configs", ALWAYS),
    ("consul_sd_configs", ALWAYS),
    ("docker_sd_configs", ALWAYS),
    ("dockerswarm_sd_configs", ALWAYS),
    ("kubernetes_sd_configs", ALWAYS),
    ("ec2_sd_configs", ALWAYS),
    ("gce_sd_configs", ALWAYS),
    ("azure_sd_configs", ALWAYS),
    // The other service discoveries Prometheus 2.42 ships (28 in all with the above;
    // `discovery/install`): each reads `<name>_sd_configs` in a scrape config.
    ("digitalocean_sd_configs", ALWAYS),
    ("eureka_sd_configs", ALWAYS),
    ("hetzner_sd_configs", ALWAYS),
    ("ionos_sd_configs", v(2, 36)),
    ("kuma_sd_configs", ALWAYS),
    ("lightsail_sd_configs", ALWAYS),
    ("linode_sd_configs", ALWAYS),
    ("marathon_sd_configs", ALWAYS),
    ("nerve_sd_configs", ALWAYS),
    ("nomad_sd_configs", v(2, 36)),
    ("openstack_sd_configs", ALWAYS),
    ("ovhcloud_sd_configs", v(2, 40)),
    ("puppetdb_sd_configs", ALWAYS),
    ("scaleway_sd_configs", ALWAYS),
    ("serverset_sd_configs", ALWAYS),
    ("triton_sd_configs", ALWAYS),
    ("uyuni_sd_configs", ALWAYS),
    ("vultr_sd_configs", v(2, 37)),
    ("stackit_sd_configs", v(3, 1)),
    ("relabel_configs", ALWAYS),
    ("metric_relabel_configs", ALWAYS),
    ("sample_limit", ALWAYS),
    ("label_limit", ALWAYS),
    ("label_name_length_limit", ALWAYS),
    ("label_value_length_limit", ALWAYS),
    ("target_limit", ALWAYS),
    ("body_size_limit", ALWAYS),
    ("basic_auth", ALWAYS),
    ("authorization", ALWAYS),
    ("oauth2", ALWAYS),
    ("bearer_token", ALWAYS),
    ("bearer_token_file", ALWAYS),
    ("tls_config", ALWAYS),
    ("proxy_url", ALWAYS),
    ("no_proxy", ALWAYS),
    ("proxy_from_environment", ALWAYS),
    ("proxy_connect_header", ALWAYS),
    ("follow_redirects", ALWAYS),
    ("enable_http2", ALWAYS),
    ("scrape_classic_histograms", v(2, 45)),
    ("native_histogram_bucket_limit", v(2, 45)),
    ("keep_dropped_targets", v(2, 47)),
    ("scrape_protocols", v(2, 49)),
    ("enable_compression", v(2, 49)),
    ("track_timestamps_staleness", v(2, 48)),
    ("fallback_scrape_protocol", v(3, 0)),
    ("always_scrape_classic_histograms", v(3, 0)),
    ("convert_classic_histograms_to_nhcb", v(3, 0)),
    ("metric_name_validation_scheme", v(3, 0)),
    ("scrape_failure_log_file", v(2, 55)),
];
pub const PROM_STORAGE: Keys = &[("tsdb", v(2, 39)), ("exemplars", ALWAYS)];
pub const PROM_STORAGE_TSDB: Keys = &[("out_of_order_time_window", v(2, 39))];
pub const PROM_STORAGE_EXEMPLARS: Keys = &[("max_exemplars", ALWAYS)];
pub const PROM_ALERTING: Keys = &[("alertmanagers", ALWAYS), ("alert_relabel_configs", ALWAYS)];
pub const PROM_AM: Keys = &[
    ("scheme", ALWAYS),
    ("path_prefix", ALWAYS),
    ("timeout", ALWAYS),
    ("api_version", ALWAYS),
    ("static_configs", ALWAYS),
    ("file_sd_configs", ALWAYS),
    ("dns_sd_configs", ALWAYS),
    ("relabel_configs", ALWAYS),
    ("alert_relabel_configs", v(2, 51)),
    ("basic_auth", ALWAYS),
    ("authorization", ALWAYS),
    ("oauth2", ALWAYS),
    ("tls_config", ALWAYS),
    ("proxy_url", ALWAYS),
    ("follow_redirects", ALWAYS),
    ("enable_http2", ALWAYS),
];
pub const PROM_STATIC: Keys = &[("targets", ALWAYS), ("labels", ALWAYS)];
pub const RULE_FILE: Keys = &[("groups", ALWAYS)];
pub const RULE_GROUP: Keys = &[("name", ALWAYS), ("interval", ALWAYS), ("rules", ALWAYS), ("limit", v(2, 31)), ("query_offset", v(2, 53)), ("labels", v(3, 0))];
pub const RULE: Keys =
    &[("alert", ALWAYS), ("record", ALWAYS), ("expr", ALWAYS), ("for", ALWAYS), ("labels", ALWAYS), ("annotations", ALWAYS), ("keep_firing_for", v(2, 42))];

pub const AM_TOP: Keys = &[
    ("global", ALWAYS),
    ("route", ALWAYS),
    ("receivers", ALWAYS),
    ("inhibit_rules", ALWAYS),
    ("templates", ALWAYS),
    ("mute_time_intervals", v(0, 22)),
    ("time_intervals", v(0, 24)),
    ("tracing", v(0, 30)),
];
pub const AM_ROUTE: Keys = &[
    ("receiver", ALWAYS),
    ("group_by", ALWAYS),
    ("continue", ALWAYS),
    ("match", ALWAYS),
    ("match_re", ALWAYS),
    ("matchers", v(0, 22)),
    ("group_wait", ALWAYS),
    ("group_interval", ALWAYS),
    ("repeat_interval", ALWAYS),
    ("routes", ALWAYS),
    ("mute_time_intervals", v(0, 22)),
    ("active_time_intervals", v(0, 24)),
    ("labels", v(0, 34)),
];
pub const AM_INHIBIT: Keys = &[
    ("source_match", ALWAYS),
    ("source_match_re", ALWAYS),
    ("source_matchers", v(0, 22)),
    ("target_match", ALWAYS),
    ("target_match_re", ALWAYS),
    ("target_matchers", v(0, 22)),
    ("equal", ALWAYS),
];
pub const AM_RECEIVER: Keys = &[
    ("name", ALWAYS),
    ("webhook_configs", ALWAYS),
    ("email_configs", ALWAYS),
    ("pagerduty_configs", ALWAYS),
    ("slack_configs", ALWAYS),
    ("opsgenie_configs", ALWAYS),
    ("wechat_configs", ALWAYS),
    ("pushover_configs", ALWAYS),
    ("victorops_configs", ALWAYS),
    ("sns_configs", v(0, 23)),
    ("telegram_configs", v(0, 24)),
    ("discord_configs", v(0, 25)),
    ("webex_configs", v(0, 25)),
    ("msteams_configs", v(0, 26)),
    ("msteamsv2_configs", v(0, 28)),
    ("jira_configs", v(0, 28)),
    ("rocketchat_configs", v(0, 28)),
    ("incidentio_configs", v(0, 29)),
    ("mattermost_configs", v(0, 30)),
];
pub const AM_WEBHOOK: Keys =
    &[("url", ALWAYS), ("url_file", v(0, 25)), ("send_resolved", ALWAYS), ("http_config", ALWAYS), ("max_alerts", ALWAYS), ("timeout", v(0, 28))];

/// Which product a key table belongs to (for messages and codes).
#[derive(Clone, Copy)]
pub enum Product {
    Prometheus,
    Alertmanager,
    Rules,
}

impl Product {
    fn name(self) -> &'static str {
        match self {
            Product::Prometheus | Product::Rules => "Prometheus",
            Product::Alertmanager => "Alertmanager",
        }
    }
    fn unknown_code(self) -> &'static str {
        match self {
            Product::Prometheus => "prom.unknown_key",
            Product::Rules => "rules.unknown_key",
            Product::Alertmanager => "am.unknown_key",
        }
    }
}

/// Report keys in `extra` that `known` does not list (unknown) or that the pinned
/// version does not read yet (`version.unsupported`). `path` is the mapping's path.
#[allow(clippy::too_many_arguments)]
pub fn check_keys(sink: &mut Sink, src: &Source, product: Product, version: Version, path: &str, extra: &Extra, known: Keys, what: &str) {
    for k in extra.keys() {
        let at = if path.is_empty() { k.clone() } else { format!("{path}/{k}") };
        match known.iter().find(|(n, _)| n == k) {
            Some((_, since)) if *since > version => sink.at(
                Severity::Error,
                "version.unsupported",
                src,
                &at,
                format!("`{k}` in {what} needs {} {} or newer; the pinned {} refuses to load this file", product.name(), since, version),
                format!("remove `{k}`, or pin a {} image of {} or newer in stackproof.yml", product.name(), since),
            ),
            Some(_) => {}
            None => {
                let close = known.iter().map(|(n, _)| *n).find(|n| similar(n, k));
                let hint = match close {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!("{} reads its files strictly; remove the key or check its spelling", product.name()),
                };
                sink.at(
                    Severity::Error,
                    product.unknown_code(),
                    src,
                    &at,
                    format!("unknown key `{k}` in {what}: {} does not start with it", product.name()),
                    hint,
                )
            }
        }
    }
}

/// Edit distance ≤ 2, for "did you mean" hints.
pub fn similar(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 2.max(a.len().min(b.len()) / 6) {
        return false;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + usize::from(a[i - 1] != b[j - 1]));
        }
        prev = cur;
    }
    // Longer names tolerate more edits (a dropped word in a metric name).
    prev[b.len()] <= 2.max(a.len().min(b.len()) / 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_images() {
        assert_eq!(Version::from_image("prom/alertmanager:v0.25.0"), Some(Version(0, 25, 0)));
        assert_eq!(Version::from_image("127.0.0.1:5000/x/prometheus:v2.42.0"), Some(Version(2, 42, 0)));
        assert_eq!(Version::from_image("grafana/grafana:12.0.2"), Some(Version(12, 0, 2)));
        assert_eq!(Version::from_image("prom/prometheus"), None);
        assert!(Version(0, 25, 0) < Version(0, 30, 0));
        assert!(similar("scrape_interval", "scrape_intervl"));
    }
}
