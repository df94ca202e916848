//! `deploy`, `plan`, `unlock`: lint → plan → sync into a release → swap → reconcile
//! containers → host exporter → checks, under a lock on the host.

use crate::engine::spec::{desired, hex, ContainerSpec};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::exporter::{choose_mode, Exporter};
use crate::hosts::{Host, Secret};
use crate::output::{Format, Progress};
use crate::plan::{compute, ContainerAction, ExporterAction, Plan, PlanInput};
use crate::remote::layout::{self, LockAttempt, LockInfo, ReleaseInfo, RemoteState};
use crate::remote::Ssh;
use crate::stack::Stack;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

/// Releases kept on the host besides the current and the last verified one.
pub const KEEP_RELEASES: usize = 5;
/// Pause between two polls of a condition with a deadline.
pub const POLL_INTERVAL: Duration = Duration::from_millis(150);

/// The local files of a release: path → (sha256, content, mode).
pub struct LocalFiles {
    pub files: BTreeMap<String, (String, Vec<u8>, u32)>,
}

impl LocalFiles {
    pub fn read(stack: &Stack) -> Result<LocalFiles> {
        let mut files = BTreeMap::new();
        for rel in stack.files()? {
            let p = stack.dir.join(&rel);
            let data = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            let exec = std::fs::metadata(&p).map(|m| m.permissions().mode() & 0o111 != 0).unwrap_or(false);
            let rel = rel.to_string_lossy().to_string();
            if rel.contains('\n') {
                return Err(Error::config("stack_invalid", format!("file name with a newline in the stack: {rel:?}"), "rename the file"));
            }
            // Config files are read by the containers' own users (65534, 472): 0644.
            // Secrets never land here: they are copied into containers (0400, owned by
            // the container user) through the Docker API.
            let mode = if exec { 0o755 } else { 0o644 };
            files.insert(rel, (hex(&Sha256::digest(&data)), data, mode));
        }
        Ok(LocalFiles { files })
    }

    pub fn hashes(&self) -> BTreeMap<String, String> {
        self.files.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect()
    }

    /// `<utc-timestamp>-<short hash of the tree>`.
    pub fn release_id(&self) -> String {
        let mut h = Sha256::new();
        for (p, (sum, _, mode)) in &self.files {
            h.update(format!("{p}\0{sum}\0{mode:o}\n"));
        }
        format!("{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), &hex(&h.finalize())[..8])
    }
}

/// An open connection to a host: SSH, Docker through it, and the stack.
pub struct Conn {
    pub ssh: Ssh,
    pub engine: Engine,
    pub state: RemoteState,
}

impl Conn {
    pub async fn open(host: &Host) -> Result<Conn> {
        let ssh = Ssh::connect(host).await?;
        let sock = ssh.forward_unix(&host.docker_socket, "docker.sock").await?;
        let engine = Engine::connect(&sock, &host.name).await?;
        let state = layout::state(&ssh).await?;
        Ok(Conn { ssh, engine, state })
    }

    pub async fn refresh(&mut self) -> Result<()> {
        self.state = layout::state(&self.ssh).await?;
        Ok(())
    }
}

/// Read the secrets every service needs from the host entry (before connecting).
pub fn read_secrets(stack: &Stack, host: &Host) -> Result<BTreeMap<String, Secret>> {
    let mut out = BTreeMap::new();
    for name in &stack.manifest.secrets {
        out.insert(name.clone(), host.secret(name)?);
    }
    Ok(out)
}

fn secret_values(spec: &ContainerSpec, secrets: &BTreeMap<String, Secret>) -> Vec<(String, Vec<u8>)> {
    spec.secrets.iter().filter_map(|(name, _)| secrets.get(name).map(|s| (name.clone(), s.expose().as_bytes().to_vec()))).collect()
}

/// Compute the plan against the live host.
pub async fn make_plan(conn: &Conn, stack: &Stack, local: &LocalFiles, secrets: &BTreeMap<String, Secret>) -> Result<(Plan, Vec<ContainerSpec>)> {
    let host = conn.ssh.host();
    let specs = desired(&stack.manifest, &host.images, &host.remote_dir);
    let observed = conn.engine.observed(&stack.manifest.name).await?;
    let mut secrets_differ = BTreeSet::new();
    for spec in &specs {
        if let Some(o) = observed.iter().find(|o| o.service == spec.service && o.state == "running") {
            for (name, dest) in &spec.secrets {
                if let Some(v) = secrets.get(name) {
                    if !conn.engine.secret_matches(&o.id, dest, v.expose().as_bytes()).await {
                        secrets_differ.insert(spec.service.clone());
                    }
                }
            }
        }
    }
    let hashes = local.hashes();
    let plan = compute(&PlanInput {
        manifest: &stack.manifest,
        release: local.release_id(),
        local: &hashes,
        remote: &conn.state,
        observed: &observed,
        desired: &specs,
        secrets_differ: &secrets_differ,
    });
    Ok((plan, specs))
}

/// Which remote ports are listening (from /proc/net/tcp*), to refuse a port taken by
/// something that is not ours before anything is changed.
const LISTEN_SCRIPT: &str = r#"cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '$4 == "0A" { print $2 }'"#;

pub async fn listening_ports(ssh: &Ssh) -> Result<BTreeSet<u16>> {
    let out = ssh.script::<&str>(LISTEN_SCRIPT, &[]).await?;
    Ok(out.stdout.lines().filter_map(|l| l.rsplit(':').next()).filter_map(|p| u16::from_str_radix(p.trim(), 16).ok()).collect())
}

/// Poll `f` until it returns `Ok(Some(v))` or the deadline passes (then the last error).
pub async fn poll_until<T, F, Fut>(deadline: Instant, mut f: F) -> std::result::Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, String>>,
{
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().expect("http client")
}

/// The port a service listens on (its first manifest port).
pub fn service_port(stack: &Stack, service: &str) -> Option<u16> {
    stack.manifest.services.get(service).and_then(|s| s.ports.first()).map(|p| p.port)
}

/// Wait for a just-started container: ready on its health path through a tunnel, or
/// fail naming the service with its last log lines when it exits or restarts.
async fn wait_ready(conn: &Conn, stack: &Stack, id: &str, service: &str, deadline: Instant) -> Result<()> {
    let svc = &stack.manifest.services[service];
    let url = match (svc.health.as_ref(), service_port(stack, service)) {
        (Some(path), Some(port)) => Some(format!("http://127.0.0.1:{}{}", conn.ssh.tunnel(port).await?, path)),
        _ => None,
    };
    let client = http();
    let r = poll_until(deadline, || async {
        let (state, restarts, code) = conn.engine.inspect_state(id).await.map_err(|e| e.to_string())?;
        if state == "exited" || state == "dead" || restarts > 0 {
            return Ok(Err(format!("{state} (exit code {}, {restarts} restarts)", code.unwrap_or(-1))));
        }
        if state != "running" {
            return Err(format!("container is {state}"));
        }
        match &url {
            None => Ok(Ok(())),
            Some(u) => match client.get(u).send().await {
                Ok(r) if r.status().is_success() => Ok(Ok(())),
                Ok(r) => Err(format!("{u} answered {}", r.status())),
                Err(e) => Err(format!("{u}: {e}")),
            },
        }
    })
    .await;
    let fail = match r {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(why)) => why,
        Err(why) => format!("not ready before the deadline: {why}"),
    };
    let logs = conn.engine.last_logs(id, 15).await;
    Err(Error::remote(
        "service_failed",
        format!("{service} did not come up: {fail}\n  last log lines of {service}:\n{}", indent(&logs)),
        format!("fix {service}'s configuration in the stack; the previous release's files are kept under releases/ for `stackproof rollback`"),
    ))
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    | {l}")).collect::<Vec<_>>().join("\n")
}

/// Ask a service to reload and confirm the reload took (a reload can fail while the old
/// configuration keeps running).
async fn reload(conn: &Conn, stack: &Stack, service: &str, deadline: Instant) -> Result<()> {
    let svc = &stack.manifest.services[service];
    let (Some(path), Some(port)) = (svc.reload.as_ref(), service_port(stack, service)) else { return Ok(()) };
    let local = conn.ssh.tunnel(port).await?;
    let client = http();
    let url = format!("http://127.0.0.1:{local}{path}");
    let resp =
        client.post(&url).send().await.map_err(|e| Error::remote("reload_failed", format!("reloading {service}: {e}"), "check that the service runs"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(Error::remote(
            "reload_failed",
            format!("{service} rejected its new configuration ({status}): {}", body.trim()),
            format!("the old configuration keeps running; fix the files under {} (run `stackproof lint --with-promtool`)", svc.files.join(", ")),
        ));
    }
    let metric = match service {
        "prometheus" => "prometheus_config_last_reload_successful",
        "alertmanager" => "alertmanager_config_last_reload_successful",
        _ => return Ok(()),
    };
    let metrics_url = format!("http://127.0.0.1:{local}/metrics");
    poll_until(deadline, || async {
        let text = client.get(&metrics_url).send().await.map_err(|e| e.to_string())?.text().await.map_err(|e| e.to_string())?;
        let v = text.lines().find(|l| l.starts_with(metric)).and_then(|l| l.split_whitespace().last()).unwrap_or("");
        if v == "1" {
            Ok(())
        } else {
            Err(format!("{metric} = {v}"))
        }
    })
    .await
    .map_err(|e| {
        Error::remote("reload_failed", format!("{service}'s reload did not take: {e}"), "the old configuration keeps running; check the service's log")
    })
}

/// Error kinds raised before anything on the host was changed (ports, images, the
/// remote dir, writing the new release): the deploy could not run (exit 2), and there is
/// nothing to roll back.
pub const PREFLIGHT_KINDS: [&str; 4] = ["port_in_use", "image_pull", "remote_dir", "sync_failed"];

/// Checks and pulls that change nothing the stack runs on, done before the release is
/// swapped: a port taken by something else, a missing image that cannot be pulled.
async fn preflight(conn: &Conn, plan: &Plan, specs: &[ContainerSpec], quiet: bool) -> Result<()> {
    let needs_new: Vec<&ContainerSpec> = specs
        .iter()
        .filter(|s| plan.containers.iter().any(|c| c.service() == s.service && matches!(c, ContainerAction::Create { .. } | ContainerAction::Recreate { .. })))
        .collect();
    // Ports: refuse to start a service whose port something else holds.
    if needs_new.iter().any(|s| plan.containers.iter().any(|c| c.service() == s.service && matches!(c, ContainerAction::Create { .. }))) {
        let busy = listening_ports(&conn.ssh).await?;
        for s in &needs_new {
            let creating = plan.containers.iter().any(|c| c.service() == s.service && matches!(c, ContainerAction::Create { .. }));
            if let Some(p) = s.ports.iter().find(|p| creating && busy.contains(p)) {
                return Err(Error::remote(
                    "port_in_use",
                    format!("port {p} on {} is already in use by a process that is not part of this stack ({})", conn.ssh.host().name, s.service),
                    format!("stop that process, or change {}'s port in the manifest (its listen flag and `ports:`)", s.service),
                ));
            }
        }
    }
    // Images before anything is swapped or stopped, so a missing image changes nothing.
    for s in &needs_new {
        let p = Progress::step(format!("image {}", s.image), quiet);
        match conn.engine.ensure_image(&s.image, &p).await {
            Ok(true) => p.finish(format!("pulled {}", s.image)),
            Ok(false) => p.finish(format!("image {} present", s.image)),
            Err(e) => {
                p.fail(e.to_string());
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Grafana polls its dashboard files itself (`updateIntervalSeconds`), so a changed
/// dashboard would show only after that interval, and a verification right after the
/// deploy would compare against the old one. When files under Grafana's `watched` paths
/// changed and Grafana kept running, ask it to re-read them now
/// (`POST /api/admin/provisioning/dashboards/reload`). Best effort: on failure the
/// provider still picks the files up on its own, and verification polls.
async fn reload_dashboards(conn: &Conn, stack: &Stack, plan: &Plan, secrets: &BTreeMap<String, Secret>, quiet: bool) {
    let Some(svc) = stack.manifest.services.get("grafana") else { return };
    let kept = plan.containers.iter().any(|c| matches!(c, ContainerAction::Keep { service } if service == "grafana"));
    let touched = plan.files_added.iter().chain(&plan.files_changed).chain(&plan.files_removed).any(|f| svc.watched.iter().any(|w| f.starts_with(w.as_str())));
    let (Some(port), Some(password)) = (service_port(stack, "grafana"), secrets.get("grafana_admin_password")) else { return };
    if !kept || !touched {
        return;
    }
    let r = async {
        let local = conn.ssh.tunnel(port).await.map_err(|e| e.to_string())?;
        let resp = http()
            .post(format!("http://127.0.0.1:{local}/api/admin/provisioning/dashboards/reload"))
            .basic_auth(crate::live::grafana_admin(stack), Some(password.expose()))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", resp.status()))
        }
    }
    .await;
    match r {
        Ok(()) if !quiet => eprintln!("  grafana: dashboards reloaded"),
        Ok(()) => {}
        Err(e) => tracing::warn!("asking Grafana to reload its dashboards failed ({e}); its provider picks them up within updateIntervalSeconds"),
    }
}

/// Carry out the container part of a plan (after `preflight`).
async fn apply_containers(
    conn: &Conn,
    stack: &Stack,
    plan: &Plan,
    specs: &[ContainerSpec],
    secrets: &BTreeMap<String, Secret>,
    progress: &Progress,
    deadline: Instant,
) -> Result<()> {
    let observed = conn.engine.observed(&stack.manifest.name).await?;
    for action in &plan.containers {
        match action {
            ContainerAction::Create { service } | ContainerAction::Recreate { service, .. } => {
                let spec = specs.iter().find(|s| &s.service == service).expect("spec for planned service");
                progress.set_message(format!("{service}: starting"));
                for o in observed.iter().filter(|o| &o.service == service) {
                    conn.engine.remove(&o.id).await?;
                }
                // A container name left by a crashed run (not labelled as ours) would block creation.
                let id = conn.engine.create_and_start(&stack.manifest.name, spec, &plan.release, &secret_values(spec, secrets)).await?;
                wait_ready(conn, stack, &id, service, deadline).await?;
                progress.println(format!("  {service}: {}", if matches!(action, ContainerAction::Create { .. }) { "created" } else { "recreated" }));
            }
            ContainerAction::Reload { service, .. } => {
                progress.set_message(format!("{service}: reloading"));
                reload(conn, stack, service, deadline).await?;
                progress.println(format!("  {service}: reloaded"));
            }
            ContainerAction::Remove { name, .. } => {
                if let Some(o) = observed.iter().find(|o| &o.name == name) {
                    conn.engine.remove(&o.id).await?;
                    progress.println(format!("  {name}: removed"));
                }
            }
            ContainerAction::Keep { .. } => {}
        }
    }
    Ok(())
}

/// Wait until the host exporter answers with exposition text.
pub async fn wait_exporter(conn: &Conn, stack: &Stack, deadline: Instant) -> std::result::Result<(), String> {
    let he = &stack.manifest.host_exporter;
    let local = conn.ssh.tunnel(he.port).await.map_err(|e| e.to_string())?;
    let url = format!("http://127.0.0.1:{local}{}", he.metrics_path);
    let client = http();
    poll_until(deadline, || async {
        let r = client.get(&url).send().await.map_err(|e| format!("{url}: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("{url} answered {}", r.status()));
        }
        let text = r.text().await.map_err(|e| e.to_string())?;
        if text.lines().any(|l| l.starts_with("# TYPE ")) {
            Ok(())
        } else {
            Err("no exposition text".into())
        }
    })
    .await
}

pub struct DeployOptions {
    pub lock_wait: Option<Duration>,
    pub skip_lint: bool,
    pub format: Format,
    /// `Some(true)` forces the drill, `Some(false)` skips it, `None` decides from the plan.
    pub drill: Option<bool>,
    pub rollback: bool,
}

/// The deploy report (`--format json`).
#[derive(Debug, serde::Serialize)]
pub struct DeployReport {
    pub ok: bool,
    pub release: String,
    pub plan: serde_json::Value,
    pub checks: Vec<serde_json::Value>,
    pub durations: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill: Option<serde_json::Value>,
    /// Set when verification failed and the host went back to its last verified release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<serde_json::Value>,
    /// The verification of the deployed release, for the text and HTML reports.
    #[serde(skip)]
    pub verify: Option<crate::verify::Report>,
}

pub fn who() -> String {
    let uid = || {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1)).map(|u| format!("uid{u}")))
            .unwrap_or_else(|| "unknown".into())
    };
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| uid());
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

/// Take the deploy lock, waiting up to `wait` (polling) when another deploy holds it.
pub async fn lock(ssh: &Ssh, command: &str, wait: Option<Duration>) -> Result<LockInfo> {
    let info = LockInfo {
        token: format!("{:x}", Sha256::digest(format!("{}{:?}{}", std::process::id(), Instant::now(), who())))[..16].to_string(),
        who: who(),
        since: chrono::Utc::now().to_rfc3339(),
        command: command.to_string(),
        pid: std::process::id(),
    };
    let deadline = Instant::now() + wait.unwrap_or_default();
    loop {
        match layout::try_lock(ssh, &info).await? {
            LockAttempt::Acquired => return Ok(info),
            LockAttempt::Held(held, raw) if Instant::now() >= deadline => {
                let desc = held.map(|h| format!("{} since {} ({}, pid {})", h.who, h.since, h.command, h.pid)).unwrap_or(raw);
                return Err(Error::LockHeld {
                    message: format!("another deploy holds the lock on {}: {desc}", ssh.host().name),
                    hint: format!("wait for it (or pass --lock-wait 5m); if that deploy crashed, run `stackproof unlock --host {}`", ssh.host().name),
                });
            }
            LockAttempt::Held(..) => tokio::time::sleep(Duration::from_millis(500)).await, // poll interval while waiting
        }
    }
}

/// Release our lock (by token). When the connection died mid-command (a cut network,
/// a killed ssh), open a new one for it: otherwise the next deploy would find a stale
/// lock and need `stackproof unlock`.
pub async fn release_lock(ssh: &Ssh, lock: &LockInfo) {
    let Err(e) = layout::unlock(ssh, Some(&lock.token)).await else { return };
    match Ssh::connect(ssh.host()).await {
        Ok(fresh) => {
            if let Err(e2) = layout::unlock(&fresh, Some(&lock.token)).await {
                tracing::warn!("releasing the lock failed: {e}; again over a new connection: {e2}");
            }
            fresh.close().await;
        }
        Err(e2) => tracing::warn!("releasing the lock failed: {e}; reconnecting failed: {e2}; run `stackproof unlock --host {}`", ssh.host().name),
    }
}

/// What a run of the pipeline puts in place: a new release from local files, or a
/// release that already exists on the host (rollback).
pub enum Target<'a> {
    New(&'a LocalFiles),
    Existing(&'a str, &'a LocalFiles),
}

/// The outcome of one pass of the pipeline under the lock.
pub struct Outcome {
    pub plan: Plan,
    pub report: crate::verify::Report,
}

/// `stackproof deploy`: lint (by the caller) → plan → release → containers → exporter →
/// verify (and the drill) → on failure, back to the last verified release.
pub async fn deploy(stack: &Stack, host: &Host, opts: &DeployOptions) -> Result<(DeployReport, i32)> {
    let quiet = opts.format == Format::Json;
    let t0 = Instant::now();
    let mut durations = BTreeMap::new();
    let secrets = read_secrets(stack, host)?;
    let local = LocalFiles::read(stack)?;

    let step = Progress::step(format!("connecting to {}", host.display_target()), quiet);
    let mut conn = Conn::open(host).await.inspect_err(|e| step.fail(e.to_string()))?;
    step.finish(format!("connected to {}", host.name));
    if let Err(e) = ensure_writable(&conn) {
        conn.ssh.close().await;
        return Err(e);
    }
    let lock = lock(&conn.ssh, "deploy", opts.lock_wait).await?;
    // Release the lock on every path: success, error, and Ctrl-C / SIGTERM.
    let result = crate::signals::until_interrupted(deploy_and_check(&mut conn, stack, &local, &secrets, opts, &mut durations)).await;
    release_lock(&conn.ssh, &lock).await;
    durations.insert("total_ms".into(), t0.elapsed().as_millis() as u64);
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = layout::journal(&conn.ssh, &serde_json::json!({"event": "deploy", "at": chrono::Utc::now().to_rfc3339(), "by": who(), "ok": false, "error": e.to_string(), "kind": e.kind()})).await;
            conn.ssh.close().await;
            return Err(e);
        }
    };
    report.durations = durations;
    let _ = layout::journal(
        &conn.ssh,
        &serde_json::json!({"event": "deploy", "at": chrono::Utc::now().to_rfc3339(), "by": who(), "release": report.release, "ok": report.ok, "plan": report.plan, "durations": report.durations, "rollback": report.rollback}),
    )
    .await;
    conn.ssh.close().await;
    let code = if report.ok { 0 } else { 1 };
    Ok((report, code))
}

async fn deploy_and_check(
    conn: &mut Conn,
    stack: &Stack,
    local: &LocalFiles,
    secrets: &BTreeMap<String, Secret>,
    opts: &DeployOptions,
    durations: &mut BTreeMap<String, u64>,
) -> Result<DeployReport> {
    let quiet = opts.format == Format::Json;
    // An impossible drill (a `for` longer than drill.timeout) is refused before the host
    // is touched.
    if opts.drill != Some(false) {
        crate::drill::bounds::bounds(stack, false).map_err(|m| {
            let e = crate::drill::refused(m);
            Error::config("drill_refused", e.to_string(), format!("{} (or deploy with --no-drill)", e.hint()))
        })?;
    }
    let previous_verified = conn.state.verified.clone();
    let applied = apply(conn, stack, Target::New(local), secrets, quiet, durations).await;
    // A failure while applying (a container that exits, an exporter that does not
    // answer) is a failed verification too: the host goes back to what last worked.
    let (plan, mut report, apply_error) = match applied {
        Ok(o) => (Some(o.plan), Some(o.report), None),
        Err(e @ Error::Remote { kind, .. }) if !PREFLIGHT_KINDS.contains(&kind) => (None, None, Some(e)),
        Err(e) => return Err(e),
    };
    // The outage drill, when the alert path changed, when no drill has passed on this
    // host yet, or when asked; only on a release whose checks passed.
    if let (Some(p), Some(r)) = (&plan, report.as_mut()) {
        let wanted = opts.drill.unwrap_or(p.alert_path_touched || conn.state.drill_passed.is_none());
        if wanted && r.ok {
            let t = Instant::now();
            let d = crate::drill::run(conn, stack, &crate::drill::DrillOptions { real: false, quiet }).await?;
            durations.insert("drill_ms".into(), t.elapsed().as_millis() as u64);
            if !quiet {
                eprint!("{}", crate::drill::render_text(&d));
            }
            r.ok &= d.ok;
            r.checks.push(d.check());
            r.drill = Some(d.to_json());
            if d.ok {
                layout::mark_drill_passed(&conn.ssh, &p.release).await?;
            }
        } else if wanted && !quiet {
            eprintln!("– outage drill skipped: the checks failed");
        }
    }
    let ok = report.as_ref().is_some_and(|r| r.ok);
    let release = plan.as_ref().map(|p| p.release.clone()).unwrap_or_default();
    if ok {
        layout::mark_verified(&conn.ssh, &release).await?;
        prune(conn).await?;
    }
    let mut out = DeployReport {
        ok,
        release: release.clone(),
        plan: plan.as_ref().map(Plan::summary).unwrap_or(serde_json::Value::Null),
        checks: report.as_ref().map(|r| r.checks.iter().map(|c| serde_json::to_value(c).expect("serializable")).collect()).unwrap_or_default(),
        durations: BTreeMap::new(),
        drill: report.as_ref().and_then(|r| r.drill.clone()),
        rollback: None,
        verify: report.clone(),
    };
    if let Some(e) = &apply_error {
        out.checks.push(serde_json::json!({"name": "deploy", "status": "fail", "detail": e.to_string(), "hint": e.hint(), "duration_ms": 0}));
        if !quiet {
            eprintln!("✗ {e}\n  hint: {}", e.hint());
        }
    }
    if ok {
        return Ok(out);
    }
    match (&previous_verified, opts.rollback) {
        (_, false) => {
            if !quiet {
                eprintln!("--no-rollback: the failed release stays in place for debugging");
            }
        }
        (None, true) => {
            if !quiet {
                eprintln!("no release of this host has passed verification yet: nothing to roll back to");
            }
            out.rollback = Some(serde_json::json!({"to": null, "reason": "no verified release"}));
        }
        (Some(to), true) => {
            if !quiet {
                eprintln!("verification failed: rolling back to {to}, the last verified release");
            }
            conn.refresh().await?;
            let r = rollback_to(conn, to, secrets, quiet, durations).await;
            out.rollback = Some(match r {
                Ok(o) => serde_json::json!({"to": to, "ok": o.report.ok, "checks": o.report.checks}),
                Err(e) => serde_json::json!({"to": to, "ok": false, "error": e.to_string()}),
            });
        }
    }
    Ok(out)
}

/// Put release `to` (already on the host) back in place and verify it again.
pub async fn rollback_to(conn: &mut Conn, to: &str, secrets: &BTreeMap<String, Secret>, quiet: bool, durations: &mut BTreeMap<String, u64>) -> Result<Outcome> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    fetch_release(&conn.ssh, to, dir.path()).await?;
    let stack = Stack::load(dir.path())?;
    let local = LocalFiles::read(&stack)?;
    let o = apply(conn, &stack, Target::Existing(to, &local), secrets, quiet, durations).await?;
    if o.report.ok {
        layout::mark_verified(&conn.ssh, to).await?;
    }
    let _ = layout::journal(
        &conn.ssh,
        &serde_json::json!({"event": "rollback", "at": chrono::Utc::now().to_rfc3339(), "by": who(), "release": to, "ok": o.report.ok}),
    )
    .await;
    Ok(o)
}

const FETCH_SCRIPT: &str = r#"set -eu
[ -f "$1/releases/$2/.release.json" ] || { echo "no release $2" >&2; exit 3; }
tar -c -f - -C "$1/releases/$2" .
"#;

/// Copy a release from the host into `dest` (to verify it against its own files).
pub async fn fetch_release(ssh: &Ssh, id: &str, dest: &std::path::Path) -> Result<()> {
    let (code, tar, stderr) = ssh.script_bytes(FETCH_SCRIPT, &[ssh.host().remote_dir.as_str(), id]).await?;
    if code != Some(0) {
        return Err(Error::remote(
            "release_missing",
            format!("release {id} is not on {}: {}", ssh.host().name, stderr.trim()),
            "list the releases with `stackproof status`",
        ));
    }
    tar::Archive::new(tar.as_slice()).unpack(dest).map_err(|e| Error::remote("transfer", format!("unpacking release {id}: {e}"), "run the command again"))
}

async fn prune(conn: &mut Conn) -> Result<()> {
    conn.refresh().await?;
    let st = &conn.state;
    let victims = layout::prune_candidates(&st.releases, KEEP_RELEASES, &[st.current.as_deref(), st.verified.as_deref(), st.exporter_release.as_deref()]);
    layout::prune(&conn.ssh, &victims).await
}

/// The remote dir must be writable (or creatable) by the SSH user: checked before the
/// lock, which lives in it.
fn ensure_writable(conn: &Conn) -> Result<()> {
    if conn.state.writable {
        return Ok(());
    }
    let h = conn.ssh.host();
    Err(Error::config(
        "remote_dir",
        format!("{} is not writable by {} on {}", h.remote_dir, h.user, h.name),
        format!("create it: `sudo install -d -o {} {}`", h.user, h.remote_dir),
    ))
}

/// One pass of the pipeline (under the lock): plan, release, containers, exporter,
/// verification.
pub async fn apply(
    conn: &mut Conn,
    stack: &Stack,
    target: Target<'_>,
    secrets: &BTreeMap<String, Secret>,
    quiet: bool,
    durations: &mut BTreeMap<String, u64>,
) -> Result<Outcome> {
    conn.refresh().await?;
    ensure_writable(conn)?;
    let local = match target {
        Target::New(l) | Target::Existing(_, l) => l,
    };
    let t = Instant::now();
    let (mut plan, specs) = make_plan(conn, stack, local, secrets).await?;
    if let Target::Existing(id, _) = target {
        plan.release = id.to_string();
    }
    if !quiet {
        eprint!("{}", plan.render());
    }
    durations.insert("plan_ms".into(), t.elapsed().as_millis() as u64);
    let deadline = Instant::now() + stack.manifest.verify.timeout;

    // 0. Ports and images: nothing on the host changes when they fail.
    preflight(conn, &plan, &specs, quiet).await?;

    // 1. Files: a new complete release (or an existing one), then `current` swapped by rename.
    let t = Instant::now();
    match target {
        Target::Existing(id, _) => {
            if conn.state.current.as_deref() != Some(id) {
                layout::swap(&conn.ssh, id).await?;
                if !quiet {
                    eprintln!("✓ release {id} is current again");
                }
            }
        }
        Target::New(_) if plan.files_differ() || conn.state.current.is_none() => {
            let step = Progress::step(format!("syncing release {}", plan.release), quiet);
            let info = ReleaseInfo {
                id: plan.release.clone(),
                stack: stack.manifest.name.clone(),
                created_at: chrono::Utc::now().to_rfc3339(),
                by: who(),
                files: local.hashes(),
            };
            let prev = conn.state.current.clone().filter(|_| conn.state.current_info.is_some());
            let keep: Vec<String> = if prev.is_some() {
                local.files.keys().filter(|p| !plan.files_added.contains(p) && !plan.files_changed.contains(p)).cloned().collect()
            } else {
                vec![]
            };
            let changed: Vec<(String, Vec<u8>, u32)> =
                local.files.iter().filter(|(p, _)| prev.is_none() || !keep.contains(p)).map(|(p, (_, d, m))| (p.clone(), d.clone(), *m)).collect();
            let sent = changed.len();
            layout::sync(&conn.ssh, &layout::Upload { id: &plan.release, prev: prev.as_deref(), changed, keep, info: &info })
                .await
                .inspect_err(|e| step.fail(e.to_string()))?;
            layout::swap(&conn.ssh, &plan.release).await.inspect_err(|e| step.fail(e.to_string()))?;
            step.finish(format!("release {} is current ({sent} files sent)", plan.release));
        }
        Target::New(_) => plan.release = conn.state.current.clone().unwrap_or_default(),
    }
    durations.insert("sync_ms".into(), t.elapsed().as_millis() as u64);

    // 2. Containers.
    let t = Instant::now();
    let step = Progress::step("reconciling containers", quiet);
    apply_containers(conn, stack, &plan, &specs, secrets, &step, deadline).await.inspect_err(|e| step.fail(e.to_string()))?;
    step.finish("containers reconciled");
    reload_dashboards(conn, stack, &plan, secrets, quiet).await;
    durations.insert("containers_ms".into(), t.elapsed().as_millis() as u64);

    // 3. Host exporter.
    let t = Instant::now();
    let mode = choose_mode(conn.ssh.host().supervisor, conn.state.has_systemd);
    let exp = Exporter { ssh: &conn.ssh, stack: &stack.manifest.name, cfg: &stack.manifest.host_exporter, mode };
    if plan.exporter != ExporterAction::Keep {
        let step = Progress::step("host exporter", quiet);
        exp.stop().await?;
        // Our exporter is stopped: whatever still listens on its port is not ours (an
        // exporter whose pid file was lost, another program). Starting now would crash-
        // loop behind a port that answers, and the checks would read the wrong process.
        let port = stack.manifest.host_exporter.port;
        if listening_ports(&conn.ssh).await?.contains(&port) {
            step.fail(format!("port {port} is taken"));
            return Err(Error::remote(
                "port_in_use",
                format!("port {port} on {} is in use by a process that is not stackproof's host exporter", conn.ssh.host().name),
                format!("find it with `ss -ltnp 'sport = :{port}'` on the host and stop it (by PID), or change `host_exporter.port`"),
            ));
        }
        exp.start().await?;
        if let Err(why) = wait_exporter(conn, stack, deadline).await {
            let log = exp.log_tail().await;
            step.fail("host exporter does not answer");
            return Err(Error::remote(
                "exporter_failed",
                format!("the host exporter did not answer: {why}\n  last log lines:\n{}", indent(&log)),
                "check `host_exporter.command` and the exporter's log in <remote_dir>/run/host-exporter.log",
            ));
        }
        step.finish("host exporter answers");
    }
    durations.insert("exporter_ms".into(), t.elapsed().as_millis() as u64);

    // 4. Verification: the checks a person would do.
    let t = Instant::now();
    let report = crate::live::checks(conn, stack, conn.ssh.host(), quiet).await?;
    durations.insert("verify_ms".into(), t.elapsed().as_millis() as u64);
    Ok(Outcome { plan, report })
}

/// `stackproof rollback [--to RELEASE]`: back to the last verified release (or the one
/// named), under the deploy lock, then verify it. Exit 0 verified, 1 not verified.
pub async fn rollback_command(host: &Host, to: Option<&str>, format: Format) -> Result<i32> {
    let quiet = format == Format::Json;
    let mut conn = Conn::open(host).await?;
    let target = match to.map(str::to_string).or_else(|| conn.state.verified.clone()) {
        Some(t) => t,
        None => {
            conn.ssh.close().await;
            return Err(Error::config(
                "no_verified_release",
                format!("no release on {} has passed verification", host.name),
                "name one with --to RELEASE (see `stackproof status`)",
            ));
        }
    };
    if !conn.state.releases.contains(&target) {
        conn.ssh.close().await;
        return Err(Error::config("release_missing", format!("release {target} is not on {}", host.name), "see `stackproof status` for the releases kept"));
    }
    let lock = lock(&conn.ssh, "rollback", None).await?;
    let mut durations = BTreeMap::new();
    let r = crate::signals::until_interrupted(async {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        fetch_release(&conn.ssh, &target, dir.path()).await?;
        let stack = Stack::load(dir.path())?;
        let secrets = read_secrets(&stack, host)?;
        rollback_to(&mut conn, &target, &secrets, quiet, &mut durations).await
    })
    .await;
    release_lock(&conn.ssh, &lock).await;
    conn.ssh.close().await;
    let o = r?;
    match format {
        Format::Json => println!("{}", serde_json::json!({"ok": o.report.ok, "release": target, "checks": o.report.checks})),
        Format::Text => {
            crate::report::print_text(&o.report);
            eprintln!(
                "{} rolled back to {target}{}",
                if o.report.ok { "✓" } else { "✗" },
                if o.report.ok { " and verified it" } else { ", but it failed verification" }
            );
        }
    }
    Ok(if o.report.ok { 0 } else { 1 })
}

/// `stackproof plan`.
pub async fn plan_command(stack: &Stack, host: &Host, format: Format) -> Result<i32> {
    let secrets = read_secrets(stack, host)?;
    let local = LocalFiles::read(stack)?;
    let conn = Conn::open(host).await?;
    let (plan, _) = make_plan(&conn, stack, &local, &secrets).await?;
    conn.ssh.close().await;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&plan).expect("serializable")),
        Format::Text => print!("{}", plan.render()),
    }
    Ok(0)
}

/// `stackproof unlock`: release a lock left by a crashed deploy.
pub async fn unlock_command(host: &Host, format: Format) -> Result<i32> {
    let ssh = Ssh::connect(host).await?;
    let st = layout::state(&ssh).await?;
    let released = if st.lock.is_some() { layout::unlock(&ssh, None).await? } else { false };
    let _ = layout::journal(&ssh, &serde_json::json!({"event": "unlock", "at": chrono::Utc::now().to_rfc3339(), "by": who(), "released": st.lock})).await;
    ssh.close().await;
    match format {
        Format::Json => {
            println!("{}", serde_json::json!({"released": released, "lock": st.lock.and_then(|l| serde_json::from_str::<serde_json::Value>(&l).ok())}))
        }
        Format::Text => println!("{}", if released { format!("lock on {} released", host.name) } else { format!("no lock on {}", host.name) }),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_ids_are_timestamp_and_tree_hash() {
        let stack = Stack::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/stack"))).unwrap();
        let l = LocalFiles::read(&stack).unwrap();
        let id = l.release_id();
        let (ts, h) = id.split_once('-').unwrap();
        assert_eq!(ts.len(), 16, "{id}");
        assert_eq!(h.len(), 8);
        assert_eq!(h, &LocalFiles::read(&stack).unwrap().release_id()[17..]);
        assert!(l.files.contains_key("stackproof.yml"));
        assert!(l.files.values().all(|(_, _, m)| *m == 0o644 || *m == 0o755));
    }
}
