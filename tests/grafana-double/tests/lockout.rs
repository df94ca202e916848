//! Brute-force login protection as Grafana 12.0.2 does it
//! (pkg/services/loginattempt/loginattemptimpl/login_attempt.go,
//! pkg/services/authn/clients/password.go; README "Login"): failures counted
//! per lower-cased user name, 5 within 5 minutes block the name even with the
//! right password, a success unlocks nothing, the counts live in the database.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;

const START: Duration = Duration::from_secs(10);
const RIGHT: &str = "right-secret";

async fn login(base: &str, user: &str, password: &str) -> (u16, Value) {
    get_json(&format!("{base}/api/org"), Some((user, password))).await
}

fn blocked_or_wrong() -> Value {
    fixture("wrong-password.json")
}

#[tokio::test]
async fn five_failures_block_the_name_even_with_the_right_password() {
    let t = Tree::new();
    let g = start_in_process(&t, &[("GF_SECURITY_ADMIN_PASSWORD", RIGHT)]).await;
    let base = g.url("");
    for i in 0..4 {
        let (s, body) = login(&base, "admin", &format!("wrong-{i}")).await;
        assert_eq!((s, body), (401, blocked_or_wrong()));
    }
    // four failures: not yet blocked, and this success resets nothing
    assert_eq!(login(&base, "admin", RIGHT).await.0, 200);
    assert_eq!(login(&base, "admin", "wrong-4").await.0, 401);
    // fifth failure: the right password is refused now, with the same body as a wrong one
    let (s, body) = login(&base, "admin", RIGHT).await;
    assert_eq!((s, body), (401, blocked_or_wrong()));
    // the name is compared lower-cased, so another spelling is blocked too
    assert_eq!(login(&base, "ADMIN", RIGHT).await.0, 401);
    let logs = g.logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("logger=authn.service")
                && l.contains("too many consecutive incorrect login attempts for user - login for user temporarily blocked")),
        "{logs:#?}"
    );
    // failures of other names do not count for admin, and vice versa
    let t2 = Tree::new();
    let g2 = start_in_process(&t2, &[("GF_SECURITY_ADMIN_PASSWORD", RIGHT)]).await;
    for i in 0..6 {
        assert_eq!(login(&g2.url(""), "someone-else", &format!("x{i}")).await.0, 401);
    }
    assert_eq!(login(&g2.url(""), "admin", RIGHT).await.0, 200);
}

#[tokio::test]
async fn a_blocked_request_is_not_counted_and_an_empty_password_is_not_either() {
    let t = Tree::new();
    let g = start_in_process(&t, &[("GF_SECURITY_ADMIN_PASSWORD", RIGHT), ("GF_SECURITY_BRUTE_FORCE_LOGIN_PROTECTION_MAX_ATTEMPTS", "2")]).await;
    let base = g.url("");
    assert_eq!(login(&base, "admin", "").await.0, 401);
    assert_eq!(login(&base, "admin", "").await.0, 401);
    assert_eq!(login(&base, "admin", RIGHT).await.0, 200, "empty passwords are refused without being counted");
    assert_eq!(login(&base, "admin", "a").await.0, 401);
    assert_eq!(login(&base, "admin", "b").await.0, 401);
    assert_eq!(login(&base, "admin", RIGHT).await.0, 401, "max_attempts = 2 reached");
    let running = &g.running.state;
    assert_eq!(running.store.read().unwrap().login_attempts.len(), 2, "blocked requests add no attempt");
}

#[tokio::test]
async fn protection_can_be_disabled() {
    let t = Tree::new();
    let g = start_in_process(&t, &[("GF_SECURITY_ADMIN_PASSWORD", RIGHT), ("GF_SECURITY_DISABLE_BRUTE_FORCE_LOGIN_PROTECTION", "true")]).await;
    for i in 0..7 {
        assert_eq!(login(&g.url(""), "admin", &format!("w{i}")).await.0, 401);
    }
    assert_eq!(login(&g.url(""), "admin", RIGHT).await.0, 200);
}

fn start(tree: &Tree, data: &Path) -> (Spawned, String) {
    let s = spawn_binary(tree, &[("GF_PATHS_DATA", data.to_str().unwrap()), ("GF_SECURITY_ADMIN_PASSWORD", RIGHT)]);
    let addr = s.wait_addr(START);
    (s, format!("http://{addr}"))
}

#[tokio::test]
async fn the_block_survives_a_restart_and_ends_with_the_window() {
    let t = Tree::new();
    let data = tempfile::tempdir().unwrap();
    {
        let (_g, base) = start(&t, data.path());
        for i in 0..5 {
            assert_eq!(login(&base, "admin", &format!("wrong-{i}")).await.0, 401);
        }
        assert_eq!(login(&base, "admin", RIGHT).await.0, 401);
    }
    {
        let (_g, base) = start(&t, data.path());
        assert_eq!(login(&base, "admin", RIGHT).await.0, 401, "the failures are in the database, not in memory");
    }
    // age the stored failures past the 5-minute window
    let file = data.path().join(grafana_double::db::FILE);
    let mut db: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let attempts = db["login_attempts"].as_array_mut().unwrap();
    assert_eq!(attempts.len(), 5);
    for a in attempts.iter_mut() {
        a["created"] = (a["created"].as_i64().unwrap() - 301).into();
    }
    std::fs::write(&file, serde_json::to_vec(&db).unwrap()).unwrap();
    let (_g, base) = start(&t, data.path());
    assert_eq!(login(&base, "admin", RIGHT).await.0, 200);
}
