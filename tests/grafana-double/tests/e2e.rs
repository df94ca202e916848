//! Behaviour against the real programs: Debian's /usr/bin/prometheus
//! (started here on a free loopback port) and Docker (the built image).
//! Run by scripts/test: `cargo test -p grafana-double -- --ignored`.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A real Prometheus scraping itself every second; killed on drop.
struct Prom {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_prometheus() -> Prom {
    let dir = tempfile::tempdir().unwrap();
    let port = dead_port();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"),
    )
    .unwrap();
    let child = Command::new("/usr/bin/prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("/usr/bin/prometheus (Debian package prometheus) is needed for the e2e tests");
    let p = Prom { child, url: format!("http://127.0.0.1:{port}"), _dir: dir };
    // wait until it has scraped itself for a while (first scrape comes ~5 s after start)
    let url = p.url.clone();
    wait_for(Duration::from_secs(60), "Prometheus to hold 8 s of its own samples", || {
        let url = url.clone();
        async move {
            let Ok(r) = reqwest::Client::new().get(format!("{url}/api/v1/query")).query(&[("query", "count_over_time(up[30s])")]).send().await else {
                return false;
            };
            let v: Value = r.json().await.unwrap_or(Value::Null);
            v["data"]["result"][0]["value"][1].as_str().and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0) >= 8.0
        }
    })
    .await;
    p
}

impl Prom {
    /// Prometheus' own answer to a range query with a 1 s step.
    async fn query_range(&self, query: &str, start: i64, end: i64) -> Value {
        reqwest::Client::new()
            .get(format!("{}/api/v1/query_range", self.url))
            .query(&[("query", query.to_string()), ("start", start.to_string()), ("end", end.to_string()), ("step", "1".to_string())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// The double in-process with `prom` as its default datasource `prometheus` (and what
/// `more` writes to its tree), once its first provisioning pass is done. Keep the tree.
async fn double_for(prom: &Prom, more: impl FnOnce(&Tree)) -> (Tree, InProc) {
    let t = Tree::new();
    t.prometheus_datasource("prometheus", &prom.url, true);
    more(&t);
    let g = start_in_process(&t, &[]).await;
    g.wait_provisioned().await;
    (t, g)
}

#[tokio::test]
#[ignore = "e2e: run scripts/test"]
async fn datasource_health_real_vs_dead_port() {
    let prom = start_prometheus().await;
    let dead = dead_port();
    let (_t, g) = double_for(&prom, |t| t.prometheus_datasource("dead", &format!("http://127.0.0.1:{dead}"), false)).await;
    let (s, body) = g.get("/api/datasources/uid/prometheus/health").await;
    assert_eq!((s, body.clone()), (200, json!({"status": "OK", "message": "Successfully queried the Prometheus API."})));
    let (s, body) = g.get("/api/datasources/uid/dead/health").await;
    assert_eq!(s, 400);
    assert_eq!(body["status"], "ERROR");
    assert_eq!(
        body["message"],
        format!("Post \"http://127.0.0.1:{dead}/api/v1/query\": dial tcp 127.0.0.1:{dead}: connect: connection refused - There was an error returned querying the Prometheus API.")
    );
}

/// series labels -> (times ms, values) from Prometheus' own query_range answer
fn prom_series(v: &Value) -> BTreeMap<String, (Vec<i64>, Vec<f64>)> {
    let mut out = BTreeMap::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let key = serde_json::to_string(&s["metric"]).unwrap();
        let vals = s["values"].as_array().unwrap();
        let times = vals.iter().map(|p| (p[0].as_f64().unwrap() * 1000.0).round() as i64).collect();
        let nums = vals.iter().map(|p| p[1].as_str().unwrap().parse::<f64>().unwrap()).collect();
        out.insert(key, (times, nums));
    }
    out
}

/// the same from /api/ds/query frames
fn frame_series(v: &Value) -> BTreeMap<String, (Vec<i64>, Vec<f64>)> {
    let mut out = BTreeMap::new();
    for f in v["frames"].as_array().unwrap() {
        let fields = f["schema"]["fields"].as_array().unwrap();
        if fields.is_empty() {
            continue;
        }
        let labels = fields[1].get("labels").cloned().unwrap_or(json!({}));
        let key = serde_json::to_string(&labels).unwrap();
        let times = f["data"]["values"][0].as_array().unwrap().iter().map(|t| t.as_i64().unwrap()).collect();
        let nums = f["data"]["values"][1].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        out.insert(key, (times, nums));
    }
    out
}

#[tokio::test]
#[ignore = "e2e: run scripts/test"]
async fn ds_query_numbers_equal_prometheus_query_range() {
    let prom = start_prometheus().await;
    let (_t, g) = double_for(&prom, |_| {}).await;
    let now_s = chrono::Utc::now().timestamp();
    let (end, start) = (now_s - 1, now_s - 7); // a finished window: results cannot change
    for (expr, direct) in [
        ("prometheus_tsdb_head_samples_appended_total", "prometheus_tsdb_head_samples_appended_total"),
        // timeInterval 1s, step 1s: $__rate_interval = max(1s + 1s, 4 x 1s) = 4s
        ("rate(prometheus_http_requests_total[$__rate_interval])", "rate(prometheus_http_requests_total[4s])"),
    ] {
        let req = json!({"from": (start * 1000).to_string(), "to": (end * 1000).to_string(), "queries": [
            {"refId": "A", "datasource": {"type": "prometheus", "uid": "prometheus"}, "expr": expr, "range": true, "intervalMs": 1000, "maxDataPoints": 1000}
        ]});
        let (s, body) = g.post("/api/ds/query", &req).await;
        assert_eq!(s, 200, "{body}");
        let direct_body = prom.query_range(direct, start, end).await;
        let want = prom_series(&direct_body);
        assert!(!want.is_empty(), "Prometheus returned series for {direct}");
        let got = frame_series(&body["results"]["A"]);
        // Same series, same timestamps, the same numbers up to the last bits: Prometheus'
        // own evaluation of a rate may differ in the last ULP between two queries.
        assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{expr}");
        for (k, (times, nums)) in &got {
            let (wt, wn) = &want[k];
            assert_eq!(times, wt, "{expr} {k}");
            assert!(
                nums.len() == wn.len() && nums.iter().zip(wn).all(|(a, b)| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)),
                "{expr} {k}: {nums:?} vs {wn:?}"
            );
        }
        let executed = body["results"]["A"]["frames"][0]["schema"]["meta"]["executedQueryString"].as_str().unwrap();
        assert_eq!(executed, format!("Expr: {direct}\nStep: 1s"));
    }
}

#[tokio::test]
#[ignore = "e2e: run scripts/test"]
async fn unsubstituted_variable_returns_prometheus_parse_error_in_grafana_shape() {
    let prom = start_prometheus().await;
    let (_t, g) = double_for(&prom, |_| {}).await;
    let expr = "sum(rate(prometheus_http_requests_total{job=$job}[5m]))";
    let now_s = chrono::Utc::now().timestamp();
    let req = json!({"from": ((now_s - 60) * 1000).to_string(), "to": (now_s * 1000).to_string(), "queries": [
        {"refId": "A", "datasource": {"uid": "prometheus"}, "expr": expr, "intervalMs": 1000}
    ]});
    let (s, body) = g.post("/api/ds/query", &req).await;
    assert_eq!(s, 400);
    let direct = prom.query_range(expr, 0, 1).await;
    assert_eq!(direct["errorType"], "bad_data");
    let want = format!("{}: {}", direct["errorType"].as_str().unwrap(), direct["error"].as_str().unwrap());
    assert!(want.contains("parse error"), "{want}");
    assert_eq!(body, json!({"results": {"A": {"error": want, "errorSource": "downstream", "status": 400}}}));
}

/// Removes the container by id on drop.
struct Container(String);
impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

#[tokio::test]
#[ignore = "e2e: run scripts/test"]
async fn image_runs_as_472_with_grafana_layout() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/build-image.sh");
    let st = Command::new(script).status().unwrap();
    assert!(st.success(), "build-image.sh failed");
    let image = "stackproof-local/grafana-double:12.0.2";
    let inspect = Command::new("docker").args(["image", "inspect", image, "--format", "{{json .Config}}"]).output().unwrap();
    let cfg: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(cfg["User"], "472");
    assert_eq!(cfg["Entrypoint"], json!(["/run.sh"]));
    assert!(cfg["ExposedPorts"].get("3000/tcp").is_some());
    assert!(cfg["Env"].as_array().unwrap().iter().any(|e| e == "GF_PATHS_PROVISIONING=/etc/grafana/provisioning"));
    assert!(cfg["Labels"]["io.stackproof.test-double"].as_str().unwrap().contains("NOT Grafana"));

    // provisioning mounted at the official path, readable by uid 472
    let t = Tree::new();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(t.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    t.write("provisioning/dashboards/p.yaml", "apiVersion: 1\nproviders:\n  - name: default\n    options:\n      path: /etc/grafana/provisioning/dashboards\n");
    t.write("provisioning/dashboards/x.json", r#"{"uid": "x", "title": "X"}"#);
    let port = dead_port();
    let out = Command::new("docker")
        .args([
            "run",
            "-d",
            "--rm",
            "--network",
            "host",
            "-e",
            "GF_SERVER_HTTP_ADDR=127.0.0.1",
            "-e",
            &format!("GF_SERVER_HTTP_PORT={port}"),
            "-e",
            "GF_SECURITY_ADMIN_PASSWORD=pw",
        ])
        .arg("-v")
        .arg(format!("{}:/etc/grafana/provisioning:ro", t.provisioning().display()))
        .arg(image)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let c = Container(String::from_utf8(out.stdout).unwrap().trim().to_string());
    let url = format!("http://127.0.0.1:{port}");
    wait_for(Duration::from_secs(15), "the dashboard in the container", || {
        let url = url.clone();
        async move {
            match reqwest::Client::new().get(format!("{url}/api/search")).basic_auth("admin", Some("pw")).send().await {
                Ok(r) => r.json::<Value>().await.ok().and_then(|v| v.as_array().map(|a| a.len() == 1)).unwrap_or(false),
                Err(_) => false,
            }
        }
    })
    .await;
    let top = Command::new("docker").args(["top", &c.0, "-eo", "uid"]).output().unwrap();
    assert!(String::from_utf8_lossy(&top.stdout).lines().skip(1).all(|l| l.trim() == "472"), "{}", String::from_utf8_lossy(&top.stdout));
}
