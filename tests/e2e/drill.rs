//! End-to-end tests of the outage drill against the sandbox, with the real binary run
//! from the repository root. The sandbox is this machine: the host exporter listens on
//! 127.0.0.1:<host_exporter.port> (9101).

use crate::support::http::exporter_answers;
use crate::support::sandbox::{exporter_pid, hosts_override};
use crate::support::stack::{self, default_stack, host_exporter_port, stack_copy, RestoreDefault};
use crate::support::{cmd, free_port, json, signal, sp, sp_env, text};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// Deploy `stack` (no drill, no rollback). Checks outside the alert path may fail on
/// the shared sandbox (others edit the default stack's dashboards while these tests
/// run): that is reported, not fatal; the drill tests assert on the drill itself.
fn deploy(stack: &Path, extra: &[&str]) {
    let (o, j) = stack::deploy(Some(stack), &[&["--no-drill", "--no-rollback"], extra].concat());
    match o.status.code() {
        Some(0) => {}
        Some(1) => eprintln!("note: deploy of {} deployed, but checks failed: {:?}", stack.display(), failed_checks(&j)),
        _ => panic!("deploy of {} failed:\n{}", stack.display(), text(&o)),
    }
}

/// Names of the failed checks in a verify or deploy JSON document.
fn failed_checks(j: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = j["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(j["verify"]["checks"].as_array().into_iter().flatten())
        .filter(|c| c["status"] == "fail")
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect();
    v.dedup();
    v
}

/// verify's exit code: 0 when every check passed, else 1 — with the drill's outcome
/// counted (`drill_ok`) and other checks as they were.
fn assert_verify_exit(o: &Output, j: &serde_json::Value, drill_ok: bool) {
    let others: Vec<String> = failed_checks(j).into_iter().filter(|n| n != "outage drill").collect();
    let want = if drill_ok && others.is_empty() { 0 } else { 1 };
    if !others.is_empty() {
        eprintln!("note: checks outside the drill failed on the shared sandbox: {others:?}");
    }
    assert_eq!(o.status.code(), Some(want), "{}", text(o));
}

/// Poll until the exporter answers (it must be running again after every drill).
fn assert_exporter_running(within: Duration) {
    let deadline = Instant::now() + within;
    let port = host_exporter_port();
    while !exporter_answers(port) {
        assert!(Instant::now() < deadline, "the host exporter does not answer on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stages(d: &serde_json::Value) -> Vec<(String, Option<f64>, f64)> {
    d["stages"].as_array().unwrap().iter().map(|s| (s["name"].as_str().unwrap().to_string(), s["after_s"].as_f64(), s["bound_s"].as_f64().unwrap())).collect()
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn default_stack_drill_passes_within_every_bound() {
    deploy(&default_stack(), &[]);
    let html = tempfile::tempdir().unwrap();
    let report = html.path().join("r.html");
    let o = sp(&["verify", "--host", "sandbox", "--drill", "--format", "json", "--report", report.to_str().unwrap()]);
    let j = json(&o);
    assert_verify_exit(&o, &j, true);
    let d = &j["drill"];
    assert_eq!(d["alert"], "StackproofDrill");
    assert_eq!(d["ok"], true, "{d:#}");
    assert_eq!(d["delivered"], true);
    let st = stages(d);
    assert!(st.len() >= 10, "{st:?}");
    for (name, after, bound) in &st {
        let a = after.unwrap_or_else(|| panic!("stage {name} not seen: {d:#}"));
        assert!(a <= *bound, "stage {name}: {a} s > bound {bound} s");
    }
    let fired = d["fired_after_s"].as_f64().unwrap();
    let delivered = d["delivered_after_s"].as_f64().unwrap();
    assert!(fired <= d["fire_bound_s"].as_f64().unwrap());
    assert!(delivered >= fired, "delivered {delivered} before firing {fired}");
    assert!(d["resolved_after_s"].as_f64().unwrap() <= d["resolve_bound_s"].as_f64().unwrap());
    assert!(j["checks"].as_array().unwrap().iter().any(|c| c["name"] == "outage drill" && c["status"] == "pass"));
    let h = std::fs::read_to_string(&report).unwrap();
    assert!(h.contains("After the exporter stopped") && h.contains("StackproofDrill delivered to stackproof"), "HTML timeline");
    assert_exporter_running(Duration::from_secs(2));
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn drill_webhook_where_nothing_listens_fires_but_is_not_delivered() {
    let _restore = RestoreDefault;
    let dead = free_port();
    let copy = stack_copy(&[("alertmanager/alertmanager.yml", "url: http://127.0.0.1:9799/", &format!("url: http://127.0.0.1:{dead}/"))]);
    // Lint rightly refuses a drill receiver off the drill port: deploy it anyway.
    deploy(copy.path(), &["--skip-lint"]);
    let o = sp(&["verify", "--host", "sandbox", "--stack", copy.path().to_str().unwrap(), "--drill", "--format", "json"]);
    let j = json(&o);
    let loaded = j["checks"].as_array().unwrap().iter().find(|c| c["name"] == "alertmanager: config loaded").cloned();
    assert!(
        loaded.as_ref().is_some_and(|c| c["status"] == "pass"),
        "Alertmanager does not run the copy's config (a concurrent deploy on the shared sandbox?): {loaded:?}"
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let d = &j["drill"];
    assert_eq!(d["ok"], false);
    assert_eq!(d["delivered"], false, "{d:#}");
    assert!(d["fired_after_s"].as_f64().is_some(), "the alert fired: {d:#}");
    assert_eq!(d["exporter_restarted"], true);
    let miss = stages(d).into_iter().find(|s| s.0.contains("delivered")).unwrap();
    assert_eq!(miss.1, None, "{miss:?}");
    assert_exporter_running(Duration::from_secs(2));
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn a_for_too_long_is_refused_before_the_exporter_stops() {
    assert_exporter_running(Duration::from_secs(10));
    let pid_before = exporter_pid();
    let copy = stack_copy(&[("prometheus/rules/drill.yml", "for: 4s", "for: 30m")]);
    let t = Instant::now();
    let o = sp(&["verify", "--host", "sandbox", "--stack", copy.path().to_str().unwrap(), "--drill", "--format", "json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let e = &json(&o)["error"];
    assert_eq!(e["kind"], "drill_refused");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("StackproofDrill") && msg.contains("for: 30m") && msg.contains("drill.timeout (2m)"), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(5), "refused up front, not after waiting");
    // --drill-real waits for HostExporterDown (`for: 1m`) and the critical route's
    // group_interval: refused up front when drill.real_timeout is shorter.
    let short = stack_copy(&[("stackproof.yml", "drill:\n", "drill:\n  real_timeout: 1m\n")]);
    let o = sp(&["verify", "--host", "sandbox", "--stack", short.path().to_str().unwrap(), "--drill-real", "--format", "json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let msg = json(&o)["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("HostExporterDown") && msg.contains("drill.real_timeout (1m)"), "{msg}");
    assert_eq!(exporter_pid(), pid_before, "the exporter was restarted");
    assert_exporter_running(Duration::from_secs(1));
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn sigint_during_the_drill_leaves_the_exporter_running() {
    deploy(&default_stack(), &[]);
    let mut child = cmd(&["verify", "--host", "sandbox", "--drill"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            let _ = child.kill();
            panic!("the drill ended before stopping the exporter:\n{seen}");
        }
        seen.push_str(&line);
        if line.contains("exporter stopped") {
            break;
        }
        assert!(Instant::now() < deadline, "no `exporter stopped` line:\n{seen}");
    }
    assert!(!exporter_answers(host_exporter_port()), "the drill said it stopped the exporter, but it answers");
    signal("-INT", child.id());
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "interrupted is exit 130:\n{seen}{rest}");
    assert!(rest.contains("exporter restarted") && rest.contains("interrupted"), "{rest}");
    // The binary has exited: the exporter must be running without any help.
    assert_exporter_running(Duration::from_secs(2));
}

/// A webhook receiver standing in for a real pager: records what it receives.
struct Pager {
    port: u16,
    got: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    _rt: tokio::runtime::Runtime,
}

fn pager() -> Pager {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let g = got.clone();
    let app = axum::Router::new().fallback(axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
        let g = g.clone();
        async move {
            g.lock().unwrap().push(v);
            "ok"
        }
    }));
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Pager { port, got, _rt: rt }
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn drill_real_proves_the_real_alert_reached_its_receiver() {
    let _restore = RestoreDefault;
    let p = pager();
    let url = format!("http://127.0.0.1:{}", p.port);
    // Real receivers at our pager (instead of the placeholders, where nothing listens:
    // against those --drill-real fails by design), a shorter `for` for HostExporterDown
    // and a quick critical route, so the test takes well under a minute.
    // The host's receivers at our pager (the host entry gives them), a shorter `for` for
    // HostExporterDown and a quick critical route, so the test takes well under a minute.
    let (_hosts, hosts) = hosts_override(|e| {
        let hook = |path: &str| serde_yaml::from_str::<serde_yaml::Value>(&format!("{{webhook: {{url: '{url}/{path}'}}}}")).unwrap();
        let mut r = serde_yaml::Mapping::new();
        for name in ["critical", "warning", "info"] {
            r.insert(name.into(), hook(name));
        }
        e.insert("receivers".into(), serde_yaml::Value::Mapping(r));
    });
    let copy = stack_copy(&[
        (
            "alertmanager/alertmanager.yml",
            "receiver: critical\n      group_wait: 10s\n      group_interval: 1m",
            "receiver: critical\n      group_wait: 1s\n      group_interval: 2s",
        ),
        ("prometheus/rules/health.yml", "expr: up{job=\"host-exporter\"} == 0\n        for: 1m", "expr: up{job=\"host-exporter\"} == 0\n        for: 6s"),
    ]);
    let env = [("STACKPROOF_HOSTS", hosts.as_path())];
    let stack = copy.path().to_str().unwrap();
    let o = sp_env(&["deploy", "--host", "sandbox", "--stack", stack, "--format", "json", "--lock-wait", "5m"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = sp_env(&["verify", "--host", "sandbox", "--stack", stack, "--drill-real", "--format", "json"], &env);
    let j = json(&o);
    assert_verify_exit(&o, &j, true);
    let d = &j["drill"];
    assert_eq!(d["real"], true);
    assert_eq!(d["ok"], true, "{d:#}");
    let st = stages(d);
    let handed = st.iter().find(|s| s.0.starts_with("HostExporterDown handed to critical")).unwrap_or_else(|| panic!("{st:?}"));
    assert!(handed.1.is_some_and(|a| a <= handed.2), "{handed:?}");
    let got = p.got.lock().unwrap().clone();
    assert!(
        got.iter().any(|n| n["receiver"] == "critical"
            && n["alerts"].as_array().unwrap().iter().any(|a| a["labels"]["alertname"] == "HostExporterDown" && a["status"] == "firing")),
        "the pager did not receive HostExporterDown: {got:?}"
    );
    assert!(
        !got.iter().any(|n| n["alerts"].as_array().unwrap().iter().any(|a| a["labels"]["alertname"] == "StackproofDrill")),
        "the drill alert paged a real receiver"
    );
    assert_exporter_running(Duration::from_secs(2));
}
