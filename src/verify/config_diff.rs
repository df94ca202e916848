//! "Is the running config the deployed one?" — a semantic comparison.
//!
//! Prometheus (`/api/v1/status/config`) and Alertmanager (`/api/v2/status`) answer with
//! the config they *loaded*, re-serialised: defaults filled in, relative paths made
//! absolute, durations normalised (`60s` → `1m`), secrets masked as `<secret>`. So a
//! text comparison is useless; instead every value the deployed file sets must be the
//! value the service runs with (the file is a subset of the loaded config), lists must
//! have the same items (named items — jobs, receivers — matched by name), and nothing
//! named may be extra.
//!
//! Nothing that is or may be a secret is ever printed (`crate::redact`): a difference in
//! such a value names its path only, and values shown whole have their secrets hidden.

use crate::redact;
use crate::stack::prometheus::parse_duration;
use serde_yaml::Value as Yaml;

/// Differences between the deployed file and the running config, each a line a person
/// can act on. Empty: they agree. `base_dir` is the directory (as the service sees it)
/// that relative paths in the deployed file are relative to.
pub fn diff(deployed: &Yaml, loaded: &Yaml, base_dir: &str) -> Vec<String> {
    let mut out = vec![];
    walk(deployed, loaded, "", "", base_dir, &mut out);
    out
}

const MASKED: &str = "<secret>";

fn key_name(k: &Yaml) -> String {
    match k {
        Yaml::String(s) => s.clone(),
        other => scalar(other).unwrap_or_default(),
    }
}

fn scalar(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        Yaml::Null => Some(String::new()),
        _ => None,
    }
}

fn is_empty(v: &Yaml) -> bool {
    match v {
        Yaml::Null => true,
        Yaml::Sequence(s) => s.is_empty(),
        Yaml::Mapping(m) => m.is_empty(),
        Yaml::String(s) => s.is_empty(),
        _ => false,
    }
}

/// The name a list item is known by, if it has one.
fn item_name(v: &Yaml) -> Option<String> {
    ["job_name", "name"].iter().find_map(|k| v.get(*k).and_then(Yaml::as_str).map(str::to_string))
}

fn is_path_key(key: &str) -> bool {
    key == "rule_files" || key == "files" || key.ends_with("_file")
}

fn is_matcher_key(key: &str) -> bool {
    key.ends_with("matchers")
}

/// A value as shown in a difference: hidden whole under a secret path, else with every
/// secret inside it hidden.
fn show(v: &Yaml, path: &str, key: &str) -> String {
    if redact::is_secret_path(path) || redact::is_secret_key(key) {
        return format!("`{}`", redact::HIDDEN);
    }
    let v = hidden(v);
    match scalar(&v) {
        Some(s) => format!("`{s}`"),
        None => serde_yaml::to_string(&v).map(|s| format!("`{}`", s.trim().replace('\n', " "))).unwrap_or_default(),
    }
}

/// A copy of `v` with values under secret keys and secrets in strings hidden.
fn hidden(v: &Yaml) -> Yaml {
    match v {
        Yaml::String(s) => Yaml::String(redact::scrub_text(s)),
        Yaml::Sequence(s) => Yaml::Sequence(s.iter().map(hidden).collect()),
        Yaml::Mapping(m) => Yaml::Mapping(
            m.iter()
                .map(|(k, v)| {
                    let v = if redact::is_secret_key(&key_name(k)) && !matches!(v, Yaml::Mapping(_) | Yaml::Sequence(_)) {
                        Yaml::String(redact::HIDDEN.into())
                    } else {
                        hidden(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Yaml::Tagged(t) => hidden(&t.value),
        other => other.clone(),
    }
}

fn walk(dep: &Yaml, run: &Yaml, path: &str, key: &str, base: &str, out: &mut Vec<String>) {
    let at = |p: &str| if p.is_empty() { "(top level)".to_string() } else { p.to_string() };
    match (dep, run) {
        (Yaml::Tagged(t), _) => walk(&t.value, run, path, key, base, out),
        (_, Yaml::Tagged(t)) => walk(dep, &t.value, path, key, base, out),
        (Yaml::Mapping(dm), Yaml::Mapping(_)) => {
            for (k, dv) in dm {
                let k = key_name(k);
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match run.get(k.as_str()) {
                    Some(rv) => walk(dv, rv, &p, &k, base, out),
                    None if is_empty(dv) => {}
                    None => out.push(format!("{p}: deployed {} but the running config has none", show(dv, &p, &k))),
                }
            }
        }
        (Yaml::Sequence(ds), Yaml::Sequence(rs)) => {
            let named = !ds.is_empty() && ds.iter().all(|d| item_name(d).is_some());
            if named {
                for d in ds {
                    let name = item_name(d).unwrap_or_default();
                    match rs.iter().find(|r| item_name(r).as_deref() == Some(&name)) {
                        Some(r) => walk(d, r, &format!("{path}[{name}]"), key, base, out),
                        None => out.push(format!("{}: `{name}` is deployed but not running", at(path))),
                    }
                }
                for r in rs {
                    if let Some(name) = item_name(r) {
                        if !ds.iter().any(|d| item_name(d).as_deref() == Some(&name)) {
                            out.push(format!("{}: `{name}` is running but not in the deployed file", at(path)));
                        }
                    }
                }
            } else if is_matcher_key(key) {
                let norm = |s: &[Yaml]| {
                    let mut v: Vec<String> = s.iter().filter_map(scalar).map(|m| normalize_matcher(&m)).collect();
                    v.sort();
                    v
                };
                if norm(ds) != norm(rs) {
                    out.push(format!("{}: deployed {} but running {}", at(path), show(dep, path, key), show(run, path, key)));
                }
            } else if ds.len() != rs.len() {
                out.push(format!("{}: deployed {} but running {}", at(path), show(dep, path, key), show(run, path, key)));
            } else {
                for (i, (d, r)) in ds.iter().zip(rs).enumerate() {
                    walk(d, r, &format!("{path}[{i}]"), key, base, out);
                }
            }
        }
        _ => match (scalar(dep), scalar(run)) {
            (Some(d), Some(r)) => {
                if !same_scalar(&d, &r, key, base) {
                    if redact::hide_value(path, key, &d) || redact::hide_value(path, key, &r) {
                        out.push(format!("{}: the running value differs from the deployed one (not shown: it is or may be a secret)", at(path)));
                    } else {
                        out.push(format!("{}: deployed `{d}` but running `{r}`", at(path)));
                    }
                }
            }
            _ => out.push(format!("{}: deployed {} but running {}", at(path), show(dep, path, key), show(run, path, key))),
        },
    }
}

fn same_scalar(d: &str, r: &str, key: &str, base: &str) -> bool {
    if d == r || r == MASKED {
        return true;
    }
    if let (Ok(a), Ok(b)) = (parse_duration(d), parse_duration(r)) {
        return a == b;
    }
    if let (Ok(a), Ok(b)) = (d.parse::<f64>(), r.parse::<f64>()) {
        return a == b;
    }
    if is_path_key(key) && !d.starts_with('/') && !d.is_empty() {
        let joined = format!("{}/{}", base.trim_end_matches('/'), d.trim_start_matches("./"));
        return joined == r;
    }
    if is_matcher_key(key) {
        return normalize_matcher(d) == normalize_matcher(r);
    }
    false
}

/// `alertname = "X"` and `alertname=X` are the same matcher.
fn normalize_matcher(m: &str) -> String {
    m.chars().filter(|c| *c != '"' && !c.is_whitespace()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Yaml {
        serde_yaml::from_str(s).unwrap()
    }

    const DEPLOYED: &str = r#"
global: {scrape_interval: 60s, evaluation_interval: 15s}
rule_files: [rules/*.yml]
alerting:
  alertmanagers: [{static_configs: [{targets: ['127.0.0.1:9093']}]}]
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ['127.0.0.1:9090']}]
  - job_name: node
    scrape_interval: 5s
    static_configs: [{targets: ['127.0.0.1:9100']}]
"#;

    // What Prometheus 2.42 answers: defaults filled in, durations normalised, paths absolute.
    const LOADED: &str = r#"
global:
  scrape_interval: 1m
  scrape_timeout: 10s
  evaluation_interval: 15s
alerting:
  alertmanagers:
  - follow_redirects: true
    scheme: http
    timeout: 10s
    api_version: v2
    static_configs:
    - targets: [127.0.0.1:9093]
rule_files:
- /stackproof/current/prometheus/rules/*.yml
scrape_configs:
- job_name: prometheus
  honor_timestamps: true
  scrape_interval: 1m
  metrics_path: /metrics
  static_configs:
  - targets: [127.0.0.1:9090]
- job_name: node
  scrape_interval: 5s
  metrics_path: /metrics
  static_configs:
  - targets: [127.0.0.1:9100]
"#;

    #[test]
    fn loaded_config_with_defaults_matches_the_deployed_file() {
        let d = diff(&y(DEPLOYED), &y(LOADED), "/stackproof/current/prometheus");
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn changed_target_interval_and_missing_job_are_named() {
        let loaded = LOADED.replace("127.0.0.1:9100", "127.0.0.1:9200").replace("scrape_interval: 5s", "scrape_interval: 10s");
        let d = diff(&y(DEPLOYED), &y(&loaded), "/stackproof/current/prometheus");
        assert!(d.iter().any(|l| l.contains("scrape_configs[node]") && l.contains("127.0.0.1:9100")), "{d:?}");
        assert!(d.iter().any(|l| l.contains("scrape_configs[node].scrape_interval") && l.contains("10s")), "{d:?}");

        let extra = format!("{LOADED}- job_name: extra\n  static_configs: [{{targets: [a:1]}}]\n");
        let d = diff(&y(DEPLOYED), &y(&extra), "/stackproof/current/prometheus");
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].contains("`extra` is running but not in the deployed file"));

        let d = diff(&y(DEPLOYED), &y(&LOADED.replace("rules/*.yml", "other/*.yml")), "/stackproof/current/prometheus");
        assert!(d.iter().any(|l| l.starts_with("rule_files")), "{d:?}");
    }

    #[test]
    fn alertmanager_masked_secrets_and_matcher_spelling_agree() {
        let dep = y(r#"
route:
  receiver: default
  routes:
    - matchers: ['alertname = "StackproofDrill"']
      receiver: stackproof-drill
      group_wait: 1s
receivers:
  - name: default
  - name: stackproof-drill
    webhook_configs: [{url: 'http://127.0.0.1:9799/', send_resolved: true}]
"#);
        let run = y(r#"
global: {resolve_timeout: 5m}
route:
  receiver: default
  group_wait: 30s
  routes:
  - receiver: stackproof-drill
    matchers: [alertname="StackproofDrill"]
    group_wait: 1s
receivers:
- name: default
- name: stackproof-drill
  webhook_configs:
  - send_resolved: true
    url: <secret>
    max_alerts: 0
"#);
        assert!(diff(&dep, &run, "/").is_empty(), "{:?}", diff(&dep, &run, "/"));
        let run2 = y(&serde_yaml::to_string(&run).unwrap().replace("StackproofDrill", "Other"));
        assert!(!diff(&dep, &run2, "/").is_empty());
    }

    #[test]
    fn secrets_in_a_drifted_config_are_never_printed() {
        let dep = y(r#"
global: {smtp_auth_password: hunter2-deployed, smtp_smarthost: 'mail:25'}
receivers:
  - name: ops
    webhook_configs: [{url: 'https://hooks.example/x?token=tok-deployed'}]
    email_configs: [{to: a@b, auth_password: pw-deployed, headers: {X-Api-Key: hk-deployed}}]
  - name: extra
    webhook_configs: [{url: 'https://u:up-deployed@h.example/'}]
"#);
        let run = y(r#"
global: {smtp_auth_password: hunter2-running, smtp_smarthost: 'mail:2525'}
receivers:
  - name: ops
    webhook_configs: [{url: 'https://hooks.example/x?token=tok-running'}]
    email_configs: [{to: a@b, auth_password: pw-running}]
  - name: extra
    webhook_configs: []
"#);
        let d = diff(&dep, &run, "/");
        let text = d.join("\n");
        for leaked in ["hunter2", "tok-", "pw-", "hk-", "up-"] {
            assert!(!text.contains(leaked), "{leaked} printed: {text}");
        }
        // Paths are still named, and a harmless value still shows.
        assert!(text.contains("global.smtp_auth_password: the running value differs"), "{text}");
        assert!(text.contains("receivers[ops].webhook_configs[0].url: the running value differs"), "{text}");
        assert!(text.contains("receivers[ops].email_configs[0].headers"), "{text}");
        assert!(text.contains("deployed `mail:25` but running `mail:2525`"), "{text}");
        assert!(text.contains("receivers[extra].webhook_configs"), "{text}");
    }
}
