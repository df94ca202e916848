//! Provisioning faults and auth, shown the way Grafana 12.0.2 shows them
//! (grafana-facts.md §0-§2, §3.1, §5).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn uids(body: &Value) -> Vec<String> {
    body.as_array().unwrap().iter().map(|h| h["uid"].as_str().unwrap().to_string()).collect()
}

fn has_line(lines: &[String], parts: &[&str]) -> bool {
    lines.iter().any(|l| parts.iter().all(|p| l.contains(p)))
}

#[tokio::test]
async fn wrapped_dashboard_is_absent_and_logged() {
    let t = Tree::new();
    t.provider("", "", 10);
    let f = t.write("dashboards/wrapped.json", r#"{"dashboard": {"uid": "wrapped", "title": "Wrapped"}, "overwrite": true}"#);
    t.write("dashboards/good.json", r#"{"uid": "good", "title": "Good"}"#);
    let g = start_in_process(&t, &[]).await;
    g.wait_provisioned().await;
    let (_, body) = g.get("/api/search?type=dash-db").await;
    assert_eq!(uids(&body), ["good"]);
    let (s, _) = g.get("/api/dashboards/uid/wrapped").await;
    assert_eq!(s, 404);
    let want = format!("logger=provisioning.dashboard type=file name=default t=");
    assert!(
        has_line(
            &g.logs(),
            &[&want, "level=error msg=\"failed to load dashboard from \"", &format!("file={}", f.display()), "error=\"Dashboard title cannot be empty\""]
        ),
        "{:#?}",
        g.logs()
    );
}

#[tokio::test]
async fn invalid_json_and_empty_file_are_absent_and_logged() {
    let t = Tree::new();
    t.provider("", "", 10);
    let bad = t.write("dashboards/bad.json", r#"{"uid": "bad", "title": "Bad",}"#);
    let empty = t.write("dashboards/empty.json", "");
    let arr = t.write("dashboards/array.json", r#"[{"uid": "arr", "title": "In an array"}]"#);
    t.write("dashboards/good.json", r#"{"uid": "good", "title": "Good"}"#);
    let g = start_in_process(&t, &[]).await;
    g.wait_provisioned().await;
    let (_, body) = g.get("/api/search").await;
    assert_eq!(uids(&body), ["good"]);
    let logs = g.logs();
    assert!(has_line(&logs, &["msg=\"failed to load dashboard from \"", &format!("file={}", bad.display()), "error="]), "{logs:#?}");
    assert!(has_line(&logs, &["msg=\"failed to load dashboard from \"", &format!("file={}", empty.display()), "error=EOF"]), "{logs:#?}");
    assert!(has_line(&logs, &[&format!("file={}", arr.display()), "error=\"Dashboard title cannot be empty\""]), "{logs:#?}");
}

#[tokio::test]
async fn duplicate_uid_keeps_one_dashboard_and_warns() {
    let t = Tree::new();
    t.provider("", "", 1);
    t.write("dashboards/a.json", r#"{"uid": "same", "title": "First"}"#);
    t.write("dashboards/b.json", r#"{"uid": "same", "title": "Second"}"#);
    let g = start_in_process(&t, &[]).await;
    g.wait_provisioned().await;
    let (_, body) = g.get("/api/search?type=dash-db").await;
    assert_eq!(uids(&body), ["same"], "only one dashboard survives");
    assert_eq!(body[0]["title"], "Second", "the double lets the last file in path order win (see README)");
    let logs = g.logs();
    assert!(has_line(&logs, &["level=warn", "msg=\"the same UID is used more than once\"", "uid=same", "times=2"]), "{logs:#?}");
    assert!(
        has_line(&logs, &["msg=\"dashboards provisioning provider has no database write permissions because of duplicates\"", "provider=default"]),
        "{logs:#?}"
    );

    // while the duplicate stands the provider does not write: a change to another file is not applied
    t.write("dashboards/c.json", r#"{"uid": "c", "title": "Third"}"#);
    tokio::time::sleep(Duration::from_millis(2500)).await; // two update intervals: nothing may appear
    let (_, body) = g.get("/api/search?type=dash-db").await;
    assert_eq!(uids(&body), ["same"]);
    // once fixed, writes resume
    t.write("dashboards/b.json", r#"{"uid": "other", "title": "Second"}"#);
    wait_for(Duration::from_secs(8), "writes to resume after the duplicate is fixed", || async {
        let (_, body) = g.get("/api/search?type=dash-db").await;
        uids(&body).contains(&"c".to_string()) && uids(&body).contains(&"other".to_string())
    })
    .await;
}

#[tokio::test]
async fn dashboards_reload_on_change_within_update_interval() {
    let t = Tree::new();
    t.provider("Infra", "infra", 1);
    t.write("dashboards/x.json", r#"{"uid": "x", "title": "Before"}"#);
    t.write("dashboards/gone.json", r#"{"uid": "gone", "title": "Gone soon"}"#);
    let g = start_in_process(&t, &[]).await;
    g.wait_provisioned().await;
    let (_, d) = g.get("/api/dashboards/uid/x").await;
    assert_eq!((d["dashboard"]["title"].as_str(), d["meta"]["version"].as_i64()), (Some("Before"), Some(1)));

    t.write("dashboards/x.json", r#"{"uid": "x", "title": "After"}"#);
    t.write("dashboards/new.json", r#"{"uid": "new", "title": "New"}"#);
    std::fs::remove_file(t.dashboards().join("gone.json")).unwrap();
    wait_for(Duration::from_secs(4), "the change to be picked up (updateIntervalSeconds: 1)", || async {
        let (_, body) = g.get("/api/search?type=dash-db").await;
        let titles: Vec<&str> = body.as_array().unwrap().iter().map(|h| h["title"].as_str().unwrap()).collect();
        titles == ["After", "New"]
    })
    .await;
    let (_, d) = g.get("/api/dashboards/uid/x").await;
    assert_eq!(d["meta"]["version"], 2, "a changed file is saved again with a new version");
}

#[tokio::test]
async fn ds_prometheus_placeholder_dashboard_is_created_silently() {
    let t = Tree::new();
    t.prometheus_datasource("prometheus", "http://127.0.0.1:9", true);
    t.provider("", "", 10);
    t.write(
        "dashboards/shared.json",
        r#"{"__inputs": [{"name": "DS_PROMETHEUS", "type": "datasource", "pluginId": "prometheus"}],
            "uid": "shared", "title": "Shared Export",
            "panels": [{"type": "timeseries", "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
                        "targets": [{"refId": "A", "expr": "up", "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}}]}]}"#,
    );
    let g = start_in_process(&t, &[]).await;
    g.wait_provisioned().await;
    let (s, d) = g.get("/api/dashboards/uid/shared").await;
    assert_eq!(s, 200, "the dashboard is created");
    assert_eq!(d["dashboard"]["panels"][0]["datasource"]["uid"], "${DS_PROMETHEUS}", "placeholder left in place");
    assert!(!g.logs().iter().any(|l| l.contains("level=error") || l.contains("level=warn")), "nothing is logged at load time: {:#?}", g.logs());
    let target = &d["dashboard"]["panels"][0]["targets"][0];
    let (s, body) = g.post("/api/ds/query", &json!({"from": "now-5m", "to": "now", "queries": [target]})).await;
    assert_eq!((s, body["message"].as_str()), (404, Some("Data source not found")));
}

#[tokio::test]
async fn provisioning_runs_after_the_http_server_is_up() {
    let t = Tree::new();
    t.provider("", "", 10);
    t.write("dashboards/x.json", r#"{"uid": "x", "title": "X"}"#);
    let g = start_in_process(&t, &[("GRAFANA_DOUBLE_PROVISION_DELAY_MS", "1500")]).await;
    let (s, _) = get_json(&g.url("/api/health"), None).await;
    assert_eq!(s, 200);
    let (_, body) = g.get("/api/search").await;
    assert_eq!(body, json!([]), "health is 200 before any dashboard exists");
    wait_for(Duration::from_secs(5), "dashboards to appear", || async { g.get("/api/search").await.1.as_array().is_some_and(|a| a.len() == 1) }).await;
}

#[tokio::test]
async fn missing_provider_path_is_not_fatal() {
    let t = Tree::new();
    t.write("provisioning/dashboards/p.yaml", "apiVersion: 1\nproviders:\n  - name: lost\n    options:\n      path: /nonexistent/dashboards\n");
    let g = start_in_process(&t, &[]).await;
    wait_for(Duration::from_secs(5), "the Cannot read directory line", || {
        let l = g.logs();
        async move { has_line(&l, &["name=lost", "msg=\"Cannot read directory\"", "no such file or directory"]) }
    })
    .await;
    let (s, _) = get_json(&g.url("/api/health"), None).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn wrong_password_is_401_and_right_one_works() {
    let t = Tree::new();
    let g = start_in_process(&t, &[("GF_SECURITY_ADMIN_USER", "boss"), ("GF_SECURITY_ADMIN_PASSWORD", "s3cret")]).await;
    let (s, body) = get_json(&g.url("/api/org"), Some(("boss", "admin"))).await;
    assert_eq!((s, body["messageId"].as_str()), (401, Some("password-auth.failed")));
    let (s, _) = get_json(&g.url("/api/org"), Some(("admin", "admin"))).await;
    assert_eq!(s, 401, "admin/admin no longer works once a password is set");
    let (s, body) = get_json(&g.url("/api/user"), Some(("boss", "s3cret"))).await;
    assert_eq!((s, body["login"].as_str()), (200, Some("boss")));
}

// ---- faults that stop the process: spawn the built binary ----

#[test]
fn two_default_datasources_refuse_to_start() {
    let t = Tree::new();
    t.prometheus_datasource("one", "http://127.0.0.1:9", true);
    t.prometheus_datasource("two", "http://127.0.0.1:9", true);
    let mut p = spawn_binary(&t, &[]);
    let status = p.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1));
    let out = p.stdout();
    assert!(
        out.contains("logger=provisioning ")
            && out.contains("level=error msg=\"Failed to provision data sources\" error=\"Datasource provisioning error: datasource.yaml config is invalid. Only one datasource per organization can be marked as default\""),
        "{out}"
    );
    assert!(out.contains("msg=\"HTTP Server Listen\""), "the server was up before provisioning failed: {out}");
    assert!(p.stderr().contains("Error: ✗ invalid service state: Failed, expected: Running, failure: Datasource provisioning error:"), "{}", p.stderr());
}

#[test]
fn invalid_datasource_yaml_refuses_to_start() {
    let t = Tree::new();
    t.write("provisioning/datasources/ds.yaml", "apiVersion: 1\ndatasources:\n  - name: P\n    type: prometheus\n    url: http://x:9090\n   isDefault: true\n");
    let mut p = spawn_binary(&t, &[]);
    assert_eq!(p.wait_exit(Duration::from_secs(10)).code(), Some(1));
    let out = p.stdout();
    assert!(out.contains("msg=\"Failed to provision data sources\" error=\"Datasource provisioning error: yaml: line "), "{out}");
}

#[test]
fn datasource_yaml_that_is_a_directory_refuses_to_start() {
    let t = Tree::new();
    let d = t.provisioning().join("datasources/datasources.yaml");
    std::fs::create_dir_all(&d).unwrap();
    let mut p = spawn_binary(&t, &[]);
    assert_eq!(p.wait_exit(Duration::from_secs(10)).code(), Some(1));
    assert!(p.stdout().contains(&format!("Datasource provisioning error: read {}: is a directory", d.display())), "{}", p.stdout());
}

#[test]
fn invalid_provider_yaml_refuses_to_start() {
    let t = Tree::new();
    t.write("provisioning/dashboards/dashboards.yaml", "apiVersion: 1\nproviders:\n  - name: a\n    options: {path: /x\n");
    let mut p = spawn_binary(&t, &[]);
    assert_eq!(p.wait_exit(Duration::from_secs(10)).code(), Some(1));
    let out = p.stdout();
    assert!(
        out.contains(
            "error=\"Failed to create provisioner: Failed to read dashboards config: could not parse provisioning config file: dashboards.yaml error: yaml: "
        ),
        "{out}"
    );
}

#[test]
fn duplicate_provider_name_refuses_to_start() {
    let t = Tree::new();
    t.write("provisioning/dashboards/a.yaml", "apiVersion: 1\nproviders:\n  - name: a\n    options: {path: /x}\n  - name: a\n    options: {path: /y}\n");
    let mut p = spawn_binary(&t, &[]);
    assert_eq!(p.wait_exit(Duration::from_secs(10)).code(), Some(1));
    assert!(p.stdout().contains("dashboard name \\\"a\\\" is not unique"), "{}", p.stdout());
}

#[tokio::test]
async fn password_file_form_sets_the_password() {
    let t = Tree::new();
    let secret = t.write("secret", "from-a-file\n");
    let p = spawn_binary(&t, &[("GF_SECURITY_ADMIN_PASSWORD__FILE", secret.to_str().unwrap())]);
    let addr = p.wait_addr(Duration::from_secs(10));
    let url = format!("http://{addr}/api/org");
    let (s, body) = get_json(&url, Some(("admin", "from-a-file"))).await;
    assert_eq!((s, body["name"].as_str()), (200, Some("Main Org.")));
    let (s, _) = get_json(&url, Some(("admin", "admin"))).await;
    assert_eq!(s, 401);
    assert!(p.stdout().contains(&format!("Getting secret GF_SECURITY_ADMIN_PASSWORD from {}", secret.display())));
}

#[tokio::test]
async fn password_file_that_is_missing_leaves_admin_admin() {
    let t = Tree::new();
    let p = spawn_binary(&t, &[("GF_SECURITY_ADMIN_PASSWORD__FILE", "/nonexistent/secret")]);
    let addr = p.wait_addr(Duration::from_secs(10));
    let (s, _) = get_json(&format!("http://{addr}/api/org"), Some(("admin", "admin"))).await;
    assert_eq!(s, 200, "run.sh exports an empty value and Grafana ignores empty overrides");
    assert!(p.stderr().contains("/nonexistent/secret: No such file or directory"), "{}", p.stderr());
}

#[test]
fn password_and_password_file_together_are_fatal() {
    let t = Tree::new();
    let secret = t.write("secret", "x");
    let mut p = spawn_binary(&t, &[("GF_SECURITY_ADMIN_PASSWORD", "y"), ("GF_SECURITY_ADMIN_PASSWORD__FILE", secret.to_str().unwrap())]);
    assert_eq!(p.wait_exit(Duration::from_secs(10)).code(), Some(1));
    assert!(p.stderr().contains("ERROR: Both GF_SECURITY_ADMIN_PASSWORD and GF_SECURITY_ADMIN_PASSWORD__FILE are set (but are exclusive)"), "{}", p.stderr());
}
