//! Shared helpers for the grafana-double tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grafana_double::config::{Config, Env};
use grafana_double::logfmt::Logger;
use serde_json::Value;

/// A provisioning tree in a temp dir: `<root>/provisioning/{datasources,dashboards}` and `<root>/dashboards`.
pub struct Tree {
    pub dir: tempfile::TempDir,
}

impl Tree {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("provisioning/datasources")).unwrap();
        std::fs::create_dir_all(dir.path().join("provisioning/dashboards")).unwrap();
        std::fs::create_dir_all(dir.path().join("dashboards")).unwrap();
        Tree { dir }
    }
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
    pub fn provisioning(&self) -> PathBuf {
        self.root().join("provisioning")
    }
    pub fn dashboards(&self) -> PathBuf {
        self.root().join("dashboards")
    }
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
    /// A datasource file with one Prometheus datasource.
    pub fn prometheus_datasource(&self, uid: &str, url: &str, default: bool) {
        self.write(
            &format!("provisioning/datasources/{uid}.yaml"),
            &format!(
                "apiVersion: 1\ndatasources:\n  - name: Prometheus {uid}\n    type: prometheus\n    uid: {uid}\n    access: proxy\n    url: {url}\n    isDefault: {default}\n    editable: false\n    jsonData:\n      httpMethod: POST\n      timeInterval: 1s\n"
            ),
        );
    }
    /// A provider file pointing at `<root>/dashboards`.
    pub fn provider(&self, folder: &str, folder_uid: &str, interval_s: u64) {
        self.write(
            "provisioning/dashboards/default.yaml",
            &format!(
                "apiVersion: 1\nproviders:\n  - name: default\n    folder: '{folder}'\n    folderUid: '{folder_uid}'\n    updateIntervalSeconds: {interval_s}\n    allowUiUpdates: false\n    options:\n      path: {}\n",
                self.dashboards().display()
            ),
        );
    }
}

pub fn env(pairs: &[(&str, &str)]) -> Env {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The double started in-process on 127.0.0.1:0.
pub struct InProc {
    pub addr: SocketAddr,
    pub log: Logger,
    pub running: grafana_double::Running,
}

pub async fn start_in_process(tree: &Tree, extra: &[(&str, &str)]) -> InProc {
    let mut e: Env = env(&[
        ("GF_SERVER_HTTP_ADDR", "127.0.0.1"),
        ("GF_SERVER_HTTP_PORT", "0"),
        ("GF_PATHS_PROVISIONING", tree.provisioning().to_str().unwrap()),
        ("GRAFANA_DOUBLE_PROVISION_DELAY_MS", "0"),
        ("GRAFANA_DOUBLE_DATASOURCE_TIMEOUT_MS", "5000"),
    ]);
    for (k, v) in extra {
        e.insert(k.to_string(), v.to_string());
    }
    let cfg = Config::from_env(&e).unwrap();
    let log = Logger::capturing(std::env::var("GD_TEST_ECHO").is_ok());
    let running = grafana_double::start(cfg, e, log.clone()).await.unwrap();
    InProc { addr: running.addr, log, running }
}

impl InProc {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
    pub async fn get(&self, path: &str) -> (u16, Value) {
        get_json(&self.url(path), Some(("admin", "admin"))).await
    }
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = reqwest::Client::new().post(self.url(path)).basic_auth("admin", Some("admin")).json(body).send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }
    pub fn logs(&self) -> Vec<String> {
        self.log.lines()
    }
    /// Waits until the first provisioning pass has finished (or failed).
    pub async fn wait_provisioned(&self) {
        let log = self.log.clone();
        wait_for(Duration::from_secs(10), "provisioning pass", || {
            let l = log.lines();
            let done = l.iter().any(|x| x.contains("finished to provision dashboards") || x.contains("Failed to provision"));
            async move { done }
        })
        .await;
    }
}

pub async fn get_json(url: &str, auth: Option<(&str, &str)>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(url);
    if let Some((u, p)) = auth {
        req = req.basic_auth(u, Some(p));
    }
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Polls `cond` until it holds or the deadline passes (then panics).
pub async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Loads `tests/fixtures/<name>`: `{"_source": "...", "body": ...}`.
pub fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    assert!(v.get("_source").and_then(Value::as_str).is_some_and(|s| !s.is_empty()), "fixture {name} must name its source");
    v["body"].clone()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Field-by-field shape comparison: every key of `expected` must exist in
/// `actual` with the same JSON type (recursively); keys in `actual` that
/// `expected` lacks are errors unless listed in `extra_ok`. Arrays of equal
/// length compare element by element, otherwise each actual element against
/// the first expected one.
pub fn assert_shape(expected: &Value, actual: &Value, extra_ok: &[&str]) {
    let mut errs = Vec::new();
    shape(expected, actual, "$", extra_ok, &mut errs);
    assert!(errs.is_empty(), "shape differs from fixture:\n  {}\nactual: {}", errs.join("\n  "), serde_json::to_string_pretty(actual).unwrap());
}

fn shape(e: &Value, a: &Value, path: &str, extra_ok: &[&str], errs: &mut Vec<String>) {
    if kind(e) != kind(a) {
        errs.push(format!("{path}: expected {} got {}", kind(e), kind(a)));
        return;
    }
    match (e, a) {
        (Value::Object(eo), Value::Object(ao)) => {
            for (k, ev) in eo {
                match ao.get(k) {
                    None => errs.push(format!("{path}.{k}: missing")),
                    Some(av) => shape(ev, av, &format!("{path}.{k}"), extra_ok, errs),
                }
            }
            for k in ao.keys() {
                if !eo.contains_key(k) && !extra_ok.contains(&k.as_str()) {
                    errs.push(format!("{path}.{k}: not in the fixture"));
                }
            }
        }
        (Value::Array(ea), Value::Array(aa)) => {
            if ea.is_empty() {
                return;
            }
            for (i, av) in aa.iter().enumerate() {
                let ev = if ea.len() == aa.len() { &ea[i] } else { &ea[0] };
                shape(ev, av, &format!("{path}[{i}]"), extra_ok, errs);
            }
        }
        _ => {}
    }
}

/// The built binary, with its stdout/stderr collected line by line; killed on drop.
pub struct Spawned {
    pub child: Child,
    pub out: Arc<Mutex<Vec<String>>>,
    pub err: Arc<Mutex<Vec<String>>>,
}

pub fn spawn_binary(tree: &Tree, extra: &[(&str, &str)]) -> Spawned {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_grafana-double"));
    cmd.env_clear()
        .env("GF_SERVER_HTTP_ADDR", "127.0.0.1")
        .env("GF_SERVER_HTTP_PORT", "0")
        .env("GF_PATHS_PROVISIONING", tree.provisioning())
        .env("GRAFANA_DOUBLE_PROVISION_DELAY_MS", "100")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let (o, e) = (out.clone(), err.clone());
    let so = child.stdout.take().unwrap();
    let se = child.stderr.take().unwrap();
    std::thread::spawn(move || BufReader::new(so).lines().map_while(Result::ok).for_each(|l| o.lock().unwrap().push(l)));
    std::thread::spawn(move || BufReader::new(se).lines().map_while(Result::ok).for_each(|l| e.lock().unwrap().push(l)));
    Spawned { child, out, err }
}

impl Spawned {
    /// Waits for the process to exit; panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // let the reader threads drain the pipes
                let drain_deadline = Instant::now() + Duration::from_secs(2);
                while Instant::now() < drain_deadline && self.out.lock().unwrap().is_empty() && self.err.lock().unwrap().is_empty() {
                    std::thread::sleep(Duration::from_millis(20));
                }
                std::thread::sleep(Duration::from_millis(100));
                return s;
            }
            if Instant::now() > deadline {
                panic!("process still running after {timeout:?}; stdout: {:?}", self.out.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    pub fn stdout(&self) -> String {
        self.out.lock().unwrap().join("\n")
    }
    pub fn stderr(&self) -> String {
        self.err.lock().unwrap().join("\n")
    }
    /// The address from the `HTTP Server Listen` log line.
    pub fn wait_addr(&self, timeout: Duration) -> SocketAddr {
        let deadline = Instant::now() + timeout;
        loop {
            for l in self.out.lock().unwrap().iter() {
                if l.contains("msg=\"HTTP Server Listen\"") {
                    let a = l.split("address=").nth(1).unwrap().split(' ').next().unwrap();
                    return a.parse().unwrap();
                }
            }
            if Instant::now() > deadline {
                panic!("no listen line after {timeout:?}; stdout: {:?} stderr: {:?}", self.out.lock().unwrap(), self.err.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on (bound once, then released).
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Canned Prometheus HTTP API for the plain contract tests: answers each
/// path with a fixed status and body and records the form parameters it got.
pub struct CannedProm {
    pub url: String,
    pub seen: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
}

pub async fn canned_prometheus(routes: Vec<(&'static str, u16, Value)>) -> CannedProm {
    use axum::routing::any;
    let seen: Arc<Mutex<Vec<BTreeMap<String, String>>>> = Arc::default();
    let mut app = axum::Router::new();
    for (path, status, body) in routes {
        let seen = seen.clone();
        app = app.route(
            path,
            any(move |axum::extract::RawQuery(q): axum::extract::RawQuery, b: axum::body::Bytes| {
                let seen = seen.clone();
                let body = body.clone();
                async move {
                    let mut params: BTreeMap<String, String> = form_urlencoded::parse(&b).into_owned().collect();
                    params.extend(form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned());
                    seen.lock().unwrap().push(params);
                    (axum::http::StatusCode::from_u16(status).unwrap(), axum::Json(body))
                }
            }),
        );
    }
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    CannedProm { url: format!("http://{addr}"), seen }
}
