//! Can Alertmanager reach a receiver's endpoint? Asked on the host itself, where
//! Alertmanager runs (host networking: the host's resolver and routes), through the SSH
//! connection: a constant Python script (python3 is on the host for the host exporter)
//! takes the endpoint as arguments, resolves the name, connects, does the TLS handshake
//! for https or STARTTLS, and then sends only what pages nobody: an HTTP `OPTIONS`
//! request, or an SMTP greeting and `EHLO` (no mail). It prints one JSON line.
//! Hand-written because the check must run on the host, and no crate runs there.

use crate::hosts::receivers::smarthost;
use crate::remote::Ssh;
use serde::Deserialize;

/// What to reach, with nothing secret in it: a Slack URL (a secret) is reduced to its
/// scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Http { url: String },
    Smtp { host: String, port: u16, starttls: bool },
}

impl Target {
    /// `host:port`, for messages (never a path, which may carry a token).
    pub fn describe(&self) -> String {
        match self {
            Target::Http { url } => match reqwest::Url::parse(url) {
                Ok(u) => format!("{}://{}:{}", u.scheme(), u.host_str().unwrap_or("?"), u.port_or_known_default().unwrap_or(0)),
                Err(_) => "(unparsable URL)".into(),
            },
            Target::Smtp { host, port, .. } => format!("smtp://{host}:{port}"),
        }
    }
}

/// The endpoints of one receiver of a deployed Alertmanager config, by integration: what
/// Alertmanager itself will try. `Err` for an integration that is not probed (a kind
/// without a probe, or a secret URL in a file only the container reads) with why.
pub fn targets_of(cfg: &crate::stack::alertmanager::Config, receiver: &str, slack_url: Option<&str>) -> Vec<(String, Result<Target, String>)> {
    use serde_yaml::Value;
    let Some(r) = cfg.receiver(receiver) else { return vec![] };
    let mut out = vec![];
    for w in &r.webhook_configs {
        match &w.url {
            Some(u) => out.push(("webhook".to_string(), Ok(Target::Http { url: u.clone() }))),
            None => out.push(("webhook".to_string(), Err("the URL is in a file (url_file); not probed".to_string()))),
        }
    }
    let global = |k: &str| cfg.global.get(k);
    for (key, items) in &r.extra {
        let Some(kind) = key.strip_suffix("_configs") else { continue };
        for item in items.as_sequence().into_iter().flatten() {
            let t = match kind {
                "email" => {
                    let host = item.get("smarthost").or_else(|| global("smtp_smarthost")).and_then(Value::as_str).and_then(smarthost);
                    let tls = item.get("require_tls").or_else(|| global("smtp_require_tls")).and_then(Value::as_bool).unwrap_or(true);
                    host.map(|(host, port)| Target::Smtp { host, port, starttls: tls }).ok_or_else(|| "no smarthost".to_string())
                }
                "slack" => {
                    let url =
                        item.get("api_url").or_else(|| global("slack_api_url")).and_then(Value::as_str).map(str::to_string).or(slack_url.map(str::to_string));
                    url.and_then(|u| reqwest::Url::parse(&u).ok())
                        .map(|u| Target::Http { url: format!("{}://{}:{}/", u.scheme(), u.host_str().unwrap_or(""), u.port_or_known_default().unwrap_or(443)) })
                        .ok_or_else(|| "the API URL is in a file the host entry does not give; not probed".to_string())
                }
                other => Err(format!("no probe for {other} yet: its delivery is proven by Alertmanager's counters only")),
            };
            out.push((kind.to_string(), t));
        }
    }
    out
}

/// The probe's verdict: `stage` is where it stopped (`resolve`, `connect`, `tls`, `http`,
/// `smtp`, `starttls`), `detail` what was seen.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Probe {
    pub ok: bool,
    pub stage: String,
    pub detail: String,
}

const SCRIPT: &str = r#"command -v python3 >/dev/null || { echo '{"ok": false, "stage": "probe", "detail": "python3 is missing on the host"}'; exit 0; }
exec python3 - "$@" <<'PY'
import json, smtplib, socket, ssl, sys, urllib.parse

def out(ok, stage, detail):
    print(json.dumps({"ok": ok, "stage": stage, "detail": detail}))
    sys.exit(0)

def resolve(host, port):
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except Exception as e:
        out(False, "resolve", "%s does not resolve: %s" % (host, e))

def reach(host, port):
    resolve(host, port)
    try:
        return socket.create_connection((host, port), timeout=5)
    except Exception as e:
        out(False, "connect", "%s:%d: %s" % (host, port, e))

kind = sys.argv[1]
try:
    if kind == "http":
        u = urllib.parse.urlsplit(sys.argv[2])
        host, port = u.hostname, u.port or (443 if u.scheme == "https" else 80)
        s = reach(host, port)
        if u.scheme == "https":
            try:
                s = ssl.create_default_context().wrap_socket(s, server_hostname=host)
            except Exception as e:
                out(False, "tls", "%s:%d: %s" % (host, port, e))
        req = "OPTIONS %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: stackproof-probe\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % (u.path or "/", u.netloc.rsplit("@", 1)[-1])
        s.settimeout(5)
        s.sendall(req.encode())
        line = s.recv(256).split(b"\r\n", 1)[0].decode("latin-1")
        if not line.startswith("HTTP/"):
            out(False, "http", "no HTTP answer from %s:%d" % (host, port))
        out(True, "http", "%s:%d answered %s" % (host, port, line))
    elif kind == "smtp":
        host, port, starttls = sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
        resolve(host, port)
        try:
            c = smtplib.SMTP(timeout=5)
            c.connect(host, port)
        except Exception as e:
            out(False, "connect", "%s:%d: %s" % (host, port, e))
        try:
            code, msg = c.ehlo()
        except Exception as e:
            out(False, "smtp", "%s:%d: %s" % (host, port, e))
        if code != 250:
            out(False, "smtp", "%s:%d answered EHLO with %d" % (host, port, code))
        if starttls:
            if not c.has_extn("starttls"):
                out(False, "starttls", "%s:%d does not offer STARTTLS, and require_tls is on" % (host, port))
            try:
                c.starttls(context=ssl.create_default_context())
                c.ehlo()
            except Exception as e:
                out(False, "starttls", "%s:%d: %s" % (host, port, e))
        c.quit()
        out(True, "smtp", "%s:%d greets and answers EHLO%s" % (host, port, " after STARTTLS" if starttls else ""))
    else:
        out(False, "probe", "unknown probe " + kind)
except SystemExit:
    raise
except Exception as e:
    out(False, "probe", str(e))
PY
"#;

/// Read the probe's output (pure).
pub fn parse(stdout: &str, stderr: &str) -> Probe {
    stdout.lines().rev().find_map(|l| serde_json::from_str::<Probe>(l.trim()).ok()).unwrap_or_else(|| Probe {
        ok: false,
        stage: "probe".into(),
        detail: format!("the probe printed no verdict: {}", stderr.lines().last().unwrap_or("").trim()),
    })
}

/// Run the probe on the host.
pub async fn run(ssh: &Ssh, target: &Target) -> Probe {
    let args: Vec<String> = match target {
        Target::Http { url } => vec!["http".into(), url.clone()],
        Target::Smtp { host, port, starttls } => vec!["smtp".into(), host.clone(), port.to_string(), if *starttls { "1" } else { "0" }.into()],
    };
    match ssh.script(SCRIPT, &args).await {
        Ok(o) => parse(&o.stdout, &o.stderr),
        Err(e) => Probe { ok: false, stage: "probe".into(), detail: e.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_come_from_the_deployed_config_and_never_carry_a_secret_path() {
        let cfg = crate::stack::alertmanager::Config::from_yaml(
            "global: {smtp_smarthost: 'smtp.example.com:587'}\nroute: {receiver: r}\nreceivers:\n- name: r\n  webhook_configs: [{url: 'https://pager.example.com/hook'}]\n  email_configs: [{to: a@b.c}, {to: d@e.f, smarthost: '127.0.0.1:2525', require_tls: false}]\n  slack_configs: [{api_url_file: /run/secrets/x, channel: c}]\n  pagerduty_configs: [{routing_key: k}]\n",
        )
        .unwrap();
        let t = targets_of(&cfg, "r", Some("https://hooks.slack.com/services/T0/B0/SECRET"));
        let ok: Vec<_> = t.iter().filter_map(|(k, t)| t.as_ref().ok().map(|t| (k.as_str(), t.clone()))).collect();
        assert!(ok.contains(&("webhook", Target::Http { url: "https://pager.example.com/hook".into() })));
        assert!(ok.contains(&("email", Target::Smtp { host: "smtp.example.com".into(), port: 587, starttls: true })), "global smarthost: {ok:?}");
        assert!(ok.contains(&("email", Target::Smtp { host: "127.0.0.1".into(), port: 2525, starttls: false })));
        assert!(ok.contains(&("slack", Target::Http { url: "https://hooks.slack.com:443/".into() })));
        assert!(ok.iter().all(|(_, t)| !t.describe().contains("SECRET")));
        assert!(t.iter().any(|(k, t)| k == "pagerduty" && t.as_ref().is_err_and(|e| e.contains("no probe"))));
        assert!(targets_of(&cfg, "nobody", None).is_empty());
        let https = Target::Http { url: "https://pager.example.com/hook".into() };
        assert_eq!(https.describe(), "https://pager.example.com:443");
    }

    #[test]
    fn the_verdict_is_the_last_json_line() {
        assert_eq!(
            parse("noise\n{\"ok\": true, \"stage\": \"http\", \"detail\": \"x answered HTTP/1.1 204\"}\n", ""),
            Probe { ok: true, stage: "http".into(), detail: "x answered HTTP/1.1 204".into() }
        );
        let p = parse("", "sh: 1: python3: not found\n");
        assert!(!p.ok && p.detail.contains("python3: not found"), "{p:?}");
    }

    /// The script itself, against servers on loopback: a webhook that answers, a port
    /// where nothing listens, an SMTP server without STARTTLS.
    #[test]
    fn the_script_probes_http_and_smtp_for_real() {
        if std::process::Command::new("python3").arg("-V").output().is_err() {
            eprintln!("python3 missing: skipped");
            return;
        }
        let run = |args: &[&str]| {
            let o = std::process::Command::new("sh").arg("-c").arg(SCRIPT).arg("sh").args(args).output().unwrap();
            parse(&String::from_utf8_lossy(&o.stdout), &String::from_utf8_lossy(&o.stderr))
        };
        let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = http.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut s, _) = http.accept().unwrap();
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
            req
        });
        let p = run(&["http", &format!("http://127.0.0.1:{port}/critical")]);
        assert!(p.ok, "{p:?}");
        assert!(p.detail.contains("204"), "{p:?}");
        assert!(server.join().unwrap().starts_with("OPTIONS /critical HTTP/1.1"), "a request that is not a notification");

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let p = run(&["http", &format!("http://127.0.0.1:{closed}/")]);
        assert_eq!((p.ok, p.stage.as_str()), (false, "connect"), "{p:?}");

        let smtp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sport = smtp.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            use std::io::{BufRead, BufReader, Write};
            let (s, _) = smtp.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            w.write_all(b"220 test ESMTP\r\n").unwrap();
            let mut seen = vec![];
            for line in BufReader::new(s).lines() {
                let line = line.unwrap();
                seen.push(line.clone());
                if line.to_uppercase().starts_with("EHLO") {
                    w.write_all(b"250-test\r\n250 8BITMIME\r\n").unwrap();
                } else if line.to_uppercase().starts_with("QUIT") {
                    w.write_all(b"221 bye\r\n").unwrap();
                    break;
                } else {
                    w.write_all(b"502 no\r\n").unwrap();
                }
            }
            seen
        });
        let p = run(&["smtp", "127.0.0.1", &sport.to_string(), "1"]);
        assert_eq!((p.ok, p.stage.as_str()), (false, "starttls"), "require_tls without STARTTLS offered: {p:?}");
        let seen = server.join().unwrap();
        assert!(seen.iter().all(|l| !l.to_uppercase().starts_with("MAIL") && !l.to_uppercase().starts_with("DATA")), "no mail is sent: {seen:?}");
    }
}
