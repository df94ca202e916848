//! The containers step: create, recreate, reload or remove each container as the plan
//! says, and wait until each answers on its health path; then let Grafana re-read its
//! dashboards when they changed under a kept container.

use super::decide;
use super::grafana;
use super::Effects;
use crate::engine::spec::ContainerSpec;
use crate::error::{Error, Kind, Result};
use crate::hosts::Secret;
use crate::output::Progress;
use crate::plan::{ContainerAction, Plan};
use crate::remote::http::Http;
use crate::remote::poll::poll;
use crate::remote::Conn;
use crate::stack::Stack;
use std::collections::BTreeMap;
use std::time::Instant;

fn secret_values(spec: &ContainerSpec, secrets: &BTreeMap<String, Secret>) -> Vec<(String, Vec<u8>)> {
    spec.secrets.iter().filter_map(|(name, _)| secrets.get(name).map(|s| (name.clone(), s.expose().as_bytes().to_vec()))).collect()
}

/// Wait for a just-started container: ready on its health path through a tunnel, or
/// fail naming the service with its last log lines when it exits or restarts.
async fn wait_ready(conn: &Conn, stack: &Stack, id: &str, service: &str, deadline: Instant) -> Result<()> {
    let svc = &stack.manifest.services[service];
    let url = match (svc.health.as_ref(), stack.manifest.service_port(service)) {
        (Some(path), Some(port)) => Some(format!("http://127.0.0.1:{}{}", conn.ssh.tunnel(port).await?, path)),
        _ => None,
    };
    let http = Http::new();
    let client = http.client();
    let r = poll(deadline, || async {
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
        Kind::ServiceFailed,
        format!("{service} did not come up: {fail}\n  last log lines of {service}:\n{}", indent(&logs)),
        format!("fix {service}'s configuration in the stack; the previous release's files are kept under releases/ for `stackproof rollback`"),
    ))
}

pub fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    | {l}")).collect::<Vec<_>>().join("\n")
}

/// Ask a service to reload and confirm the reload took (a reload can fail while the old
/// configuration keeps running).
async fn reload(conn: &Conn, stack: &Stack, service: &str, deadline: Instant) -> Result<()> {
    let svc = &stack.manifest.services[service];
    let (Some(path), Some(port)) = (svc.reload.as_ref(), stack.manifest.service_port(service)) else { return Ok(()) };
    let local = conn.ssh.tunnel(port).await?;
    let http = Http::new();
    let client = http.client();
    let url = format!("http://127.0.0.1:{local}{path}");
    let resp =
        client.post(&url).send().await.map_err(|e| Error::remote(Kind::ReloadFailed, format!("reloading {service}: {e}"), "check that the service runs"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(Error::remote(
            Kind::ReloadFailed,
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
    poll(deadline, || async {
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
        Error::remote(Kind::ReloadFailed, format!("{service}'s reload did not take: {e}"), "the old configuration keeps running; check the service's log")
    })
}

/// Grafana polls its dashboard files itself (`updateIntervalSeconds`), so a changed
/// dashboard would show only after that interval, and a verification right after the
/// deploy would compare against the old one. When files under Grafana's `watched` paths
/// changed and Grafana kept running, ask it to re-read them now
/// (`POST /api/admin/provisioning/dashboards/reload`). Best effort: on failure the
/// provider still picks the files up on its own, and verification polls.
pub async fn reload_dashboards(conn: &Conn, stack: &Stack, plan: &Plan, secrets: &BTreeMap<String, Secret>, quiet: bool) {
    let (Some(port), Some(password)) = (stack.manifest.service_port("grafana"), secrets.get("grafana_admin_password")) else { return };
    if !decide::dashboards_need_reload(&stack.manifest, plan) {
        return;
    }
    let r = async {
        let local = conn.ssh.tunnel(port).await.map_err(|e| e.to_string())?;
        let resp = Http::new()
            .client()
            .post(format!("http://127.0.0.1:{local}/api/admin/provisioning/dashboards/reload"))
            .basic_auth(stack.manifest.grafana_admin(), Some(password.expose()))
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
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    conn: &Conn,
    stack: &Stack,
    plan: &Plan,
    specs: &[ContainerSpec],
    secrets: &BTreeMap<String, Secret>,
    progress: &Progress,
    deadline: Instant,
    fx: &mut Effects,
) -> Result<()> {
    let observed = conn.engine.observed(&stack.manifest.name).await?;
    if plan.containers.iter().any(|c| !matches!(c, ContainerAction::Keep { .. })) {
        fx.touch();
    }
    // The services do not wait for each other (each is checked on its own later), so
    // they are brought up at once: a fresh host waits for the slowest, not the sum. Each
    // action runs to its end, so no container is left between a remove and a create.
    let observed = &observed;
    let results = futures_util::future::join_all(plan.containers.iter().map(|action| async move {
        match action {
            ContainerAction::Create { service } | ContainerAction::Recreate { service, .. } => {
                let spec = specs.iter().find(|s| &s.service == service).expect("spec for planned service");
                progress.set_message(format!("{service}: starting"));
                // Grafana keeps its admin password in its database: read the one in force
                // from the running container before it goes, to change it after.
                let rotation = grafana::old_admin_secret(conn, spec, observed, secrets).await;
                for o in observed.iter().filter(|o| &o.service == service) {
                    conn.engine.remove(&o.id).await?;
                    crate::signals::test_pause("containers").await;
                }
                // A container name left by a crashed run (not labelled as ours) would block creation.
                let id = conn.engine.create_and_start(&stack.manifest.name, spec, &plan.release, &secret_values(spec, secrets)).await?;
                wait_ready(conn, stack, &id, service, deadline).await?;
                if let Some((old, new)) = rotation {
                    grafana::rotate_admin(conn, stack, &old, &new).await?;
                    progress.println(format!("  {service}: admin password changed to the new secret"));
                }
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
        Ok::<(), Error>(())
    }))
    .await;
    results.into_iter().collect()
}
