//! The deploy's decisions, as pure functions over plain data: no SSH, no Docker, no
//! clock. The pipeline gathers the facts, asks here, and carries out the answer, so every
//! branch is covered by a plain `cargo test`.

use crate::engine::spec::ContainerSpec;
use crate::plan::{ContainerAction, ExporterAction, Plan};
use crate::stack::Manifest;
use std::collections::BTreeSet;

/// What happens after a step failed or the checks did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    /// Nothing on the host changed: report the error (the command could not run, exit 2).
    Untouched,
    /// `--no-rollback`: the failed release stays in place for debugging.
    KeepForDebugging,
    /// The host changed but no release of it ever passed verification.
    NothingToRollBackTo,
    /// Put this release (the last verified one) back and verify it again.
    RollBack(String),
}

/// Decide from whether the failed pass had touched the host, not from the error's kind:
/// the same error (a port in use, say) can come before or after the swap.
pub fn after_failure(touched: bool, rollback: bool, last_verified: Option<&str>) -> AfterFailure {
    match (touched, rollback, last_verified) {
        (false, _, _) => AfterFailure::Untouched,
        (true, false, _) => AfterFailure::KeepForDebugging,
        (true, true, None) => AfterFailure::NothingToRollBackTo,
        (true, true, Some(r)) => AfterFailure::RollBack(r.to_string()),
    }
}

/// Whether the outage drill runs after a deploy's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drill {
    Run,
    /// Not wanted: nothing on the alert path changed and a drill already passed here.
    NotNeeded,
    /// `--no-drill`.
    Disabled,
    /// Wanted, but the checks failed: a drill on a broken stack proves nothing.
    ChecksFailed,
}

/// `forced`: `Some(true)` for `--drill`, `Some(false)` for `--no-drill`, `None` to decide.
pub fn drill(forced: Option<bool>, alert_path_touched: bool, drill_passed_before: bool, checks_ok: bool) -> Drill {
    let wanted = match forced {
        Some(false) => return Drill::Disabled,
        Some(true) => true,
        None => alert_path_touched || !drill_passed_before,
    };
    match (wanted, checks_ok) {
        (false, _) => Drill::NotNeeded,
        (true, false) => Drill::ChecksFailed,
        (true, true) => Drill::Run,
    }
}

/// How the release's files reach the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sync {
    /// The files are those of the current release and it is in place: send nothing.
    Nothing,
    /// Make this release (already on the host) current: rollback.
    SwapTo(String),
    /// Write a new release: `send` travel in the tar, `link` are hard-linked from the
    /// current release (unchanged content), then `current` is swapped.
    Upload { send: Vec<String>, link: Vec<String> },
}

/// `existing`: the release to put back (rollback), else a new one from local files.
/// `current_complete`: the current release exists and carries its file list, so its
/// files can be hard-linked.
pub fn sync(plan: &Plan, local: &[String], existing: Option<&str>, current: Option<&str>, current_complete: bool) -> Sync {
    if let Some(id) = existing {
        return if current == Some(id) { Sync::Nothing } else { Sync::SwapTo(id.to_string()) };
    }
    if !plan.files_differ() && current.is_some() {
        return Sync::Nothing;
    }
    if current.is_none() || !current_complete {
        return Sync::Upload { send: local.to_vec(), link: vec![] };
    }
    let fresh = |p: &String| plan.files_added.contains(p) || plan.files_changed.contains(p);
    let (send, link) = local.iter().cloned().partition(fresh);
    Sync::Upload { send, link }
}

/// The first port a container about to be created needs that something already holds:
/// `(service, port)`. Recreated containers free their own port first, so only creates
/// are checked.
pub fn container_port_conflict(plan: &Plan, specs: &[ContainerSpec], busy: &BTreeSet<u16>) -> Option<(String, u16)> {
    let creating = |s: &ContainerSpec| plan.containers.iter().any(|c| c.service() == s.service && matches!(c, ContainerAction::Create { .. }));
    specs.iter().filter(|s| creating(s)).find_map(|s| s.ports.iter().find(|p| busy.contains(p)).map(|p| (s.service.clone(), *p)))
}

/// Whether the host exporter's port is held by a process that is not our exporter, seen
/// before anything is changed: more listeners on the port than our own running exporter
/// accounts for. (A listener that is ours but lost its pid file is only caught after the
/// stop, as a failure of the touched host.)
pub fn exporter_port_taken(action: &ExporterAction, listeners_on_port: usize, ours_running: bool) -> bool {
    *action != ExporterAction::Keep && listeners_on_port > usize::from(ours_running)
}

/// Grafana polls its dashboard files itself (`updateIntervalSeconds`), so right after a
/// deploy it may still serve the old ones: ask it to re-read them when a file under its
/// `watched` paths changed and the container was kept (a new container reads them at
/// start).
pub fn dashboards_need_reload(manifest: &Manifest, plan: &Plan) -> bool {
    let Some(svc) = manifest.services.get("grafana") else { return false };
    let kept = plan.containers.iter().any(|c| matches!(c, ContainerAction::Keep { service } if service == "grafana"));
    let touched = plan.files_added.iter().chain(&plan.files_changed).chain(&plan.files_removed).any(|f| svc.watched.iter().any(|w| f.starts_with(w.as_str())));
    kept && touched
}

/// The containers a pass must pull images for (created or recreated).
pub fn needs_image<'a>(plan: &Plan, specs: &'a [ContainerSpec]) -> Vec<&'a ContainerSpec> {
    specs
        .iter()
        .filter(|s| plan.containers.iter().any(|c| c.service() == s.service && matches!(c, ContainerAction::Create { .. } | ContainerAction::Recreate { .. })))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            release: "r2".into(),
            previous: Some("r1".into()),
            files_added: vec![],
            files_changed: vec![],
            files_removed: vec![],
            files_unchanged: 3,
            containers: vec![],
            exporter: ExporterAction::Keep,
            alert_path_touched: false,
        }
    }

    fn spec(service: &str, ports: &[u16]) -> ContainerSpec {
        ContainerSpec { service: service.into(), ports: ports.to_vec(), ..Default::default() }
    }

    #[test]
    fn failure_before_the_host_changed_is_reported_not_rolled_back() {
        assert_eq!(after_failure(false, true, Some("r1")), AfterFailure::Untouched);
        assert_eq!(after_failure(false, false, None), AfterFailure::Untouched);
    }

    #[test]
    fn failure_after_the_host_changed_rolls_back_to_the_last_verified_release() {
        assert_eq!(after_failure(true, true, Some("r1")), AfterFailure::RollBack("r1".into()));
        assert_eq!(after_failure(true, true, None), AfterFailure::NothingToRollBackTo);
        assert_eq!(after_failure(true, false, Some("r1")), AfterFailure::KeepForDebugging);
    }

    #[test]
    fn drill_runs_when_the_alert_path_changed_or_none_passed_yet() {
        assert_eq!(drill(None, true, true, true), Drill::Run);
        assert_eq!(drill(None, false, false, true), Drill::Run);
        assert_eq!(drill(None, false, true, true), Drill::NotNeeded);
        assert_eq!(drill(None, true, true, false), Drill::ChecksFailed);
        assert_eq!(drill(None, false, true, false), Drill::NotNeeded);
    }

    #[test]
    fn drill_flags_override_the_plan() {
        assert_eq!(drill(Some(true), false, true, true), Drill::Run);
        assert_eq!(drill(Some(true), false, true, false), Drill::ChecksFailed);
        assert_eq!(drill(Some(false), true, false, true), Drill::Disabled);
    }

    #[test]
    fn sync_sends_only_new_and_changed_files_and_links_the_rest() {
        let mut p = plan();
        p.files_added = vec!["b".into()];
        p.files_changed = vec!["c".into()];
        let local = vec!["a".to_string(), "b".into(), "c".into()];
        assert_eq!(sync(&p, &local, None, Some("r1"), true), Sync::Upload { send: vec!["b".into(), "c".into()], link: vec!["a".into()] });
    }

    #[test]
    fn sync_sends_everything_to_a_fresh_host_or_beside_an_incomplete_release() {
        let p = plan();
        let local = vec!["a".to_string(), "b".into()];
        assert_eq!(sync(&p, &local, None, None, false), Sync::Upload { send: local.clone(), link: vec![] });
        let mut changed = plan();
        changed.files_changed = vec!["a".into()];
        assert_eq!(sync(&changed, &local, None, Some("r1"), false), Sync::Upload { send: local.clone(), link: vec![] });
    }

    #[test]
    fn sync_does_nothing_when_the_files_are_current() {
        assert_eq!(sync(&plan(), &["a".to_string()], None, Some("r1"), true), Sync::Nothing);
    }

    #[test]
    fn sync_of_an_existing_release_swaps_unless_it_is_current() {
        assert_eq!(sync(&plan(), &[], Some("r0"), Some("r1"), true), Sync::SwapTo("r0".into()));
        assert_eq!(sync(&plan(), &[], Some("r1"), Some("r1"), true), Sync::Nothing);
    }

    #[test]
    fn only_created_containers_conflict_on_ports() {
        let mut p = plan();
        p.containers = vec![ContainerAction::Create { service: "prometheus".into() }, ContainerAction::Recreate { service: "grafana".into(), reasons: vec![] }];
        let specs = [spec("prometheus", &[9090]), spec("grafana", &[3000])];
        assert_eq!(container_port_conflict(&p, &specs, &BTreeSet::from([3000])), None);
        assert_eq!(container_port_conflict(&p, &specs, &BTreeSet::from([3000, 9090])), Some(("prometheus".into(), 9090)));
        assert_eq!(container_port_conflict(&p, &specs, &BTreeSet::new()), None);
    }

    #[test]
    fn exporter_port_is_taken_when_more_listen_than_our_exporter() {
        let restart = ExporterAction::Restart { reason: "files changed".into() };
        assert!(!exporter_port_taken(&restart, 1, true), "our own exporter");
        assert!(exporter_port_taken(&restart, 2, true), "ours and another on a second address");
        assert!(exporter_port_taken(&ExporterAction::Start, 1, false), "someone else, ours not running");
        assert!(!exporter_port_taken(&ExporterAction::Start, 0, false));
        assert!(!exporter_port_taken(&ExporterAction::Keep, 3, true), "kept: nothing is started");
    }

    #[test]
    fn dashboards_reload_only_when_watched_files_changed_under_a_kept_grafana() {
        let m = crate::stack::Stack::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/stack"))).unwrap().manifest;
        let watched = m.services["grafana"].watched.first().cloned().expect("the default stack watches its dashboards");
        let mut p = plan();
        p.files_changed = vec![format!("{watched}/x.json")];
        p.containers = vec![ContainerAction::Keep { service: "grafana".into() }];
        assert!(dashboards_need_reload(&m, &p));
        p.containers = vec![ContainerAction::Recreate { service: "grafana".into(), reasons: vec![] }];
        assert!(!dashboards_need_reload(&m, &p), "a new container reads them at start");
        p.containers = vec![ContainerAction::Keep { service: "grafana".into() }];
        p.files_changed = vec!["prometheus/prometheus.yml".into()];
        assert!(!dashboards_need_reload(&m, &p));
    }

    #[test]
    fn images_are_needed_for_created_and_recreated_containers_only() {
        let mut p = plan();
        p.containers = vec![
            ContainerAction::Create { service: "a".into() },
            ContainerAction::Recreate { service: "b".into(), reasons: vec![] },
            ContainerAction::Reload { service: "c".into(), reasons: vec![] },
            ContainerAction::Keep { service: "d".into() },
        ];
        let specs = [spec("a", &[]), spec("b", &[]), spec("c", &[]), spec("d", &[])];
        let names: Vec<_> = needs_image(&p, &specs).iter().map(|s| s.service.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }
}
