//! The live drill on an open connection: load the twins (confirmed reload), then for
//! each fault in turn silence the real alerts it drives, cause it, watch every twin fire
//! and reach stackproof's receiver, end it, watch them resolve; unload the twins. Every
//! change is recorded first in the host's run file ([`host::Marker`]) and undone on every
//! exit path, Ctrl-C included; a killed drill is undone by the next command
//! ([`super::cleanup::recover`]).

use super::host::{self, Marker, Silence};
use super::plan::{Live, Plan};
use super::report::{AlertResult, LiveReport};
use super::twins::{Fault, SLOW_DELAY};
use crate::drill::auth;
use crate::drill::observe::{exporter_answers, host_time, snapshot, Snapshot};
use crate::drill::webhook::{self, Webhook};
use crate::drill::{ensure_running, hit, hit_print, round2, watch, Goal};
use crate::error::{Error, Kind, Result};
use crate::exporter::{choose_mode, Exporter};
use crate::remote::poll::{poll, POLL_INTERVAL};
use crate::remote::Conn;
use crate::stack::Stack;
use crate::verify::Endpoints;
use futures_util::FutureExt;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub struct Options {
    pub real: bool,
    pub quiet: bool,
}

/// What the exporter's /metrics says about faults: the mode in force and finished runs.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExporterView {
    pub mode: Option<String>,
    pub runs: f64,
}

pub fn parse_exporter(text: &str) -> ExporterView {
    let mut v = ExporterView::default();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("suite_fault_mode{mode=\"") {
            if let Some((m, val)) = rest.split_once("\"}") {
                if val.trim() == "1" {
                    v.mode = Some(m.to_string());
                }
            }
        } else if let Some(n) = l.strip_prefix("suite_runs_total ") {
            v.runs = n.trim().parse().unwrap_or(0.0);
        }
    }
    v
}

async fn exporter_view(client: &reqwest::Client, ep: &Endpoints, path: &str) -> std::result::Result<ExporterView, String> {
    let url = format!("{}{path}", ep.host_exporter);
    let r = client.get(&url).send().await.map_err(|e| format!("{url}: {e}"))?;
    Ok(parse_exporter(&r.text().await.map_err(|e| format!("{url}: {e}"))?))
}

/// Wait until the exporter reports `mode` and a run finished after `runs_before`.
async fn await_mode(client: &reqwest::Client, ep: &Endpoints, path: &str, mode: &str, runs_before: f64, within: Duration) -> std::result::Result<(), String> {
    poll(Instant::now() + within, || async {
        let v = exporter_view(client, ep, path).await?;
        if v.mode.as_deref() == Some(mode) && v.runs > runs_before {
            Ok(())
        } else {
            Err(format!("the exporter reports mode {:?} after {} runs (want {mode} and a run after {runs_before})", v.mode, v.runs))
        }
    })
    .await
}

/// What this drill has changed, as written in the marker.
struct Changes<'a> {
    conn: &'a Conn,
    marker: Marker,
}

impl Changes<'_> {
    async fn save(&self) -> Result<()> {
        host::write_marker(&self.conn.ssh, &self.marker).await
    }
}

/// Undo everything `m` records: fault file gone, exporter running and normal, twins
/// gone and unloaded (confirmed), marker gone. Silences stay: they end by themselves
/// when the faults' aftermath can no longer page. Returns what was undone.
pub async fn undo(conn: &Conn, stack: &Stack, ep: &Endpoints, client: &reqwest::Client, m: &Marker, quiet: bool) -> Result<Vec<String>> {
    let mut done = vec![];
    let he = &stack.manifest.host_exporter;
    if m.fault.is_some() {
        host::remove(&conn.ssh, &[host::FAULT_FILE]).await?;
        done.push(format!("fault `{}` removed", m.fault.as_deref().unwrap_or("")));
    }
    if m.exporter_stopped || !exporter_answers(client, ep, &he.metrics_path).await {
        let exp = Exporter {
            ssh: &conn.ssh,
            stack: &stack.manifest.name,
            cfg: he,
            mode: choose_mode(conn.ssh.host().supervisor, conn.state.has_systemd, conn.state.linger),
        };
        ensure_running(&exp, client, ep, &he.metrics_path, quiet).await?;
        done.push("host exporter running".into());
    }
    if m.twins {
        host::remove(&conn.ssh, &[host::TWINS_FILE]).await?;
        host::reload_twins(client, ep, &[], RELOAD_WITHIN).await?;
        done.push("drill twins removed and unloaded".into());
        match host::resolve_twins(client, ep).await {
            Ok(0) => {}
            Ok(n) => done.push(format!("{n} twin alert(s) resolved in Alertmanager")),
            Err(e) => tracing::warn!("resolving the twins left in Alertmanager: {e}"),
        }
    }
    host::remove(&conn.ssh, &[host::MARKER_FILE]).await?;
    Ok(done)
}

/// A confirmed reload: Prometheus' rule manager loads the files at once.
pub const RELOAD_WITHIN: Duration = Duration::from_secs(15);

pub async fn run(conn: &Conn, stack: &Stack, plan: &Plan, opts: &Options, token: &str) -> Result<LiveReport> {
    let started = Instant::now();
    let quiet = opts.quiet;
    let mut results: Vec<AlertResult> = super::report::initial(plan, stack);
    if plan.live.is_empty() {
        return Ok(LiveReport::new(results, vec![], round2(started.elapsed().as_secs_f64()), None));
    }
    let mut intr = Box::pin(crate::signals::interrupted());
    if (&mut intr).now_or_never().is_some() {
        return Err(Error::Interrupted);
    }
    let _guard = crate::signals::guard();
    let d = &stack.manifest.drill;
    let he = &stack.manifest.host_exporter;
    let ep = conn.endpoints(&stack.manifest).await?;
    let http = crate::remote::http::Http::new();
    let client = http.client();
    let needs_twins = plan.live.iter().any(|l| l.twin.is_some());
    let needs_faults = plan.live.iter().any(|l| l.fault != Fault::Stop);
    if needs_twins && !host::prometheus_loads_twins(client, &ep).await.map_err(|e| Error::remote(Kind::DrillPrecondition, e, "check that Prometheus runs"))? {
        return Err(Error::config(
            Kind::DrillRefused,
            format!(
                "the Prometheus running on {} does not load `{}`: the drill twins would not be evaluated",
                conn.ssh.host().name,
                crate::stack::paths::DRILL_TWINS_GLOB
            ),
            format!(
                "add `- {}` under rule_files in prometheus.yml and deploy (stackproof lint notes it as drill.twins_glob_missing)",
                crate::stack::paths::DRILL_TWINS_GLOB
            ),
        ));
    }
    if needs_twins && !opts.real {
        // Twins page nobody only if the running Alertmanager sends them to the drill
        // receiver alone (a host may run another config than this stack's).
        let routes =
            host::running_routes(client, &ep, &plan.twins()).await.map_err(|e| Error::remote(Kind::DrillPrecondition, e, "check that Alertmanager runs"))?;
        if let Some((t, to)) = routes.iter().find(|(_, to)| to.as_slice() != [d.receiver.clone()]) {
            return Err(Error::config(
                Kind::DrillRefused,
                format!(
                    "the Alertmanager running on {} sends the drill twin `{t}` to {to:?}, not only to `{}`: it would page people",
                    conn.ssh.host().name,
                    d.receiver
                ),
                "deploy this stack (its first route sends drill=\"true\" to the drill receiver), or run with --real to page on purpose",
            ));
        }
    }
    if needs_faults {
        let v = exporter_view(client, &ep, &he.metrics_path)
            .await
            .map_err(|e| Error::remote(Kind::DrillPrecondition, e, "run `stackproof deploy` to start the host exporter"))?;
        if v.mode.as_deref() != Some("none") {
            return Err(Error::config(
                Kind::DrillPrecondition,
                format!("the host exporter does not take faults (its /metrics has no suite_fault_mode{{mode=\"none\"}}; it says {:?})", v.mode),
                "deploy a stack whose host exporter runs with --fault-file=../../run/host-exporter.fault (the default stack does), or wait for an earlier fault to expire",
            ));
        }
    }
    let hook = Webhook::start().await.map_err(|e| Error::io("127.0.0.1:0 (drill webhook)", e))?;
    // As the outage drill (drill::auth): Alertmanager's webhook count before anything can
    // reach the webhook, and this drill's token in the Alertmanager container before the
    // tunnel opens, so that only Alertmanager's deliveries count.
    let token_file = crate::drill::bounds(stack, false).map_err(crate::drill::refused)?.token_file;
    let am_before = auth::am_metrics(client, &ep.alertmanager).await;
    auth::install_token(conn, stack, &token_file, hook.token()).await?;
    // A stackproof killed moments ago still holds the drill port through its SSH master
    // until that master's ControlPersist ends: ask again (the one poll loop) until then.
    let within = Instant::now() + Duration::from_secs(crate::remote::ssh::CONTROL_PERSIST_SECS as u64 + 2);
    let first = conn.ssh.reverse_tunnel(d.port, hook.port).await;
    if let Err(e) = first {
        if !quiet {
            eprintln!(
                "  … port {} on the host is taken ({e}); an SSH master of a killed run holds it for up to {} s: asking again",
                d.port,
                crate::remote::ssh::CONTROL_PERSIST_SECS
            );
        }
        let again = poll(within, || async { conn.ssh.reverse_tunnel(d.port, hook.port).await.map_err(|e| e.to_string()) });
        let r = tokio::select! { r = again => r, _ = &mut intr => return Err(Error::Interrupted) };
        r.map_err(|why| {
            Error::remote(
                Kind::ForwardFailed,
                format!("cannot listen on 127.0.0.1:{} on the host for the drill receiver: {why}", d.port),
                "is the port taken on the host? change `drill.port` in the manifest",
            )
        })?;
    }
    if let Err(e) = auth::check_tunnel(&conn.ssh, d.port).await {
        conn.ssh.close_reverse_tunnel(d.port, hook.port).await;
        return Err(e);
    }
    let host_t0 = host_time(client, &ep).await;
    let exp = Exporter {
        ssh: &conn.ssh,
        stack: &stack.manifest.name,
        cfg: he,
        mode: choose_mode(conn.ssh.host().supervisor, conn.state.has_systemd, conn.state.linger),
    };
    let mut ch =
        Changes { conn, marker: Marker { token: token.into(), pid: std::process::id(), started: chrono::Utc::now().to_rfc3339(), ..Default::default() } };
    let mut silences: Vec<Silence> = vec![];

    let outcome: Result<bool> = async {
        if needs_twins {
            ch.marker.twins = true;
            ch.save().await?;
            host::write_twins(&conn.ssh, &super::twins::rule_file(&plan.twins(), plan.twin_eval)).await?;
            let names: Vec<String> = plan.twins().into_iter().map(|t| t.alert).collect();
            host::reload_twins(client, &ep, &names, RELOAD_WITHIN).await?;
            if !quiet {
                eprintln!(
                    "  ■ {} drill twins loaded (window cap {} s, evaluated every {} s)",
                    names.len(),
                    plan.window.as_secs(),
                    plan.twin_eval.as_secs_f64()
                );
            }
        }
        for (fault, hush) in &plan.faults {
            let lives: Vec<&Live> = plan.live.iter().filter(|l| l.fault == *fault).collect();
            if !quiet {
                eprintln!("  {} ({}):", fault.how(), lives.iter().map(|l| l.alert.as_str()).collect::<Vec<_>>().join(", "));
            }
            // Precondition: the exporter answers, normal, and no watched alert is active.
            let pre = poll(Instant::now() + plan.normal_bound + lives.iter().map(|l| l.resolve_bound).max().unwrap_or_default(), || async {
                let s = snapshot(client, &ep, &d.job, false).await;
                if !s.errors.is_empty() {
                    return Err(s.errors.join("; "));
                }
                if !exporter_answers(client, &ep, &he.metrics_path).await {
                    return Err("the host exporter does not answer".into());
                }
                for l in &lives {
                    if s.prom_state(&l.watch).is_some() || s.am_state(&l.watch).is_some() {
                        return Err(format!("`{}` is still active", l.watch));
                    }
                }
                Ok(())
            });
            let pre = tokio::select! { r = pre => r, _ = &mut intr => return Ok(true) };
            if let Err(why) = pre {
                for l in &lives {
                    fail(&mut results, &l.alert, &format!("could not start: {why}"));
                }
                continue;
            }
            // Silence the real alerts this fault drives, before causing it.
            let hold = plan.hold(*fault);
            for h in hush {
                let until = chrono::Utc::now() + chrono::Duration::from_std(hold + h.after).expect("small");
                let s = host::silence(client, &ep, &h.alert, &[("job".into(), d.job.clone())], until).await?;
                if !quiet {
                    eprintln!("    silenced {} (job {}) until {}", h.alert, d.job, until.format("%H:%M:%S"));
                }
                silences.push(s.clone());
                ch.marker.silences.push(s);
                ch.save().await?;
            }
            let runs_before = exporter_view(client, &ep, &he.metrics_path).await.map(|v| v.runs).unwrap_or(0.0);
            let metrics_before = if opts.real { auth::am_metrics(client, &ep.alertmanager).await } else { None };
            // Cause it.
            let written = Instant::now();
            if *fault == Fault::Stop {
                ch.marker.exporter_stopped = true;
                ch.save().await?;
                exp.stop().await?;
            } else {
                ch.marker.fault = Some(fault.as_str().into());
                ch.save().await?;
                let until = chrono::Utc::now().timestamp() + hold.as_secs() as i64 + 1;
                host::write_run_file(&conn.ssh, host::FAULT_FILE, &host::fault_file(fault.as_str(), until, SLOW_DELAY)).await?;
                let bound = plan.fault_bound[fault];
                let r =
                    tokio::select! { r = await_mode(client, &ep, &he.metrics_path, fault.as_str(), runs_before, bound) => r, _ = &mut intr => return Ok(true) };
                if let Err(why) = r {
                    for l in &lives {
                        fail(&mut results, &l.alert, &format!("the fault did not take within {:.1} s: {why}", bound.as_secs_f64()));
                    }
                }
            }
            let t0 = Instant::now();
            if !quiet {
                eprintln!("    ■ {:>6.2} s  fault in force", t0.duration_since(written).as_secs_f64());
            }
            let mut goals: Vec<Goal> = lives
                .iter()
                .flat_map(|l| {
                    [Goal::new(format!("{} firing", l.watch), "fault", l.fire_bound), Goal::new(format!("{} delivered", l.watch), "fault", l.deliver_bound)]
                })
                .collect();
            // `--real`: every alert active in Alertmanager since the fault began (the
            // per-integration counter of 0.25 cannot tell their pages apart).
            let mut active_seen = std::collections::BTreeSet::<String>::new();
            let interrupted = tokio::select! {
                _ = watch(&mut goals, t0, quiet, || snapshot(client, &ep, &d.job, opts.real), |s, g, start, quiet| {
                    let got = hook.received();
                    if opts.real {
                        active_seen.extend(s.am.iter().filter(|(_, st)| st == "active").map(|(n, _)| n.clone()));
                    }
                    for (i, l) in lives.iter().enumerate() {
                        if s.prom_state(&l.watch) == Some("firing") { hit(&mut g[2 * i], start, quiet) }
                        let seen = if opts.real && l.twin.is_some() {
                            let by_receiver = s.am_metrics.as_deref().is_some_and(crate::drill::observe::per_receiver);
                            let others: std::collections::BTreeSet<String> = active_seen.iter().filter(|n| **n != l.watch).cloned().collect();
                            match real_delivered(s, &l.watch, metrics_before.as_deref()) {
                                Some(at) => match crate::drill::unattributable(by_receiver, &others, &l.watch) {
                                    Some(why) if g[2 * i + 1].open() => { g[2 * i + 1].failed = Some(why); None }
                                    Some(_) => None,
                                    None => Some(at),
                                },
                                None => None,
                            }
                        } else {
                            webhook::first(&got, start, &l.watch, "firing", host_t0).map(|r| r.at)
                        };
                        if let Some(at) = seen {
                            if g[2 * i + 1].open() { g[2 * i + 1].seen = Some(at.max(start)); hit_print(&g[2 * i + 1], start, quiet); }
                        }
                    }
                }) => false,
                _ = &mut intr => true,
            };
            // End it, whatever happened.
            let runs_mid = exporter_view(client, &ep, &he.metrics_path).await.map(|v| v.runs).unwrap_or(0.0);
            let ended = Instant::now();
            if *fault == Fault::Stop {
                ensure_running(&exp, client, &ep, &he.metrics_path, quiet).await?;
                ch.marker.exporter_stopped = false;
            } else {
                host::remove(&conn.ssh, &[host::FAULT_FILE]).await?;
                ch.marker.fault = None;
                if let Err(why) = await_mode(client, &ep, &he.metrics_path, "none", runs_mid, plan.normal_bound).await {
                    tracing::warn!("the exporter did not report a normal run within {:.1} s: {why}", plan.normal_bound.as_secs_f64());
                }
            }
            ch.save().await?;
            let t1 = Instant::now();
            if !quiet {
                eprintln!("    ■ {:>6.2} s  fault ended", t1.duration_since(ended).as_secs_f64());
            }
            if interrupted {
                return Ok(true);
            }
            let mut rec: Vec<Goal> = lives.iter().map(|l| Goal::new(format!("{} resolved", l.watch), "recovery", l.resolve_bound)).collect();
            let fired_at: BTreeMap<String, Instant> =
                lives.iter().enumerate().filter_map(|(i, l)| goals[2 * i + 1].seen.map(|t| (l.watch.clone(), t))).collect();
            let interrupted = tokio::select! {
                _ = watch(&mut rec, t1, quiet, || snapshot(client, &ep, &d.job, false), |s, g, start, quiet| {
                    let got = hook.received();
                    for (i, l) in lives.iter().enumerate() {
                        let gone = s.errors.is_empty() && s.prom_state(&l.watch).is_none() && s.am_state(&l.watch).is_none();
                        let notified = if opts.real && l.twin.is_some() {
                            gone.then(Instant::now)
                        } else {
                            fired_at.get(&l.watch).and_then(|since| webhook::first(&got, *since, &l.watch, "resolved", host_t0)).map(|r| r.at)
                        };
                        if let (true, Some(at)) = (gone, notified) {
                            if g[i].open() { g[i].seen = Some(at.max(start)); hit_print(&g[i], start, quiet); }
                        }
                    }
                }) => false,
                _ = &mut intr => true,
            };
            for (i, l) in lives.iter().enumerate() {
                super::report::record(&mut results, l, &goals[2 * i], &goals[2 * i + 1], &rec[i], t0, t1);
            }
            if interrupted {
                return Ok(true);
            }
        }
        Ok(false)
    }
    .await;

    // Leave the host as found, whatever happened above.
    let undone = undo(conn, stack, &ep, client, &ch.marker, quiet).await;
    conn.ssh.close_reverse_tunnel(d.port, hook.port).await;
    let mut error = None;
    if let Err(e) = &undone {
        error = Some(format!("cleaning up: {e} (the next drill, verify or deploy retries)"));
    }
    // Every delivery the webhook took must be one Alertmanager counted.
    let after = auth::am_metrics(client, &ep.alertmanager).await;
    if let Some(why) = auth::shortfall(am_before.as_deref(), after.as_deref(), &d.receiver, hook.received().len()) {
        error = Some(error.map(|e| format!("{e}; {why}")).unwrap_or(why));
    }
    if let Some(note) = auth::refused_note(&hook) {
        if !quiet {
            eprintln!("  ! {note}");
        }
    }
    drop(hook);
    let interrupted = match outcome {
        Ok(i) => i,
        Err(e) => {
            error = Some(match error {
                Some(c) => format!("{e}; {c}"),
                None => e.to_string(),
            });
            false
        }
    };
    let report = LiveReport::new(results, silences, round2(started.elapsed().as_secs_f64()), error);
    let _ = crate::remote::layout::journal(
        &conn.ssh,
        &serde_json::json!({"event": "drill-live", "at": chrono::Utc::now().to_rfc3339(), "release": conn.state.current, "ok": report.ok, "interrupted": interrupted, "drill": report.to_json()}),
    )
    .await;
    if interrupted {
        return Err(Error::Interrupted);
    }
    Ok(report)
}

fn fail(results: &mut [AlertResult], alert: &str, why: &str) {
    if let Some(r) = results.iter_mut().find(|r| r.alert == alert) {
        r.reason = why.to_string();
    }
}

/// `--real`: the twin is active in Alertmanager and Alertmanager counted a notification
/// to a receiver other than stackproof's since the fault began.
fn real_delivered(s: &Snapshot, watch: &str, before: Option<&str>) -> Option<Instant> {
    let (now, before) = (s.am_metrics.as_deref()?, before?);
    let sum = |t: &str| -> f64 {
        t.lines()
            .filter(|l| l.starts_with("alertmanager_notifications_total{") && !l.contains("receiver_name=\"stackproof-drill\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (s.am_state(watch) == Some("active") && sum(now) > sum(before)).then(Instant::now)
}

/// The poll interval, re-exported for the report's grace.
pub const GRACE: Duration = POLL_INTERVAL;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exporter_view_reads_mode_and_runs() {
        let t = "suite_runs_total 12\n# TYPE suite_fault_mode gauge\nsuite_fault_mode{mode=\"slow\"} 1\n";
        assert_eq!(parse_exporter(t), ExporterView { mode: Some("slow".into()), runs: 12.0 });
        assert_eq!(parse_exporter("suite_runs_total 0\n").mode, None, "an exporter without --fault-file");
    }
}
