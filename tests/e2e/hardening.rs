//! End-to-end tests of issue 15's hardening against the sandbox: no secret in any output,
//! report or journal; private journals; confined containers; no SSH master outliving a
//! killed run.

use crate::deploy::{rand_u64, ssh_master};
use crate::support::sandbox::*;
use crate::support::stack::{deploy_ok, stack_copy, RestoreDefault};
use crate::support::{cmd, poll, sp, text, KillOnDrop, REPO};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const SECRETS: [&str; 4] = ["e2e-smtp-pw-", "e2e-q-", "e2e-tok-", "e2e-basic-pw-"];

/// An Alertmanager config holding an SMTP password, a token in a webhook URL, a token in
/// a link and basic-auth credentials (all `-1`).
fn stack_with_secrets() -> tempfile::TempDir {
    stack_copy(&[
        (
            "alertmanager/alertmanager.yml",
            "  resolve_timeout: 5m\n",
            "  resolve_timeout: 5m\n  smtp_smarthost: '127.0.0.1:2525'\n  smtp_from: am@sandbox.invalid\n  smtp_auth_username: am\n  smtp_auth_password: e2e-smtp-pw-1\n  smtp_require_tls: false\n",
        ),
        (
            "alertmanager/alertmanager.yml",
            "  - name: info\n",
            "  - name: info\n\n  - name: e2e-secrets\n    email_configs:\n      - to: x@sandbox.invalid\n        text: 'see https://wiki.example/runbook?token=e2e-q-1'\n    webhook_configs:\n      - url: 'http://127.0.0.1:9798/e2e?token=e2e-tok-1'\n        http_config: {basic_auth: {username: u, password: e2e-basic-pw-1}}\n",
        ),
    ])
}

fn assert_no_secret(what: &str, s: &str) {
    for secret in SECRETS {
        assert!(!s.contains(secret), "{what} shows a secret ({secret}…):\n{s}");
    }
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn secrets_of_a_drifted_config_appear_in_no_output_report_or_journal() {
    let _restore = RestoreDefault;
    let copy = stack_with_secrets();
    deploy_ok(Some(copy.path()), &["--no-drill"]);
    // Drift on the host: the deployed file changed behind stackproof's back, and
    // Alertmanager reloaded it.
    let file = format!("{REMOTE}/current/alertmanager/alertmanager.yml");
    let o = run("runuser", &["-u", SANDBOX_USER, "--", "sed", "-i", "s/-1\\b/-2/g", &file]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run("curl", &["-fsS", "-XPOST", "http://127.0.0.1:9093/-/reload"]);
    assert!(o.status.success(), "{}", text(&o));

    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let stack = copy.path().to_str().unwrap();
    let j = sp(&["verify", "--host", "sandbox", "--stack", stack, "--format", "json", "--report", html.to_str().unwrap()]);
    let t = sp(&["verify", "--host", "sandbox", "--stack", stack]);
    let w = sp(&["watch", "--host", "sandbox", "--stack", stack, "--runs", "1", "--every", "1m", "--format", "json"]);
    for (name, o) in [("verify --format json", &j), ("verify", &t)] {
        assert_eq!(o.status.code(), Some(1), "{name} must see the drift:\n{}", text(o));
    }
    // watch's exit code follows the gate; its run records the failed check.
    assert!(String::from_utf8_lossy(&w.stdout).contains("alertmanager: config loaded"), "{}", text(&w));
    for (name, o) in [("verify --format json", &j), ("verify", &t), ("watch", &w)] {
        assert_no_secret(name, &text(o));
    }
    // The difference is named by its path.
    let out = String::from_utf8_lossy(&t.stdout).to_string();
    assert!(out.contains("email_configs[0].text: the running value differs"), "{out}");
    assert_no_secret("the HTML report", &std::fs::read_to_string(&html).unwrap());
    let host_journal = format!("{REMOTE}/journal.jsonl");
    assert_no_secret("the host's journal", &std::fs::read_to_string(&host_journal).unwrap());
    let local = Path::new(REPO).join(".stackproof/journal/sandbox.jsonl");
    assert_no_secret("the local journal", &std::fs::read_to_string(&local).unwrap());
    // Neither journal is readable by other users.
    for p in [Path::new(&host_journal), local.as_path()] {
        assert_eq!(std::fs::metadata(p).unwrap().permissions().mode() & 0o077, 0, "{} is readable by others", p.display());
    }
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn default_stack_containers_are_confined() {
    deploy_ok(None, &["--no-drill"]);
    for (service, (id, _)) in containers() {
        let o = run("docker", &["inspect", "-f", "{{json .HostConfig}}", &id]);
        let h: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
        assert_eq!(h["CapDrop"], serde_json::json!(["ALL"]), "{service}");
        assert!(h["SecurityOpt"].to_string().contains("no-new-privileges"), "{service}: {}", h["SecurityOpt"]);
        assert!(h["Memory"].as_i64().unwrap() > 0, "{service} has no memory limit");
        assert_eq!(h["LogConfig"]["Config"]["max-size"], "10m", "{service}");
        if service == "prometheus" || service == "node-exporter" {
            assert_eq!(h["ReadonlyRootfs"], true, "{service}");
        }
    }
    assert!(all_running());
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn a_killed_run_leaves_no_ssh_master_holding_the_docker_socket() {
    let token = format!("{}-{:x}", std::process::id(), rand_u64());
    let child = cmd(&["verify", "--host", "sandbox"]).env("SP_E2E_TOKEN", &token).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut child = KillOnDrop(child);
    let master = poll(Duration::from_secs(20), "the run's ssh master", || ssh_master(&token).ok_or("not yet".to_string()));
    let k = run("kill", &["-KILL", &child.0.id().to_string()]);
    assert!(k.status.success());
    child.wait_exit(Duration::from_secs(5));
    // ControlPersist is 30 s of idleness: the master must be gone well within a minute.
    poll(Duration::from_secs(60), "the ssh master to exit after its client was killed", || {
        if Path::new(&format!("/proc/{master}")).exists() && proc_field(master, "comm").trim() == "ssh" {
            Err(format!("ssh master {master} still runs"))
        } else {
            Ok(())
        }
    });
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn no_stack_listener_is_on_a_wildcard_address_and_verify_says_so() {
    let _restore = RestoreDefault;
    deploy_ok(None, &["--no-drill"]);
    let o = sp(&["verify", "--host", "sandbox", "--format", "json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let c = j["checks"].as_array().unwrap().iter().find(|c| c["name"] == "exposure: listeners").cloned().unwrap_or_else(|| panic!("no exposure check: {j:#}"));
    assert_eq!(c["status"], "pass", "{c:#}");
    // A listener of ours on every interface (the host exporter, started by hand on
    // 0.0.0.0 in a copy whose lint is skipped) fails the check.
    let copy = stack_copy(&[("stackproof.yml", "--listen=127.0.0.1:9101", "--listen=0.0.0.0:9101")]);
    let (o, _) = crate::support::stack::deploy(Some(copy.path()), &["--no-drill", "--skip-lint", "--no-rollback"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = j.to_string();
    assert!(s.contains("host_exporter on port 9101 (0.0.0.0)"), "{j:#}");
}
