//! The checks Alertmanager runs when it loads its config (`config.Load`): each
//! integration's required fields with their global fallbacks, settings given both inline
//! and in a file, route matchers, string-typed settings. Messages quote Alertmanager's.

use super::promcfg::{get, list, nonempty, text, valid_label_name, Ck};
use super::versions::Version;
use super::{Sink, Source};
use serde_yaml::Value;

/// (integration, field, its global fallback, Alertmanager's message when neither is set)
const REQUIRED: &[(&str, &[&str], &[&str], &str)] = &[
    ("email_configs", &["to"], &[], "missing to address in email config"),
    ("email_configs", &["smarthost"], &["smtp_smarthost"], "no global SMTP smarthost set"),
    ("email_configs", &["from"], &["smtp_from"], "no global SMTP from set"),
    ("pagerduty_configs", &["routing_key", "service_key", "routing_key_file", "service_key_file"], &[], "missing service or routing key in PagerDuty config"),
    ("slack_configs", &["api_url", "api_url_file"], &["slack_api_url", "slack_api_url_file"], "no global Slack API URL set either inline or in a file"),
    (
        "opsgenie_configs",
        &["api_key", "api_key_file"],
        &["opsgenie_api_key", "opsgenie_api_key_file"],
        "no global OpsGenie API Key set either inline or in a file",
    ),
    ("wechat_configs", &["api_secret"], &["wechat_api_secret"], "no global Wechat ApiSecret set"),
    ("wechat_configs", &["corp_id"], &["wechat_api_corp_id"], "no global Wechat CorpID set"),
    ("victorops_configs", &["api_key", "api_key_file"], &["victorops_api_key", "victorops_api_key_file"], "no global VictorOps API Key set"),
    ("victorops_configs", &["routing_key"], &[], "missing Routing key in VictorOps config"),
    ("pushover_configs", &["user_key", "user_key_file"], &[], "missing user key in Pushover config"),
    ("pushover_configs", &["token", "token_file"], &[], "missing token in Pushover config"),
    ("telegram_configs", &["bot_token", "bot_token_file"], &[], "missing bot_token on telegram_config"),
    ("telegram_configs", &["chat_id"], &[], "missing chat_id on telegram_config"),
    ("sns_configs", &["target_arn", "topic_arn", "phone_number"], &[], "must provide either a Target ARN, Topic ARN, or Phone Number for SNS config"),
    ("webex_configs", &["room_id"], &[], "missing room_id on webex_config"),
    ("discord_configs", &["webhook_url", "webhook_url_file"], &[], "no discord webhook URL provided"),
];

/// Pairs that must not both be set (inline and in a file).
const EXCLUSIVE_GLOBAL: &[(&str, &str)] = &[
    ("slack_api_url", "slack_api_url_file"),
    ("smtp_auth_password", "smtp_auth_password_file"),
    ("opsgenie_api_key", "opsgenie_api_key_file"),
    ("victorops_api_key", "victorops_api_key_file"),
];
const EXCLUSIVE: &[(&str, &str)] = &[
    ("api_url", "api_url_file"),
    ("api_key", "api_key_file"),
    ("auth_password", "auth_password_file"),
    ("url", "url_file"),
    ("webhook_url", "webhook_url_file"),
];

const GLOBAL_STRINGS: &[&str] = &[
    "resolve_timeout",
    "smtp_smarthost",
    "smtp_from",
    "smtp_hello",
    "smtp_auth_username",
    "smtp_auth_password",
    "smtp_auth_password_file",
    "smtp_auth_identity",
    "smtp_auth_secret",
    "slack_api_url",
    "slack_api_url_file",
    "pagerduty_url",
    "opsgenie_api_url",
    "opsgenie_api_key",
    "opsgenie_api_key_file",
    "wechat_api_url",
    "wechat_api_secret",
    "wechat_api_corp_id",
    "victorops_api_url",
    "victorops_api_key",
    "victorops_api_key_file",
    "telegram_api_url",
    "webex_api_url",
];

pub fn check(src: &Source, doc: &Value, ver: Version, sink: &mut Sink) {
    let mut c = Ck { src, sink, ver, code: "am.invalid", type_code: "am.type", who: "Alertmanager" };
    let global = get(doc, "global").cloned().unwrap_or(Value::Null);
    c.scalars(&global, "global", GLOBAL_STRINGS);
    for (a, b) in EXCLUSIVE_GLOBAL {
        if nonempty(&global, a) && nonempty(&global, b) {
            c.err(&format!("global/{b}"), format!("at most one of {a} & {b} must be configured"), format!("keep `{a}` or `{b}`"));
        }
    }
    if let Some(h) = get(&global, "http_config") {
        c.http(h, "global/http_config");
    }
    for (i, r) in list(get(doc, "receivers")).iter().enumerate() {
        let base = format!("receivers/{i}");
        let Some(m) = r.as_mapping() else { continue };
        for (k, v) in m {
            let Some(kind) = k.as_str().filter(|k| k.ends_with("_configs")) else { continue };
            for (j, item) in list(Some(v)).iter().enumerate() {
                let ib = format!("{base}/{kind}/{j}");
                for (want, from_global, msg) in REQUIRED.iter().filter(|x| x.0 == kind).map(|x| (x.1, x.2, x.3)) {
                    let own = want.iter().any(|f| nonempty(item, f));
                    let global_set = from_global.iter().any(|f| nonempty(&global, f));
                    if !own && !global_set {
                        let hint = match from_global.first() {
                            Some(g) => format!("set `{}` here or `{g}` under global", want[0]),
                            None => format!("set `{}`", want[0]),
                        };
                        c.err(&ib, msg, hint);
                    }
                }
                for (a, b) in EXCLUSIVE {
                    if nonempty(item, a) && nonempty(item, b) {
                        c.err(&format!("{ib}/{b}"), format!("at most one of {a} & {b} must be configured"), format!("keep `{a}` or `{b}`"));
                    }
                }
                if let Some(h) = get(item, "http_config") {
                    c.http(h, &format!("{ib}/http_config"));
                }
            }
        }
    }
    if let Some(route) = get(doc, "route") {
        check_route(&mut c, route, "route", 0);
    }
}

fn check_route(c: &mut Ck, r: &Value, base: &str, depth: usize) {
    if depth > 200 {
        return; // absurd nesting: nothing real is that deep
    }
    for key in ["match", "match_re"] {
        let Some(m) = get(r, key).and_then(Value::as_mapping) else { continue };
        for (k, v) in m {
            let name = text(Some(k)).unwrap_or_default();
            let at = format!("{base}/{key}/{name}");
            if !valid_label_name(&name) {
                c.err(&at, format!("invalid label name {name:?}"), "label names are [a-zA-Z_][a-zA-Z0-9_]*");
            }
            if key == "match_re" {
                match text(Some(v)) {
                    None => c.err(&at, format!("invalid regexp value for {name:?}"), "give the label a regular expression"),
                    Some(re) => {
                        if let Err(e) = regex::Regex::new(&format!("^(?:{re})$")) {
                            let why = e.to_string().lines().last().unwrap_or("").trim().to_string();
                            c.err(&at, format!("error parsing regexp `{re}`: {why}"), "match_re values are RE2, anchored at both ends");
                        }
                    }
                }
            }
        }
    }
    for (i, child) in list(get(r, "routes")).iter().enumerate() {
        check_route(c, child, &format!("{base}/routes/{i}"), depth + 1);
    }
}
