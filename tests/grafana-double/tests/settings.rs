//! No setting silently ignored (README "Settings"): every GF_* variable the
//! double does not model, and every command-line argument, makes the built
//! binary refuse to start naming it; the ones it models behave as in Grafana;
//! the default stack's Grafana environment starts it.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const START: Duration = Duration::from_secs(10);

/// Runs the binary with exactly this environment and these arguments and
/// waits for it to exit (it must, within 10 s).
fn run_to_exit(env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_grafana-double"));
    cmd.env_clear().args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + START;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running after {START:?}: it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

const BASE: &[(&str, &str)] = &[("GF_SERVER_HTTP_ADDR", "127.0.0.1"), ("GF_SERVER_HTTP_PORT", "0")];

fn refused(extra: &[(&str, &str)], args: &[&str], naming: &str) {
    let mut env = BASE.to_vec();
    env.extend_from_slice(extra);
    let (code, out, err) = run_to_exit(&env, args);
    assert_ne!(code, 0, "{extra:?} {args:?} must not start; stdout: {out}");
    assert!(err.contains(naming) && err.contains("refusing to start"), "stderr must name {naming}: {err}");
    assert!(!out.contains("HTTP Server Listen"), "it must not listen: {out}");
}

#[test]
fn unmodelled_variables_are_refused_by_name() {
    refused(&[("GF_INSTALL_PLUGINS", "grafana-clock-panel")], &[], "GF_INSTALL_PLUGINS");
    refused(&[("GF_PLUGINS_PREINSTALL", "grafana-clock-panel")], &[], "GF_PLUGINS_PREINSTALL");
    refused(&[("GF_SMTP_ENABLED", "true")], &[], "GF_SMTP_ENABLED");
    refused(&[("GF_SERVER_ROOT_URL", "https://example.com/grafana/"), ("GF_SERVER_SERVE_FROM_SUB_PATH", "true")], &[], "GF_SERVER_ROOT_URL");
    refused(&[("GF_SERVER_SERVE_FROM_SUB_PATH", "true")], &[], "GF_SERVER_SERVE_FROM_SUB_PATH");
    refused(&[("GF_USERS_ALLOW_SIGN_UP", "true")], &[], "GF_USERS_ALLOW_SIGN_UP");
    refused(&[("GF_AUTH_ANONYMOUS_ENABLED", "yes please")], &[], "GF_AUTH_ANONYMOUS_ENABLED");
    // a misspelt double knob is refused too
    refused(&[("GRAFANA_DOUBLE_STARTUP_DELAY", "100")], &[], "GRAFANA_DOUBLE_STARTUP_DELAY");
}

#[test]
fn the_file_form_of_an_unmodelled_variable_is_refused_by_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("smtp");
    std::fs::write(&f, "secret\n").unwrap();
    // run.sh turns it into GF_SMTP_PASSWORD, which the double does not model
    refused(&[("GF_SMTP_PASSWORD__FILE", f.to_str().unwrap())], &[], "GF_SMTP_PASSWORD");
}

#[test]
fn command_line_arguments_are_refused() {
    refused(&[], &["cfg:default.paths.data=/tmp/x"], "cfg:default.paths.data=/tmp/x");
    refused(&[], &["--homepath=/usr/share/grafana"], "--homepath=/usr/share/grafana");
}

#[test]
fn an_ini_file_that_sets_something_and_installed_plugins_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("grafana.ini");
    std::fs::write(&ini, "; only a comment\n[server]\n").unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    // the image's own files are fine: a comment-only ini, an empty plugins dir
    let t = Tree::new();
    let g = spawn_binary(&t, &[("GF_PATHS_CONFIG", ini.to_str().unwrap()), ("GF_PATHS_PLUGINS", plugins.to_str().unwrap())]);
    g.wait_addr(START);
    drop(g);

    std::fs::write(&ini, "[auth.basic]\nenabled = false\n").unwrap();
    refused(&[("GF_PATHS_CONFIG", ini.to_str().unwrap())], &[], "enabled = false");
    std::fs::write(&ini, "").unwrap();
    std::fs::create_dir_all(plugins.join("grafana-clock-panel")).unwrap();
    refused(&[("GF_PATHS_PLUGINS", plugins.to_str().unwrap())], &[], "grafana-clock-panel");
}

#[tokio::test]
async fn basic_auth_disabled_answers_like_no_credentials() {
    let t = Tree::new();
    let g = start_in_process(&t, &[("GF_AUTH_BASIC_ENABLED", "false")]).await;
    let (s, body) = get_json(&g.url("/api/org"), Some(("admin", "admin"))).await;
    assert_eq!((s, body), (401, fixture("unauthorized.json")));
    // with anonymous access on, a Basic header is simply not looked at
    let g = start_in_process(&t, &[("GF_AUTH_BASIC_ENABLED", "false"), ("GF_AUTH_ANONYMOUS_ENABLED", "true")]).await;
    let (s, body) = get_json(&g.url("/api/user"), Some(("admin", "admin"))).await;
    assert_eq!((s, body["isAnonymous"].as_bool()), (200, Some(true)), "{body}");
}

/// The `env:` of service `grafana` in stack/stackproof.yml, with the host
/// paths the test cannot use replaced (and no other change).
fn default_stack_env() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../stack/stackproof.yml");
    let doc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let env = doc["services"]["grafana"]["env"].as_mapping().expect("services.grafana.env");
    env.iter()
        .map(|(k, v)| {
            let v = match v {
                serde_yaml::Value::String(s) => s.clone(),
                serde_yaml::Value::Bool(b) => b.to_string(),
                serde_yaml::Value::Number(n) => n.to_string(),
                other => panic!("unexpected env value {other:?}"),
            };
            (k.as_str().unwrap().to_string(), v)
        })
        .collect()
}

#[tokio::test]
async fn the_default_stack_environment_starts_the_double() {
    let stack = default_stack_env();
    assert!(stack.contains_key("GF_SECURITY_ADMIN_PASSWORD__FILE"), "{stack:?}");
    let t = Tree::new();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("grafana_admin_password");
    std::fs::write(&secret, "stack-secret\n").unwrap();
    let ini = dir.path().join("grafana.ini");
    std::fs::write(&ini, "; grafana-double does not read grafana.ini\n").unwrap();
    std::fs::create_dir_all(dir.path().join("data/plugins")).unwrap();
    let d = |p: &str| dir.path().join(p).to_str().unwrap().to_string();
    // the image's GF_PATHS_* (build-image.sh), then the stack's env over it
    let mut env: BTreeMap<String, String> = [
        ("GF_PATHS_CONFIG", ini.to_str().unwrap().to_string()),
        ("GF_PATHS_DATA", d("data")),
        ("GF_PATHS_HOME", d("")),
        ("GF_PATHS_LOGS", d("logs")),
        ("GF_PATHS_PLUGINS", d("data/plugins")),
        ("GF_PATHS_PROVISIONING", "/etc/grafana/provisioning".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    env.extend(stack);
    // only what cannot work on the test host is replaced
    env.insert("GF_SERVER_HTTP_PORT".into(), "0".into());
    env.insert("GF_PATHS_PROVISIONING".into(), t.provisioning().to_str().unwrap().into());
    env.insert("GF_SECURITY_ADMIN_PASSWORD__FILE".into(), secret.to_str().unwrap().into());
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let g = spawn_binary(&t, &pairs);
    let addr = g.wait_addr(START);
    let (s, _) = get_json(&format!("http://{addr}/api/org"), Some(("admin", "stack-secret"))).await;
    assert_eq!(s, 200, "stdout: {}\nstderr: {}", g.stdout(), g.stderr());
    assert!(g.stdout().contains("Getting secret GF_SECURITY_ADMIN_PASSWORD from"), "{}", g.stdout());
    assert!(g.stdout().contains(r#"var="GF_SECURITY_ADMIN_PASSWORD=*********""#), "{}", g.stdout());
    assert!(!g.stdout().contains("stack-secret"), "the secret is never logged");
}

#[test]
fn first_start_waits_before_listening_and_a_restart_does_not() {
    let data = tempfile::tempdir().unwrap();
    let t = Tree::new();
    let port = dead_port().to_string();
    let env = [("GF_PATHS_DATA", data.path().to_str().unwrap()), ("GF_SERVER_HTTP_PORT", port.as_str()), ("GRAFANA_DOUBLE_STARTUP_DELAY_MS", "1500")];
    let addr = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let g = spawn_binary(&t, &env);
    std::thread::sleep(Duration::from_millis(800));
    assert!(std::net::TcpStream::connect(&addr).is_err(), "nothing listens during the first-start delay");
    g.wait_addr(START);
    assert!(started.elapsed() >= Duration::from_millis(1500), "listened after {:?}", started.elapsed());
    assert!(g.stdout().contains("Starting DB migrations"), "{}", g.stdout());
    drop(g);
    // same data dir: the database exists, no migrations to wait for
    let started = Instant::now();
    let g = spawn_binary(&t, &env);
    g.wait_addr(START);
    assert!(started.elapsed() < Duration::from_millis(1500), "a restart listened only after {:?}", started.elapsed());
}
