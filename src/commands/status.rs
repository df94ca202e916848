//! `stackproof status`: releases (current, verified, when, by whom), containers with
//! their release and health, the host exporter, the lock, and the last verifications.

use crate::error::Result;
use crate::hosts::Host;
use crate::output::Format;
use crate::remote::layout;
use crate::remote::Conn;
use crate::stack::Stack;
use serde::Serialize;
use serde_json::{json, Value};

const RELEASES_SCRIPT: &str = r#"d="$1"
for r in $(ls -1 "$d/releases" 2>/dev/null | grep -v '^\.'); do
  f="$d/releases/$r/.release.json"
  at=$(grep -m1 '"created_at"' "$f" 2>/dev/null | sed 's/.*: *"\(.*\)".*/\1/')
  by=$(grep -m1 '"by"' "$f" 2>/dev/null | sed 's/.*: *"\(.*\)".*/\1/')
  printf '%s\t%s\t%s\n' "$r" "$at" "$by"
done
pid=$(cat "$d/run/host-exporter.pid" 2>/dev/null || true)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  printf 'exporter\t%s\t%s\t%s\n' "$pid" "$(ps -o lstart= -p "$pid" 2>/dev/null)" "$(cat "$d/run/host-exporter.release" 2>/dev/null)"
fi
"#;

/// One release kept on the host.
#[derive(Debug, Serialize)]
pub struct Release {
    pub id: String,
    pub created_at: String,
    pub by: String,
    pub current: bool,
    pub verified: bool,
}

/// One container of the stack, as Docker reports it.
#[derive(Debug, Serialize)]
pub struct Container {
    pub service: String,
    pub name: String,
    pub image: String,
    pub release: String,
    pub config_hash: String,
    pub state: String,
    pub status: String,
}

/// The host exporter's process, when it runs.
#[derive(Debug, Default, Serialize)]
pub struct HostExporter {
    pub running: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
}

/// `stackproof status --format json`. The `last_*` entries are the newest journal lines
/// of each event, as journaled.
#[derive(Debug, Serialize)]
pub struct Status {
    pub host: String,
    pub current: Option<String>,
    pub verified: Option<String>,
    pub releases: Vec<Release>,
    pub containers: Vec<Container>,
    pub exporter: HostExporter,
    /// Why nobody is paged on this host (`unpaged:` in its entry), when it says so.
    pub unpaged: Option<String>,
    pub lock: Option<Value>,
    pub last_deploy: Option<Value>,
    pub last_verify: Option<Value>,
    pub last_drill: Option<Value>,
    pub last_watch: Option<Value>,
}

pub async fn collect(conn: &Conn, stack: &Stack) -> Result<Status> {
    let st = &conn.state;
    let out = conn.ssh.script(RELEASES_SCRIPT, &[conn.ssh.host().remote_dir.as_str()]).await?;
    let mut releases = vec![];
    let mut exporter = HostExporter::default();
    for line in out.stdout.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let field = |i: usize| f.get(i).map(|s| s.trim().to_string());
        if f.first() == Some(&"exporter") {
            exporter = HostExporter { running: true, pid: field(1), since: field(2), release: field(3) };
            continue;
        }
        let id = f[0].to_string();
        releases.push(Release {
            current: st.current.as_deref() == Some(id.as_str()),
            verified: st.verified.as_deref() == Some(id.as_str()),
            created_at: field(1).unwrap_or_default(),
            by: field(2).unwrap_or_default(),
            id,
        });
    }
    let containers = conn
        .engine
        .observed(&stack.manifest.name)
        .await?
        .into_iter()
        .map(|o| Container {
            service: o.service,
            name: o.name,
            image: o.image,
            release: o.release,
            config_hash: o.config_hash,
            state: o.state,
            status: o.status,
        })
        .collect();
    let journal = layout::journal_tail(&conn.ssh, 200).await?;
    let last = |ev: &str| journal.iter().rev().find(|e| e["event"] == ev).cloned();
    Ok(Status {
        host: conn.ssh.host().name.clone(),
        current: st.current.clone(),
        verified: st.verified.clone(),
        releases,
        containers,
        exporter,
        unpaged: conn.ssh.host().unpaged.clone(),
        lock: st.lock.as_deref().map(|l| serde_json::from_str::<Value>(l).unwrap_or(json!(l))),
        last_deploy: last("deploy"),
        last_verify: last("verify"),
        last_drill: last("drill"),
        last_watch: last("watch"),
    })
}

pub fn render(s: &Status) -> String {
    let mut o = String::new();
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let str_of = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| "-".into());
    o.push_str(&format!("host {}: current release {}, last verified {}\n", s.host, or_dash(&s.current), or_dash(&s.verified)));
    o.push_str("releases:\n");
    for r in &s.releases {
        let tags: Vec<&str> = [(r.current, "current"), (r.verified, "verified")].into_iter().filter(|(on, _)| *on).map(|(_, t)| t).collect();
        let tags = if tags.is_empty() { String::new() } else { format!("[{}]", tags.join(", ")) };
        o.push_str(&format!("  {}  {} by {} {tags}\n", r.id, r.created_at, r.by));
    }
    o.push_str("containers:\n");
    for c in &s.containers {
        o.push_str(&format!("  {:<14} {:<8} release {}  {}  ({})\n", c.service, c.state, c.release, c.status, c.image));
    }
    let e = &s.exporter;
    if e.running {
        o.push_str(&format!("host exporter: running, pid {} since {} (release {})\n", or_dash(&e.pid), or_dash(&e.since), or_dash(&e.release)));
    } else {
        o.push_str("host exporter: NOT running\n");
    }
    if let Some(why) = &s.unpaged {
        o.push_str(&format!("paging: NOBODY IS PAGED on this host (its entry says: {why})\n"));
    }
    match &s.lock {
        None => o.push_str("lock: free\n"),
        Some(l) => o.push_str(&format!("lock: HELD by {} since {} ({})\n", str_of(&l["who"]), str_of(&l["since"]), str_of(&l["command"]))),
    }
    for (v, label) in [(&s.last_deploy, "last deploy"), (&s.last_verify, "last verify"), (&s.last_drill, "last drill"), (&s.last_watch, "last watch run")] {
        if let Some(v) = v {
            let ok = match v["ok"].as_bool() {
                Some(true) => "ok",
                Some(false) => "FAILED",
                None => "?",
            };
            o.push_str(&format!("{label}: {} {ok}{}\n", str_of(&v["at"]), v["release"].as_str().map(|r| format!(" (release {r})")).unwrap_or_default()));
        }
    }
    o
}

pub async fn run(stack: &Stack, host: &Host, format: Format) -> Result<i32> {
    let conn = Conn::open(host).await?;
    let s = collect(&conn, stack).await?;
    conn.ssh.close().await;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&s).expect("serializable")),
        Format::Text => print!("{}", render(&s)),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lock_and_failed_verification() {
        let release = |id: &str, at: &str, current, verified| Release { id: id.into(), created_at: at.into(), by: "a@b".into(), current, verified };
        let s = Status {
            host: "sandbox".into(),
            current: Some("r2".into()),
            verified: Some("r1".into()),
            releases: vec![release("r1", "t1", false, true), release("r2", "t2", true, false)],
            containers: vec![Container {
                service: "prometheus".into(),
                name: "s-prometheus".into(),
                image: "p".into(),
                release: "r2".into(),
                config_hash: "h".into(),
                state: "running".into(),
                status: "Up".into(),
            }],
            exporter: HostExporter::default(),
            unpaged: Some("staging".into()),
            lock: Some(json!({"who": "x@y", "since": "t3", "command": "deploy"})),
            last_deploy: None,
            last_verify: Some(json!({"at": "t4", "ok": false, "release": "r2"})),
            last_drill: None,
            last_watch: None,
        };
        let t = render(&s);
        assert!(t.contains("r1  t1 by a@b [verified]"), "{t}");
        assert!(t.contains("r2  t2 by a@b [current]"));
        assert!(t.contains("host exporter: NOT running"));
        assert!(t.contains("paging: NOBODY IS PAGED on this host (its entry says: staging)"), "{t}");
        assert!(t.contains("lock: HELD by x@y since t3 (deploy)"));
        assert!(t.contains("last verify: t4 FAILED (release r2)"));
    }
}
