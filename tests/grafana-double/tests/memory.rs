//! The database on the data volume: what Grafana 12.0.2 keeps in grafana.db
//! under GF_PATHS_DATA survives a restart (README "Database"). Each test
//! starts the built binary twice or more on one data dir, like a container
//! recreated on the same volume.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const START: Duration = Duration::from_secs(10);

fn start(tree: &Tree, data: &Path, extra: &[(&str, &str)]) -> (Spawned, String) {
    let mut env: Vec<(&str, &str)> = vec![("GF_PATHS_DATA", data.to_str().unwrap())];
    env.extend_from_slice(extra);
    let s = spawn_binary(tree, &env);
    let addr = s.wait_addr(START);
    (s, format!("http://{addr}"))
}

async fn put(url: &str, auth: (&str, &str), body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new().put(url).basic_auth(auth.0, Some(auth.1)).json(body).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn status_as(base: &str, user: &str, password: &str) -> (u16, Value) {
    get_json(&format!("{base}/api/user"), Some((user, password))).await
}

#[tokio::test]
async fn admin_password_is_set_only_when_the_database_is_created() {
    let t = Tree::new();
    let data = tempfile::tempdir().unwrap();
    {
        let (_g, base) = start(&t, data.path(), &[("GF_SECURITY_ADMIN_PASSWORD", "first-secret")]);
        let (s, body) = status_as(&base, "admin", "first-secret").await;
        assert_eq!((s, body["login"].as_str()), (200, Some("admin")));
    }
    assert!(data.path().join(grafana_double::db::FILE).is_file(), "the database file is on the data dir");

    // same volume, new password in the environment: the stored one stays
    let (_g, base) = start(&t, data.path(), &[("GF_SECURITY_ADMIN_PASSWORD", "second-secret")]);
    let (s, body) = status_as(&base, "admin", "second-secret").await;
    assert_eq!((s, body["messageId"].as_str()), (401, Some("password-auth.failed")), "{body}");
    let (s, _) = status_as(&base, "admin", "first-secret").await;
    assert_eq!(s, 200, "the password of the first start still works");
}

#[tokio::test]
async fn without_a_data_dir_nothing_survives() {
    // not Grafana: without GF_PATHS_DATA the double keeps its database in memory
    let t = Tree::new();
    {
        let g = spawn_binary(&t, &[("GF_SECURITY_ADMIN_PASSWORD", "first-secret")]);
        let base = format!("http://{}", g.wait_addr(START));
        assert_eq!(status_as(&base, "admin", "first-secret").await.0, 200);
        assert!(g.stdout().contains("GF_PATHS_DATA is unset"), "{}", g.stdout());
    }
    let g = spawn_binary(&t, &[("GF_SECURITY_ADMIN_PASSWORD", "second-secret")]);
    let base = format!("http://{}", g.wait_addr(START));
    assert_eq!(status_as(&base, "admin", "second-secret").await.0, 200);
}

#[tokio::test]
async fn password_changed_through_the_api_persists() {
    let t = Tree::new();
    let data = tempfile::tempdir().unwrap();
    let env = [("GF_SECURITY_ADMIN_PASSWORD", "first-secret")];
    {
        let (_g, base) = start(&t, data.path(), &env);
        let url = format!("{base}/api/user/password");
        let (s, body) =
            put(&url, ("admin", "first-secret"), &json!({"oldPassword": "nope", "newPassword": "second-secret", "confirmNew": "second-secret"})).await;
        assert_eq!((s, body["message"].as_str(), body["messageId"].as_str()), (400, Some("Invalid old password"), Some("user.password-missmatch")), "{body}");
        let (s, body) = put(&url, ("admin", "first-secret"), &json!({"oldPassword": "first-secret", "newPassword": "abc", "confirmNew": "abc"})).await;
        assert_eq!((s, body["message"].as_str()), (400, Some("New password is too short")), "{body}");
        let (s, body) =
            put(&url, ("admin", "first-secret"), &json!({"oldPassword": "first-secret", "newPassword": "second-secret", "confirmNew": "second-secret"})).await;
        assert_eq!((s, body), (200, json!({"message": "User password changed"})));
        assert_eq!(status_as(&base, "admin", "second-secret").await.0, 200);
        assert_eq!(status_as(&base, "admin", "first-secret").await.0, 401);
    }
    {
        // restarted with the old password still in the environment: the changed one rules
        let (_g, base) = start(&t, data.path(), &env);
        assert_eq!(status_as(&base, "admin", "first-secret").await.0, 401);
        let (s, me) = status_as(&base, "admin", "second-secret").await;
        assert_eq!(s, 200);
        let id = me["id"].as_i64().unwrap();
        let url = format!("{base}/api/admin/users/{id}/password");
        let (s, body) = put(&url, ("admin", "second-secret"), &json!({"password": "third-secret"})).await;
        assert_eq!((s, body), (200, json!({"message": "User password updated"})));
        let (s, _) = put(&format!("{base}/api/admin/users/abc/password"), ("admin", "third-secret"), &json!({"password": "x-secret"})).await;
        assert_eq!(s, 400, "id is invalid");
    }
    let (_g, base) = start(&t, data.path(), &env);
    assert_eq!(status_as(&base, "admin", "third-secret").await.0, 200);
}

#[tokio::test]
async fn admin_user_name_is_also_fixed_at_creation() {
    let t = Tree::new();
    let data = tempfile::tempdir().unwrap();
    drop(start(&t, data.path(), &[("GF_SECURITY_ADMIN_USER", "root"), ("GF_SECURITY_ADMIN_PASSWORD", "pw-one")]));
    let (_g, base) = start(&t, data.path(), &[("GF_SECURITY_ADMIN_USER", "admin"), ("GF_SECURITY_ADMIN_PASSWORD", "pw-one")]);
    assert_eq!(status_as(&base, "admin", "pw-one").await.0, 401, "no user 'admin' was ever created");
    assert_eq!(status_as(&base, "root", "pw-one").await.0, 200);
}

fn datasource(t: &Tree, name: &str, uid: &str) {
    t.write(
        "provisioning/datasources/prometheus.yaml",
        &format!("apiVersion: 1\ndatasources:\n  - name: {name}\n    type: prometheus\n    uid: {uid}\n    url: http://127.0.0.1:9\n    isDefault: true\n"),
    );
}

#[tokio::test]
async fn provisioned_datasource_persists_and_a_rename_keeping_the_uid_crash_loops() {
    let t = Tree::new();
    let data = tempfile::tempdir().unwrap();
    datasource(&t, "Prometheus", "prom");
    let first_id = {
        let (g, base) = start(&t, data.path(), &[]);
        wait_for(START, "datasource provisioned", || {
            let out = g.stdout();
            async move { out.contains("inserting datasource from configuration") }
        })
        .await;
        let (s, ds) = get_json(&format!("{base}/api/datasources/uid/prom"), Some(("admin", "admin"))).await;
        assert_eq!((s, ds["name"].as_str()), (200, Some("Prometheus")));
        ds["id"].as_i64().unwrap()
    };

    // the file is gone, the row is not (no prune, no deleteDatasources)
    std::fs::remove_file(t.root().join("provisioning/datasources/prometheus.yaml")).unwrap();
    {
        let (_g, base) = start(&t, data.path(), &[]);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (s, ds) = get_json(&format!("{base}/api/datasources/uid/prom"), Some(("admin", "admin"))).await;
        assert_eq!((s, ds["id"].as_i64()), (200, Some(first_id)), "{ds}");
    }

    // renamed, uid kept, old volume: every start fails the same way
    datasource(&t, "Prometheus renamed", "prom");
    for attempt in 0..2 {
        let mut g = spawn_binary(&t, &[("GF_PATHS_DATA", data.path().to_str().unwrap())]);
        let status = g.wait_exit(START);
        assert!(!status.success(), "start {attempt} must fail");
        let err = g.stderr();
        assert!(err.contains("Datasource provisioning error: data source with the same uid already exists"), "start {attempt}: {err}");
    }

    // a fresh volume takes the renamed datasource
    let fresh = tempfile::tempdir().unwrap();
    let (g, base) = start(&t, fresh.path(), &[]);
    wait_for(START, "datasource provisioned", || {
        let out = g.stdout();
        async move { out.contains("inserting datasource from configuration") }
    })
    .await;
    let (s, ds) = get_json(&format!("{base}/api/datasources/uid/prom"), Some(("admin", "admin"))).await;
    assert_eq!((s, ds["name"].as_str()), (200, Some("Prometheus renamed")));
}

#[tokio::test]
async fn unchanged_dashboards_are_not_saved_again_after_a_restart() {
    let t = Tree::new();
    t.provider("", "", 3600);
    t.write("dashboards/a.json", r#"{"uid": "a", "title": "A"}"#);
    let data = tempfile::tempdir().unwrap();
    let before = {
        let (_g, base) = start(&t, data.path(), &[]);
        wait_dashboard(&base, "a").await
    };
    let (_g, base) = start(&t, data.path(), &[]);
    let after = wait_dashboard(&base, "a").await;
    assert_eq!((after["dashboard"]["id"].clone(), after["dashboard"]["version"].clone()), (before["dashboard"]["id"].clone(), json!(1)), "{after}");
}

async fn wait_dashboard(base: &str, uid: &str) -> Value {
    let url = format!("{base}/api/dashboards/uid/{uid}");
    wait_for(START, "dashboard provisioned", || {
        let url = url.clone();
        async move { get_json(&url, Some(("admin", "admin"))).await.0 == 200 }
    })
    .await;
    get_json(&url, Some(("admin", "admin"))).await.1
}
