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
use crate::stack::Stack;
use std::collections::BTreeMap;

const FAILED: &str = "alertmanager_notifications_failed_total";

/// The reachability checks of every receiver the routing tree uses (but stackproof's own
/// drill receiver, which the drill proves), as the deployed config gives them.
pub async fn reachable(conn: &Conn, stack: &Stack, host: &Host) -> Vec<Check> {
    let files = crate::stack::files::StackFiles::load(stack);
    let Some(cfg) = &files.alertmanager.model else { return vec![] };
    let mut names = vec![];
    if let Some(route) = &cfg.route {
        super::alertmanager::tree_receivers(route, &mut names);
    }
    names.retain(|n| *n != stack.manifest.drill.receiver);
    let unpaged = host.unpaged.clone();
    let mut futs = vec![];
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
            let (unpaged, where_) = (unpaged.clone(), where_.clone());
            futs.push(futures_util::future::Either::Left(async move {
                let why = unpaged.as_deref().map(|u| format!(" (the host entry says: {u})")).unwrap_or_default();
                let c = timed(format!("alertmanager: receiver {name}"), async move {
                    Outcome::fail(format!("no integration: nobody is paged for alerts routed here{why}"), format!("give it an endpoint {where_}"))
                })
                .await;
                if unpaged.is_some() {
                    warn(c)
                } else {
                    c
                }
            }));
            continue;
        }
        for (integration, target) in targets {
            let (name, where_, unpaged) = (name.clone(), where_.clone(), unpaged.is_some());
            futs.push(futures_util::future::Either::Right(async move {
                let c = timed(format!("alertmanager: receiver {name} ({integration})"), async {
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
                })
                .await;
                if unpaged {
                    warn(c)
                } else {
                    c
                }
            }));
        }
    }
    futures_util::future::join_all(futs).await
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

/// The failed-notification counters now, and a check against the last verification's.
pub async fn notifications(conn: &Conn, alertmanager: &str) -> (Check, Option<BTreeMap<String, f64>>) {
    let now = match Http::new().get(&format!("{alertmanager}/metrics"), None).await {
        Ok(a) if a.ok() => failed_counts(&a.body),
        Ok(a) => return (skip(format!("Alertmanager's /metrics answered HTTP {}", a.status)), None),
        Err(e) => return (skip(e), None),
    };
    let before = last_counts(conn).await;
    let up = rising(&before, &now);
    let c = timed("alertmanager: notifications delivered", async {
        if up.is_empty() {
            return Outcome::pass(if before.is_empty() {
                "no failed notification counted".to_string()
            } else {
                "no notification failed since the last verification".to_string()
            });
        }
        let which: Vec<String> = up.iter().map(|(k, n)| format!("{k} (+{n})")).collect();
        let last = match conn.engine.observed_service("alertmanager").await {
            Some(id) => last_notify_error(&conn.engine.last_logs(&id, 200).await),
            None => None,
        };
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
async fn last_counts(conn: &Conn) -> BTreeMap<String, f64> {
    let Ok(tail) = layout::journal_tail(&conn.ssh, 50).await else { return BTreeMap::new() };
    tail.iter()
        .rev()
        .find_map(|e| e.get("notifications_failed").and_then(|v| serde_json::from_value::<BTreeMap<String, f64>>(v.clone()).ok()))
        .unwrap_or_default()
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
    fn the_last_error_is_cut_before_any_path_or_token() {
        let logs = "ts=1 level=info msg=ok\nts=2 level=error component=dispatcher msg=\"Notify for alerts failed\" num_alerts=1 err=\"critical/webhook[0]: notify retry canceled: Post \\\"http://127.0.0.1:9798/critical?token=abc\\\": dial tcp 127.0.0.1:9798: connect: connection refused\"\n";
        let l = last_notify_error(logs).unwrap();
        assert!(l.contains("connection refused") && l.contains("critical/webhook"), "{l}");
        assert!(!l.contains("token=abc") && !l.contains("/critical?"), "{l}");
        assert_eq!(last_notify_error("level=info msg=fine"), None);
    }
}
