//! Contract tests: the double's responses compared field by field with
//! response examples from Grafana's documentation and source (fixtures/).

mod common;

use common::*;
use serde_json::{json, Value};

const DS_YAML: &str = "apiVersion: 1
datasources:
  - name: Prometheus
    type: prometheus
    uid: prometheus
    access: proxy
    url: PROM_URL
    isDefault: true
    editable: false
    jsonData:
      httpMethod: POST
      timeInterval: 15s
";

/// The tree the examples describe: folder "Infrastructure" (uid infra) with
/// dashboard "Node Overview" (uid node-overview) from node-overview.json.
fn example_tree(prom_url: &str) -> Tree {
    let t = Tree::new();
    t.write("provisioning/datasources/datasource.yaml", &DS_YAML.replace("PROM_URL", prom_url));
    t.provider("Infrastructure", "infra", 10);
    t.write(
        "dashboards/node-overview.json",
        r#"{"uid": "node-overview", "title": "Node Overview", "tags": ["infra"], "panels": [], "schemaVersion": 39, "version": 7}"#,
    );
    t.write(
        "provisioning/dashboards/general.yaml",
        &format!("apiVersion: 1\nproviders:\n  - name: general\n    options:\n      path: {}/general\n", t.root().display()),
    );
    t.write("general/root.json", r#"{"uid": "root-dash", "title": "At The Root", "panels": []}"#);
    t
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

#[tokio::test]
async fn health_matches_fixture_and_needs_no_auth() {
    let t = example_tree("http://prometheus:9090");
    let g = start_in_process(&t, &[]).await;
    let r = reqwest::get(g.url("/api/health")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/json; charset=UTF-8");
    let text = r.text().await.unwrap();
    assert!(text.starts_with("{\n  \"commit\""), "2-space indented like json.MarshalIndent: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_shape(&fixture("health.json"), &body, &[]);
    assert_eq!(body["database"], "ok");
    assert_eq!(body["version"], "12.0.2");
}

#[tokio::test]
async fn auth_errors_match_fixtures() {
    let t = example_tree("http://prometheus:9090");
    let g = start_in_process(&t, &[]).await;
    let (s, body) = get_json(&g.url("/api/search"), None).await;
    assert_eq!(s, 401);
    assert_eq!(body, fixture("unauthorized.json"));
    let (s, body) = get_json(&g.url("/api/search"), Some(("admin", "wrong"))).await;
    assert_eq!(s, 401);
    assert_eq!(body, fixture("wrong-password.json"));
    let (s, _) = get_json(&g.url("/api/search"), Some(("admin", "admin"))).await;
    assert_eq!(s, 200, "default admin/admin works when nothing is set, as in Grafana");
}

#[tokio::test]
async fn search_matches_fixture() {
    let t = example_tree("http://prometheus:9090");
    let g = start_in_process(&t, &[]).await;
    g.wait_provisioned().await;
    let (s, body) = g.get("/api/search?type=dash-db&query=node").await;
    assert_eq!(s, 200);
    let expected = fixture("search-dash-db.json");
    assert_shape(&expected, &body, &[]);
    let (e, a) = (&expected[0], &body[0]);
    for k in ["uid", "orgId", "title", "uri", "url", "slug", "type", "tags", "isStarred", "folderUid", "folderUrl", "sortMeta", "isDeleted"] {
        assert_eq!(a[k], e[k], "{k}");
    }
    assert_eq!(a["folderTitle"], "Infrastructure");

    // root dashboards have no folder* fields
    let (_, body) = g.get("/api/search?type=dash-db&query=root").await;
    let hit = body[0].as_object().unwrap();
    assert_eq!(hit["uid"], "root-dash");
    for k in ["folderId", "folderUid", "folderTitle", "folderUrl"] {
        assert!(!hit.contains_key(k), "{k} must be omitted for the General folder");
    }

    // no type: folders first, then dashboards by lower-case title
    let (_, body) = g.get("/api/search").await;
    let order: Vec<&str> = body.as_array().unwrap().iter().map(|h| h["uid"].as_str().unwrap()).collect();
    assert_eq!(order, ["infra", "root-dash", "node-overview"]);
    assert_eq!(body[0]["type"], "dash-folder");

    // folder filters
    let (_, body) = g.get("/api/search?type=dash-db&folderUIDs=infra").await;
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["uid"], "node-overview");
    let folder_id = body[0]["folderId"].as_i64().unwrap();
    let (_, body) = g.get(&format!("/api/search?type=dash-db&folderIds={folder_id}")).await;
    assert_eq!(body[0]["uid"], "node-overview");
    let (_, body) = g.get("/api/search?type=dash-db&folderIds=0").await;
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["uid"], "root-dash");
    let (_, body) = g.get("/api/search?dashboardUIDs=root-dash&dashboardUIDs=node-overview").await;
    assert_eq!(body.as_array().unwrap().len(), 2);
    let (_, body) = g.get("/api/search?type=dash-folder").await;
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["uid"], "infra");
    let (_, body) = g.get("/api/search?query=nothing-like-this").await;
    assert_eq!(body, json!([]));
}

#[tokio::test]
async fn dashboard_by_uid_matches_fixture() {
    let t = example_tree("http://prometheus:9090");
    let g = start_in_process(&t, &[]).await;
    g.wait_provisioned().await;
    let (s, body) = g.get("/api/dashboards/uid/node-overview").await;
    assert_eq!(s, 200);
    let expected = fixture("dashboard-by-uid.json");
    assert_shape(&expected, &body, &["tags"]);
    let (em, am) = (&expected["meta"], &body["meta"]);
    for k in [
        "type",
        "slug",
        "url",
        "expires",
        "updatedBy",
        "createdBy",
        "version",
        "hasAcl",
        "isFolder",
        "folderUid",
        "folderUrl",
        "provisioned",
        "provisionedExternalId",
    ] {
        assert_eq!(am[k], em[k], "meta.{k}");
    }
    assert_eq!(am["folderUrl"], em["folderUrl"]);
    assert_eq!(am["folderTitle"], em["folderTitle"]);
    // the handler forces dashboard.version to the stored version, and id to the row id
    assert_eq!(body["dashboard"]["version"], am["version"]);
    assert_eq!(body["dashboard"]["uid"], "node-overview");
    assert!(body["dashboard"]["id"].as_i64().unwrap() > 0);

    let (s, body) = g.get("/api/dashboards/uid/no-such-uid").await;
    assert_eq!((s, body["message"].as_str()), (404, Some("Dashboard not found")));
}

#[tokio::test]
async fn allow_ui_updates_makes_provisioned_false() {
    let t = Tree::new();
    t.write(
        "provisioning/dashboards/p.yaml",
        &format!("apiVersion: 1\nproviders:\n  - name: p\n    allowUiUpdates: true\n    options:\n      path: {}\n", t.dashboards().display()),
    );
    t.write("dashboards/sub/x.json", r#"{"uid": "x", "title": "X"}"#);
    let g = start_in_process(&t, &[]).await;
    g.wait_provisioned().await;
    let (_, body) = g.get("/api/dashboards/uid/x").await;
    assert_eq!(body["meta"]["provisioned"], false);
    assert_eq!(body["meta"]["provisionedExternalId"], "sub/x.json");
    assert_eq!(body["meta"]["folderTitle"], "General");
}

#[tokio::test]
async fn folders_match_fixture() {
    let t = example_tree("http://prometheus:9090");
    let g = start_in_process(&t, &[]).await;
    g.wait_provisioned().await;
    let (s, body) = g.get("/api/folders").await;
    assert_eq!(s, 200);
    let expected = fixture("folders.json");
    assert_shape(&expected, &body, &[]);
    assert_eq!(body[0]["uid"], expected[0]["uid"]);
    assert_eq!(body[0]["title"], expected[0]["title"]);
}

#[tokio::test]
async fn datasources_match_fixtures() {
    let t = example_tree("http://prometheus:9090");
    let g = start_in_process(&t, &[]).await;
    g.wait_provisioned().await;
    let (s, body) = g.get("/api/datasources").await;
    assert_eq!(s, 200);
    assert_eq!(body, fixture("datasources-list.json"), "same input as the example: every field equal");
    let (s, body) = g.get("/api/datasources/uid/prometheus").await;
    assert_eq!(s, 200);
    assert_eq!(body, fixture("datasource-by-uid.json"));
    let (s, body) = g.get("/api/datasources/uid/nope").await;
    assert_eq!((s, body["message"].as_str()), (404, Some("Data source not found")));
}

#[tokio::test]
async fn datasource_health_matches_fixtures() {
    let prom =
        canned_prometheus(vec![("/api/v1/query", 200, json!({"status": "success", "data": {"resultType": "scalar", "result": [1700000000, "2"]}}))]).await;
    let t = example_tree(&prom.url);
    let dead = dead_port();
    t.write(
        "provisioning/datasources/dead.yaml",
        &format!("apiVersion: 1\ndatasources:\n  - name: Dead\n    type: prometheus\n    uid: dead\n    url: http://127.0.0.1:{dead}\n"),
    );
    let g = start_in_process(&t, &[]).await;
    g.wait_provisioned().await;

    let (s, body) = g.get("/api/datasources/uid/prometheus/health").await;
    assert_eq!(s, 200);
    assert_eq!(body, fixture("datasource-health-ok.json"));
    let seen = prom.seen.lock().unwrap().clone();
    assert_eq!(seen.last().unwrap()["query"], "1+1", "the health check runs the instant query 1+1");

    let (s, body) = g.get("/api/datasources/uid/dead/health").await;
    assert_eq!(s, 400);
    assert_shape(&fixture("datasource-health-error.json"), &body, &[]);
    assert_eq!(body["status"], "ERROR");
    assert_eq!(
        body["message"],
        format!("Post \"http://127.0.0.1:{dead}/api/v1/query\": dial tcp 127.0.0.1:{dead}: connect: connection refused - There was an error returned querying the Prometheus API.")
    );
}

#[tokio::test]
async fn ds_query_matches_the_facts_example() {
    let prom = canned_prometheus(vec![(
        "/api/v1/query_range",
        200,
        json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"job": "api"}, "values": [[1700000000, "12.5"], [1700000015, "13"]]}
        ]}}),
    )])
    .await;
    let t = example_tree(&prom.url);
    let g = start_in_process(&t, &[]).await;
    g.wait_provisioned().await;
    let req = json!({
        "from": "1700000000000", "to": "1700000900000",
        "queries": [{
            "refId": "A", "datasource": {"type": "prometheus", "uid": "prometheus"},
            "expr": "sum by (job) (rate(http_requests_total{job=\"api\"}[$__rate_interval]))",
            "range": true, "instant": false, "legendFormat": "{{job}}", "interval": "",
            "intervalMs": 15000, "maxDataPoints": 1000, "format": "time_series"
        }]
    });
    let (s, body) = g.post("/api/ds/query", &req).await;
    assert_eq!(s, 200);
    let expected = fixture("ds-query-range.json");
    assert_shape(&expected, &body, &[]);
    let (ef, af) = (&expected["results"]["A"]["frames"][0], &body["results"]["A"]["frames"][0]);
    assert_eq!(af["schema"], ef["schema"], "schema equal to the example, including executedQueryString");
    let (ev, av) = (&ef["data"]["values"], &af["data"]["values"]);
    for i in 0..2 {
        let e: Vec<f64> = ev[i].as_array().unwrap().iter().map(num).collect();
        let a: Vec<f64> = av[i].as_array().unwrap().iter().map(num).collect();
        assert_eq!(a, e);
    }
    // what reached Prometheus: built-ins substituted, range aligned to the step
    let seen = prom.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen["query"], "sum by (job) (rate(http_requests_total{job=\"api\"}[1m0s]))");
    assert_eq!((seen["start"].as_str(), seen["end"].as_str(), seen["step"].as_str()), ("1699999995", "1700000895", "15"));
}

#[tokio::test]
async fn ds_query_matches_promlib_golden_frames() {
    let fx: Value =
        serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/promlib-range-missing.json")).unwrap()).unwrap();
    let prom = canned_prometheus(vec![("/api/v1/query_range", 200, fx["prometheus"].clone())]).await;
    let t = example_tree(&prom.url);
    let g = start_in_process(&t, &[]).await;
    g.wait_provisioned().await;
    let q = &fx["query"];
    let req = json!({
        "from": (q["Start"].as_i64().unwrap() * 1000).to_string(),
        "to": (q["End"].as_i64().unwrap() * 1000).to_string(),
        "queries": [{"refId": "A", "datasource": {"uid": "prometheus"}, "expr": q["Expr"], "range": true, "interval": "1s"}]
    });
    let (s, body) = g.post("/api/ds/query", &req).await;
    assert_eq!(s, 200);
    let golden = fixture("promlib-range-missing.json");
    let mut actual = body["results"]["A"].clone();
    // the golden test builds frames without a refId; the API sets it
    assert_eq!(actual["frames"][0]["schema"]["refId"], "A");
    actual["frames"][0]["schema"].as_object_mut().unwrap().remove("refId");
    assert_eq!(actual, golden);
    let seen = prom.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!((seen["start"].as_str(), seen["end"].as_str(), seen["step"].as_str()), ("1641889530", "1641889538", "1"));
}

#[tokio::test]
async fn ds_query_empty_result_is_one_empty_frame() {
    let prom = canned_prometheus(vec![("/api/v1/query_range", 200, json!({"status": "success", "data": {"resultType": "matrix", "result": []}}))]).await;
    let t = example_tree(&prom.url);
    let g = start_in_process(&t, &[]).await;
    g.wait_provisioned().await;
    let req = json!({"from": "now-5m", "to": "now", "queries": [{"refId": "A", "datasource": {"uid": "prometheus"}, "expr": "absent_metric"}]});
    let (s, body) = g.post("/api/ds/query", &req).await;
    assert_eq!(s, 200);
    let frames = body["results"]["A"]["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 1, "one frame even without series");
    assert_eq!(frames[0]["schema"]["fields"], json!([]));
    assert_eq!(frames[0]["data"]["values"], json!([]));
    assert_eq!(frames[0]["schema"]["meta"]["type"], "timeseries-multi");
}

#[tokio::test]
async fn ds_query_prometheus_error_matches_fixture() {
    let prom = canned_prometheus(vec![(
        "/api/v1/query_range",
        400,
        json!({"status": "error", "errorType": "bad_data", "error": "1:15: parse error: unexpected character"}),
    )])
    .await;
    let t = example_tree(&prom.url);
    let g = start_in_process(&t, &[]).await;
    g.wait_provisioned().await;
    let req = json!({"from": "now-5m", "to": "now", "queries": [{"refId": "A", "datasource": {"uid": "prometheus"}, "expr": "up{job=$job}"}]});
    let (s, body) = g.post("/api/ds/query", &req).await;
    assert_eq!(s, 400, "any failed query makes the whole response 400");
    assert_eq!(body, fixture("ds-query-error.json"));
    let seen = prom.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen["query"], "up{job=$job}", "dashboard variables are not substituted server-side");
}

#[tokio::test]
async fn ds_query_request_errors() {
    let t = example_tree("http://127.0.0.1:9");
    let g = start_in_process(&t, &[]).await;
    g.wait_provisioned().await;
    // a leftover ${DS_PROMETHEUS} placeholder is just an unknown uid
    let req =
        json!({"from": "now-5m", "to": "now", "queries": [{"refId": "A", "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, "expr": "up"}]});
    let (s, body) = g.post("/api/ds/query", &req).await;
    assert_eq!((s, body["message"].as_str()), (404, Some("Data source not found")));
    let (s, body) = g.post("/api/ds/query", &json!({"from": "now-5m", "to": "now", "queries": []})).await;
    assert_eq!((s, body["messageId"].as_str()), (400, Some("query.noQueries")));
    let two = json!({"queries": [{"refId": "A", "datasource": {"uid": "prometheus"}, "expr": "1"}, {"refId": "A", "datasource": {"uid": "prometheus"}, "expr": "2"}]});
    let (s, body) = g.post("/api/ds/query", &two).await;
    assert_eq!((s, body["messageId"].as_str()), (400, Some("query.duplicateRefId")));
    let r = reqwest::Client::new().post(g.url("/api/ds/query")).basic_auth("admin", Some("admin")).body("{not json").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // unreachable datasource: a per-query error, HTTP 400
    let req = json!({"from": "now-5m", "to": "now", "queries": [{"refId": "B", "datasource": {"uid": "prometheus"}, "expr": "up"}]});
    let (s, body) = g.post("/api/ds/query", &req).await;
    assert_eq!(s, 400);
    let e = body["results"]["B"]["error"].as_str().unwrap();
    assert!(e.starts_with("Post \"http://127.0.0.1:9/api/v1/query_range\": dial tcp 127.0.0.1:9: connect: connection refused"), "{e}");
}
