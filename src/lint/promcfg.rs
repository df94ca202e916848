//! The semantic checks Prometheus runs when it loads its config (`config.Load`, the
//! relabel, HTTP client and target group validations), on the YAML document: what
//! `promtool check config` refuses beyond unknown keys. Messages quote Prometheus'.
//! Everything here is linear in the size of the document.

use super::versions::{self, check_keys, Product, Version};
use super::{Severity, Sink, Source};
use crate::stack::prometheus::{parse_duration, Extra};
use serde_yaml::{Mapping, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(60);

pub(super) fn get<'a>(m: &'a Value, k: &str) -> Option<&'a Value> {
    m.as_mapping().and_then(|m| m.get(k)).filter(|v| !v.is_null())
}

pub(super) fn list(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_sequence).map(Vec::as_slice).unwrap_or_default()
}

/// A scalar as Go's YAML reads it into a string (`null` is empty).
pub(super) fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(super) fn nonempty(v: &Value, k: &str) -> bool {
    text(get(v, k)).is_some_and(|s| !s.is_empty())
}

/// A legacy Prometheus label name (2.x): `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(x) if x.is_ascii_alphabetic() || x == '_') && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

pub(super) struct Ck<'a> {
    pub src: &'a Source,
    pub sink: &'a mut Sink,
    pub ver: Version,
    /// The finding codes and the program named in messages (Prometheus or Alertmanager).
    pub code: &'static str,
    pub type_code: &'static str,
    pub who: &'static str,
}

impl Ck<'_> {
    pub fn err(&mut self, path: &str, msg: impl Into<String>, hint: impl Into<String>) {
        let msg = format!("{}: {} refuses the config", msg.into(), self.who);
        self.sink.at(Severity::Error, self.code, self.src, path, msg, hint);
    }

    /// Keys must hold scalars (Go's YAML refuses a map or a list for a string field).
    pub fn scalars(&mut self, v: &Value, base: &str, keys: &[&str]) {
        for k in keys {
            if let Some(x) = get(v, k).filter(|x| x.is_mapping() || x.is_sequence()) {
                let kind = if x.is_mapping() { "a mapping" } else { "a list" };
                self.sink.at(
                    Severity::Error,
                    self.type_code,
                    self.src,
                    &format!("{base}/{k}"),
                    format!("`{k}` is {kind}, but {} reads a string there and refuses the config", self.who),
                    "write a single value",
                );
            }
        }
    }

    /// An HTTP client config (common/config `HTTPClientConfig.Validate`).
    pub fn http(&mut self, v: &Value, base: &str) {
        self.scalars(v, base, &["bearer_token", "bearer_token_file", "proxy_url"]);
        let bt = nonempty(v, "bearer_token");
        let btf = nonempty(v, "bearer_token_file");
        let ba = get(v, "basic_auth");
        let oa = get(v, "oauth2").is_some();
        let au = get(v, "authorization");
        let both = "use one way of authenticating";
        if bt && btf {
            self.err(&format!("{base}/bearer_token"), "at most one of bearer_token & bearer_token_file must be configured", both);
        }
        if (ba.is_some() || oa) && (bt || btf) {
            self.err(
                &format!("{base}/{}", if bt { "bearer_token" } else { "bearer_token_file" }),
                "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured",
                both,
            );
        }
        if ba.is_some() && oa || au.is_some() && (ba.is_some() || oa) {
            self.err(base, "at most one of basic_auth, oauth2 & authorization must be configured", both);
        }
        if let Some(ba) = ba {
            let b = format!("{base}/basic_auth");
            self.scalars(ba, &b, &["username", "username_file", "password", "password_file"]);
            if nonempty(ba, "password") && nonempty(ba, "password_file") {
                self.err(&b, "at most one of basic_auth password & password_file must be configured", "keep one");
            }
        }
        if let Some(au) = au {
            let b = format!("{base}/authorization");
            self.scalars(au, &b, &["type", "credentials", "credentials_file"]);
            if bt || btf {
                self.err(&b, "authorization is not compatible with bearer_token & bearer_token_file", both);
            }
            if nonempty(au, "credentials") && nonempty(au, "credentials_file") {
                self.err(&b, "at most one of authorization credentials & credentials_file must be configured", "keep one");
            }
            if text(get(au, "type")).is_some_and(|t| t.eq_ignore_ascii_case("basic")) {
                self.err(&format!("{b}/type"), "authorization type cannot be set to \"basic\", use \"basic_auth\" instead", "use basic_auth");
            }
        }
        if let Some(tls) = get(v, "tls_config") {
            self.scalars(tls, &format!("{base}/tls_config"), &["ca_file", "cert_file", "key_file", "server_name", "ca", "cert", "key"]);
        }
    }

    /// One relabel config (`relabel.Config.UnmarshalYAML` / `Validate`).
    fn relabel(&mut self, r: &Value, base: &str) {
        self.scalars(r, base, &["target_label", "replacement", "separator", "regex", "action"]);
        let action = text(get(r, "action")).map(|a| a.to_lowercase()).unwrap_or_else(|| "replace".into());
        let since = match action.as_str() {
            "replace" | "keep" | "drop" | "hashmod" | "labelmap" | "labeldrop" | "labelkeep" => Version(0, 0, 0),
            "lowercase" | "uppercase" => Version(2, 36, 0),
            "keepequal" | "dropequal" => Version(2, 41, 0),
            _ => {
                self.err(
                    &format!("{base}/action"),
                    format!("unknown relabel action {action:?}"),
                    "use replace, keep, drop, keepequal, dropequal, hashmod, labelmap, labeldrop, labelkeep, lowercase or uppercase",
                );
                return;
            }
        };
        if since > self.ver {
            self.sink.at(
                Severity::Error,
                "version.unsupported",
                self.src,
                &format!("{base}/action"),
                format!("relabel action `{action}` needs Prometheus {since} or newer; Prometheus {} refuses the config", self.ver),
                "use another action, or pin a newer Prometheus",
            );
        }
        for (i, l) in list(get(r, "source_labels")).iter().enumerate() {
            if let Some(l) = text(Some(l)).filter(|l| !valid_label_name(l)) {
                self.err(&format!("{base}/source_labels/{i}"), format!("{l:?} is not a valid label name"), "label names are [a-zA-Z_][a-zA-Z0-9_]*");
            }
        }
        if let Some(re) = text(get(r, "regex")) {
            if let Err(e) = regex::Regex::new(&format!("^(?:{re})$")) {
                let first = e.to_string().lines().last().unwrap_or("").trim().to_string();
                self.err(&format!("{base}/regex"), format!("error parsing regexp `{re}`: {first}"), "relabel regexes are RE2, anchored at both ends");
            }
        }
        let modulus = get(r, "modulus").and_then(Value::as_u64).unwrap_or(0);
        if action == "hashmod" && modulus == 0 {
            self.err(base, "relabel configuration for hashmod requires non-zero modulus", "set `modulus:` (a positive integer)");
        }
        let target = text(get(r, "target_label")).unwrap_or_default();
        let needs_target = matches!(action.as_str(), "replace" | "hashmod" | "lowercase" | "uppercase" | "keepequal" | "dropequal");
        if needs_target && target.is_empty() {
            self.err(
                base,
                format!("relabel configuration for {action} action requires 'target_label' value"),
                "set `target_label:` (the label to write), or use another action",
            );
        } else if action == "replace" && !valid_replace_target(&target) {
            self.err(
                &format!("{base}/target_label"),
                format!("{target:?} is invalid 'target_label' for {action} action"),
                "a label name, optionally with $1 / ${1} references",
            );
        } else if needs_target && action != "replace" && !valid_label_name(&target) {
            self.err(&format!("{base}/target_label"), format!("{target:?} is invalid 'target_label' for {action} action"), "a label name");
        }
        if matches!(action.as_str(), "labeldrop" | "labelkeep") && (!target.is_empty() || !list(get(r, "source_labels")).is_empty() || modulus != 0) {
            self.err(base, format!("{action} action requires only 'regex', and no other fields"), "remove source_labels, target_label and modulus");
        }
    }

    fn relabels(&mut self, v: &Value, base: &str, key: &str) {
        for (i, r) in list(get(v, key)).iter().enumerate() {
            self.relabel(r, &format!("{base}/{key}/{i}"));
        }
    }

    /// Static targets and labels (`targetgroup.Group`, `CheckTargetAddress`).
    fn static_configs(&mut self, v: &Value, base: &str) {
        for (j, sc) in list(get(v, "static_configs")).iter().enumerate() {
            let sb = format!("{base}/static_configs/{j}");
            for (k, t) in list(get(sc, "targets")).iter().enumerate() {
                if let Some(t) = text(Some(t)).filter(|t| t.contains('/')) {
                    self.err(
                        &format!("{sb}/targets/{k}"),
                        format!("{t:?} is not a valid hostname"),
                        "targets are host:port, without scheme or path (see `scheme` and `metrics_path`)",
                    );
                }
            }
            if let Some(m) = get(sc, "labels").and_then(Value::as_mapping) {
                self.label_names(m, &format!("{sb}/labels"));
            }
        }
    }

    fn label_names(&mut self, m: &Mapping, base: &str) {
        for k in m.keys() {
            let name = text(Some(k)).unwrap_or_default();
            if !valid_label_name(&name) {
                self.err(&format!("{base}/{name}"), format!("{name:?} is not a valid label name"), "label names are [a-zA-Z_][a-zA-Z0-9_]*");
            }
        }
    }

    fn url(&mut self, v: &Value, base: &str, required: bool) {
        self.scalars(v, base, &["url"]);
        match text(get(v, "url")) {
            None if required => self.err(base, "url for remote_write/remote_read is empty", "set `url:`"),
            None => {}
            Some(u) => match reqwest::Url::parse(&u) {
                Ok(p) if p.scheme() != "http" && p.scheme() != "https" => {
                    self.err(&format!("{base}/url"), "URL scheme must be 'http' or 'https'", "write the URL with http:// or https://")
                }
                Ok(p) if p.host_str().unwrap_or("").is_empty() => self.err(&format!("{base}/url"), "host is missing in URL", "write a full URL"),
                Ok(_) => {}
                Err(_) => self.err(&format!("{base}/url"), "URL scheme must be 'http' or 'https'", "write the URL with http:// or https://"),
            },
        }
    }
}

/// `^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$`: a label name, possibly built from `$1`/`${1}`.
fn valid_replace_target(t: &str) -> bool {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$").expect("static regex")).is_match(t)
}

/// `rule_files` and `scrape_config_files` patterns: one `*` at most, in the last element.
fn valid_rule_path(p: &str) -> bool {
    match p.find('*') {
        None => true,
        Some(i) => !p[i + 1..].contains('/'),
    }
}

fn keys_of(m: &Value) -> Extra {
    m.as_mapping().map(|m| m.iter().filter_map(|(k, v)| Some((text(Some(k))?, v.clone()))).collect()).unwrap_or_default()
}

pub fn check(src: &Source, doc: &Value, ver: Version, sink: &mut Sink) {
    let mut c = Ck { src, sink, ver, code: "prom.invalid", type_code: "prom.type", who: "Prometheus" };
    let dur = |v: Option<&Value>| text(v).and_then(|t| parse_duration(&t).ok());
    // Global timing.
    let global = get(doc, "global");
    let g_interval = dur(global.and_then(|g| get(g, "scrape_interval"))).filter(|d| !d.is_zero()).unwrap_or(DEFAULT_SCRAPE_INTERVAL);
    let g_timeout_set = dur(global.and_then(|g| get(g, "scrape_timeout"))).filter(|d| !d.is_zero());
    if g_timeout_set.is_some_and(|t| t > g_interval) {
        c.err("global/scrape_timeout", "global scrape timeout greater than scrape interval", "make scrape_timeout at most scrape_interval");
    }
    if let Some(m) = global.and_then(|g| get(g, "external_labels")).and_then(Value::as_mapping) {
        c.label_names(m, "global/external_labels");
    }
    for key in ["rule_files", "scrape_config_files"] {
        for (i, p) in list(get(doc, key)).iter().enumerate() {
            if let Some(p) = text(Some(p)).filter(|p| !valid_rule_path(p)) {
                c.err(&format!("{key}/{i}"), format!("invalid rule file path {p:?}"), "a `*` may appear only in the last path element, e.g. rules/*.yml");
            }
        }
    }
    for (i, job) in list(get(doc, "scrape_configs")).iter().enumerate() {
        let base = format!("scrape_configs/{i}");
        let name = text(get(job, "job_name")).unwrap_or_default();
        c.scalars(job, &base, &["job_name", "metrics_path", "scheme"]);
        let interval = dur(get(job, "scrape_interval")).filter(|d| !d.is_zero()).unwrap_or(g_interval);
        if let Some(t) = dur(get(job, "scrape_timeout")).filter(|d| !d.is_zero()) {
            if t > interval {
                c.err(
                    &format!("{base}/scrape_timeout"),
                    format!("scrape timeout greater than scrape interval for scrape config with job name {name:?}"),
                    format!("make scrape_timeout at most the job's scrape_interval ({}s)", interval.as_secs()),
                );
            }
        }
        c.http(job, &base);
        c.relabels(job, &base, "relabel_configs");
        c.relabels(job, &base, "metric_relabel_configs");
        c.static_configs(job, &base);
        for (k, sd) in list(get(job, "http_sd_configs")).iter().enumerate() {
            let b = format!("{base}/http_sd_configs/{k}");
            c.url(sd, &b, true);
            c.http(sd, &b);
        }
    }
    if let Some(al) = get(doc, "alerting") {
        c.relabels(al, "alerting", "alert_relabel_configs");
        for (i, am) in list(get(al, "alertmanagers")).iter().enumerate() {
            let base = format!("alerting/alertmanagers/{i}");
            c.http(am, &base);
            c.relabels(am, &base, "relabel_configs");
            c.relabels(am, &base, "alert_relabel_configs");
            c.static_configs(am, &base);
        }
    }
    for (key, what) in [("remote_write", "write"), ("remote_read", "read")] {
        let mut names = BTreeSet::new();
        for (i, rw) in list(get(doc, key)).iter().enumerate() {
            let base = format!("{key}/{i}");
            c.url(rw, &base, true);
            c.http(rw, &base);
            c.relabels(rw, &base, "write_relabel_configs");
            if let Some(n) = text(get(rw, "name")).filter(|n| !n.is_empty()) {
                if !names.insert(n.clone()) {
                    c.err(
                        &format!("{base}/name"),
                        format!("found multiple remote {what} configs with job name {n:?}"),
                        "give each its own `name`, or drop the names",
                    );
                }
            }
        }
    }
    if let Some(st) = get(doc, "storage") {
        check_keys(c.sink, src, Product::Prometheus, ver, "storage", &keys_of(st), versions::PROM_STORAGE, "`storage`");
        if let Some(t) = get(st, "tsdb") {
            check_keys(c.sink, src, Product::Prometheus, ver, "storage/tsdb", &keys_of(t), versions::PROM_STORAGE_TSDB, "`storage.tsdb`");
        }
        if let Some(e) = get(st, "exemplars") {
            check_keys(c.sink, src, Product::Prometheus, ver, "storage/exemplars", &keys_of(e), versions::PROM_STORAGE_EXEMPLARS, "`storage.exemplars`");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_paths_and_targets() {
        assert!(valid_rule_path("rules/*.yml") && valid_rule_path("a/b*c*.yml") && valid_rule_path("x.yml"));
        assert!(!valid_rule_path("my/*/rule"));
        assert!(valid_replace_target("${1}x") && valid_replace_target("a_b") && !valid_replace_target("1abc"));
        assert!(valid_label_name("_a1") && !valid_label_name("a-b") && !valid_label_name("\u{ff}"));
    }
}
