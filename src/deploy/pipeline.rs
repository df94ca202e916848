//! One pass of the pipeline, under the lock, as named steps:
//! plan → preflight → sync → containers → exporter → checks.
//! Each step that changes the host says so through `Effects` before it does; a failed
//! step comes back as a `Failure` naming the step and whether the host was touched by
//! then, which is all the rollback decision needs (`decide::after_failure`).

use super::release::{self, LocalFiles};
use super::{containers, decide, host_exporter, Effects};
use crate::engine::spec::{desired, ContainerSpec};
use crate::error::{Error, Kind, Result};
use crate::hosts::Secret;
use crate::output::Progress;
use crate::plan::{compute, Plan, PlanInput};
use crate::remote::conn::listening_ports;
use crate::remote::Conn;
use crate::stack::Stack;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// The steps of a deploy, in order (the drill follows the checks, in `deploy::run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Plan,
    Preflight,
    Sync,
    Containers,
    Exporter,
    Checks,
    Drill,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Plan => "plan",
            Step::Preflight => "preflight",
            Step::Sync => "sync",
            Step::Containers => "containers",
            Step::Exporter => "exporter",
            Step::Checks => "checks",
            Step::Drill => "drill",
        }
    }
}

/// A step that failed: which, whether the host had changed by then, and why. `plan` is
/// there when the plan step had passed.
pub struct Failure {
    pub step: Step,
    pub touched: bool,
    pub error: Error,
    pub plan: Option<Plan>,
}

/// What a pass puts in place: a new release from local files, or a release that already
/// exists on the host (rollback).
pub enum Target<'a> {
    New(&'a LocalFiles),
    Existing(&'a str, &'a LocalFiles),
}

/// The outcome of a pass whose steps all ran (the checks may still have failed).
pub struct Outcome {
    pub plan: Plan,
    pub report: crate::verify::Report,
    /// Whether anything on the host changed during the pass.
    pub touched: bool,
}

/// Step durations in milliseconds, for `--format json` (`durations`).
pub type Durations = BTreeMap<String, u64>;

/// Compute the plan against the live host (`conn.state` as read last).
pub async fn make_plan(conn: &Conn, stack: &Stack, local: &LocalFiles, secrets: &BTreeMap<String, Secret>) -> Result<(Plan, Vec<ContainerSpec>)> {
    let observed = conn.engine.observed(&stack.manifest.name).await?;
    plan_with(conn, stack, local, secrets, observed).await
}

/// The plan, given the stack's containers as listed.
async fn plan_with(
    conn: &Conn,
    stack: &Stack,
    local: &LocalFiles,
    secrets: &BTreeMap<String, Secret>,
    observed: Vec<crate::engine::Observed>,
) -> Result<(Plan, Vec<ContainerSpec>)> {
    let host = conn.ssh.host();
    let mut specs = desired(&stack.manifest, &host.images, &host.remote_dir);
    crate::paging::attach(&mut specs, secrets);
    // Every secret of every running container read back at once: one round trip, not one each.
    let reads =
        specs.iter().filter_map(|spec| Some((spec, observed.iter().find(|o| o.service == spec.service && o.state == "running")?))).flat_map(|(spec, o)| {
            spec.secrets.iter().filter_map(move |(name, dest)| {
                let v = secrets.get(name)?;
                Some(async move { (!conn.engine.secret_matches(&o.id, dest, v.expose().as_bytes()).await).then(|| spec.service.clone()) })
            })
        });
    let secrets_differ: BTreeSet<String> = futures_util::future::join_all(reads).await.into_iter().flatten().collect();
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

/// Checks and pulls that change nothing the stack runs on, done before the release is
/// swapped: a port taken by something else (a container's or the host exporter's), a
/// missing image that cannot be pulled.
async fn preflight(conn: &Conn, stack: &Stack, plan: &Plan, specs: &[ContainerSpec], quiet: bool) -> Result<()> {
    let needs_image = decide::needs_image(plan, specs);
    if plan.containers.iter().any(|c| matches!(c, crate::plan::ContainerAction::Create { .. })) {
        let busy = listening_ports(&conn.ssh).await?;
        if let Some((service, port)) = decide::container_port_conflict(plan, specs, &busy) {
            return Err(Error::remote(
                Kind::PortInUse,
                format!("port {port} on {} is already in use by a process that is not part of this stack ({service})", conn.ssh.host().name),
                format!("stop that process, or change {service}'s port in the manifest (its listen flag and `ports:`)"),
            ));
        }
    }
    host_exporter::preflight(conn, stack, plan).await?;
    // Images before anything is swapped or stopped, so a missing image changes nothing;
    // they have a budget of their own (`deploy.pull_timeout`), with progress in bytes.
    let budget = stack.manifest.deploy.pull_timeout;
    let pulls = async {
        for s in needs_image {
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
    };
    tokio::time::timeout(budget, pulls).await.unwrap_or_else(|_| {
        Err(Error::remote(
            Kind::ImagePull,
            format!("pulling the images took longer than deploy.pull_timeout ({})", humantime::format_duration(budget)),
            "nothing was changed on the host; raise `deploy.pull_timeout` in stackproof.yml for a slow registry, or pre-pull the images on the host",
        ))
    })
}

/// Keeps the pass's bookkeeping: each step's duration as `<step>_ms`, whether the host
/// was touched so far, and a step's error turned into a `Failure`.
struct Pass<'d> {
    durations: &'d mut Durations,
    touched: bool,
    /// A new release's pass stops at a noted interrupt (`signals::start_noting`); a
    /// rollback's (the way back to a whole host) never does.
    interruptible: bool,
}

impl Pass<'_> {
    fn done<T>(&mut self, step: Step, started: Instant, plan: Option<&Plan>, fx: Effects, r: Result<T>) -> std::result::Result<T, Failure> {
        self.done_in(step, started.elapsed(), plan, fx, r)
    }

    fn done_in<T>(&mut self, step: Step, took: std::time::Duration, plan: Option<&Plan>, fx: Effects, r: Result<T>) -> std::result::Result<T, Failure> {
        self.touched |= fx.touched;
        self.durations.insert(format!("{}_ms", step.as_str()), took.as_millis() as u64);
        let r = r.map_err(|error| Failure { step, touched: self.touched, error, plan: plan.cloned() })?;
        // An interrupt noted during a step that ran to its end: stop after it.
        if self.interruptible && crate::signals::seen() {
            return Err(Failure { step, touched: self.touched, error: Error::Interrupted, plan: plan.cloned() });
        }
        Ok(r)
    }

    /// A step that changes nothing on the host is dropped at a noted interrupt.
    async fn cancellable<T>(&self, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        if self.interruptible {
            crate::signals::cancel_on_noted(fut).await
        } else {
            fut.await
        }
    }
}

/// One pass: plan, preflight, sync, containers, exporter, checks.
pub async fn apply(
    conn: &mut Conn,
    stack: &Stack,
    target: Target<'_>,
    secrets: &BTreeMap<String, Secret>,
    quiet: bool,
    durations: &mut Durations,
) -> std::result::Result<Outcome, Failure> {
    let (local, existing) = match target {
        Target::New(l) => (l, None),
        Target::Existing(id, l) => (l, Some(id)),
    };
    let mut pass = Pass { durations, touched: false, interruptible: existing.is_none() };
    let untouched = Effects::default;

    let t = Instant::now();
    let planned = pass
        .cancellable(async {
            // The state again, now that the lock is held, and the containers: at once.
            let (state, observed) = tokio::join!(crate::remote::layout::state(&conn.ssh), conn.engine.observed(&stack.manifest.name));
            conn.state = state?;
            release::ensure_writable(conn)?;
            plan_with(conn, stack, local, secrets, observed?).await
        })
        .await;
    let (mut plan, specs) = pass.done(Step::Plan, t, None, untouched(), planned)?;
    if let Some(id) = existing {
        plan.release = id.to_string();
    }
    if !quiet {
        eprint!("{}", plan.render());
    }
    let conn = &*conn;

    let t = Instant::now();
    let r = pass.cancellable(preflight(conn, stack, &plan, &specs, quiet)).await;
    pass.done(Step::Preflight, t, Some(&plan), untouched(), r)?;
    // Readiness is timed from here: image pulls (preflight) had their own budget.
    let deadline = Instant::now() + stack.manifest.verify.timeout;

    let (t, mut fx) = (Instant::now(), untouched());
    let r = release::sync(conn, stack, &mut plan, local, existing, &mut fx, quiet).await;
    pass.done(Step::Sync, t, Some(&plan), fx, r)?;

    // The containers and the host exporter do not depend on each other: both at once.
    let (mut cfx, mut efx) = (untouched(), untouched());
    let step = Progress::step("reconciling containers and the host exporter", quiet);
    let ((r, ct), (er, et)) = tokio::join!(
        async {
            let t = Instant::now();
            (containers::apply(conn, stack, &plan, &specs, secrets, &step, deadline, &mut cfx).await, t.elapsed())
        },
        async {
            let t = Instant::now();
            (host_exporter::apply(conn, stack, &plan, deadline, &mut efx, &step).await, t.elapsed())
        },
    );
    match (&r, &er) {
        (Ok(()), Ok(())) => {
            step.finish("containers and host exporter up");
            containers::reload_dashboards(conn, stack, &plan, secrets, quiet).await;
        }
        (Err(e), _) | (_, Err(e)) => step.fail(e.to_string()),
    }
    // Both ran: whichever failed, the host was touched by either.
    pass.touched |= cfx.touched || efx.touched;
    pass.done_in(Step::Containers, ct, Some(&plan), cfx, r)?;
    pass.done_in(Step::Exporter, et, Some(&plan), efx, er)?;

    let t = Instant::now();
    let r = pass
        .cancellable(async {
            crate::signals::test_pause("checks").await;
            crate::verify::on_host::checks(conn, stack, conn.ssh.host(), quiet, crate::verify::receivers::Since::Now).await
        })
        .await;
    let report = pass.done(Step::Checks, t, Some(&plan), untouched(), r)?;
    Ok(Outcome { plan, report, touched: pass.touched })
}
