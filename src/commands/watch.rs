//! `stackproof watch`: re-verify on a schedule, publish the dead-man's switch, evaluate
//! the gate, run the hooks; one journal line and one summary line per run.

use crate::error::{Error, Kind, Result};
use crate::output::Format;
use crate::stack::manifest::Level;
use crate::stack::Stack;
use crate::watch::{clear, journal_local, journal_path, run_hook, run_once, Episodes, Run, Schedule, WatchOptions, TEXTFILE};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `2026-11-26T05:57:08.772Z` → `2026-11-26T05:57:08Z`.
fn short_time(t: &str) -> String {
    match t.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => t.to_string(),
    }
}

fn summary_line(e: &Value, next: Option<&str>) -> String {
    let run = e["run"].as_u64().unwrap_or(0);
    let at = short_time(e["at"].as_str().unwrap_or(""));
    let mut s = format!("{at} {} run {run}: ", e["host"].as_str().unwrap_or(""));
    if e["checks"].is_object() {
        let (total, failed) = (e["checks"]["total"].as_u64().unwrap_or(0), e["checks"]["failed"].as_u64().unwrap_or(0));
        if failed == 0 {
            s.push_str(&format!("verify ✓ {total}/{total} passed"));
        } else {
            let first = e["failed"][0]["name"].as_str().unwrap_or("");
            s.push_str(&format!("verify ✗ {failed} of {total} failed (first: {first})"));
        }
    } else if let Some(m) = e["error"]["message"].as_str() {
        s.push_str(&format!("✗ {m}"));
    }
    match e["gate"]["level"].as_str() {
        Some(l) => {
            s.push_str(&format!(" · gate {}", l.to_uppercase()));
            let bad: Vec<&str> = e["gate"]["findings"]
                .as_array()
                .map(|fs| fs.iter().filter(|f| f["level"] != "green").filter_map(|f| f["name"].as_str()).collect())
                .unwrap_or_default();
            if !bad.is_empty() {
                s.push_str(&format!(" ({})", bad.join(", ")));
            }
        }
        None => s.push_str(" · gate not evaluated"),
    }
    if e["published"] == json!(false) && e["checks"].is_object() {
        s.push_str(" · metrics NOT published");
    }
    s.push_str(&format!(" · {:.1} s", e["durations"]["total_ms"].as_u64().unwrap_or(0) as f64 / 1000.0));
    match next {
        Some(n) => s.push_str(&format!(" · next {}", short_time(n))),
        None => s.push_str(" · last run"),
    }
    s
}

/// `stackproof watch`. Returns 0 when stopped by a signal, by `--runs` or at the end of
/// the protocol; could-not-run errors (exit 2) only for bad arguments before the first run.
pub async fn run(host_name: &str, stack: &Stack, opts: WatchOptions) -> Result<i32> {
    if opts.drill_every == Some(0) {
        return Err(Error::config(
            Kind::BadArgument,
            "--drill-every 0 would never drill",
            "pass --drill-every N (N >= 1) to drill every Nth run, or leave it out",
        ));
    }
    if opts.drill_every.is_some() {
        // Refuse an impossible drill before the first run (nothing is stopped).
        crate::drill::bounds(stack, false).map_err(crate::drill::refused)?;
    }
    if opts.runs == Some(0) {
        return Err(Error::config(Kind::BadArgument, "--runs 0 would run nothing", "pass --runs 1 or more, or leave it out to run until stopped"));
    }
    if let Schedule::Every(d) = &opts.schedule {
        if d.is_zero() {
            return Err(Error::config(Kind::BadArgument, "--every must be longer than 0", "e.g. --every 30m"));
        }
    }
    // A typo in the host name is a could-not-run error now, not a failed run every 30 min.
    crate::hosts::load_host(host_name)?;

    // Register the signal handlers now (first poll), before the first run.
    let stop = crate::signals::interrupted();
    tokio::pin!(stop);
    let _ = futures_util::FutureExt::now_or_never(stop.as_mut());

    let watch_id = format!("{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), std::process::id());
    eprintln!(
        "watching {host_name}: {}; journal {}; stop with Ctrl-C or SIGTERM (watch id {watch_id})",
        opts.schedule.describe(),
        journal_path(host_name).display()
    );
    let start = tokio::time::Instant::now();
    let wall_start = chrono::Utc::now();
    let mut offset = Duration::ZERO;
    let mut n: u64 = 0;
    let mut episodes = Episodes::default();
    let reason = loop {
        // The schedule: sleep until the computed instant of this run (start + offset),
        // not a fixed interval after the previous run ended.
        tokio::select! {
            _ = tokio::time::sleep_until(start + offset) => {}
            _ = &mut stop => break "signal".to_string(),
        }
        n += 1;
        let drill = opts.drill_every.is_some_and(|k| n.is_multiple_of(k));
        let drilling = AtomicBool::new(false);
        let mut fut = std::pin::pin!(run_once(host_name, stack, n, &watch_id, drill, &drilling));
        let (run, stopping) = tokio::select! {
            r = &mut fut => (r, false),
            _ = &mut stop => {
                if drilling.load(Ordering::SeqCst) {
                    // The drill has stopped the exporter: let it restart it and finish.
                    eprintln!("signal received: finishing the drill (the exporter is being restarted)");
                    (fut.await, true)
                } else {
                    // Abandon the run: its connection is dropped with it; nothing is left
                    // half-written (the textfile is replaced by a rename, journal lines
                    // are single appends).
                    journal_local(host_name, &json!({"event": "watch-abandoned", "watch_id": watch_id, "run": n, "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "host": host_name}));
                    break "signal (the run in progress was abandoned)".to_string();
                }
            }
        };
        let Run { mut entry, verdict, conn } = run;
        let last = stopping || opts.runs.is_some_and(|r| n >= r);
        let next = if last { None } else { opts.schedule.next(offset, start.elapsed()) };
        let next_wall =
            next.map(|(o, _)| (wall_start + chrono::Duration::from_std(o).unwrap_or_default()).to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        entry["next_at"] = json!(next_wall);
        if let Some((_, skipped)) = next {
            if skipped > 0 {
                entry["skipped_slots"] = json!(skipped);
            }
        }
        journal_local(host_name, &entry);
        if let Some(c) = &conn {
            if let Err(e) = crate::remote::layout::journal(&c.ssh, &entry).await {
                tracing::warn!("host journal: {e}");
            }
        }
        match opts.format {
            Format::Json => println!("{}", serde_json::to_string(&entry).expect("serializable")),
            Format::Text => println!("{}", summary_line(&entry, next_wall.as_deref())),
        }

        let level = verdict.as_ref().map(|v| v.level);
        if let (Some(fire), Some(v)) = (episodes.observe(level), &verdict) {
            let cmd = match fire {
                Level::Red => opts.on_red.as_deref(),
                Level::Yellow => opts.on_yellow.as_deref(),
                Level::Green => None,
            };
            if let Some(cmd) = cmd {
                let which = if fire == Level::Red { "on-red" } else { "on-yellow" };
                let mut h = run_hook(which, cmd, host_name, v).await;
                h["event"] = json!("watch-hook");
                h["watch_id"] = json!(watch_id);
                h["run"] = json!(n);
                h["at"] = json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                h["host"] = json!(host_name);
                journal_local(host_name, &h);
                if let Some(c) = &conn {
                    let _ = crate::remote::layout::journal(&c.ssh, &h).await;
                }
                eprintln!(
                    "{which}: `{cmd}` exited {}",
                    h["exit"]
                        .as_i64()
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| h.get("signal").map(|s| format!("on signal {s}")).unwrap_or_else(|| "without starting".into()))
                );
            }
        }
        if let Some(c) = conn {
            c.ssh.close().await;
        }
        match next {
            _ if stopping => break "signal (after the drill finished)".to_string(),
            _ if last => break format!("{n} runs done"),
            None => break "the protocol ended".to_string(),
            Some((o, _)) => offset = o,
        }
    };
    if opts.clear_on_exit {
        match crate::hosts::load_host(host_name) {
            Ok(h) => match clear(&h).await {
                Ok(()) => eprintln!("removed {}/textfile/{TEXTFILE} (--clear-on-exit)", h.remote_dir),
                Err(e) => eprintln!("could not remove the textfile (--clear-on-exit): {e}"),
            },
            Err(e) => eprintln!("could not remove the textfile (--clear-on-exit): {e}"),
        }
    }
    journal_local(
        host_name,
        &json!({"event": "watch-stopped", "watch_id": watch_id, "runs": n, "reason": reason, "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "host": host_name}),
    );
    eprintln!("watch stopped after {n} run(s): {reason}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines() {
        let e = json!({"run": 2, "at": "2026-01-01T00:00:00.123Z", "host": "h", "ok": false, "checks": {"total": 24, "failed": 1}, "failed": [{"name": "prometheus: targets up"}],
            "gate": {"level": "red", "findings": [{"name": "services down now", "level": "yellow"}, {"name": "x", "level": "green"}]}, "published": true, "durations": {"total_ms": 2500}});
        let s = summary_line(&e, Some("N"));
        assert!(s.starts_with("2026-01-01T00:00:00Z h run 2: "), "{s}");
        assert!(s.contains("verify ✗ 1 of 24 failed (first: prometheus: targets up)"), "{s}");
        assert!(s.contains("gate RED (services down now)"), "{s}");
        assert!(s.ends_with("next N"), "{s}");
        let e = json!({"run": 1, "at": "T", "host": "h", "error": {"message": "host h is unreachable: refused"}, "gate": {"level": null}, "published": false, "durations": {"total_ms": 10}});
        let s = summary_line(&e, None);
        assert!(s.contains("✗ host h is unreachable") && s.contains("gate not evaluated") && s.ends_with("last run"), "{s}");
    }
}
