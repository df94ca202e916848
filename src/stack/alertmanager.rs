//! Typed model of Alertmanager's configuration: routes (with inherited timing),
//! receivers, inhibit rules and matchers, and Alertmanager's routing of an alert's labels.
//! `lint` checks it; the drill computes `group_wait`/`group_interval` bounds from it.

use crate::stack::prometheus::{parse_duration, Extra, Text};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(300);
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

use super::null_as_default;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    #[serde(default, deserialize_with = "null_as_default")]
    pub global: Extra,
    pub route: Option<Route>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub receivers: Vec<Receiver>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub inhibit_rules: Vec<InhibitRule>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub templates: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Route {
    pub receiver: Option<String>,
    pub group_by: Option<Vec<String>>,
    #[serde(rename = "continue", default)]
    pub continue_: bool,
    #[serde(rename = "match", default, deserialize_with = "null_as_default")]
    pub match_: BTreeMap<String, Text>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub match_re: BTreeMap<String, Text>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub matchers: Vec<String>,
    pub group_wait: Option<Text>,
    pub group_interval: Option<Text>,
    pub repeat_interval: Option<Text>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub routes: Vec<Route>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Receiver {
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub webhook_configs: Vec<WebhookConfig>,
    /// Other integrations (`email_configs`, `slack_configs`, ...), kept as YAML.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Receiver {
    /// Whether it has an integration (a non-empty `*_configs`): one without pages nobody.
    pub fn has_integrations(&self) -> bool {
        !self.webhook_configs.is_empty() || self.extra.iter().any(|(k, v)| k.ends_with("_configs") && v.as_sequence().is_some_and(|s| !s.is_empty()))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct WebhookConfig {
    pub url: Option<String>,
    pub url_file: Option<String>,
    pub send_resolved: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InhibitRule {
    #[serde(default, deserialize_with = "null_as_default")]
    pub source_match: BTreeMap<String, Text>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub source_match_re: BTreeMap<String, Text>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub source_matchers: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub target_match: BTreeMap<String, Text>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub target_match_re: BTreeMap<String, Text>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub target_matchers: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub equal: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One label matcher as Alertmanager reads it (`severity="critical"`, `team=~"a|b"`).
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<regex::Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, String> {
        let re = match op {
            MatchOp::Re | MatchOp::NotRe => Some(regex::Regex::new(&format!("^(?:{value})$")).map_err(|e| format!("invalid regex {value:?}: {e}"))?),
            _ => None,
        };
        Ok(Matcher { name: name.into(), op, value: value.into(), re })
    }

    /// Parse one matcher string: `name op value`, value optionally double-quoted.
    /// Hand-written: Alertmanager's matcher grammar is small and no crate implements it.
    pub fn parse(s: &str) -> Result<Matcher, String> {
        let s = s.trim().trim_start_matches('{').trim_end_matches('}').trim();
        let ops = [("=~", MatchOp::Re), ("!~", MatchOp::NotRe), ("!=", MatchOp::Ne), ("=", MatchOp::Eq)];
        let (pos, op, len) = s
            .char_indices()
            .find_map(|(i, _)| ops.iter().find(|(o, _)| s[i..].starts_with(o)).map(|(o, m)| (i, *m, o.len())))
            .ok_or_else(|| format!("bad matcher {s:?}: no operator (=, !=, =~, !~)"))?;
        let name = s[..pos].trim().trim_matches('"');
        if name.is_empty() {
            return Err(format!("bad matcher {s:?}: no label name"));
        }
        let mut value = s[pos + len..].trim().to_string();
        if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
            value = value[1..value.len() - 1].replace("\\\"", "\"").replace("\\\\", "\\");
        }
        Matcher::new(name, op, &value)
    }

    pub fn matches(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Eq => self.value == v,
            MatchOp::Ne => self.value != v,
            MatchOp::Re => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRe => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    /// Whether an alert whose labels are `labels` matches (a missing label reads as "").
    pub fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches(labels.get(&self.name).map(String::as_str).unwrap_or(""))
    }
}

/// Combine `match`, `match_re` and `matchers` into one list.
pub fn collect_matchers(eq: &BTreeMap<String, Text>, re: &BTreeMap<String, Text>, list: &[String]) -> Result<Vec<Matcher>, String> {
    let mut out = Vec::new();
    for (k, v) in eq {
        out.push(Matcher::new(k, MatchOp::Eq, v.as_str())?);
    }
    for (k, v) in re {
        out.push(Matcher::new(k, MatchOp::Re, v.as_str())?);
    }
    for s in list {
        out.push(Matcher::parse(s)?);
    }
    Ok(out)
}

impl Route {
    pub fn matchers(&self) -> Result<Vec<Matcher>, String> {
        collect_matchers(&self.match_, &self.match_re, &self.matchers)
    }
}

impl InhibitRule {
    pub fn source(&self) -> Result<Vec<Matcher>, String> {
        collect_matchers(&self.source_match, &self.source_match_re, &self.source_matchers)
    }
    pub fn target(&self) -> Result<Vec<Matcher>, String> {
        collect_matchers(&self.target_match, &self.target_match_re, &self.target_matchers)
    }
}

/// Where an alert ends up: one leaf of the routing tree, with inherited settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteMatch {
    /// Indices from the root to the matched route (`[]` = the root itself).
    pub path: Vec<usize>,
    pub receiver: String,
    pub group_by: Vec<String>,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub continue_: bool,
}

fn dur(t: &Option<Text>, inherited: Duration) -> Duration {
    t.as_ref().and_then(|t| parse_duration(t.as_str()).ok()).unwrap_or(inherited)
}

impl Config {
    pub fn from_yaml(text: &str) -> Result<Config, serde_yaml::Error> {
        let c: Option<Config> = serde_yaml::from_str(text)?;
        Ok(c.unwrap_or_default())
    }

    pub fn receiver(&self, name: &str) -> Option<&Receiver> {
        self.receivers.iter().find(|r| r.name == name)
    }

    /// The file the drill receiver's webhook reads its bearer token from
    /// (`http_config.authorization.credentials_file`, the same for every webhook of it):
    /// `Err` says what to add to alertmanager.yml.
    pub fn bearer_file(&self, receiver: &str) -> std::result::Result<String, String> {
        let hint = format!(
            "the drill receiver `{receiver}` must authenticate to stackproof's webhook: give its webhook_configs entry `http_config: {{authorization: {{type: Bearer, credentials_file: /run/secrets/drill/token}}}}` (stackproof writes a fresh token there for each drill)"
        );
        let rc = self.receiver(receiver).ok_or_else(|| format!("alertmanager.yml has no receiver `{receiver}` (drill.receiver)"))?;
        let files: BTreeSet<Option<&str>> = rc
            .webhook_configs
            .iter()
            .map(|w| w.extra.get("http_config").and_then(|h| h.get("authorization")).and_then(|a| a.get("credentials_file")).and_then(|f| f.as_str()))
            .collect();
        match files.into_iter().collect::<Vec<_>>().as_slice() {
            [Some(f)] if f.starts_with('/') => Ok(f.to_string()),
            [Some(f)] => Err(format!("{hint}; `{f}` is not an absolute path in the container")),
            [] => Err(format!("the drill receiver `{receiver}` has no webhook_configs")),
            [None] => Err(hint),
            _ => Err(format!("{hint}; every webhook of the receiver must read the same file")),
        }
    }

    /// Route an alert the way Alertmanager does: depth first, children in order, a
    /// matching child stops the search unless it has `continue: true`; a route none of
    /// whose children match takes the alert itself. Unparsable matchers never match.
    pub fn route_alert(&self, labels: &BTreeMap<String, String>) -> Vec<RouteMatch> {
        let Some(root) = &self.route else { return vec![] };
        let base = RouteMatch {
            path: vec![],
            receiver: root.receiver.clone().unwrap_or_default(),
            group_by: root.group_by.clone().unwrap_or_default(),
            group_wait: dur(&root.group_wait, DEFAULT_GROUP_WAIT),
            group_interval: dur(&root.group_interval, DEFAULT_GROUP_INTERVAL),
            repeat_interval: dur(&root.repeat_interval, DEFAULT_REPEAT_INTERVAL),
            continue_: false,
        };
        let mut out = Vec::new();
        route_rec(root, &base, labels, &mut out);
        out
    }
}

fn route_rec(route: &Route, here: &RouteMatch, labels: &BTreeMap<String, String>, out: &mut Vec<RouteMatch>) {
    let before = out.len();
    for (i, child) in route.routes.iter().enumerate() {
        let ok = child.matchers().map(|ms| ms.iter().all(|m| m.matches_labels(labels))).unwrap_or(false);
        if !ok {
            continue;
        }
        let mut path = here.path.clone();
        path.push(i);
        let m = RouteMatch {
            path,
            receiver: child.receiver.clone().unwrap_or_else(|| here.receiver.clone()),
            group_by: child.group_by.clone().unwrap_or_else(|| here.group_by.clone()),
            group_wait: dur(&child.group_wait, here.group_wait),
            group_interval: dur(&child.group_interval, here.group_interval),
            repeat_interval: dur(&child.repeat_interval, here.repeat_interval),
            continue_: child.continue_,
        };
        route_rec(child, &m, labels, out);
        if !child.continue_ {
            break;
        }
    }
    if out.len() == before {
        out.push(here.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const AM: &str = r#"
route:
  receiver: default
  group_wait: 10s
  routes:
    - matchers: [alertname="Drill"]
      receiver: drill
      group_wait: 1s
    - match: {severity: critical}
      receiver: crit
      continue: true
    - matchers: ['severity=~"critical|warning"']
      receiver: any
receivers: [{name: default}, {name: drill}, {name: crit}, {name: any}]
"#;

    #[test]
    fn routes_like_alertmanager() {
        let c = Config::from_yaml(AM).unwrap();
        let r = c.route_alert(&labels(&[("alertname", "Drill"), ("severity", "critical")]));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].receiver, "drill");
        assert_eq!(r[0].group_wait, Duration::from_secs(1));
        assert_eq!(r[0].group_interval, DEFAULT_GROUP_INTERVAL);
        let r = c.route_alert(&labels(&[("alertname", "X"), ("severity", "critical")]));
        assert_eq!(r.iter().map(|m| m.receiver.as_str()).collect::<Vec<_>>(), ["crit", "any"]);
        let r = c.route_alert(&labels(&[("alertname", "X")]));
        assert_eq!(r[0].receiver, "default");
        assert_eq!(r[0].group_wait, Duration::from_secs(10));
    }

    #[test]
    fn matcher_syntax() {
        let m = Matcher::parse(r#"integration=~".*""#).unwrap();
        assert_eq!(m.op, MatchOp::Re);
        assert!(m.matches(""));
        let m = Matcher::parse("severity = warning").unwrap();
        assert!(m.matches("warning"));
        assert!(Matcher::parse("severity").is_err());
    }
}
