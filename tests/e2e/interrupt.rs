//! Ctrl-C (SIGINT to the real binary) at three points of a deploy leaves the host on a
//! verified release, running. Each point is hit exactly, without sleeping: the test-only
//! `STACKPROOF_TEST_PAUSE_AT=<point>` makes the deploy print `stackproof-test: paused at
//! <point>` and wait for the interrupt there (src/signals.rs).

use crate::support::http::exporter_answers;
use crate::support::sandbox::{assert_all_running_within, current, host_journal, ids, verified};
use crate::support::stack::{default_stack, deploy_ok, host_exporter_port, stack_copy, RestoreDefault};
use crate::support::{cmd, signal, KillOnDrop};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::{Duration, Instant};

struct Interrupted {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// The stack's container ids at the pause.
    at_pause: std::collections::BTreeMap<String, String>,
}

/// Deploy the default stack (verified: release A), then a changed copy (a new release
/// whose Alertmanager container is recreated) paused at `point`, SIGINT it there and
/// collect what it did. Returns A and the interrupted run.
fn interrupt_at(point: &str) -> (String, Interrupted) {
    let a = deploy_ok(Some(&default_stack()), &["--no-drill"])["release"].as_str().unwrap().to_string();
    assert_eq!(verified().as_deref(), Some(a.as_str()), "the default stack did not verify");
    let copy = stack_copy(&[("stackproof.yml", "    memory: 256m\n", "    memory: 300m\n")]);
    let mut child = cmd(&["deploy", "--host", "sandbox", "--stack", copy.path().to_str().unwrap(), "--no-drill", "--format", "json", "--lock-wait", "5m"])
        .env("STACKPROOF_TEST_PAUSE_AT", point)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut child = KillOnDrop(child);
    let marker = format!("stackproof-test: paused at {point}");
    let mut stderr = String::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "the deploy ended before {point}:\n{stderr}");
        stderr.push_str(&line);
        if line.contains(&marker) {
            break;
        }
        assert!(Instant::now() < deadline, "no pause at {point}:\n{stderr}");
    }
    let at_pause = ids();
    signal("-INT", child.0.id());
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    stderr.push_str(&rest);
    let status = child.wait_exit(Duration::from_secs(300));
    (a, Interrupted { code: status.code(), stdout: stdout.join().unwrap(), stderr, at_pause })
}

/// The host after the interrupt: on release `a`, verified, every container running, the
/// exporter answering; the last deploy journal entry says it was interrupted.
fn assert_whole_on(a: &str, r: &Interrupted) -> Value {
    assert_eq!(r.code, Some(130), "exit 130 after an interrupt:\n{}", r.stderr);
    assert_eq!(current().as_deref(), Some(a), "not back on the verified release:\n{}", r.stderr);
    assert_eq!(verified().as_deref(), Some(a));
    assert_all_running_within(Duration::from_secs(5));
    assert!(exporter_answers(host_exporter_port()), "the host exporter does not answer");
    let j = host_journal();
    j.iter().rev().find(|e| e["event"] == "deploy").cloned().expect("a deploy journal entry")
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn ctrl_c_after_the_upload_leaves_the_release_in_place() {
    let _restore = RestoreDefault;
    let (a, r) = interrupt_at("sync");
    let entry = assert_whole_on(&a, &r);
    // Nothing had changed: no rollback, the deploy just stopped.
    assert_eq!(entry["kind"], "interrupted", "{entry}");
    let j: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    assert_eq!(j["error"]["kind"], "interrupted", "{j}");
    assert!(!r.stderr.contains("rolling back"), "{}", r.stderr);
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn ctrl_c_between_removing_and_recreating_a_container_rolls_back() {
    let _restore = RestoreDefault;
    let (a, r) = interrupt_at("containers");
    assert!(!r.at_pause.contains_key("alertmanager"), "the pause was not between remove and create: {:?}", r.at_pause);
    let entry = assert_whole_on(&a, &r);
    assert_eq!(entry["interrupted"], "containers", "{entry}");
    assert_eq!(entry["rollback"]["to"], a.as_str(), "{entry}");
    assert_eq!(entry["rollback"]["ok"], true, "{entry}");
    assert_eq!(entry["rollback"]["reason"], "interrupted", "{entry}");
    let j: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    assert_eq!(j["interrupted"], "containers");
    assert_eq!(j["rollback"]["ok"], true, "{j}");
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn ctrl_c_during_the_checks_rolls_back() {
    let _restore = RestoreDefault;
    let (a, r) = interrupt_at("checks");
    let entry = assert_whole_on(&a, &r);
    assert_eq!(entry["interrupted"], "checks", "{entry}");
    assert_eq!(entry["rollback"]["ok"], true, "{entry}");
}

/// The lock file, parsed.
fn lease_now() -> Option<Value> {
    crate::support::sandbox::lock_file().and_then(|l| serde_json::from_str(l.trim()).ok())
}

fn rfc3339(v: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().with_timezone(&chrono::Utc)
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn a_holder_outliving_its_lease_keeps_it_and_unlock_refuses_it() {
    let _restore = RestoreDefault;
    deploy_ok(Some(&default_stack()), &["--no-drill"]);
    // A 2 s lease (renewed every 0.5 s, test-only), and a deploy held at its checks.
    let lease = Duration::from_secs(2);
    let mut child = cmd(&["deploy", "--host", "sandbox", "--no-drill", "--format", "json", "--lock-wait", "5m"])
        .env("STACKPROOF_TEST_PAUSE_AT", "checks")
        .env("STACKPROOF_TEST_LEASE_SECS", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut child = KillOnDrop(child);
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "the deploy ended before its checks:\n{seen}");
        seen.push_str(&line);
        if line.contains("stackproof-test: paused at checks") {
            break;
        }
    }
    let pid = child.0.id();
    let mine = |l: &Value| l["pid"] == pid;
    let first = lease_now().filter(mine).expect("the paused deploy holds the lock");
    let since = rfc3339(&first["since"]);
    // Poll until the holder has outlived three leases: its lease must still be live.
    let expiries = std::cell::RefCell::new(std::collections::BTreeSet::new());
    crate::support::poll(Duration::from_secs(30), "three leases outlived", || {
        let l = lease_now().filter(mine).ok_or("the lock is gone or not the deploy's")?;
        let (now, exp) = (chrono::Utc::now(), rfc3339(&l["expires"]));
        assert!(exp > now - chrono::Duration::milliseconds(200), "the lease expired while its holder ran: {l}");
        expiries.borrow_mut().insert(l["expires"].as_str().unwrap().to_string());
        if now - since > chrono::Duration::from_std(lease * 3).unwrap() {
            Ok(())
        } else {
            Err(format!("{} s held", (now - since).num_milliseconds() as f64 / 1000.0))
        }
    });
    assert!(expiries.borrow().len() >= 3, "the lease was not renewed: {:?}", expiries.borrow());
    // unlock refuses the live lease, mid-run.
    let u = crate::support::sp(&["unlock", "--host", "sandbox", "--format", "json"]);
    assert_eq!(u.status.code(), Some(2), "{}", crate::support::text(&u));
    let e = &crate::support::json(&u)["error"];
    assert!(e["message"].as_str().unwrap().contains("live lease"), "{e:#}");
    assert!(lease_now().is_some_and(|l| mine(&l)), "unlock removed a live lease");
    // The deploy ends (interrupted at its checks: nothing changed) and releases it.
    signal("-INT", pid);
    let st = child.wait_exit(Duration::from_secs(60));
    assert_eq!(st.code(), Some(130));
    assert!(lease_now().is_none_or(|l| !mine(&l)), "the lock was not released");
    eprintln!(
        "held {:.1} s with a {} s lease, {} distinct expiries seen",
        (chrono::Utc::now() - since).num_milliseconds() as f64 / 1000.0,
        lease.as_secs(),
        expiries.borrow().len()
    );
}
