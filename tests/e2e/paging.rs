//! A person really gets paged: every receiver proven reachable from the host, the real
//! alert delivered to the sandbox's real receivers (a webhook store and an SMTP mailbox,
//! `scripts/sandbox up`), nothing green while nobody would be paged, and bad receiver
//! entries refused before the host is touched.

use crate::support::sandbox::{current, hosts_override, read_jsonl, verified};
use crate::support::stack::{deploy_ok, RestoreDefault};
use crate::support::{free_port, json, sp, sp_env, text, REPO};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn check<'a>(j: &'a Value, name: &str) -> Option<&'a Value> {
    j["checks"].as_array()?.iter().find(|c| c["name"] == name)
}

fn webhook_store() -> PathBuf {
    Path::new(REPO).join(".stackproof/sandbox/pages/webhook.jsonl")
}

fn receiver(yaml: &str) -> serde_yaml::Value {
    serde_yaml::from_str(yaml).unwrap()
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn every_receiver_the_routing_tree_uses_is_proven_reachable() {
    deploy_ok(None, &["--no-drill"]);
    let o = sp(&["verify", "--host", "sandbox", "--format", "json"]);
    let j = json(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for name in ["alertmanager: receiver critical (webhook)", "alertmanager: receiver warning (email)", "alertmanager: receiver info (webhook)"] {
        let c = check(&j, name).unwrap_or_else(|| panic!("no check {name}: {j:#}"));
        assert_eq!(c["status"], "pass", "{c:#}");
    }
    assert!(check(&j, "alertmanager: receiver stackproof-drill (webhook)").is_none(), "the drill's own receiver is proven by the drill");
    assert_eq!(check(&j, "alertmanager: notifications delivered").unwrap()["status"], "pass", "{j:#}");
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn drill_real_pages_the_sandbox_with_the_real_alert_marked_as_a_drill() {
    deploy_ok(None, &["--no-drill"]);
    // Alertmanager 0.25 counts notifications per integration only: an alert an earlier
    // test left firing (its page counted with this one) would make the drill refuse to
    // call the page delivered. Only the drill's alerts stay audible.
    let _quiet = crate::support::http::SilenceOthers::except(&["HostExporterDown", "StackproofDrill"]);
    let before = read_jsonl(&webhook_store()).len();
    let o = sp(&["verify", "--host", "sandbox", "--drill-real", "--format", "json"]);
    let j = json(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let d = &j["drill"];
    assert_eq!((d["ok"].as_bool(), d["real"].as_bool(), d["delivered"].as_bool()), (Some(true), Some(true), Some(true)), "{d:#}");
    let handed =
        d["stages"].as_array().unwrap().iter().find(|s| s["name"].as_str().is_some_and(|n| n.starts_with("HostExporterDown handed to critical"))).unwrap();
    assert_eq!(handed["ok"], true, "{handed:#}");
    // The page a person reads, in the sandbox's webhook store: the real alert, firing,
    // saying it is a drill.
    let pages = read_jsonl(&webhook_store());
    let page = pages[before..]
        .iter()
        .flat_map(|p| p["body"]["alerts"].as_array().cloned().unwrap_or_default())
        .find(|a| a["labels"]["alertname"] == "HostExporterDown" && a["status"] == "firing")
        .unwrap_or_else(|| panic!("no HostExporterDown page after the drill: {:?}", &pages[before..]));
    assert!(page["annotations"]["drill"].as_str().is_some_and(|s| s.contains("not an outage")), "{page:#}");
    // The marker is gone: a later real outage is not called a drill.
    assert!(!Path::new("/srv/stackproof-sandbox/textfile/stackproof-drill.prom").exists());
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn a_receiver_nobody_listens_on_fails_the_deploy_and_rolls_back() {
    let _restore = RestoreDefault;
    deploy_ok(None, &["--no-drill"]);
    let good = verified();
    let port = free_port();
    let (_hosts, hosts) = hosts_override(|e| {
        e["receivers"].as_mapping_mut().unwrap().insert("critical".into(), receiver(&format!("{{webhook: {{url: 'http://127.0.0.1:{port}/critical'}}}}")));
    });
    let o = sp_env(&["deploy", "--host", "sandbox", "--no-drill", "--format", "json", "--lock-wait", "5m"], &[("STACKPROOF_HOSTS", &hosts)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let j = json(&o);
    let c = check(&j, "alertmanager: receiver critical (webhook)").unwrap_or_else(|| panic!("{j:#}"));
    assert_eq!(c["status"], "fail", "{c:#}");
    assert!(c["detail"].as_str().unwrap().contains(&format!("127.0.0.1:{port}")), "{c:#}");
    assert!(c["hint"].as_str().unwrap().contains("receivers:"), "{c:#}");
    assert_eq!(j["rollback"]["to"].as_str(), good.as_deref(), "{j:#}");
    assert_eq!(j["rollback"]["ok"], true, "{j:#}");
    assert_eq!(current(), good, "the host is back on the last verified release");
    let o = sp(&["verify", "--host", "sandbox", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "the host verifies afterwards: {}", text(&o));
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn bad_receiver_entries_are_refused_before_the_host_is_touched() {
    // Nothing listens on this port: had stackproof connected, it would say host_unreachable.
    let port = free_port();
    let cases: Vec<(&str, Box<dyn Fn(&mut serde_yaml::Mapping)>)> = vec![
        (
            "receiver_unknown",
            Box::new(|e| {
                e["receivers"].as_mapping_mut().unwrap().insert("pager".into(), receiver("{webhook: {url: 'http://127.0.0.1:1/'}}"));
            }),
        ),
        (
            "hosts_file_invalid",
            Box::new(|e| {
                e["receivers"].as_mapping_mut().unwrap().insert("critical".into(), receiver("{webhook: {url: 'not a url'}}"));
            }),
        ),
        (
            "secret_missing",
            Box::new(|e| {
                e["receivers"]
                    .as_mapping_mut()
                    .unwrap()
                    .insert("critical".into(), receiver("{webhook: {url: 'http://127.0.0.1:1/', bearer_token: {env: STACKPROOF_E2E_UNSET}}}"));
            }),
        ),
        (
            "receiver_missing",
            Box::new(|e| {
                e["receivers"].as_mapping_mut().unwrap().remove("warning");
            }),
        ),
    ];
    for (kind, edit) in cases {
        let (_hosts, hosts) = hosts_override(|e| {
            e.insert("port".into(), serde_yaml::Value::Number(port.into()));
            edit(e);
        });
        let o = sp_env(&["deploy", "--host", "sandbox", "--format", "json"], &[("STACKPROOF_HOSTS", &hosts)]);
        assert_eq!(o.status.code(), Some(2), "{kind}: {}", text(&o));
        let e = &json(&o)["error"];
        assert_eq!(e["kind"], kind, "{e:#}");
        assert!(!e["hint"].as_str().unwrap_or("").is_empty(), "{e:#}");
    }
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn a_host_that_pages_nobody_on_purpose_warns_and_is_never_green() {
    let _restore = RestoreDefault;
    let (_hosts, hosts) = hosts_override(|e| {
        e.remove("receivers");
        e.insert("unpaged".into(), "e2e: a staging box".into());
    });
    let env = [("STACKPROOF_HOSTS", hosts.as_path())];
    let o = sp_env(&["deploy", "--host", "sandbox", "--no-drill", "--format", "json", "--lock-wait", "5m"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = sp_env(&["verify", "--host", "sandbox", "--format", "json"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j = json(&o);
    for r in ["critical", "warning", "info"] {
        let c = check(&j, &format!("alertmanager: receiver {r}")).unwrap_or_else(|| panic!("{j:#}"));
        assert_eq!(c["status"], "warn", "{c:#}");
        assert!(c["detail"].as_str().unwrap().contains("a staging box"), "{c:#}");
    }
    let o = sp_env(&["verify", "--host", "sandbox"], &env);
    assert!(String::from_utf8_lossy(&o.stdout).contains("WARNINGS"), "{}", text(&o));
    let o = sp_env(&["gate", "--host", "sandbox", "--format", "json"], &env);
    let g = json(&o);
    assert_ne!(g["level"], "green", "{g:#}");
    assert!(g["findings"].as_array().unwrap().iter().any(|f| f["name"] == "paging"), "{g:#}");
    let o = sp_env(&["status", "--host", "sandbox"], &env);
    assert!(String::from_utf8_lossy(&o.stdout).contains("NOBODY IS PAGED"), "{}", text(&o));
}

/// A pager that answers what is not a notification (the probe's OPTIONS) and refuses
/// every notification (POST) with 400, on loopback; it stops with the test. (A 4xx is not
/// retried by Alertmanager, so the failure is counted at once; a 5xx only when the retries
/// run out, a group_interval later.)
struct RefusingPager {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RefusingPager {
    fn start() -> RefusingPager {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::SeqCst) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        c.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
                        let mut buf = [0u8; 8192];
                        let n = c.read(&mut buf).unwrap_or(0);
                        let reply: &[u8] = if buf[..n].starts_with(b"POST") {
                            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope"
                        } else {
                            b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
                        };
                        let _ = c.write_all(reply);
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        });
        RefusingPager { port, stop }
    }
}

impl Drop for RefusingPager {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn a_notification_that_fails_after_the_deploy_fails_the_next_verify_naming_the_integration() {
    let _restore = RestoreDefault;
    let pager = RefusingPager::start();
    let (_hosts, hosts) = hosts_override(|e| {
        e["receivers"]
            .as_mapping_mut()
            .unwrap()
            .insert("critical".into(), receiver(&format!("{{webhook: {{url: 'http://127.0.0.1:{}/critical'}}}}", pager.port)));
    });
    let env = [("STACKPROOF_HOSTS", hosts.as_path())];
    // The probe passes (the pager answers OPTIONS); the deploy takes the baseline.
    let o = sp_env(&["deploy", "--host", "sandbox", "--no-drill", "--format", "json", "--lock-wait", "5m"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // An alert routed to `critical`, straight to Alertmanager (127.0.0.1:9093 on this machine).
    let alert = |ends: &str| {
        format!(
            r#"[{{"labels": {{"alertname": "E2ENotificationRefused", "severity": "critical", "component": "e2e"}}, "annotations": {{"summary": "e2e: the pager refuses notifications"}}, "endsAt": "{ends}"}}]"#
        )
    };
    post_alert(&alert(&chrono_like_now(300)));
    let j = crate::support::poll(std::time::Duration::from_secs(90), "the failed notification to show in verify", || {
        let o = sp_env(&["verify", "--host", "sandbox", "--format", "json"], &env);
        let j = json(&o);
        match check(&j, "alertmanager: notifications delivered") {
            Some(c) if c["status"] == "fail" => Ok(j),
            other => Err(format!("{other:?}")),
        }
    });
    let c = check(&j, "alertmanager: notifications delivered").unwrap();
    let detail = c["detail"].as_str().unwrap();
    assert!(detail.contains("webhook"), "names the integration: {c:#}");
    assert!(detail.contains("last error"), "with Alertmanager's last error: {c:#}");
    post_alert(&alert(&chrono_like_now(0)));
}

/// RFC 3339 UTC, `secs` from now.
fn chrono_like_now(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn post_alert(body: &str) {
    let o = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, urllib.request; r = urllib.request.Request('http://127.0.0.1:9093/api/v2/alerts', data=sys.argv[1].encode(), headers={'Content-Type': 'application/json'}, method='POST'); print(urllib.request.urlopen(r, timeout=5).status)",
            body,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "posting an alert to Alertmanager: {}", String::from_utf8_lossy(&o.stderr));
}
