//! What a live drill changes on the host, each change one constant script with its data
//! as arguments or stdin (src/remote/layout.rs' rule): the twins rule file, the host
//! exporter's fault file, the run file recording both (so the next command can undo a
//! killed drill), Prometheus' confirmed reload, Alertmanager's silences.

use crate::error::{Error, Kind, Result};
use crate::remote::poll::poll;
use crate::remote::Ssh;
use crate::verify::Endpoints;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// `<remote_dir>/drill/twins.yml`: outside every release, readable by the containers
/// (uid 65534 sees the remote dir at /stackproof: the directory 0755, the file 0644; it
/// holds rule expressions only, no secret).
pub const TWINS_DIR: &str = "drill";
pub const TWINS_FILE: &str = "drill/twins.yml";
/// `<remote_dir>/run/host-exporter.fault` (the default stack's `--fault-file`; run/ is
/// 0700, the exporter runs as the SSH user).
pub const FAULT_FILE: &str = "run/host-exporter.fault";
/// `<remote_dir>/run/drill-live.json`: what a running live drill changed.
pub const MARKER_FILE: &str = "run/drill-live.json";

/// What a live drill has changed on the host, rewritten before each change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Marker {
    /// The deploy lock's token the drill holds: a marker whose lock is gone or expired
    /// belongs to a drill that died.
    pub token: String,
    pub pid: u32,
    pub started: String,
    pub twins: bool,
    pub fault: Option<String>,
    pub exporter_stopped: bool,
    #[serde(default)]
    pub silences: Vec<Silence>,
}

/// An Alertmanager silence the drill created (it expires by itself at `until`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Silence {
    pub id: String,
    pub alert: String,
    pub matchers: Vec<(String, String)>,
    pub until: String,
}

const WRITE_TWINS: &str = r#"set -eu
d="$1"
umask 022
mkdir -p "$d/drill"
chmod 755 "$d/drill"
cat > "$d/drill/.twins.yml.tmp"
chmod 644 "$d/drill/.twins.yml.tmp"
mv -f "$d/drill/.twins.yml.tmp" "$d/drill/twins.yml"
echo WRITTEN
"#;

const WRITE_RUN: &str = r#"set -eu
d="$1"; f="$2"
umask 077
mkdir -p "$d/run"
chmod 700 "$d/run"
cat > "$d/$f.tmp"
mv -f "$d/$f.tmp" "$d/$f"
echo WRITTEN
"#;

/// Remove files under the remote dir (names are our constants).
const REMOVE: &str = r#"d="$1"; shift
for f in "$@"; do rm -f "$d/$f" "$d/$f.tmp" || exit 1; done
echo REMOVED
"#;

async fn checked(ssh: &Ssh, script: &'static str, args: &[&str], stdin: Option<Vec<u8>>, want: &str, what: &str) -> Result<()> {
    let out = match stdin {
        Some(b) => ssh.script_with_stdin(script, args, b).await?,
        None => ssh.script(script, args).await?,
    };
    if out.stdout.contains(want) {
        Ok(())
    } else {
        Err(Error::remote(
            Kind::RemoteFailed,
            format!("{what} on {} failed: {}", ssh.host().name, out.stderr.trim()),
            "check that the remote dir is writable by the SSH user",
        ))
    }
}

pub async fn write_twins(ssh: &Ssh, text: &str) -> Result<()> {
    checked(ssh, WRITE_TWINS, &[ssh.host().remote_dir.as_str()], Some(text.as_bytes().to_vec()), "WRITTEN", "writing the drill twins").await
}

pub async fn write_run_file(ssh: &Ssh, name: &str, text: &str) -> Result<()> {
    checked(ssh, WRITE_RUN, &[ssh.host().remote_dir.as_str(), name], Some(text.as_bytes().to_vec()), "WRITTEN", &format!("writing {name}")).await
}

pub async fn remove(ssh: &Ssh, files: &[&str]) -> Result<()> {
    let mut args = vec![ssh.host().remote_dir.as_str()];
    args.extend_from_slice(files);
    checked(ssh, REMOVE, &args, None, "REMOVED", &format!("removing {}", files.join(", "))).await
}

/// The marker's text as read from the host. An unreadable marker still says a drill
/// changed things: undo everything it may have.
pub fn parse_marker(text: &str) -> Marker {
    serde_json::from_str(text.trim()).unwrap_or(Marker { twins: true, fault: Some("unknown".into()), exporter_stopped: true, ..Default::default() })
}

pub async fn write_marker(ssh: &Ssh, m: &Marker) -> Result<()> {
    write_run_file(ssh, MARKER_FILE, &serde_json::to_string(m).expect("serializable")).await
}

/// The fault file's content: the mode, until when it holds (Unix seconds; the exporter
/// ignores it afterwards), and the slow mode's delay.
pub fn fault_file(mode: &str, until_unix: i64, delay: Duration) -> String {
    serde_json::json!({"mode": mode, "until": until_unix, "delay_s": delay.as_secs_f64(), "by": "stackproof drill"}).to_string() + "\n"
}

// ---- Prometheus ------------------------------------------------------------------------

/// Whether the running Prometheus loads the twins glob (its loaded config, not the stack's).
pub async fn prometheus_loads_twins(client: &reqwest::Client, ep: &Endpoints) -> std::result::Result<bool, String> {
    let v = super::super::observe::get_json(client, &format!("{}/api/v1/status/config", ep.prometheus)).await?;
    Ok(v["data"]["yaml"].as_str().unwrap_or("").contains(crate::stack::paths::DRILL_TWINS_GLOB))
}

/// The names of the loaded alerting rules of the twins' group.
async fn loaded_twins(client: &reqwest::Client, ep: &Endpoints) -> std::result::Result<Vec<String>, String> {
    let v = super::super::observe::get_json(client, &format!("{}/api/v1/rules?type=alert", ep.prometheus)).await?;
    Ok(v["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["name"] == super::twins::TWIN_GROUP)
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["name"].as_str().map(String::from))
        .collect())
}

/// Reload Prometheus and wait until exactly `want` twins are loaded (a confirmed reload:
/// a config it rejected leaves the old rules, which this sees).
pub async fn reload_twins(client: &reqwest::Client, ep: &Endpoints, want: &[String], within: Duration) -> Result<()> {
    let url = format!("{}/-/reload", ep.prometheus);
    let r =
        client.post(&url).send().await.map_err(|e| Error::remote(Kind::ReloadFailed, format!("reloading Prometheus: {e}"), "check that Prometheus runs"))?;
    if !r.status().is_success() {
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        return Err(Error::remote(
            Kind::ReloadFailed,
            format!("Prometheus rejected the reload with the drill twins ({status}): {}", body.trim()),
            "run `stackproof lint` on the stack; the twins file is removed by the drill's cleanup",
        ));
    }
    let mut want: Vec<String> = want.to_vec();
    want.sort();
    poll(Instant::now() + within, || async {
        let mut got = loaded_twins(client, ep).await?;
        got.sort();
        if got == want {
            Ok(())
        } else {
            Err(format!("loaded twins {got:?}, want {want:?}"))
        }
    })
    .await
    .map_err(|e| Error::remote(Kind::ReloadFailed, format!("Prometheus' reload with the drill twins did not take: {e}"), "check Prometheus' log"))
}

// ---- Alertmanager ----------------------------------------------------------------------

/// The `createdBy` of the drill's silences: how the gate recognises a drill's aftermath.
pub const SILENCE_BY: &str = "stackproof drill";

/// Silence `alert` with `matchers` (name = value) until `until`; returns its id.
pub async fn silence(
    client: &reqwest::Client,
    ep: &Endpoints,
    alert: &str,
    matchers: &[(String, String)],
    until: chrono::DateTime<chrono::Utc>,
) -> Result<Silence> {
    let mut ms = vec![serde_json::json!({"name": "alertname", "value": alert, "isRegex": false, "isEqual": true})];
    ms.extend(matchers.iter().map(|(k, v)| serde_json::json!({"name": k, "value": v, "isRegex": false, "isEqual": true})));
    let body = serde_json::json!({
        "matchers": ms,
        "startsAt": chrono::Utc::now().to_rfc3339(),
        "endsAt": until.to_rfc3339(),
        "createdBy": SILENCE_BY,
        "comment": format!("stackproof drill: {alert}'s condition is caused on purpose; this silence ends by itself"),
    });
    let url = format!("{}/api/v2/silences", ep.alertmanager);
    let fail = |e: String| {
        Error::remote(
            Kind::RemoteFailed,
            format!("silencing {alert} in Alertmanager failed: {e}"),
            "nothing was faulted; check Alertmanager, or run with --real to page the real receivers",
        )
    };
    let r = client.post(&url).json(&body).send().await.map_err(|e| fail(e.to_string()))?;
    let status = r.status();
    let v: serde_json::Value = r.json().await.map_err(|e| fail(e.to_string()))?;
    let id = v["silenceID"].as_str().filter(|_| status.is_success()).ok_or_else(|| fail(format!("{status}: {v}")))?;
    Ok(Silence { id: id.to_string(), alert: alert.to_string(), matchers: matchers.to_vec(), until: until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true) })
}

/// The receivers the *running* Alertmanager sends each twin to (its loaded config, not
/// the stack's: a host may run another config).
pub async fn running_routes(client: &reqwest::Client, ep: &Endpoints, twins: &[super::twins::Twin]) -> std::result::Result<Vec<(String, Vec<String>)>, String> {
    let v = super::super::observe::get_json(client, &format!("{}/api/v2/status", ep.alertmanager)).await?;
    let text = v["config"]["original"].as_str().ok_or("/api/v2/status has no config.original")?;
    let cfg = crate::stack::alertmanager::Config::from_yaml(text).map_err(|e| format!("the running Alertmanager config: {e}"))?;
    Ok(twins
        .iter()
        .map(|t| {
            let mut labels = t.labels.clone();
            labels.insert("alertname".into(), t.alert.clone());
            (t.alert.clone(), cfg.route_alert(&labels).into_iter().map(|m| m.receiver).collect())
        })
        .collect())
}

/// Resolve in Alertmanager every twin alert it still holds: a twin unloaded while it
/// fired (a drill killed mid-way) gets no resolved alert from Prometheus, and would stay
/// active until its endsAt (minutes), hiding the next drill's notification. Posting it
/// again with `endsAt` now resolves it. Returns how many.
pub async fn resolve_twins(client: &reqwest::Client, ep: &Endpoints) -> std::result::Result<usize, String> {
    let v = super::super::observe::get_json(client, &format!("{}/api/v2/alerts", ep.alertmanager)).await?;
    let now = chrono::Utc::now().to_rfc3339();
    let twins: Vec<serde_json::Value> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["alertname"].as_str().is_some_and(|n| n.starts_with("StackproofTwin_")))
        .map(|a| serde_json::json!({"labels": a["labels"], "annotations": a["annotations"], "startsAt": a["startsAt"], "endsAt": now}))
        .collect();
    if twins.is_empty() {
        return Ok(0);
    }
    let url = format!("{}/api/v2/alerts", ep.alertmanager);
    let r = client.post(&url).json(&twins).send().await.map_err(|e| format!("{url}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("{url} answered {}", r.status()));
    }
    Ok(twins.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::layout::tests::{mode, sh};

    #[test]
    fn twins_are_readable_by_the_containers_and_run_files_private() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_str().unwrap();
        assert!(String::from_utf8_lossy(&sh(WRITE_TWINS, &[dir], b"{}\n").stdout).contains("WRITTEN"));
        assert_eq!(mode(&d.path().join("drill")), 0o755);
        assert_eq!(mode(&d.path().join(TWINS_FILE)), 0o644);
        let fault = fault_file("slow", 1_800_000_000, Duration::from_millis(1500));
        assert!(String::from_utf8_lossy(&sh(WRITE_RUN, &[dir, FAULT_FILE], fault.as_bytes()).stdout).contains("WRITTEN"));
        assert_eq!(mode(&d.path().join("run")), 0o700);
        assert_eq!(mode(&d.path().join(FAULT_FILE)), 0o600);
        let out = sh(REMOVE, &[dir, TWINS_FILE, FAULT_FILE, MARKER_FILE], b"");
        assert!(String::from_utf8_lossy(&out.stdout).contains("REMOVED"), "{out:?}");
        assert!(!d.path().join(TWINS_FILE).exists() && !d.path().join(FAULT_FILE).exists());
    }

    #[test]
    fn the_fault_file_says_mode_expiry_and_delay() {
        let v: serde_json::Value = serde_json::from_str(&fault_file("fail", 1_800_000_123, Duration::from_millis(1500))).unwrap();
        assert_eq!(v["mode"], "fail");
        assert_eq!(v["until"], 1_800_000_123i64);
        assert_eq!(v["delay_s"], 1.5);
    }

    #[test]
    fn a_marker_round_trips() {
        let m = Marker {
            token: "t".into(),
            pid: 7,
            started: "s".into(),
            twins: true,
            fault: Some("slow".into()),
            exporter_stopped: false,
            silences: vec![Silence { id: "x".into(), alert: "A".into(), matchers: vec![("job".into(), "j".into())], until: "u".into() }],
        };
        assert_eq!(parse_marker(&serde_json::to_string(&m).unwrap()), m);
        let broken = parse_marker("{half");
        assert!(broken.twins && broken.exporter_stopped && broken.fault.is_some(), "an unreadable marker undoes everything");
    }
}
