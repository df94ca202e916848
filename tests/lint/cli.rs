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
