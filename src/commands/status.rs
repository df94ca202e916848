//! `stackproof status`: releases (current, verified, when, by whom), containers with
//! their release and health, the host exporter, the lock, and the last verifications.

use crate::error::Result;
use crate::hosts::Host;
use crate::output::Format;
use crate::remote::layout;
use crate::remote::Conn;
use crate::stack::Stack;
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

pub async fn collect(conn: &Conn, stack: &Stack) -> Result<Value> {
    let st = &conn.state;
    let out = conn.ssh.script(RELEASES_SCRIPT, &[conn.ssh.host().remote_dir.as_str()]).await?;
    let mut releases = vec![];
    let mut exporter = json!({"running": false});
    for line in out.stdout.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.first() == Some(&"exporter") {
            exporter = json!({"running": true, "pid": f.get(1), "since": f.get(2).map(|s| s.trim()), "release": f.get(3)});
            continue;
        }
        let id = f[0];
        releases.push(json!({
            "id": id,
            "created_at": f.get(1).copied().unwrap_or(""),
            "by": f.get(2).copied().unwrap_or(""),
            "current": st.current.as_deref() == Some(id),
            "verified": st.verified.as_deref() == Some(id),
        }));
    }
    let containers: Vec<Value> = conn
        .engine
        .observed(&stack.manifest.name)
        .await?
        .into_iter()
        .map(|o| json!({"service": o.service, "name": o.name, "image": o.image, "release": o.release, "config_hash": o.config_hash, "state": o.state, "status": o.status}))
        .collect();
    let journal = layout::journal_tail(&conn.ssh, 200).await?;
    let last = |ev: &str| journal.iter().rev().find(|e| e["event"] == ev).cloned();
    Ok(json!({
        "host": conn.ssh.host().name,
        "current": st.current,
        "verified": st.verified,
        "releases": releases,
        "containers": containers,
        "exporter": exporter,
        "lock": st.lock.as_deref().map(|l| serde_json::from_str::<Value>(l).unwrap_or(json!(l))),
        "last_deploy": last("deploy"),
        "last_verify": last("verify"),
        "last_drill": last("drill"),
        "last_watch": last("watch"),
    }))
}

pub fn render(s: &Value) -> String {
    let mut o = String::new();
    let str_of = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| "-".into());
    o.push_str(&format!("host {}: current release {}, last verified {}\n", str_of(&s["host"]), str_of(&s["current"]), str_of(&s["verified"])));
    o.push_str("releases:\n");
    for r in s["releases"].as_array().into_iter().flatten() {
        let mut tags = vec![];
        if r["current"] == true {
            tags.push("current");
        }
        if r["verified"] == true {
            tags.push("verified");
        }
        o.push_str(&format!(
            "  {}  {} by {} {}\n",
            str_of(&r["id"]),
            str_of(&r["created_at"]),
            str_of(&r["by"]),
            if tags.is_empty() { String::new() } else { format!("[{}]", tags.join(", ")) }
        ));
    }
    o.push_str("containers:\n");
    for c in s["containers"].as_array().into_iter().flatten() {
        o.push_str(&format!(
            "  {:<14} {:<8} release {}  {}  ({})\n",
            str_of(&c["service"]),
            str_of(&c["state"]),
            str_of(&c["release"]),
            str_of(&c["status"]),
            str_of(&c["image"])
        ));
    }
    let e = &s["exporter"];
    if e["running"] == true {
        o.push_str(&format!("host exporter: running, pid {} since {} (release {})\n", str_of(&e["pid"]), str_of(&e["since"]), str_of(&e["release"])));
    } else {
        o.push_str("host exporter: NOT running\n");
    }
    match &s["lock"] {
        Value::Null => o.push_str("lock: free\n"),
        l => o.push_str(&format!("lock: HELD by {} since {} ({})\n", str_of(&l["who"]), str_of(&l["since"]), str_of(&l["command"]))),
    }
    for (k, label) in [("last_deploy", "last deploy"), ("last_verify", "last verify"), ("last_drill", "last drill"), ("last_watch", "last watch run")] {
        let v = &s[k];
        if !v.is_null() {
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
        let s = json!({
            "host": "sandbox", "current": "r2", "verified": "r1",
            "releases": [{"id": "r1", "created_at": "t1", "by": "a@b", "current": false, "verified": true}, {"id": "r2", "created_at": "t2", "by": "a@b", "current": true, "verified": false}],
            "containers": [{"service": "prometheus", "name": "s-prometheus", "image": "p", "release": "r2", "state": "running", "status": "Up"}],
            "exporter": {"running": false},
            "lock": {"who": "x@y", "since": "t3", "command": "deploy"},
            "last_verify": {"at": "t4", "ok": false, "release": "r2"},
        });
        let t = render(&s);
        assert!(t.contains("r1  t1 by a@b [verified]"), "{t}");
        assert!(t.contains("r2  t2 by a@b [current]"));
        assert!(t.contains("host exporter: NOT running"));
        assert!(t.contains("lock: HELD by x@y since t3 (deploy)"));
        assert!(t.contains("last verify: t4 FAILED (release r2)"));
    }
}
