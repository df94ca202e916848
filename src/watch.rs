//! `stackproof watch`: re-verify a host on a schedule, evaluate the go/no-go gate after
//! every run, journal each run (locally and on the host), publish a dead-man's switch
//! through node-exporter's textfile collector, and run the operator's `--on-red` /
//! `--on-yellow` command once per episode.
//!
//! Pure parts (the schedule, the episode logic, the textfile's content) are unit-tested
//! here; the loop around them is the imperative shell. Every run opens its own
//! connection and closes it at the end, so a host that stops answering costs one failed
//! run (reported, journaled locally) and the next scheduled run simply connects again;
//! the host entry is re-read each run too, so a fixed address is picked up without a
//! restart.

use crate::error::{Error, Kind, Result};
use crate::gate::{self, Verdict};
use crate::hosts::Host;
use crate::output::Format;
use crate::remote::Conn;
use crate::remote::Ssh;
use crate::stack::manifest::{Level, WatchStep};
use crate::stack::Stack;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The file node-exporter reads (`<remote_dir>/textfile/stackproof.prom`).
pub const TEXTFILE: &str = "stackproof.prom";

// ---- schedule ----------------------------------------------------------------------

/// When runs happen, as offsets from the watch's start.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Every `d`, forever (until `--runs` or a signal).
    Every(Duration),
    /// A rollout protocol: `every` while before `until`, step by step; it ends at the
    /// last step's `until`.
    Protocol(Vec<WatchStep>),
}

impl Schedule {
    /// Check a protocol: at least one step, positive periods, `until` strictly increasing.
    pub fn protocol(steps: Vec<WatchStep>) -> std::result::Result<Schedule, String> {
        if steps.is_empty() {
            return Err("the protocol has no steps".into());
        }
        let mut prev = Duration::ZERO;
        for (i, s) in steps.iter().enumerate() {
            if s.every.is_zero() {
                return Err(format!("step {}: `every` must be longer than 0", i + 1));
            }
            if s.until <= prev {
                return Err(format!("step {}: `until` ({}) must be later than the previous step's", i + 1, humantime::format_duration(s.until)));
            }
            prev = s.until;
        }
        Ok(Schedule::Protocol(steps))
    }

    /// The slot after `t`: `t + every` of the step whose `until` `t` has not reached.
    /// `None` when the schedule is over (a protocol's last slot is its last `until`).
    fn slot_after(&self, t: Duration) -> Option<Duration> {
        match self {
            Schedule::Every(d) => Some(t + *d),
            Schedule::Protocol(steps) => {
                let step = steps.iter().find(|s| t < s.until)?;
                let next = t + step.every;
                let end = steps.last().map(|s| s.until).unwrap_or_default();
                (next <= end).then_some(next)
            }
        }
    }

    /// The next run after the run scheduled at `prev`, at a slot not earlier than `now`
    /// (both offsets from the start). Slots missed because a run took longer than the
    /// period are skipped, not run back to back; the second value counts them.
    pub fn next(&self, prev: Duration, now: Duration) -> Option<(Duration, u64)> {
        let mut t = self.slot_after(prev)?;
        let mut skipped = 0;
        while t < now {
            if let Schedule::Every(d) = self {
                // Arithmetic jump, so a long outage does not loop slot by slot.
                let behind = (now - t).as_nanos() / d.as_nanos().max(1);
                if behind > 0 {
                    let k = behind.min(u32::MAX as u128) as u32;
                    t += *d * k;
                    skipped += k as u64;
                    continue;
                }
            }
            t = self.slot_after(t)?;
            skipped += 1;
        }
        Some((t, skipped))
    }

    pub fn describe(&self) -> String {
        match self {
            Schedule::Every(d) => format!("every {}", humantime::format_duration(*d)),
            Schedule::Protocol(steps) => steps
                .iter()
                .map(|s| format!("every {} until {}", humantime::format_duration(s.every), humantime::format_duration(s.until)))
                .collect::<Vec<_>>()
                .join(", then "),
        }
    }
}

/// Read a protocol file: a YAML list of `{until: 12h, every: 30m}`.
pub fn load_protocol(path: &Path) -> Result<Schedule> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let hint = "write a YAML list of steps, e.g.\n  - {until: 12h, every: 30m}\n  - {until: 24h, every: 1h}";
    let steps: Vec<WatchStep> = serde_yaml::from_str(&text).map_err(|e| Error::config(Kind::ProtocolInvalid, format!("{}: {e}", path.display()), hint))?;
    Schedule::protocol(steps).map_err(|e| Error::config(Kind::ProtocolInvalid, format!("{}: {e}", path.display()), hint))
}

// ---- episodes ----------------------------------------------------------------------

/// Which gate episode we are in, so each hook runs once per episode.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Episodes {
    red: bool,
    yellow: bool,
}

impl Episodes {
    /// Observe a run's gate level and return the level whose hook must run now, if any.
    /// Entering red runs the red hook; it runs again only after the gate has left red.
    /// Same for yellow (red → yellow starts a yellow episode). A run whose gate could not
    /// be evaluated (`None`) changes nothing: an unreachable host has not left red.
    pub fn observe(&mut self, level: Option<Level>) -> Option<Level> {
        let level = level?;
        let fire = match level {
            Level::Red => !self.red,
            Level::Yellow => !self.yellow,
            Level::Green => false,
        };
        self.red = level == Level::Red;
        self.yellow = level == Level::Yellow;
        fire.then_some(level)
    }
}

// ---- the dead-man's switch ---------------------------------------------------------

/// The textfile node-exporter serves: last run time, verification success, gate level.
/// No client-side timestamps (the collector rejects them). The gate line is left out
/// when the gate could not be evaluated: no level is better than a made-up one.
pub fn textfile(now_unix: f64, success: bool, gate: Option<Level>) -> String {
    let mut s = String::new();
    s.push_str("# HELP stackproof_verify_last_run_timestamp_seconds Unix time at which the last run of `stackproof watch` finished (passed or failed).\n");
    s.push_str("# TYPE stackproof_verify_last_run_timestamp_seconds gauge\n");
    s.push_str(&format!("stackproof_verify_last_run_timestamp_seconds {now_unix:.3}\n"));
    s.push_str("# HELP stackproof_verify_success Whether the last verification of `stackproof watch` passed every check (1) or not (0).\n");
    s.push_str("# TYPE stackproof_verify_success gauge\n");
    s.push_str(&format!("stackproof_verify_success {}\n", u8::from(success)));
    if let Some(l) = gate {
        s.push_str("# HELP stackproof_gate_level The go/no-go gate at the last run of `stackproof watch`: 0 green, 1 yellow, 2 red.\n");
        s.push_str("# TYPE stackproof_gate_level gauge\n");
        s.push_str(&format!("stackproof_gate_level {}\n", gate::level_number(l)));
    }
    s
}

/// Publish the dead-man's switch: `layout::write_textfile` writes a hidden temp file
/// (ignored by the collector: it reads `*.prom` only) and renames it over
/// `stackproof.prom`, so node-exporter reads the old file or the new one, never half.
pub async fn publish(ssh: &Ssh, content: &str) -> std::result::Result<(), String> {
    crate::remote::layout::write_textfile(ssh, TEXTFILE, content).await.map_err(|e| e.to_string())
}

pub(crate) async fn clear(host: &Host) -> std::result::Result<(), String> {
    let ssh = Ssh::connect(host).await.map_err(|e| e.to_string())?;
    let out = crate::remote::layout::remove_textfile(&ssh, TEXTFILE).await.map_err(|e| e.to_string());
    ssh.close().await;
    out
}

// ---- the local journal -------------------------------------------------------------

/// `.stackproof/journal/<host>.jsonl`, relative to the current directory (where
/// `.stackproof/hosts.yml` usually is).
pub fn journal_path(host: &str) -> PathBuf {
    let safe: String = host.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    PathBuf::from(".stackproof/journal").join(format!("{safe}.jsonl"))
}

pub(crate) fn journal_local(host: &str, entry: &Value) {
    journal_local_at(&journal_path(host), entry)
}

/// The local journal's rotation size: past it, the file becomes `<host>.jsonl.1` (one
/// previous file kept).
pub const LOCAL_JOURNAL_ROTATE_BYTES: u64 = 8 << 20;

/// Append one line (scrubbed, capped like the host's) to a private file (0600 in a 0700
/// directory), rotating it past `LOCAL_JOURNAL_ROTATE_BYTES`.
fn journal_local_at(path: &Path, entry: &Value) {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let line = format!("{}\n", crate::remote::layout::journal_line(entry));
    let r = (|| {
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
            }
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        if std::fs::metadata(path).is_ok_and(|m| m.len() > LOCAL_JOURNAL_ROTATE_BYTES) {
            let mut old = path.as_os_str().to_owned();
            old.push(".1");
            std::fs::rename(path, old)?;
        }
        // One write of one line to an O_APPEND file: lines from concurrent writers do
        // not interleave.
        let mut f = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(line.as_bytes())
    })();
    if let Err(e) = r {
        eprintln!("warning: cannot append to the local journal {}: {e}", path.display());
    }
}

/// The last `n` watch runs of `host` from the local journal, oldest first (for `status`).
pub fn last_runs(host: &str, n: usize) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(journal_path(host)) else { return vec![] };
    let runs: Vec<Value> =
        text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v.get("event").and_then(Value::as_str) == Some("watch")).collect();
    runs[runs.len().saturating_sub(n)..].to_vec()
}

// ---- one run -----------------------------------------------------------------------

pub struct WatchOptions {
    pub schedule: Schedule,
    pub runs: Option<u64>,
    pub on_red: Option<String>,
    pub on_yellow: Option<String>,
    pub drill_every: Option<u64>,
    pub clear_on_exit: bool,
    pub format: Format,
}

/// What one run saw. `conn` is kept open until the run's journal lines and hooks are done.
pub(crate) struct Run {
    pub entry: Value,
    pub verdict: Option<Verdict>,
    pub conn: Option<Conn>,
}

pub(crate) fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// One run: connect, the checks, the drill if due, the gate, the textfile. `drilling` is
/// set while the drill runs: a signal then waits for the drill (which sees the signal
/// too and restarts the exporter) instead of abandoning the run.
pub(crate) async fn run_once(host_name: &str, stack: &Stack, n: u64, watch_id: &str, drill: bool, drilling: &AtomicBool) -> Run {
    let t0 = std::time::Instant::now();
    let at = chrono::Utc::now();
    let mut entry = json!({
        "event": "watch",
        "watch_id": watch_id,
        "run": n,
        "at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "host": host_name,
    });
    let fail = |mut entry: Value, e: &Error, t0: std::time::Instant| {
        entry["ok"] = json!(false);
        entry["error"] = json!({"kind": e.kind(), "message": e.to_string(), "hint": e.hint()});
        entry["gate"] = json!({"level": null});
        entry["published"] = json!(false);
        entry["durations"] = json!({"total_ms": ms(t0.elapsed())});
        Run { entry, verdict: None, conn: None }
    };
    let host = match crate::hosts::load_host(host_name) {
        Ok(h) => h,
        Err(e) => return fail(entry, &e, t0),
    };
    // The stack as this host runs it (its receivers rendered in).
    let stack = match crate::paging::for_host(stack, &host) {
        Ok((s, _)) => s,
        Err(e) => return fail(entry, &e, t0),
    };
    let stack = &stack;
    let conn = match Conn::open(&host).await {
        Ok(c) => c,
        Err(e) => return fail(entry, &e, t0),
    };
    let connect_ms = ms(t0.elapsed());
    entry["release"] = json!(conn.state.current);

    let t1 = std::time::Instant::now();
    let (ok, checks_error) = match crate::verify::on_host::checks(&conn, stack, &host, true, crate::verify::receivers::Since::LastVerification).await {
        Ok(report) => {
            let failed: Vec<Value> = report.failed().map(|c| json!({"name": c.name, "detail": c.detail})).collect();
            entry["checks"] = json!({"total": report.checks.len(), "failed": failed.len(), "passed": report.checks.len() - failed.len()});
            entry["failed"] = json!(failed);
            (report.ok, None)
        }
        Err(e) => (false, Some(e)),
    };
    let verify_ms = ms(t1.elapsed());
    let mut ok = ok;
    let mut drill_ms = None;
    if drill {
        let td = std::time::Instant::now();
        drilling.store(true, Ordering::SeqCst);
        // The drill stops the exporter: hold the deploy lock, as `verify --drill` does, so
        // a deploy does not restart the exporter mid-drill, nor the drill stop a fresh one.
        // The bounds once: they give the lock's wait and the drill's stages.
        let opts = crate::drill::DrillOptions { real: false, quiet: true };
        let r = match crate::drill::bounds(stack, false).map_err(crate::drill::refused) {
            Ok(b) => match crate::remote::lock::lock(&conn.ssh, "watch --drill-every", Some(b.timeout)).await {
                Ok(lock) => {
                    let r = crate::remote::lock::with_lease(&host, &lock, crate::drill::run_with(&conn, stack, &b, &opts)).await;
                    crate::remote::lock::release_lock(&conn.ssh, &lock).await;
                    r
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        drilling.store(false, Ordering::SeqCst);
        drill_ms = Some(ms(td.elapsed()));
        match r {
            Ok(d) => {
                ok = ok && d.ok;
                if !d.ok {
                    let c = d.check();
                    if let Some(failed) = entry["failed"].as_array_mut() {
                        failed.push(json!({"name": c.name, "detail": c.detail}));
                    }
                }
                entry["drill"] = json!({"ok": d.ok, "fired_after_s": d.fired_after_s, "delivered_after_s": d.delivered_after_s, "resolved_after_s": d.resolved_after_s, "exporter_restarted": d.exporter_restarted, "total_s": d.total_s});
            }
            Err(e) => {
                ok = false;
                entry["drill"] = json!({"ok": false, "error": {"kind": e.kind(), "message": e.to_string()}});
            }
        }
    }
    entry["ok"] = json!(ok);
    if let Some(e) = &checks_error {
        entry["error"] = json!({"kind": e.kind(), "message": e.to_string(), "hint": e.hint()});
    }

    let t2 = std::time::Instant::now();
    let verdict = gate::evaluate_on(&conn.ssh, stack).await;
    let gate_ms = ms(t2.elapsed());
    entry["gate"] = match &verdict {
        Ok(v) => json!({"level": v.level, "findings": gate::findings_json(v)}),
        Err(e) => json!({"level": null, "error": e}),
    };
    let level = verdict.as_ref().ok().map(|v| v.level);
    let content = textfile(chrono::Utc::now().timestamp_millis() as f64 / 1000.0, ok, level);
    match publish(&conn.ssh, &content).await {
        Ok(()) => entry["published"] = json!(true),
        Err(e) => {
            entry["published"] = json!(false);
            entry["publish_error"] = json!(e);
        }
    }
    entry["durations"] = json!({"connect_ms": connect_ms, "verify_ms": verify_ms, "drill_ms": drill_ms, "gate_ms": gate_ms, "total_ms": ms(t0.elapsed())});
    Run { entry, verdict: verdict.ok(), conn: Some(conn) }
}

/// Run the operator's hook through `sh -c` with the gate's findings in its environment.
/// Its stdout goes to our stderr, so `--format json` keeps stdout to one line per run.
/// A running hook is waited for, also when a signal arrives (it may be a rollback).
pub(crate) async fn run_hook(which: &str, cmd: &str, host: &str, v: &Verdict) -> Value {
    let t0 = std::time::Instant::now();
    let stdout = {
        use std::os::fd::AsFd;
        std::io::stderr().as_fd().try_clone_to_owned().map(std::process::Stdio::from).unwrap_or_else(|_| std::process::Stdio::inherit())
    };
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("STACKPROOF_GATE_LEVEL", gate::level_word(v.level))
        .env("STACKPROOF_GATE_FINDINGS", gate::findings_json(v).to_string())
        .env("STACKPROOF_HOST", host)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .status()
        .await;
    let mut e = json!({"hook": which, "command": crate::redact::scrub_text(cmd), "level": v.level, "duration_ms": ms(t0.elapsed())});
    match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            e["exit"] = json!(s.code());
            if let Some(sig) = s.signal() {
                e["signal"] = json!(sig);
            }
        }
        Err(err) => e["error"] = json!(format!("could not start `sh -c`: {err}")),
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u64) -> Duration {
        Duration::from_secs(n * 3600)
    }
    fn m(n: u64) -> Duration {
        Duration::from_secs(n * 60)
    }

    fn default_protocol() -> Schedule {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/stack/stackproof.yml")).unwrap();
        Schedule::protocol(crate::stack::Manifest::from_yaml(&text).unwrap().watch.protocol).unwrap()
    }

    fn all_slots(s: &Schedule) -> Vec<Duration> {
        let mut out = vec![Duration::ZERO];
        let mut t = Duration::ZERO;
        while let Some((n, _)) = s.next(t, t) {
            out.push(n);
            t = n;
        }
        out
    }

    #[test]
    fn default_protocol_runs_like_the_rollout_plan() {
        let slots = all_slots(&default_protocol());
        // 0, 0:30 … 12:00 (25 runs), 13:00 … 24:00 (12), 26:00 … 48:00 (12).
        assert_eq!(slots.len(), 25 + 12 + 12);
        assert_eq!(slots[1], m(30));
        assert_eq!(slots[24], h(12));
        assert_eq!(slots[25], h(13));
        assert_eq!(slots[36], h(24));
        assert_eq!(slots[37], h(26));
        assert_eq!(*slots.last().unwrap(), h(48));
        assert!(slots.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn missed_slots_are_skipped_not_run_back_to_back() {
        let s = default_protocol();
        // The run at 0 took 65 minutes: the 30 m and 60 m slots are gone; next is 1:30.
        assert_eq!(s.next(Duration::ZERO, m(65)), Some((m(90), 2)));
        // On time: the next slot.
        assert_eq!(s.next(m(30), m(31)), Some((m(60), 0)));
        // Across a step boundary: a run at 11:30 that ends at 12:10 → 13:00.
        assert_eq!(s.next(m(690), m(730)), Some((h(13), 1)));
        // Past the end.
        assert_eq!(s.next(h(48), h(48)), None);
        assert_eq!(s.next(h(46), h(50)), None);
    }

    #[test]
    fn every_is_anchored_at_the_start() {
        let s = Schedule::Every(Duration::from_secs(5));
        assert_eq!(s.next(Duration::ZERO, Duration::from_millis(3200)), Some((Duration::from_secs(5), 0)));
        // A 12 s run starting at 5 s ends at 17 s: 10 s and 15 s are skipped, next is 20 s.
        assert_eq!(s.next(Duration::from_secs(5), Duration::from_secs(17)), Some((Duration::from_secs(20), 2)));
        // Exactly on a slot boundary: that slot is still taken.
        assert_eq!(s.next(Duration::from_secs(5), Duration::from_secs(10)), Some((Duration::from_secs(10), 0)));
        // A day-long outage is one jump.
        assert_eq!(s.next(Duration::ZERO, h(24) + Duration::from_secs(1)).unwrap().0, h(24) + Duration::from_secs(5));
    }

    #[test]
    fn protocol_validation() {
        let st = |until, every| WatchStep { until, every };
        assert!(Schedule::protocol(vec![]).is_err());
        assert!(Schedule::protocol(vec![st(h(1), Duration::ZERO)]).is_err());
        assert!(Schedule::protocol(vec![st(h(2), m(10)), st(h(1), m(10))]).is_err());
        let s = Schedule::protocol(vec![st(m(10), m(5)), st(m(30), m(10))]).unwrap();
        assert_eq!(all_slots(&s), vec![Duration::ZERO, m(5), m(10), m(20), m(30)]);
        assert!(s.describe().contains("every 5m until 10m"));
    }

    #[test]
    fn protocol_file_parses() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.yml");
        std::fs::write(&p, "- {until: 1h, every: 10m}\n- {until: 3h, every: 1h}\n").unwrap();
        assert_eq!(all_slots(&load_protocol(&p).unwrap()).len(), 7 + 2);
        std::fs::write(&p, "- {until: 1h}\n").unwrap();
        assert_eq!(load_protocol(&p).unwrap_err().kind(), "protocol_invalid");
    }

    #[test]
    fn hooks_run_once_per_episode() {
        use Level::*;
        let mut e = Episodes::default();
        let seq =
            [Some(Green), Some(Red), Some(Red), None, Some(Red), Some(Yellow), Some(Yellow), Some(Red), Some(Green), Some(Yellow), Some(Green), Some(Red)];
        let fired: Vec<Option<Level>> = seq.iter().map(|l| e.observe(*l)).collect();
        assert_eq!(fired, vec![None, Some(Red), None, None, None, Some(Yellow), None, Some(Red), None, Some(Yellow), None, Some(Red)]);
    }

    #[test]
    fn textfile_is_valid_exposition_without_timestamps() {
        let t = textfile(1_700_000_000.25, true, Some(Level::Red));
        assert!(t.contains("stackproof_verify_last_run_timestamp_seconds 1700000000.250\n"));
        assert!(t.contains("stackproof_verify_success 1\n"));
        assert!(t.contains("stackproof_gate_level 2\n"));
        assert!(t.contains("0 green, 1 yellow, 2 red"));
        for line in t.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(line.split_whitespace().count(), 2, "no timestamp on `{line}`");
        }
        let t = textfile(1.0, false, None);
        assert!(t.contains("stackproof_verify_success 0\n"));
        assert!(!t.contains("stackproof_gate_level"));
        // The names are the manifest's declared textfile metrics.
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/stack/stackproof.yml")).unwrap();
        let declared = crate::stack::Manifest::from_yaml(&text).unwrap().metrics.textfile;
        let full = textfile(1.0, true, Some(Level::Green));
        for line in full.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split_whitespace().next().unwrap();
            assert!(declared.iter().any(|d| d == name), "{name} not in metrics.textfile");
        }
    }

    #[test]
    fn journal_path_is_per_host_and_safe() {
        assert_eq!(journal_path("sandbox"), PathBuf::from(".stackproof/journal/sandbox.jsonl"));
        assert_eq!(journal_path("../x y"), PathBuf::from(".stackproof/journal/.._x_y.jsonl"));
    }

    #[tokio::test]
    async fn on_red_commands_are_journaled_redacted() {
        let v = Verdict { level: Level::Red, findings: vec![], duration_ms: 0 };
        let e = run_hook("on_red", "true https://pager.example/alert?token=tok123 PASSWORD=pw123", "h", &v).await;
        let c = e["command"].as_str().unwrap();
        assert!(!c.contains("tok123") && !c.contains("pw123"), "{c}");
        assert!(c.starts_with("true https://pager.example/alert?"), "{c}");
        assert_eq!(e["exit"], 0);
    }

    #[test]
    fn local_journal_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("journal/h.jsonl");
        journal_local_at(&p, &json!({"event": "watch", "command": "x PASSWORD=pw"}));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(p.parent().unwrap()), 0o700);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("PASSWORD=***") && !text.contains("pw\""), "{text}");
    }
}
