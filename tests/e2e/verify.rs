//! End-to-end tests of `verify` against the real programs: Debian's Prometheus and
//! Alertmanager, node-exporter, the stack's python host exporter and the Grafana double,
//! each started here on a free 127.0.0.1 port with configs derived from the default
//! stack (copied into a temp dir, ports and paths rewritten), and killed on drop.

use crate::support::files::copy_dir;
use crate::support::stack::default_stack;
use crate::support::{free_port, REPO};
use stackproof::report;
use stackproof::verify::{self, Endpoints, Report, Status, VerifyInput};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The default stack's ports, and the free ones the test uses instead.
#[derive(Clone, Copy)]
struct Ports {
    prometheus: u16,
    alertmanager: u16,
    node: u16,
    grafana: u16,
    host: u16,
}

const DEFAULTS: Ports = Ports { prometheus: 9090, alertmanager: 9093, node: 9100, grafana: 3000, host: 9101 };

struct World {
    _tmp: tempfile::TempDir,
    /// The "current release": what verify is given as the deployed stack.
    current: PathBuf,
    ports: Ports,
    password: String,
    children: Vec<(String, Child)>,
    logs: PathBuf,
}

impl Drop for World {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn rewrite(dir: &Path, root: &str, ports: Ports) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rewrite(&p, root, ports);
            continue;
        }
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "yml" | "yaml" | "json") {
            continue;
        }
        let mut s = std::fs::read_to_string(&p).unwrap();
        s = s.replace("/stackproof/current", root);
        for (d, n) in [
            (DEFAULTS.prometheus, ports.prometheus),
            (DEFAULTS.alertmanager, ports.alertmanager),
            (DEFAULTS.node, ports.node),
            (DEFAULTS.grafana, ports.grafana),
            (DEFAULTS.host, ports.host),
        ] {
            s = s.replace(&format!("127.0.0.1:{d}"), &format!("127.0.0.1:{n}"));
            if p.file_name().and_then(|f| f.to_str()) == Some("tests.json") {
                s = s.replace(&format!("\"{d}\""), &format!("\"{n}\""));
            }
        }
        std::fs::write(&p, s).unwrap();
    }
}

fn need(path: &str) {
    assert!(Path::new(path).exists(), "{path} is missing: apt-get install prometheus prometheus-alertmanager prometheus-node-exporter");
}

fn grafana_double() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo).args(["build", "-q", "-p", "grafana-double"]).current_dir(REPO).status().unwrap();
    assert!(st.success(), "cargo build -p grafana-double failed");
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| Path::new(REPO).join("target"));
    target.join("debug/grafana-double")
}

/// Which parts to leave out or change before starting.
#[derive(Default)]
struct Setup {
    without_node_exporter: bool,
}

impl World {
    /// Copy the default stack, let `mutate` change the deployed files, start everything.
    fn start(setup: Setup, mutate: impl FnOnce(&Path, Ports)) -> World {
        for b in ["/usr/bin/prometheus", "/usr/bin/prometheus-alertmanager", "/usr/bin/prometheus-node-exporter"] {
            need(b);
        }
        let gd = grafana_double();
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let current = root.join("current");
        copy_dir(&default_stack(), &current);
        let ports = Ports { prometheus: free_port(), alertmanager: free_port(), node: free_port(), grafana: free_port(), host: free_port() };
        rewrite(&current, current.to_str().unwrap(), ports);
        mutate(&current, ports);
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        for d in ["prom", "am", "grafana", "textfile"] {
            std::fs::create_dir_all(root.join("data").join(d)).unwrap();
        }
        let password = format!("pw-{}-{}", std::process::id(), free_port());
        let mut w = World { _tmp: tmp, current: current.clone(), ports, password, children: vec![], logs };
        let c = current.to_str().unwrap().to_string();
        let data = root.join("data");
        w.spawn(
            "prometheus",
            Command::new("/usr/bin/prometheus").args([
                format!("--config.file={c}/prometheus/prometheus.yml"),
                format!("--storage.tsdb.path={}", data.join("prom").display()),
                format!("--web.listen-address=127.0.0.1:{}", ports.prometheus),
                "--web.enable-lifecycle".into(),
            ]),
        );
        w.spawn(
            "alertmanager",
            Command::new("/usr/bin/prometheus-alertmanager").args([
                format!("--config.file={c}/alertmanager/alertmanager.yml"),
                format!("--storage.path={}", data.join("am").display()),
                format!("--web.listen-address=127.0.0.1:{}", ports.alertmanager),
                "--cluster.listen-address=".into(),
            ]),
        );
        if !setup.without_node_exporter {
            w.spawn(
                "node-exporter",
                Command::new("/usr/bin/prometheus-node-exporter").args([
                    format!("--web.listen-address=127.0.0.1:{}", ports.node),
                    "--no-collector.systemd".into(),
                    format!("--collector.textfile.directory={}", data.join("textfile").display()),
                ]),
            );
        }
        w.spawn(
            "host-exporter",
            Command::new("python3")
                .args([
                    "host_exporter/exporter.py".to_string(),
                    format!("--listen=127.0.0.1:{}", ports.host),
                    "--interval=30s".into(),
                    "--tests=host_exporter/tests.json".into(),
                    // As the manifest starts it: it then exposes suite_fault_mode, which
                    // the manifest declares (no fault file exists: no fault).
                    format!("--fault-file={}", data.join("host-exporter.fault").display()),
                ])
                .current_dir(&current),
        );
        w.spawn(
            "grafana",
            Command::new(gd)
                .env("GF_SERVER_HTTP_ADDR", "127.0.0.1")
                .env("GF_SERVER_HTTP_PORT", ports.grafana.to_string())
                .env("GF_PATHS_PROVISIONING", format!("{c}/grafana/provisioning"))
                .env("GF_PATHS_DATA", data.join("grafana"))
                .env("GF_SECURITY_ADMIN_USER", "admin")
                .env("GF_SECURITY_ADMIN_PASSWORD", &w.password)
                .env_remove("GF_SECURITY_ADMIN_PASSWORD__FILE"),
        );
        w
    }

    fn spawn(&mut self, name: &str, cmd: &mut Command) {
        let out = std::fs::File::create(self.logs.join(format!("{name}.log"))).unwrap();
        let err = out.try_clone().unwrap();
        let child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.children.push((name.to_string(), child));
    }

    fn input(&self, password: &str, within: Duration) -> VerifyInput {
        let stack = stackproof::stack::Stack::load(&self.current).unwrap();
        VerifyInput {
            stack,
            endpoints: Endpoints {
                prometheus: format!("http://127.0.0.1:{}", self.ports.prometheus),
                alertmanager: format!("http://127.0.0.1:{}", self.ports.alertmanager),
                grafana: format!("http://127.0.0.1:{}", self.ports.grafana),
                host_exporter: format!("http://127.0.0.1:{}", self.ports.host),
            },
            grafana_user: "admin".into(),
            grafana_password: secret(password),
            deadline: Instant::now() + within,
        }
    }

    fn verify(&self, password: &str, within: Duration) -> Report {
        let input = self.input(password, within);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let progress = stackproof::output::Progress::step("verify", true);
        rt.block_on(verify::run(&input, &progress))
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for (name, _) in &self.children {
            let t = std::fs::read_to_string(self.logs.join(format!("{name}.log"))).unwrap_or_default();
            let tail: Vec<&str> = t.lines().rev().take(8).collect();
            s.push_str(&format!("--- {name} (last lines)\n{}\n", tail.into_iter().rev().collect::<Vec<_>>().join("\n")));
        }
        s
    }
}

/// A `Secret` can only be read from a host entry (its value is private), so the test
/// goes through a throwaway hosts file like an operator would.
fn secret(value: &str) -> stackproof::hosts::Secret {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), value).unwrap();
    std::fs::write(dir.path().join("k"), "not a key").unwrap();
    let hosts = dir.path().join("hosts.yml");
    std::fs::write(
        &hosts,
        format!(
            "hosts:\n  t:\n    address: 127.0.0.1\n    user: u\n    identity_file: k\n    secrets:\n      grafana_admin_password: {{file: {}}}\n",
            dir.path().join("pw").display()
        ),
    )
    .unwrap();
    stackproof::hosts::load_host_from(&hosts, "t").unwrap().secret("grafana_admin_password").unwrap()
}

fn check<'a>(r: &'a Report, name: &str) -> &'a verify::Check {
    r.checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no check `{name}` in:\n{}", report::render_text(r)))
}

fn assert_fails(w: &World, r: &Report, name: &str, cause: &[&str]) {
    let c = check(r, name);
    let text = report::render_text(r);
    assert!(!r.ok, "verify passed despite the fault:\n{text}\n{}", w.logs());
    assert_eq!(c.status, Status::Fail, "`{name}` did not fail:\n{text}\n{}", w.logs());
    for s in cause {
        assert!(c.detail.contains(s), "`{name}` does not name the cause `{s}`: {}\n{text}", c.detail);
    }
}

fn dashboard_files(current: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(current.join("grafana/dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .collect();
    v.sort();
    v
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn default_stack_verifies_green_and_fast_when_warm() {
    let w = World::start(Setup::default(), |_, _| {});
    let first = w.verify(&w.password, Duration::from_secs(90));
    let text = report::render_text(&first);
    assert!(first.ok, "the default stack does not verify green:\n{text}\n{}", w.logs());
    eprintln!("{text}");
    // every expected dashboard was checked and every panel had data
    let m = &w.input(&w.password, Duration::from_secs(1)).stack.manifest;
    for uid in &m.verify.dashboards {
        assert_eq!(check(&first, &format!("grafana: dashboard {uid}")).status, Status::Pass);
        assert_eq!(check(&first, &format!("grafana: panels of {uid}")).status, Status::Pass);
    }
    assert!(first.dashboards.iter().all(|d| !d.panels.is_empty()));

    // warm: the same checks, all answered on the first try
    let t = Instant::now();
    let warm = w.verify(&w.password, Duration::from_secs(30));
    let took = t.elapsed();
    assert!(warm.ok, "second run failed:\n{}", report::render_text(&warm));
    eprintln!("warm verify took {took:?}");
    assert!(took < Duration::from_secs(3), "warm verify took {took:?} (goal: under 3 s)");

    let fast = tokio::runtime::Runtime::new().unwrap().block_on(verify::fast_checks(&w.input(&w.password, Duration::from_secs(10))));
    assert!(fast.ok && fast.checks.len() == 4, "{}", report::render_text(&fast));

    // the JSON document has the contract's shape
    let j = report::to_json(&warm);
    assert_eq!(j["ok"], true);
    for c in j["checks"].as_array().unwrap() {
        for k in ["name", "status", "detail", "duration_ms"] {
            assert!(c.get(k).is_some(), "check without `{k}`: {c}");
        }
    }
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn datasource_url_at_a_dead_port_is_caught() {
    let dead = free_port();
    let w = World::start(Setup::default(), |cur, p| {
        let f = cur.join("grafana/provisioning/datasources/prometheus.yml");
        let s = std::fs::read_to_string(&f).unwrap().replace(&format!("127.0.0.1:{}", p.prometheus), &format!("127.0.0.1:{dead}"));
        std::fs::write(f, s).unwrap();
    });
    let r = w.verify(&w.password, Duration::from_secs(45));
    assert_fails(&w, &r, "grafana: datasource Prometheus", &[&format!("127.0.0.1:{dead}")]);
    assert_eq!(check(&r, "prometheus: targets up").status, Status::Pass, "{}", report::render_text(&r));
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn panel_whose_metric_no_target_exposes_is_caught() {
    let mut victim = (String::new(), String::new(), String::new());
    let w = World::start(Setup::default(), |cur, _| {
        let f = dashboard_files(cur).remove(0);
        let mut d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let (uid, title) = (d["uid"].as_str().unwrap().to_string(), d["title"].as_str().unwrap().to_string());
        let panels = d["panels"].as_array_mut().unwrap();
        let p = panels.iter_mut().find(|p| p["targets"].as_array().is_some_and(|t| !t.is_empty())).unwrap();
        p["targets"][0]["expr"] = "sum(stackproof_no_such_metric_total)".into();
        victim = (uid, title, p["title"].as_str().unwrap().into());
        std::fs::write(&f, serde_json::to_string_pretty(&d).unwrap()).unwrap();
    });
    let r = w.verify(&w.password, Duration::from_secs(45));
    let (uid, title, panel) = &victim;
    assert_fails(&w, &r, &format!("grafana: panels of {uid}"), &[title, panel, "stackproof_no_such_metric_total", "no data"]);
    assert_fails(&w, &r, "metrics live: panels", &["stackproof_no_such_metric_total", panel]);
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn wrapped_dashboard_on_disk_is_caught() {
    let mut uid = String::new();
    let w = World::start(Setup::default(), |cur, _| {
        let f = dashboard_files(cur).remove(0);
        let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        uid = d["uid"].as_str().unwrap().into();
        let wrapped = serde_json::json!({"dashboard": d, "overwrite": true});
        std::fs::write(&f, serde_json::to_string_pretty(&wrapped).unwrap()).unwrap();
    });
    let r = w.verify(&w.password, Duration::from_secs(45));
    assert_fails(&w, &r, &format!("grafana: dashboard {uid}"), &["wrapped", "Dashboard title cannot be empty"]);
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn target_down_is_caught_with_its_last_error() {
    let w = World::start(Setup { without_node_exporter: true }, |_, _| {});
    let r = w.verify(&w.password, Duration::from_secs(45));
    assert_fails(&w, &r, "prometheus: targets up", &["node-exporter", &format!("127.0.0.1:{}", w.ports.node), "down", "connection refused"]);
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn wrong_admin_password_is_caught() {
    let w = World::start(Setup::default(), |_, _| {});
    let r = w.verify("not-the-deployed-secret", Duration::from_secs(20));
    assert_fails(&w, &r, "grafana: admin login", &["cannot log in", "401"]);
    let html = report::render_html(&r);
    assert!(!html.contains("not-the-deployed-secret") && !html.contains(&w.password), "a password leaked into the HTML report");
}

/// Count pixels that are not (near) white in an RGB(A) PNG.
fn non_white_pixels(png_path: &Path) -> (usize, usize) {
    let decoder = png::Decoder::new(std::fs::File::open(png_path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bytes = &buf[..info.buffer_size()];
    let channels = info.color_type.samples();
    let mut colored = 0;
    let total = bytes.len() / channels;
    for px in bytes.chunks(channels) {
        if px.iter().take(3).any(|c| *c < 235) {
            colored += 1;
        }
    }
    (colored, total)
}

#[test]
#[ignore = "e2e: run scripts/test"]
fn html_report_opens_in_headless_chromium_with_charts_and_no_secret() {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().find(|p| Path::new(p).exists());
    let Some(chromium) = chromium else {
        panic!("chromium is not installed: `apt-get install chromium` (CI installs it)");
    };
    let w = World::start(Setup::default(), |_, _| {});
    let r = w.verify(&w.password, Duration::from_secs(90));
    assert!(r.ok, "{}", report::render_text(&r));
    let dir = tempfile::tempdir().unwrap();
    let html_path = dir.path().join("report.html");
    report::write_html(&r, &html_path).unwrap();
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(!html.contains(&w.password), "the Grafana password is in the report");
    assert!(!html.to_lowercase().contains("authorization"), "an Authorization header is in the report");
    let resource = regex::Regex::new(r#"(?i)(src|href)\s*=\s*["']?\s*(https?:)?//|url\(\s*["']?\s*(https?:)?//|@import|<link|<script"#).unwrap();
    assert!(!resource.is_match(&html), "external resource in the report: {:?}", resource.find(&html));
    assert!(html.matches("<polyline").count() + html.matches("<circle").count() >= 3, "too few charts drawn");

    let shot = dir.path().join("shot.png");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", dir.path().join("profile").display()),
            "--window-size=1280,2000",
            &format!("--screenshot={}", shot.display()),
            &format!("file://{}", html_path.display()),
        ])
        .output()
        .unwrap();
    assert!(shot.exists(), "chromium made no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let (colored, total) = non_white_pixels(&shot);
    // header bar, table rules, charts: a blank page would have ~0
    assert!(colored * 100 > total, "screenshot is (nearly) blank: {colored} of {total} pixels not white");
}
