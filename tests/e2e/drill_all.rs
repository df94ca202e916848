//! End-to-end tests of `stackproof drill --alert/--all` on the sandbox (the sandbox is
//! this machine: the tests read the remote dir, Prometheus on 127.0.0.1:9090 and the
//! sandbox's page store themselves).

use crate::support::http::{get_raw, http_get};
use crate::support::sandbox::REMOTE;
use crate::support::stack::{default_stack, deploy, host_exporter_port};
use crate::support::{cmd, json, poll, signal, sp, text, KillOnDrop, REPO};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const TWINS: &str = "drill/twins.yml";
const FAULT: &str = "run/host-exporter.fault";
const MARKER: &str = "run/drill-live.json";

fn deploy_default() {
    let (o, _) = deploy(Some(&default_stack()), &["--no-drill", "--no-rollback"]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "deploy failed:\n{}", text(&o));
}

/// Every page the sandbox's receivers hold (webhook lines and mails): id → text.
fn pages() -> std::collections::BTreeMap<String, String> {
    let dir = Path::new(REPO).join(".stackproof/sandbox/pages");
    let mut out: std::collections::BTreeMap<String, String> = std::fs::read_to_string(dir.join("webhook.jsonl"))
        .unwrap_or_default()
        .lines()
        .enumerate()
        .map(|(i, l)| (format!("webhook:{i}"), l.to_string()))
        .collect();
    fn walk(p: &Path, out: &mut std::collections::BTreeMap<String, String>) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if let Ok(t) = std::fs::read_to_string(&p) {
                // A maildir moves a mail from new/ to cur/: its file name is its id.
                out.insert(format!("mail:{}", p.file_name().unwrap().to_string_lossy().split(':').next().unwrap()), t);
            }
        }
    }
    walk(&dir.join("mail"), &mut out);
    out
}

fn twins_loaded() -> Vec<String> {
    let (_, body) = http_get("http://127.0.0.1:9090/api/v1/rules?type=alert", None).expect("Prometheus answers");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["name"].as_str().map(String::from))
        .filter(|n| n.starts_with("StackproofTwin_"))
        .collect()
}

/// The host as found: no twin file or rule, no fault file, no marker, the exporter
/// answering with no fault in force.
fn assert_host_as_found() {
    for f in [TWINS, FAULT, MARKER] {
        assert!(!Path::new(REMOTE).join(f).exists(), "{f} left on the host");
    }
    assert!(twins_loaded().is_empty(), "twins still loaded: {:?}", twins_loaded());
    poll(Duration::from_secs(15), "the exporter answers with no fault", || match get_raw(host_exporter_port(), "/metrics") {
        Ok((200, _, body)) if body.contains("suite_fault_mode{mode=\"none\"} 1") => Ok(()),
        Ok((s, _, body)) => Err(format!("{s}: {}", body.lines().filter(|l| l.contains("fault")).collect::<Vec<_>>().join(" "))),
        Err(e) => Err(e.to_string()),
    });
}

fn alerting_rules_of_default_stack() -> usize {
    std::fs::read_dir(default_stack().join("prometheus/rules"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .map(|t| t.lines().filter(|l| l.trim_start().starts_with("- alert:")).count())
        .sum()
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn drill_all_proves_the_causable_alerts_live_within_five_minutes_and_pages_nobody() {
    deploy_default();
    let before = pages();
    let html = tempfile::tempdir().unwrap();
    let report = html.path().join("coverage.html");
    let t0 = Instant::now();
    let o = sp(&["drill", "--host", "sandbox", "--all", "--format", "json", "--report", report.to_str().unwrap()]);
    let took = t0.elapsed();
    eprintln!("drill --all took {:.1} s", took.as_secs_f64());
    let j = json(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(took < Duration::from_secs(300), "drill --all took {took:?}");
    assert_eq!(j["ok"], true);
    let alerts = j["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), alerting_rules_of_default_stack(), "every alerting rule is in `alerts`");
    for a in alerts {
        for k in ["alert", "offline", "live", "how", "fired_after_s", "fire_bound_s", "delivered", "resolved_after_s", "resolve_bound_s", "reason"] {
            assert!(a.get(k).is_some(), "{k} missing in {a}");
        }
        assert_eq!(a["offline"], true, "every alert of the default stack is proven offline: {a}");
        if a["live"] != true {
            assert!(!a["reason"].as_str().unwrap().is_empty(), "an alert not proven live says why: {a}");
        }
    }
    let live: Vec<&serde_json::Value> = alerts.iter().filter(|a| a["live"] == true).collect();
    assert!(live.len() >= 5, "{} live: {j:#}", live.len());
    for a in &live {
        assert_eq!(a["delivered"], true, "{a}");
        assert!(a["fired_after_s"].as_f64().unwrap() <= a["fire_bound_s"].as_f64().unwrap(), "{a}");
        assert!(a["resolved_after_s"].as_f64().unwrap() <= a["resolve_bound_s"].as_f64().unwrap(), "{a}");
    }
    // Each fault mode caused its twins.
    for (fault, alert) in
        [("stop", "HostExporterDown"), ("fail", "TestPassRateCritical"), ("error", "TestErrorRateCritical"), ("slow", "OperationLatencyP95Critical")]
    {
        let a = alerts.iter().find(|a| a["alert"] == alert).unwrap();
        assert_eq!((a["fault"].as_str(), &a["live"]), (Some(fault), &serde_json::Value::Bool(true)), "{a}");
    }
    let mem = alerts.iter().find(|a| a["alert"] == "HostMemoryHigh").unwrap();
    assert!(mem["live"] == false && mem["reason"].as_str().unwrap().contains("production host"), "{mem}");
    // The real alerts the faults drive are silenced until their windows have passed.
    let silenced: Vec<&str> = j["silences"].as_array().unwrap().iter().map(|s| s["alert"].as_str().unwrap()).collect();
    for a in ["HostExporterDown", "TestErrorRateCritical", "OperationLatencyP95Critical", "SlowOperation"] {
        assert!(silenced.contains(&a), "{a} not silenced: {silenced:?}");
    }
    assert_host_as_found();
    // No twin reached a real receiver (and nothing paged during the drill).
    let new: Vec<String> = pages().into_iter().filter(|(id, _)| !before.contains_key(id)).map(|(_, t)| t).collect();
    assert!(!new.iter().any(|p| p.contains("StackproofTwin_") || p.contains("drill_of")), "a twin paged: {new:?}");
    for a in &silenced {
        assert!(!new.iter().any(|p| p.contains(a)), "{a} paged during the drill: {new:?}");
    }
    let h = std::fs::read_to_string(&report).unwrap();
    assert!(h.contains("Alert coverage") && h.contains("TestErrorRateCritical") && h.contains("production host"), "HTML coverage section");
    // While the faults' aftermath lasts the gate holds at yellow (exit 3), saying why,
    // rather than reading the drill's own faults as a red go/no-go.
    let g = sp(&["gate", "--host", "sandbox", "--format", "json"]);
    assert_eq!(g.status.code(), Some(3), "{}", text(&g));
    assert!(text(&g).contains("drill aftermath") && text(&g).contains("TestErrorRateCritical"), "{}", text(&g));
}

/// Start `drill ARGS`, read its progress until a line contains `until`, SIGKILL it.
fn kill_drill_at(args: &[&str], until: &str) {
    let mut child = KillOnDrop(cmd(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    let err = child.0.stderr.take().unwrap();
    let mut seen = String::new();
    for line in BufReader::new(err).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(until) {
            signal("-KILL", child.0.id());
            break;
        }
    }
    assert!(seen.contains(until), "the drill never said {until:?}:\n{seen}");
    child.wait_exit(Duration::from_secs(10));
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn a_drill_killed_while_faulting_is_undone_by_the_next_command_which_says_so() {
    deploy_default();
    kill_drill_at(&["drill", "--host", "sandbox", "--alert", "TestPassRateCritical"], "fault in force");
    // Killed mid-fault: twins loaded, fault file and marker on the host.
    for f in [TWINS, FAULT, MARKER] {
        assert!(Path::new(REMOTE).join(f).exists(), "{f} missing right after the kill");
    }
    assert_eq!(twins_loaded(), vec!["StackproofTwin_TestPassRateCritical".to_string()]);
    let o = sp(&["verify", "--host", "sandbox", "--format", "json"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cleaned up after an interrupted drill") && err.contains("drill twins removed and unloaded") && err.contains("fault `fail` removed"),
        "{}",
        text(&o)
    );
    assert_host_as_found();
    assert!(!Path::new(REMOTE).join("lock").exists(), "the dead drill's lock stays");
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn a_drill_killed_while_the_exporter_is_stopped_is_undone_by_the_next_drill() {
    deploy_default();
    kill_drill_at(&["drill", "--host", "sandbox", "--alert", "HostExporterDown"], "fault in force");
    assert!(Path::new(REMOTE).join(MARKER).exists());
    let o = sp(&["drill", "--host", "sandbox", "--alert", "TestPassRateLow", "--format", "json"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cleaned up after an interrupted drill") && err.contains("host exporter running"), "{}", text(&o));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(json(&o)["alerts"][0]["live"], true);
    assert_host_as_found();
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn sigint_mid_drill_undoes_everything_before_exiting() {
    deploy_default();
    let mut child =
        KillOnDrop(cmd(&["drill", "--host", "sandbox", "--alert", "TestErrorRateCritical"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    let err = child.0.stderr.take().unwrap();
    let mut lines = BufReader::new(err).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("fault in force") {
            signal("-INT", child.0.id());
            break;
        }
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let st = child.wait_exit(Duration::from_secs(60));
    assert_eq!(st.code(), Some(130), "an interrupt exits 130: {rest:?}");
    assert_host_as_found();
    assert!(!Path::new(REMOTE).join("lock").exists(), "lock released: {rest:?}");
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn an_unknown_alert_is_refused_before_connecting() {
    let o = sp(&["drill", "--host", "sandbox", "--alert", "NoSuchAlert", "--format", "json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let j = json(&o);
    assert!(j.to_string().contains("no alerting rule `NoSuchAlert`") && j.to_string().contains("HostExporterDown"), "{j}");
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn real_routes_the_twin_through_the_real_receiver_and_silences_nothing_for_it() {
    deploy_default();
    let before = pages();
    let o = sp(&["drill", "--host", "sandbox", "--alert", "TestPassRateCritical", "--real", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j = json(&o);
    assert_eq!(j["alerts"][0]["live"], true, "{j:#}");
    let silenced: Vec<&str> = j["silences"].as_array().unwrap().iter().map(|s| s["alert"].as_str().unwrap()).collect();
    assert!(!silenced.contains(&"TestPassRateCritical"), "--real silences nothing for the chosen alert: {silenced:?}");
    assert!(silenced.contains(&"TestPassRateLow"), "the other alert the fault drives stays silenced: {silenced:?}");
    // The critical receiver of the sandbox (a webhook) got the twin.
    poll(Duration::from_secs(10), "the twin's page at the critical receiver", || {
        let new: Vec<String> = pages().into_iter().filter(|(id, _)| !before.contains_key(id)).map(|(_, t)| t).collect();
        if new.iter().any(|p| p.contains("StackproofTwin_TestPassRateCritical")) {
            Ok(())
        } else {
            Err(format!("{} new pages, none from the twin", new.len()))
        }
    });
    assert_host_as_found();
}
