//! `stackproof lint` as a user runs it: exit codes, text and JSON output.

use crate::support::{repo, Copy};
use assert_cmd::Command;

fn stackproof() -> Command {
    Command::cargo_bin("stackproof").unwrap()
}

#[test]
fn default_stack_exits_0() {
    let out = stackproof().current_dir(repo()).arg("lint").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("lint: 0 errors"), "{text}");
}

#[test]
fn broken_stack_exits_1_with_located_findings() {
    let c = Copy::new();
    let line = c.replace("alertmanager/alertmanager.yml", "receiver: critical", "receiver: criticl");
    let out = stackproof().arg("lint").arg("--stack").arg(c.dir()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!("alertmanager/alertmanager.yml:{line}:");
    let l = text.lines().find(|l| l.contains(&want) && l.contains("error[am.receiver_undefined]")).unwrap_or_else(|| panic!("{text}"));
    assert!(l.contains("`criticl`"), "{l}");
    assert!(text.contains("  = hint: "), "{text}");
    assert!(text.lines().last().unwrap().starts_with("lint: 1 error"), "{text}");
}

#[test]
fn json_output_is_one_document() {
    let c = Copy::new();
    let line = c.replace("prometheus/prometheus.yml", "127.0.0.1:9100", "127.0.0.1:9200");
    let out = stackproof().args(["lint", "--format", "json"]).arg(c.dir()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document on stdout");
    let f = v["findings"].as_array().unwrap();
    let hit = f.iter().find(|x| x["code"] == "prom.target_unknown").unwrap();
    assert_eq!(hit["severity"], "error");
    assert_eq!(hit["line"], line);
    assert!(hit["column"].is_u64());
    assert!(hit["file"].as_str().unwrap().ends_with("prometheus/prometheus.yml"));
    for k in ["message", "hint"] {
        assert!(!hit[k].as_str().unwrap().is_empty());
    }
}

#[test]
fn lone_files_by_content() {
    let fx = repo().join("tests/fixtures/lint");
    let out = stackproof().args(["lint", "--format", "json"]).arg(fx.join("broken-rules.yml")).arg(fx.join("notes.yml")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<&str> = v["findings"].as_array().unwrap().iter().map(|x| x["code"].as_str().unwrap()).collect();
    assert!(codes.contains(&"rules.promql") && codes.contains(&"lint.lone_file") && codes.contains(&"file.unrecognised"), "{codes:?}");
}

#[test]
fn missing_path_exits_2() {
    let out = stackproof().args(["lint", "--format", "json", "/nonexistent/stack"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["error"]["hint"].as_str().is_some_and(|h| !h.is_empty()));
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn with_promtool_runs_the_official_checkers() {
    // Needs Docker and the local images (scripts/images).
    let out = stackproof().current_dir(repo()).args(["lint", "--with-promtool"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let c = Copy::new();
    // Valid for lint's own PromQL reading? No: a syntax error both report; promtool's
    // finding carries its own code.
    c.replace("prometheus/rules/drill.yml", "expr: up{job=\"host-exporter\"} == 0", "expr: up{job=\"host-exporter\" == 0");
    let out = stackproof().args(["lint", "--with-promtool", "--format", "json"]).arg(c.dir()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = v["findings"].as_array().unwrap();
    assert!(f.iter().any(|x| x["code"] == "promtool.rules" && x["file"].as_str().unwrap().ends_with("drill.yml")), "{v:#}");
}

#[test]
fn with_promtool_without_docker_is_could_not_run() {
    let out = stackproof()
        .current_dir(repo())
        .env("DOCKER_HOST", "unix:///nonexistent/stackproof-test.sock")
        .args(["lint", "--with-promtool", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "docker_unreachable");
    assert!(v["error"]["hint"].as_str().unwrap().contains("without --with-promtool"));
}

#[test]
fn parse_errors_honour_format_json_and_exit_2() {
    let out = stackproof().args(["verify", "--format", "json", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document on stdout");
    assert_eq!(v["error"]["kind"], "bad_argument");
    assert!(v["error"]["message"].as_str().unwrap().contains("--no-such-flag"), "{v}");
    let out = stackproof().args(["watch", "--every", "1ns", "--format", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document on stdout");
    assert!(v["error"]["message"].as_str().unwrap().contains("shorter than 1s"), "{v}");
    // Text stays clap's own, on stderr.
    let out = stackproof().args(["verify", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty() && String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}

#[test]
fn zero_timeouts_are_lint_errors_with_their_line() {
    // verify.timeout is the first `timeout: 120s` of the manifest, drill.timeout the second.
    for n in [0, 1] {
        let c = Copy::new();
        c.replace_nth("stackproof.yml", "timeout: 120s", "timeout: 0s", n);
        let out = stackproof().args(["lint", "--stack"]).arg(c.dir()).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{text}");
        // The YAML reader places a value's error at its section's first key.
        let section = ["verify:", "drill:"][n];
        let line = c.read("stackproof.yml").lines().position(|l| l == section).unwrap() + 2;
        assert!(text.contains(&format!("stackproof.yml:{line}:")) && text.contains("duration `0s` is too short: at least 1s"), "{text}");
    }
}

#[test]
fn a_non_public_service_on_every_interface_is_a_lint_error_with_its_line() {
    let c = Copy::new();
    let line = c.replace("stackproof.yml", "--web.listen-address=127.0.0.1:9090", "--web.listen-address=0.0.0.0:9090");
    let he = c.replace("stackproof.yml", "--listen=127.0.0.1:9101", "--listen=0.0.0.0:9101");
    let out = stackproof().args(["lint", "--stack"]).arg(c.dir()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("stackproof.yml:{line}:")) && text.contains("`prometheus` listens on every interface"), "{text}");
    assert!(text.contains(&format!("stackproof.yml:{he}:")) && text.contains("the host exporter listens on every interface"), "{text}");

    // Grafana made public on purpose: its port says so, and lint agrees.
    let c = Copy::new();
    c.replace("stackproof.yml", "GF_SERVER_HTTP_ADDR: 127.0.0.1", "GF_SERVER_HTTP_ADDR: 0.0.0.0");
    c.replace("stackproof.yml", "- port: 3000", "- port: 3000\n        public: true");
    let out = stackproof().args(["lint", "--stack"]).arg(c.dir()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}
