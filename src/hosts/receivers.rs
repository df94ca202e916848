//! Where a host's pages go: each receiver of the stack's Alertmanager routing tree that
//! takes its endpoint from the host entry (`receivers:` in hosts.yml), with the
//! credentials as secrets (`{env: VAR}` or `{file: PATH}`), never in the stack.
//!
//! ```yaml
//! receivers:
//!   critical:
//!     webhook: {url: https://pager.example.com/hook, bearer_token: {env: PAGER_TOKEN}}
//!   warning:
//!     email: {to: oncall@example.com, from: am@example.com, smarthost: smtp.example.com:587,
//!             auth_username: am, auth_password: {env: SMTP_PASSWORD}}
//!   info:
//!     slack: {api_url: {env: CHAT_WEBHOOK_URL}, channel: "#monitoring"}
//! unpaged: "staging box: nobody is paged yet"   # receiver checks become warnings
//! ```

use super::SecretSource;
use serde::Deserialize;

/// One receiver's integrations. At least one must be given.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReceiverEntry {
    #[serde(default)]
    pub webhook: Option<Webhook>,
    #[serde(default)]
    pub email: Option<Email>,
    #[serde(default)]
    pub slack: Option<Slack>,
}

/// A generic webhook. The URL is not a secret: Alertmanager 0.25 has no `url_file`
/// (amtool 0.25 rejects it), so the URL sits in alertmanager.yml on the host. A token goes
/// in `bearer_token` (sent as `Authorization: Bearer`, read from a file by Alertmanager).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    #[serde(default)]
    pub bearer_token: Option<SecretSource>,
}

/// Mail through an SMTP smarthost (`host:port`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Email {
    pub to: String,
    pub from: String,
    pub smarthost: String,
    #[serde(default)]
    pub auth_username: Option<String>,
    #[serde(default)]
    pub auth_password: Option<SecretSource>,
    /// Alertmanager's default: STARTTLS required.
    #[serde(default = "yes")]
    pub require_tls: bool,
}

fn yes() -> bool {
    true
}

/// A Slack-compatible incoming webhook: the URL carries the token, so it is a secret
/// (Alertmanager reads it from `api_url_file`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Slack {
    pub api_url: SecretSource,
    #[serde(default)]
    pub channel: Option<String>,
}

impl ReceiverEntry {
    /// The integrations, as Alertmanager names them.
    pub fn integrations(&self) -> Vec<&'static str> {
        let mut out = vec![];
        if self.webhook.is_some() {
            out.push("webhook");
        }
        if self.email.is_some() {
            out.push("email");
        }
        if self.slack.is_some() {
            out.push("slack");
        }
        out
    }

    /// Every secret source of the entry (to make relative file paths absolute).
    pub fn sources_mut(&mut self) -> Vec<&mut SecretSource> {
        let mut out = vec![];
        if let Some(t) = self.webhook.as_mut().and_then(|w| w.bearer_token.as_mut()) {
            out.push(t);
        }
        if let Some(p) = self.email.as_mut().and_then(|e| e.auth_password.as_mut()) {
            out.push(p);
        }
        if let Some(s) = self.slack.as_mut() {
            out.push(&mut s.api_url);
        }
        out
    }
}

/// What is wrong with one receiver entry, if anything (pure; checked when the hosts file
/// is read, before any host is touched).
pub fn problem(name: &str, r: &ReceiverEntry) -> Option<String> {
    if r.integrations().is_empty() {
        return Some(format!("receiver `{name}` has no integration: give it `webhook:`, `email:` or `slack:`"));
    }
    if let Some(w) = &r.webhook {
        match reqwest::Url::parse(&w.url) {
            Err(e) => return Some(format!("receiver `{name}`: webhook url `{}` is not a URL ({e})", w.url)),
            Ok(u) if u.scheme() != "http" && u.scheme() != "https" => {
                return Some(format!("receiver `{name}`: webhook url must be http or https, not `{}`", u.scheme()));
            }
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                return Some(format!(
                    "receiver `{name}`: the webhook url carries credentials; Alertmanager 0.25 has no url_file, so they would sit in plain text on the host: put the token in `bearer_token: {{env: VAR}}`"
                ));
            }
            Ok(u) if u.query().is_some() => {
                return Some(format!(
                    "receiver `{name}`: the webhook url has a query string, where tokens usually travel; Alertmanager 0.25 has no url_file, so it would sit in plain text on the host: send the token as `bearer_token`, or use `slack:` (api_url is read from a file) for a Slack-compatible chat webhook"
                ));
            }
            Ok(u) if u.host_str().is_none() => return Some(format!("receiver `{name}`: webhook url `{}` has no host", w.url)),
            Ok(_) => {}
        }
    }
    if let Some(e) = &r.email {
        if smarthost(&e.smarthost).is_none() {
            return Some(format!("receiver `{name}`: smarthost `{}` must be HOST:PORT", e.smarthost));
        }
        for (field, v) in [("to", &e.to), ("from", &e.from)] {
            if !v.contains('@') {
                return Some(format!("receiver `{name}`: email `{field}` `{v}` is not a mail address"));
            }
        }
        if e.auth_password.is_some() && e.auth_username.is_none() {
            return Some(format!("receiver `{name}`: `auth_password` needs `auth_username`"));
        }
    }
    None
}

/// `host:port` of an SMTP smarthost (IPv6 in brackets), or None.
pub fn smarthost(s: &str) -> Option<(String, u16)> {
    let (h, p) = s.rsplit_once(':')?;
    let h = h.trim_start_matches('[').trim_end_matches(']');
    let port = p.parse().ok()?;
    (!h.is_empty()).then(|| (h.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(url: &str) -> ReceiverEntry {
        ReceiverEntry { webhook: Some(Webhook { url: url.into(), bearer_token: None }), ..Default::default() }
    }

    #[test]
    fn a_receiver_needs_an_integration() {
        assert!(problem("critical", &ReceiverEntry::default()).unwrap().contains("no integration"));
    }

    #[test]
    fn webhook_urls_are_checked_and_never_carry_secrets() {
        assert_eq!(problem("c", &webhook("https://pager.example.com/hook")), None);
        assert!(problem("c", &webhook("not a url")).unwrap().contains("is not a URL"));
        assert!(problem("c", &webhook("ftp://x/")).unwrap().contains("http or https"));
        assert!(problem("c", &webhook("https://u:p@x/")).unwrap().contains("bearer_token"));
        assert!(problem("c", &webhook("https://x/hook?token=abc")).unwrap().contains("query string"));
    }

    #[test]
    fn email_needs_a_smarthost_and_addresses() {
        let mut e = Email {
            to: "a@b.c".into(),
            from: "d@e.f".into(),
            smarthost: "smtp.example.com:587".into(),
            auth_username: None,
            auth_password: None,
            require_tls: true,
        };
        let entry = |e: &Email| ReceiverEntry { email: Some(e.clone()), ..Default::default() };
        assert_eq!(problem("w", &entry(&e)), None);
        e.smarthost = "smtp.example.com".into();
        assert!(problem("w", &entry(&e)).unwrap().contains("HOST:PORT"));
        e.smarthost = "[::1]:25".into();
        e.to = "nobody".into();
        assert!(problem("w", &entry(&e)).unwrap().contains("not a mail address"));
        e.to = "a@b.c".into();
        e.auth_password = Some(SecretSource::Env("X".into()));
        assert!(problem("w", &entry(&e)).unwrap().contains("auth_username"));
    }

    #[test]
    fn smarthost_parses_ipv4_names_and_ipv6() {
        assert_eq!(smarthost("127.0.0.1:2525"), Some(("127.0.0.1".into(), 2525)));
        assert_eq!(smarthost("[::1]:25"), Some(("::1".into(), 25)));
        assert_eq!(smarthost(":25"), None);
        assert_eq!(smarthost("host:port"), None);
    }
}
