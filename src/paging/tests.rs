use super::*;
use crate::hosts::receivers::{Email, Webhook};
use crate::hosts::Supervisor;
use crate::stack::alertmanager::Config as AmConfig;

fn host(receivers: Vec<(&str, ReceiverEntry)>, unpaged: Option<&str>) -> Host {
    Host {
        name: "h".into(),
        address: "127.0.0.1".into(),
        port: 22,
        user: "u".into(),
        identity_file: "k".into(),
        known_hosts: None,
        remote_dir: "/srv/x".into(),
        docker_socket: "/var/run/docker.sock".into(),
        images: Default::default(),
        secrets: Default::default(),
        supervisor: Supervisor::Auto,
        receivers: receivers.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        unpaged: unpaged.map(str::to_string),
        source: "hosts.yml".into(),
    }
}

fn default_template() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/stack/alertmanager/alertmanager.yml")).unwrap()
}

fn from_host() -> Vec<String> {
    vec!["critical".into(), "warning".into(), "info".into()]
}

fn read(_: &str, src: &SecretSource) -> Result<Secret> {
    Ok(Secret::new(format!("value-of-{src:?}")))
}

fn hook(url: &str, token: bool) -> ReceiverEntry {
    ReceiverEntry { webhook: Some(Webhook { url: url.into(), bearer_token: token.then(|| SecretSource::Env("TOKEN".into())) }), ..Default::default() }
}

fn mail(password: bool) -> ReceiverEntry {
    ReceiverEntry {
        email: Some(Email {
            to: "oncall@example.com".into(),
            from: "am@example.com".into(),
            smarthost: "127.0.0.1:2525".into(),
            auth_username: password.then(|| "am".to_string()),
            auth_password: password.then(|| SecretSource::Env("SMTP".into())),
            require_tls: false,
        }),
        ..Default::default()
    }
}

#[test]
fn the_default_stack_takes_its_three_receivers_from_the_host() {
    let m = crate::stack::Stack::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/stack"))).unwrap().manifest;
    assert_eq!(m.receivers.from_host, from_host());
}

#[test]
fn rendering_fills_each_receiver_and_keeps_credentials_in_files() {
    let h = host(
        vec![("critical", hook("http://127.0.0.1:9798/critical", true)), ("warning", mail(true)), ("info", hook("http://127.0.0.1:9798/info", false))],
        None,
    );
    let (text, files) = render(&default_template(), &from_host(), &h, &read).unwrap();
    let cfg = AmConfig::from_yaml(&text).unwrap();
    let critical = cfg.receiver("critical").unwrap();
    assert_eq!(critical.webhook_configs[0].url.as_deref(), Some("http://127.0.0.1:9798/critical"));
    assert!(text.contains("credentials_file: /run/secrets/receivers/critical/bearer_token"), "{text}");
    assert!(text.contains("auth_password_file: /run/secrets/receivers/warning/auth_password"), "{text}");
    assert!(!text.contains("value-of"), "no secret value in the rendered config: {text}");
    let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["receivers/critical/bearer_token", "receivers/warning/auth_password"]);
    assert_eq!(files[0].dest(), "/run/secrets/receivers/critical/bearer_token");
    // The routing tree and stackproof's drill receiver are kept as they were.
    assert!(cfg.receiver("stackproof-drill").is_some());
    let route = |c: &AmConfig| c.route.as_ref().and_then(|r| r.receiver.clone());
    assert_eq!(route(&cfg), route(&AmConfig::from_yaml(&default_template()).unwrap()));
}

#[test]
fn a_receiver_the_stack_does_not_take_from_hosts_is_refused() {
    let h = host(vec![("critical", hook("http://x/", false)), ("pager", hook("http://x/", false))], None);
    let e = render(&default_template(), &from_host(), &h, &read).unwrap_err();
    assert_eq!(e.kind(), "receiver_unknown");
    assert!(e.to_string().contains("`pager`"), "{e}");
}

#[test]
fn a_missing_endpoint_is_refused_unless_the_host_pages_nobody_on_purpose() {
    let h = host(vec![("critical", hook("http://x/", false))], None);
    let e = render(&default_template(), &from_host(), &h, &read).unwrap_err();
    assert_eq!(e.kind(), "receiver_missing");
    assert!(e.hint().contains("unpaged"), "{}", e.hint());
    let staging = host(vec![("critical", hook("http://x/", false))], Some("staging"));
    let (text, _) = render(&default_template(), &from_host(), &staging, &read).unwrap();
    let cfg = AmConfig::from_yaml(&text).unwrap();
    assert!(cfg.receiver("warning").unwrap().webhook_configs.is_empty());
}

#[test]
fn a_host_given_receiver_must_be_declared_by_name_only() {
    let t = "route: {receiver: critical}\nreceivers:\n- name: critical\n  webhook_configs: [{url: 'http://x/'}]\n";
    let h = host(vec![("critical", hook("http://y/", false))], None);
    let e = render(t, &["critical".into()], &h, &read).unwrap_err();
    assert!(e.to_string().contains("declare it by name only"), "{e}");
    let e = render(t, &["missing".into()], &host(vec![], Some("x")), &read).unwrap_err();
    assert!(e.to_string().contains("no receiver of that name"), "{e}");
}

#[test]
fn the_rendered_default_config_is_what_amtool_accepts() {
    let Ok(o) = std::process::Command::new("amtool").arg("--version").output() else {
        eprintln!("amtool missing: skipped");
        return;
    };
    assert!(o.status.success() || !o.stderr.is_empty());
    let h = host(
        vec![("critical", hook("https://pager.example.com/hook", true)), ("warning", mail(true)), ("info", hook("http://127.0.0.1:9798/info", false))],
        None,
    );
    let (text, _) = render(&default_template(), &from_host(), &h, &read).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("am.yml");
    std::fs::write(&p, text).unwrap();
    let o = std::process::Command::new("amtool").arg("check-config").arg(&p).output().unwrap();
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}
