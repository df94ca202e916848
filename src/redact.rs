//! What is or may be a secret, and how to keep it out of everything stackproof writes
//! (stdout, JSON, the HTML report, the local and the host's journal).
//!
//! Two rules, both deliberately broad (a hidden harmless value costs a look at the file;
//! a printed password costs a rotation):
//! - a value under a key whose name contains `password`, `token`, `key`, `secret` or
//!   `credential` is never shown, only its path;
//! - a URL with userinfo (`https://user:pw@host`) or a query string (`?token=…`) is never
//!   shown whole: its userinfo and query become `***`.

use serde_json::Value;

const SECRET_WORDS: [&str; 6] = ["password", "passwd", "token", "key", "secret", "credential"];

/// What replaces a hidden value.
pub const HIDDEN: &str = "***";

/// Whether a key's value is or may be a secret (`smtp_auth_password`, `api_key`,
/// `credentials_file`, `X-Auth-Token`, …).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| k.contains(w))
}

/// Whether a dotted/bracketed path (`receivers[x].email_configs[0].auth_password`) has a
/// segment naming a secret.
pub fn is_secret_path(path: &str) -> bool {
    path.split(['.', '[', ']']).any(|seg| !seg.is_empty() && is_secret_key(seg))
}

/// Whether `s` holds a URL with userinfo or a query string.
pub fn is_secret_url(s: &str) -> bool {
    scrub_urls(s) != s
}

/// Whether a scalar under `key` (at `path`) must not be shown.
pub fn hide_value(path: &str, key: &str, value: &str) -> bool {
    is_secret_key(key) || is_secret_path(path) || is_secret_url(value)
}

/// Hide userinfo and query of every `scheme://…` URL in `s`.
fn scrub_urls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        // The scheme: letters just before `://`.
        let head = &rest[..i];
        let scheme_start = head.rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c))).map(|j| j + 1).unwrap_or(0);
        if scheme_start == i {
            out.push_str(&rest[..i + 3]);
            rest = &rest[i + 3..];
            continue;
        }
        out.push_str(&rest[..i + 3]);
        let after = &rest[i + 3..];
        let end = after.find(|c: char| c.is_whitespace() || "\"'`<>".contains(c)).unwrap_or(after.len());
        let url = &after[..end];
        let (authority_end, _) = url.char_indices().find(|(_, c)| "/?#".contains(*c)).unwrap_or((url.len(), ' '));
        let authority = &url[..authority_end];
        let mut tail = &url[authority_end..];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str(HIDDEN);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        if let Some(q) = tail.find('?') {
            out.push_str(&tail[..q + 1]);
            out.push_str(HIDDEN);
            tail = tail[q + 1..].find('#').map(|h| &tail[q + 1 + h..]).unwrap_or("");
        }
        out.push_str(tail);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Hide secret-looking parts of free text: URLs with userinfo or a query, `KEY=VALUE`
/// and `KEY: VALUE` where KEY names a secret, `Bearer`/`Basic` credentials, and
/// `-u user:password` / `--user user:password`. For command lines (`--on-red`) and any
/// upstream message.
pub fn scrub_text(s: &str) -> String {
    let s = scrub_urls(s);
    let words: Vec<&str> = s.split_inclusive(char::is_whitespace).collect();
    let mut out = String::with_capacity(s.len());
    let mut hide_next = false;
    for w in words {
        let (word, ws) = w.split_at(w.trim_end().len());
        let bare = word.trim_matches(|c| "\"'".contains(c));
        if hide_next && !bare.is_empty() {
            out.push_str(HIDDEN);
            out.push_str(ws);
            hide_next = false;
            continue;
        }
        let lower = bare.to_ascii_lowercase();
        if ["bearer", "basic", "-u", "--user", "--password", "--token"].contains(&lower.as_str())
            || (lower.ends_with(':') && is_secret_key(&lower) && lower.chars().all(|c| c.is_ascii_alphanumeric() || "-_:".contains(c)))
        {
            out.push_str(w);
            hide_next = true;
            continue;
        }
        match word.find(['=', ':']) {
            Some(i) if i > 0 && i + 1 < word.len() && is_secret_key(&word[..i]) && !word[i + 1..].starts_with("//") => {
                out.push_str(&word[..i + 1]);
                out.push_str(HIDDEN);
                if word.ends_with(['"', '\'']) {
                    out.push_str(&word[word.len() - 1..]);
                }
            }
            _ => out.push_str(word),
        }
        out.push_str(ws);
    }
    out
}

/// Scrub every string of a JSON document (a journal entry, a report) in place; a value
/// under a secret key is hidden whole.
pub fn scrub_json(v: &mut Value) {
    match v {
        Value::String(s) => {
            let t = scrub_text(s);
            if t != *s {
                *s = t;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(scrub_json),
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if is_secret_key(k) && matches!(v, Value::String(_) | Value::Number(_)) {
                    *v = Value::String(HIDDEN.into());
                } else {
                    scrub_json(v);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_and_paths() {
        for k in ["smtp_auth_password", "api_key", "routing_key", "credentials_file", "X-Auth-Token", "client_secret", "Passwd"] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["url", "send_resolved", "group_by", "receiver", "smarthost", "keep_firing_for"] {
            assert!(!is_secret_key(k), "{k}");
        }
        assert!(is_secret_path("receivers[x].http_config.authorization.credentials"));
        assert!(!is_secret_path("receivers[x].webhook_configs[0].url"));
    }

    #[test]
    fn urls_lose_userinfo_and_query() {
        assert_eq!(scrub_text("see https://bob:hunter2@hooks.example/x?token=abc#f now"), "see https://***@hooks.example/x?***#f now");
        assert_eq!(scrub_text("http://127.0.0.1:9799/"), "http://127.0.0.1:9799/");
        assert_eq!(scrub_text("`https://h.example/p?a=1`"), "`https://h.example/p?***`");
        assert!(is_secret_url("https://hooks.slack.com/services/T0?x=1"));
        assert!(is_secret_url("smtp://u:p@mail"));
        assert!(!is_secret_url("https://hooks.example/alert"));
        assert!(!is_secret_url("not a url: a@b?c"));
    }

    #[test]
    fn command_lines_keep_their_shape_but_not_their_secrets() {
        let cmd = "curl -fsS -u ops:s3cret -H 'Authorization: Bearer abc.def' --data x=1 https://pager.example/v1?api_key=K TOKEN=zzz ./page.sh";
        let s = scrub_text(cmd);
        for leaked in ["s3cret", "abc.def", "api_key=K", "zzz"] {
            assert!(!s.contains(leaked), "{leaked} in {s}");
        }
        assert!(s.starts_with("curl -fsS -u *** -H 'Authorization: Bearer ***"), "{s}");
        assert!(s.contains("--data x=1") && s.contains("./page.sh") && s.contains("TOKEN=***"), "{s}");
        assert_eq!(scrub_text("systemctl restart x"), "systemctl restart x");
        // A path naming a secret-looking receiver is not a `Header: value` pair.
        assert_eq!(scrub_text("receivers[e2e-secrets].text: the value differs"), "receivers[e2e-secrets].text: the value differs");
        assert_eq!(scrub_text("X-Api-Key: abc"), "X-Api-Key: ***");
    }

    #[test]
    fn json_documents_are_scrubbed_everywhere() {
        let mut v =
            serde_json::json!({"command": "notify --token abc", "smtp_auth_password": "pw", "nested": [{"detail": "posting to http://u:p@h/"}], "n": 1});
        scrub_json(&mut v);
        let s = v.to_string();
        assert!(!s.contains("abc") && !s.contains("\"pw\"") && !s.contains("u:p@"), "{s}");
        assert_eq!(v["n"], 1);
    }
}
