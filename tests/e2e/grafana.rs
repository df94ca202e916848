//! Grafana as a real VPS runs it (the double models Grafana's database on its volume, its
//! brute-force lockout and its first-start time): verify never locks the admin out, a
//! rotated admin secret is put in force, and a slow first start is waited for.

use crate::support::http::http_get;
use crate::support::sandbox::{grafana_password, hosts_override, run};
use crate::support::stack::{deploy_ok, stack_copy, RestoreDefault};
use crate::support::{json, sp, sp_env, text};

const GRAFANA: &str = "http://127.0.0.1:3000/api/user";

#[test]
#[ignore = "e2e: run scripts/test"]
fn seven_verifies_in_a_row_never_lock_the_admin_out() {
    deploy_ok(None, &["--no-drill"]);
    // Grafana blocks a user name after 5 failed logins within 5 minutes, even with the
    // right password: a verify that tried admin/admin each time would lock the admin out
    // by the sixth run.
    for run in 1..=7 {
        let o = sp(&["verify", "--host", "sandbox", "--format", "json"]);
        assert_eq!(o.status.code(), Some(0), "verify {run}: {}", text(&o));
    }
    let (status, _) = http_get(GRAFANA, Some(("admin", &grafana_password()))).unwrap();
    assert_eq!(status, 200, "the admin still logs in");
}

/// Puts the sandbox's own admin secret back in force (deploying with the default hosts
/// file rotates the password back), then the default stack.
struct RotateBack;

impl Drop for RotateBack {
    fn drop(&mut self) {
        let o = sp(&["deploy", "--host", "sandbox", "--no-drill", "--format", "json", "--lock-wait", "5m"]);
        if o.status.code() != Some(0) {
            eprintln!("rotating the Grafana admin password back failed:\n{}", text(&o));
        }
    }
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn a_rotated_admin_secret_is_in_force_after_the_deploy() {
    let _restore = RestoreDefault;
    deploy_ok(None, &["--no-drill"]);
    let old = grafana_password();
    let dir = tempfile::tempdir().unwrap();
    let new = format!("{old}-rotated-e2e");
    let file = dir.path().join("grafana_admin_password");
    std::fs::write(&file, &new).unwrap();
    let (_hosts, hosts) = hosts_override(|e| {
        let secrets = e["secrets"].as_mapping_mut().unwrap();
        secrets.insert("grafana_admin_password".into(), serde_yaml::from_str(&format!("{{file: '{}'}}", file.display())).unwrap());
    });
    let _back = RotateBack;
    let env = [("STACKPROOF_HOSTS", hosts.as_path())];
    let o = sp_env(&["deploy", "--host", "sandbox", "--no-drill", "--format", "json", "--lock-wait", "5m"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(json(&o)["ok"], true);
    assert_eq!(http_get(GRAFANA, Some(("admin", &new))).unwrap().0, 200, "the new secret is in force");
    assert_eq!(http_get(GRAFANA, Some(("admin", &old))).unwrap().0, 401, "the old one is refused");
    let o = sp_env(&["verify", "--host", "sandbox", "--format", "json"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn a_slow_first_start_of_grafana_is_waited_for() {
    let _restore = RestoreDefault;
    // A new data volume, so Grafana creates its database (the double then waits 5 s
    // before listening, as real Grafana runs its migrations first).
    let volume = format!("grafana-data-e2e-{}", std::process::id());
    let copy = stack_copy(&[
        ("stackproof.yml", "{name: grafana-data, dest: /var/lib/grafana}", &format!("{{name: {volume}, dest: /var/lib/grafana}}")),
        (
            "stackproof.yml",
            "      GF_AUTH_ANONYMOUS_ENABLED: \"false\"\n",
            "      GF_AUTH_ANONYMOUS_ENABLED: \"false\"\n      GRAFANA_DOUBLE_STARTUP_DELAY_MS: \"5000\"\n",
        ),
    ]);
    let t = std::time::Instant::now();
    let j = deploy_ok(Some(copy.path()), &["--no-drill"]);
    assert!(t.elapsed() >= std::time::Duration::from_secs(5), "the double did not wait: {j:#}");
    drop(_restore);
    let o = run("docker", &["volume", "rm", &format!("stackproof-{volume}")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
