//! Would a person be paged? One check per receiver the stack takes from the host and per
//! integration: the endpoint reached from the host as Alertmanager reaches it
//! (`paging::probe`), without paging anyone. And one check of Alertmanager's own
//! account: `alertmanager_notifications_failed_total` rising for an integration since the
//! last verification is a failure naming it, with the last error Alertmanager logged.
//! A host whose entry says `unpaged: "why"` gets warnings instead of failures.

use super::{timed, Check, Outcome, Status};
use crate::hosts::Host;
use crate::paging::probe;
use crate::remote::http::Http;
use crate::remote::{layout, Conn};
use crate::stack::alertmanager::Config as AmConfig;
use crate::stack::{paths, Stack};
use std::collections::BTreeMap;

const FAILED: &str = "alertmanager_notifications_failed_total";

/// The reachability checks of every receiver the routing tree uses (but stackproof's own
/// drill receiver, which the drill proves), as the deployed config gives them.
pub async fn reachable(conn: &Conn, stack: &Stack, host: &Host) -> Vec<Check> {
    // Only the Alertmanager config is needed (the checks' own `StackFiles` is not in reach).
    let cfg =
        paths::alertmanager_config(&stack.manifest).and_then(|p| p.stack).and_then(|rel| stack.read_text(&rel).ok()).and_then(|t| AmConfig::from_yaml(&t).ok());
    let Some(cfg) = &cfg else { return vec![] };
    let mut names = vec![];
    if let Some(route) = &cfg.route {
        super::alertmanager::tree_receivers(route, &mut names);
    }
    names.retain(|n| *n != stack.manifest.drill.receiver);
    let mut empty = vec![];
    let mut probes = vec![];
    for name in names {
        let slack_url =
            host.receivers.get(&name).and_then(|e| e.slack.as_ref()).and_then(|s| host.read_secret(&format!("receivers.{name}.api_url"), &s.api_url).ok());
        let targets = probe::targets_of(cfg, &name, slack_url.as_ref().map(|s| s.expose()));
        let where_ = if stack.manifest.receivers.from_host.contains(&name) {
            format!("under `receivers:` in the host entry ({})", host.source.display())
        } else {
            "in the stack's alertmanager.yml".to_string()
        };
        if targets.is_empty() {
            let why = host.unpaged.as_deref().map(|u| format!(" (the host entry says: {u})")).unwrap_or_default();
            empty.push(Check {
                name: format!("alertmanager: receiver {name}"),
                status: Status::Fail,
                detail: format!("no integration: nobody is paged for alerts routed here{why}"),
                hint: format!("give it an endpoint {where_}"),
                duration_ms: 0,
            });
        }
        for (integration, target) in targets {
            let (name, where_) = (name.clone(), where_.clone());
            probes.push(timed(format!("alertmanager: receiver {name} ({integration})"), async move {
                let target = match target {
                    Ok(t) => t,
                    Err(why) => return Outcome::skip(why),
                };
                let p = probe::run(&conn.ssh, &target).await;
                if p.ok {
                    Outcome::pass(format!("{}: {}", target.describe(), p.detail))
                } else {
                    Outcome::fail(
                        format!("{} not reachable from the host ({}): {}", target.describe(), p.stage, p.detail),
                        format!("fix the `{integration}` endpoint of receiver `{name}` {where_}: Alertmanager reaches it from the host"),
                    )
                }
            }));
        }
    }
    let mut checks = empty;
    checks.extend(futures_util::future::join_all(probes).await);
    // A host that pages nobody on purpose: its failures are known and accepted.
    if host.unpaged.is_some() {
        checks = checks.into_iter().map(warn).collect();
    }
    checks
}

/// A failure that is known and accepted becomes a warning (a pass stays a pass).
fn warn(mut c: Check) -> Check {
    if c.status == Status::Fail {
        c.status = Status::Warn;
    }
    c
}

/// `alertmanager_notifications_failed_total` by integration, from exposition text.
pub fn failed_counts(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for l in text.lines().filter(|l| l.starts_with(FAILED) && l[FAILED.len()..].starts_with('{')) {
        let Some(i) = l.find("integration=\"") else { continue };
        let rest = &l[i + "integration=\"".len()..];
        let Some(end) = rest.find('"') else { continue };
        let v: f64 = l.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        *out.entry(rest[..end].to_string()).or_default() += v;
    }
    out
}

/// The integrations whose failures rose since `before` (a counter reset counts from 0).
pub fn rising(before: &BTreeMap<String, f64>, now: &BTreeMap<String, f64>) -> Vec<(String, f64)> {
    now.iter()
        .filter_map(|(k, &v)| {
            let b = before.get(k).copied().unwrap_or(0.0);
            let rose = if v >= b { v - b } else { v };
            (rose > 0.0).then(|| (k.clone(), rose))
        })
        .collect()
}

/// The last error Alertmanager logged about notifying, without URLs' secrets (paths and
/// queries are cut: Alertmanager logs the full webhook URL).
pub fn last_notify_error(logs: &str) -> Option<String> {
    let line = logs.lines().rev().find(|l| l.contains("Notify for alerts failed") || (l.contains("level=error") && l.contains("integration")))?;
    let cut = regex::Regex::new(r#"(https?://[^/\s"]+)[^\s"]*"#).expect("static regex");
    Some(cut.replace_all(line.trim(), "$1/…").chars().take(400).collect())
}

/// Which failed notifications count against a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// Those since the last verification or deploy (`verify`, `watch`).
    LastVerification,
    /// None: the configuration was just put in place (a deploy or rollback), so earlier
    /// failures belong to the one it replaced; the counts become the next baseline.
    Now,
}

/// The failed-notification counters now, and a check against the last verification's.
/// `own`: stackproof's drill receiver, whose failures (a drill that ended while
/// Alertmanager still had something to tell it) page nobody and are not counted.
pub async fn notifications(conn: &Conn, alertmanager: &str, since: Since, own: &str) -> (Check, Option<BTreeMap<String, f64>>) {
    let now = match Http::new().get(&format!("{alertmanager}/metrics"), None).await {
        Ok(a) if a.ok() => failed_counts(&a.body),
        Ok(a) => return (skip(format!("Alertmanager's /metrics answered HTTP {}", a.status)), None),
        Err(e) => return (skip(e), None),
    };
    if since == Since::Now {
        let total: f64 = now.values().sum();
        let c = timed("alertmanager: notifications delivered", async move {
            Outcome::pass(format!("baseline taken: {total} failed notification(s) counted so far; a rise fails the next verification"))
        })
        .await;
        return (c, Some(now));
    }
    let (before, since_at) = last_counts(conn).await;
    let up = rising(&before, &now);
    let c = timed("alertmanager: notifications delivered", async {
        if up.is_empty() {
            return Outcome::pass(if before.is_empty() {
                "no failed notification counted".to_string()
            } else {
                "no notification failed since the last verification".to_string()
            });
        }
        let logs = match conn.engine.observed_service("alertmanager").await {
            Some(id) => conn.engine.last_logs(&id, 300).await,
            None => String::new(),
        };
        // Alertmanager 0.25 counts failures per integration, not per receiver: its log
        // says which receiver failed. Failures only ever of stackproof's own receiver
        // page nobody.
        let failing = failed_receivers(&logs, since_at.as_deref());
        if !failing.is_empty() && failing.iter().all(|r| r == own) {
            return Outcome::pass(format!(
                "only stackproof's own drill receiver `{own}` failed since the last verification (after a drill ended): no pager affected"
            ));
        }
        let which: Vec<String> = up.iter().map(|(k, n)| format!("{k} (+{n})")).collect();
        let last = last_notify_error(&logs);
        Outcome::fail(
            format!(
                "notifications failed since the last verification: {}{}",
                which.join(", "),
                last.map(|l| format!("\n  last error: {l}")).unwrap_or_default()
            ),
            "an integration Alertmanager uses cannot deliver: check its receiver's endpoint and credentials in the host entry",
        )
    })
    .await;
    (c, Some(now))
}

fn skip(why: impl Into<String>) -> Check {
    super::skipped("alertmanager: notifications delivered", why)
}

/// The counters the last verification (or deploy) journaled on the host.
/// The counters the last verification (or deploy) journaled, and when.
async fn last_counts(conn: &Conn) -> (BTreeMap<String, f64>, Option<String>) {
    let Ok(tail) = layout::journal_tail(&conn.ssh, 50).await else { return Default::default() };
    tail.iter()
        .rev()
        .find_map(|e| {
            let counts = serde_json::from_value::<BTreeMap<String, f64>>(e.get("notifications_failed")?.clone()).ok()?;
            Some((counts, e.get("at").and_then(|a| a.as_str()).map(str::to_string)))
        })
        .unwrap_or_default()
}

/// The receivers of the failed notifications Alertmanager logged after `since`
/// (RFC 3339; all when unknown): `err="<receiver>/<integration>[i]: …"`.
pub fn failed_receivers(logs: &str, since: Option<&str>) -> Vec<String> {
    let since = since.and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
    logs.lines()
        .filter(|l| l.contains("Notify for alerts failed"))
        .filter(|l| {
            let ts = l.split_whitespace().find_map(|f| f.strip_prefix("ts=")).and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            match (since, ts) {
                (Some(s), Some(t)) => t >= s,
                _ => true,
            }
        })
        .filter_map(|l| {
            let rest = &l[l.find("err=\"")? + 5..];
            Some(rest[..rest.find('/')?].to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_by_integration() {
        let t = "# TYPE alertmanager_notifications_failed_total counter\nalertmanager_notifications_failed_total{integration=\"email\"} 0\nalertmanager_notifications_failed_total{integration=\"webhook\"} 3\nalertmanager_notifications_total{integration=\"webhook\"} 9\n";
        let c = failed_counts(t);
        assert_eq!(c.get("webhook"), Some(&3.0));
        assert_eq!(c.get("email"), Some(&0.0));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn rising_counters_name_the_integration() {
        let before = BTreeMap::from([("webhook".to_string(), 3.0), ("email".to_string(), 1.0)]);
        let now = BTreeMap::from([("webhook".to_string(), 5.0), ("email".to_string(), 1.0), ("slack".to_string(), 0.0)]);
        assert_eq!(rising(&before, &now), vec![("webhook".to_string(), 2.0)]);
        let reset = BTreeMap::from([("webhook".to_string(), 1.0)]);
        assert_eq!(rising(&before, &reset), vec![("webhook".to_string(), 1.0)], "after a restart the counter starts again");
        assert!(rising(&now, &now).is_empty());
    }

    #[test]
    fn failed_receivers_after_the_last_verification() {
        let logs = "ts=2026-11-30T10:00:00.000Z level=error msg=\"Notify for alerts failed\" err=\"critical/webhook[0]: x\"\nts=2026-11-30T10:05:00.000Z level=error msg=\"Notify for alerts failed\" err=\"stackproof-drill/webhook[0]: notify retry canceled\"\nts=2026-11-30T10:06:00.000Z level=info msg=ok\n";
        assert_eq!(failed_receivers(logs, Some("2026-11-30T10:01:00Z")), vec!["stackproof-drill".to_string()]);
        assert_eq!(failed_receivers(logs, None), vec!["critical".to_string(), "stackproof-drill".to_string()]);
        assert!(failed_receivers("", None).is_empty());
    }

    #[test]
    fn the_last_error_is_cut_before_any_path_or_token() {
        let logs = "ts=1 level=info msg=ok\nts=2 level=error component=dispatcher msg=\"Notify for alerts failed\" num_alerts=1 err=\"critical/webhook[0]: notify retry canceled: Post \\\"http://127.0.0.1:9798/critical?token=abc\\\": dial tcp 127.0.0.1:9798: connect: connection refused\"\n";
        let l = last_notify_error(logs).unwrap();
        assert!(l.contains("connection refused") && l.contains("critical/webhook"), "{l}");
        assert!(!l.contains("token=abc") && !l.contains("/critical?"), "{l}");
        assert_eq!(last_notify_error("level=info msg=fine"), None);
    }
}
