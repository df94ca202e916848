//! What a deploy would change (pure): desired state vs the host's state → actions.
//! `plan` prints it; `deploy` prints the same plan and then carries it out.

use crate::engine::spec::{files_hash, ContainerSpec};
use crate::engine::Observed;
use crate::remote::layout::RemoteState;
use crate::stack::Manifest;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum ContainerAction {
    Create { service: String },
    Recreate { service: String, reasons: Vec<String> },
    Reload { service: String, reasons: Vec<String> },
    Keep { service: String },
    Remove { service: String, name: String },
}

impl ContainerAction {
    pub fn service(&self) -> &str {
        match self {
            ContainerAction::Create { service }
            | ContainerAction::Recreate { service, .. }
            | ContainerAction::Reload { service, .. }
            | ContainerAction::Keep { service }
            | ContainerAction::Remove { service, .. } => service,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum ExporterAction {
    Start,
    Restart { reason: String },
    Keep,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Plan {
    pub release: String,
    pub previous: Option<String>,
    pub files_added: Vec<String>,
    pub files_changed: Vec<String>,
    pub files_removed: Vec<String>,
    pub files_unchanged: usize,
    pub containers: Vec<ContainerAction>,
    pub exporter: ExporterAction,
    /// Rules, Prometheus or Alertmanager config or container, or the host exporter changed.
    pub alert_path_touched: bool,
}

/// The plan in brief: counts of files, the container actions that change something, the
/// exporter's action.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanSummary {
    pub files: FileCounts,
    pub containers: Vec<ContainerAction>,
    pub exporter: ExporterAction,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FileCounts {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub unchanged: usize,
}

impl Plan {
    pub fn files_differ(&self) -> bool {
        !(self.files_added.is_empty() && self.files_changed.is_empty() && self.files_removed.is_empty())
    }

    /// Nothing to sync, no container to touch, exporter running as wanted.
    pub fn is_noop(&self) -> bool {
        !self.files_differ() && self.containers.iter().all(|c| matches!(c, ContainerAction::Keep { .. })) && self.exporter == ExporterAction::Keep
    }

    /// What the deploy report and the journal say of the plan.
    pub fn summary(&self) -> PlanSummary {
        PlanSummary {
            files: FileCounts {
                added: self.files_added.len(),
                changed: self.files_changed.len(),
                removed: self.files_removed.len(),
                unchanged: self.files_unchanged,
            },
            containers: self.containers.iter().filter(|c| !matches!(c, ContainerAction::Keep { .. })).cloned().collect(),
            exporter: self.exporter.clone(),
        }
    }

    /// Text for people.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if self.is_noop() {
            s.push_str(&format!("Plan: nothing to change (release {} is current and running).\n", self.previous.as_deref().unwrap_or("?")));
            return s;
        }
        s.push_str(&format!("Plan: release {} (current: {})\n", self.release, self.previous.as_deref().unwrap_or("none")));
        s.push_str(&format!(
            "  files: {} added, {} changed, {} removed, {} unchanged\n",
            self.files_added.len(),
            self.files_changed.len(),
            self.files_removed.len(),
            self.files_unchanged
        ));
        for (sign, list) in [("+", &self.files_added), ("~", &self.files_changed), ("-", &self.files_removed)] {
            for f in list.iter().take(20) {
                s.push_str(&format!("    {sign} {f}\n"));
            }
            if list.len() > 20 {
                s.push_str(&format!("    {sign} … and {} more\n", list.len() - 20));
            }
        }
        s.push_str("  containers:\n");
        for c in &self.containers {
            let line = match c {
                ContainerAction::Create { service } => format!("    create   {service}"),
                ContainerAction::Recreate { service, reasons } => format!("    recreate {service} ({})", reasons.join("; ")),
                ContainerAction::Reload { service, reasons } => format!("    reload   {service} ({})", reasons.join("; ")),
                ContainerAction::Keep { service } => format!("    keep     {service}"),
                ContainerAction::Remove { service, name } => format!("    remove   {service} ({name}: no longer in the manifest)"),
            };
            s.push_str(&line);
            s.push('\n');
        }
        s.push_str(&match &self.exporter {
            ExporterAction::Start => "  host exporter: start\n".to_string(),
            ExporterAction::Restart { reason } => format!("  host exporter: restart ({reason})\n"),
            ExporterAction::Keep => "  host exporter: keep\n".to_string(),
        });
        s
    }
}

/// Inputs of the decision, all plain data.
pub struct PlanInput<'a> {
    pub manifest: &'a Manifest,
    pub release: String,
    /// Relative path → sha256 of every local file.
    pub local: &'a BTreeMap<String, String>,
    pub remote: &'a RemoteState,
    pub observed: &'a [Observed],
    pub desired: &'a [ContainerSpec],
    /// Services whose secret inside the running container differs from the host entry's.
    pub secrets_differ: &'a BTreeSet<String>,
}

pub fn compute(i: &PlanInput<'_>) -> Plan {
    let empty = BTreeMap::new();
    let remote_files = i.remote.current_info.as_ref().map(|r| &r.files).unwrap_or(&empty);
    let mut added = vec![];
    let mut changed = vec![];
    let mut unchanged = 0;
    for (p, h) in i.local {
        match remote_files.get(p) {
            None => added.push(p.clone()),
            Some(rh) if rh != h => changed.push(p.clone()),
            Some(_) => unchanged += 1,
        }
    }
    let removed: Vec<String> = remote_files.keys().filter(|p| !i.local.contains_key(*p)).cloned().collect();

    let mut containers = vec![];
    let mut seen = BTreeSet::new();
    let mut alert_path = false;
    for spec in i.desired {
        let svc = &i.manifest.services[&spec.service];
        let alerting = matches!(spec.service.as_str(), "prometheus" | "alertmanager");
        let mine: Vec<&Observed> = i.observed.iter().filter(|o| o.service == spec.service).collect();
        let Some(obs) = mine.iter().find(|o| o.name == spec.name).or(mine.first()) else {
            containers.push(ContainerAction::Create { service: spec.service.clone() });
            alert_path |= alerting;
            continue;
        };
        seen.insert(obs.id.clone());
        let mut recreate = vec![];
        if obs.config_hash != spec.hash() {
            if obs.image != spec.image {
                recreate.push(format!("image {} → {}", obs.image, spec.image));
            } else {
                recreate.push("arguments, environment or mounts changed (config hash)".to_string());
            }
        }
        if obs.name != spec.name {
            recreate.push(format!("container name {} → {}", obs.name, spec.name));
        }
        if obs.state != "running" {
            recreate.push(format!("not running ({})", obs.state));
        }
        if i.secrets_differ.contains(&spec.service) {
            recreate.push("secret changed".to_string());
        }
        let files_changed = files_hash(i.local, &svc.files) != files_hash(remote_files, &svc.files);
        if recreate.is_empty() && files_changed {
            if svc.reload.is_some() {
                containers
                    .push(ContainerAction::Reload { service: spec.service.clone(), reasons: vec![format!("files under {} changed", svc.files.join(", "))] });
            } else {
                recreate.push(format!("files under {} changed and it has no reload endpoint", svc.files.join(", ")));
            }
        }
        if !recreate.is_empty() {
            containers.push(ContainerAction::Recreate { service: spec.service.clone(), reasons: recreate });
            alert_path |= alerting;
        } else if files_changed {
            alert_path |= alerting;
        } else {
            containers.push(ContainerAction::Keep { service: spec.service.clone() });
        }
    }
    for o in i.observed {
        if !seen.contains(&o.id) {
            containers.push(ContainerAction::Remove { service: o.service.clone(), name: o.name.clone() });
        }
    }

    let he = &i.manifest.host_exporter;
    let exporter = match &i.remote.exporter {
        None => ExporterAction::Start,
        Some((_, cmdline)) => {
            let wanted = he.command.join(" ");
            if !cmdline.contains(&wanted) {
                ExporterAction::Restart { reason: "command changed".into() }
            } else if files_hash(i.local, &he.files) != files_hash(remote_files, &he.files) {
                ExporterAction::Restart { reason: format!("files under {} changed", he.files.join(", ")) }
            } else {
                ExporterAction::Keep
            }
        }
    };
    alert_path |= exporter != ExporterAction::Keep;

    Plan {
        release: i.release.clone(),
        previous: i.remote.current.clone(),
        files_added: added,
        files_changed: changed,
        files_removed: removed,
        files_unchanged: unchanged,
        containers,
        exporter,
        alert_path_touched: alert_path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::spec::desired;
    use crate::remote::layout::ReleaseInfo;

    fn manifest() -> Manifest {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/stack/stackproof.yml")).unwrap();
        Manifest::from_yaml(&text).unwrap()
    }

    fn files() -> BTreeMap<String, String> {
        [
            ("prometheus/prometheus.yml", "a"),
            ("prometheus/rules/r.yml", "b"),
            ("grafana/dashboards/d.json", "c"),
            ("grafana/provisioning/datasources/p.yml", "d"),
            ("host_exporter/exporter.py", "e"),
            ("alertmanager/alertmanager.yml", "f"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
    }

    fn running(specs: &[ContainerSpec]) -> Vec<Observed> {
        specs
            .iter()
            .map(|s| Observed {
                id: format!("id-{}", s.service),
                name: s.name.clone(),
                service: s.service.clone(),
                image: s.image.clone(),
                config_hash: s.hash(),
                release: "r1".into(),
                state: "running".into(),
                status: "Up".into(),
            })
            .collect()
    }

    fn remote(files: BTreeMap<String, String>, m: &Manifest) -> RemoteState {
        RemoteState {
            current: Some("r1".into()),
            releases: vec!["r1".into()],
            current_info: Some(ReleaseInfo { id: "r1".into(), files, ..Default::default() }),
            exporter: Some((42, format!("sh -c ... stackproof-host-exporter-supervisor {}", m.host_exporter.command.join(" ")))),
            writable: true,
            ..Default::default()
        }
    }

    fn plan_with(local: &BTreeMap<String, String>, rem: &RemoteState, obs: &[Observed], m: &Manifest) -> Plan {
        let d = desired(m, &BTreeMap::new(), "/srv/sp");
        compute(&PlanInput { manifest: m, release: "r2".into(), local, remote: rem, observed: obs, desired: &d, secrets_differ: &BTreeSet::new() })
    }

    #[test]
    fn fresh_host_creates_everything() {
        let m = manifest();
        let p = plan_with(&files(), &RemoteState::default(), &[], &m);
        assert_eq!(p.files_added.len(), 6);
        assert!(p.containers.iter().all(|c| matches!(c, ContainerAction::Create { .. })));
        assert_eq!(p.exporter, ExporterAction::Start);
        assert!(p.alert_path_touched && !p.is_noop());
    }

    #[test]
    fn unchanged_redeploy_is_a_noop() {
        let m = manifest();
        let d = desired(&m, &BTreeMap::new(), "/srv/sp");
        let p = plan_with(&files(), &remote(files(), &m), &running(&d), &m);
        assert!(p.is_noop(), "{}", p.render());
        assert!(!p.alert_path_touched);
    }

    #[test]
    fn dashboard_change_touches_no_container() {
        let m = manifest();
        let d = desired(&m, &BTreeMap::new(), "/srv/sp");
        let mut local = files();
        local.insert("grafana/dashboards/d.json".into(), "c2".into());
        let p = plan_with(&local, &remote(files(), &m), &running(&d), &m);
        assert_eq!(p.files_changed, vec!["grafana/dashboards/d.json"]);
        assert!(p.containers.iter().all(|c| matches!(c, ContainerAction::Keep { .. })), "{}", p.render());
        assert!(!p.alert_path_touched);
    }

    #[test]
    fn rule_change_reloads_prometheus() {
        let m = manifest();
        let d = desired(&m, &BTreeMap::new(), "/srv/sp");
        let mut local = files();
        local.insert("prometheus/rules/r.yml".into(), "b2".into());
        let p = plan_with(&local, &remote(files(), &m), &running(&d), &m);
        assert!(p.containers.contains(&ContainerAction::Reload { service: "prometheus".into(), reasons: vec!["files under prometheus/ changed".into()] }));
        assert!(p.alert_path_touched);
    }

    #[test]
    fn grafana_provisioning_change_recreates_grafana_with_reason() {
        let m = manifest();
        let d = desired(&m, &BTreeMap::new(), "/srv/sp");
        let mut local = files();
        local.insert("grafana/provisioning/datasources/p.yml".into(), "d2".into());
        let p = plan_with(&local, &remote(files(), &m), &running(&d), &m);
        let g = p.containers.iter().find(|c| c.service() == "grafana").unwrap();
        assert!(matches!(g, ContainerAction::Recreate { reasons, .. } if reasons[0].contains("no reload endpoint")), "{g:?}");
    }

    #[test]
    fn image_change_and_stray_container() {
        let m = manifest();
        let d = desired(&m, &BTreeMap::new(), "/srv/sp");
        let mut obs = running(&d);
        obs[0].image = "old:1".into();
        obs[0].config_hash = "x".into();
        obs.push(Observed {
            id: "z".into(),
            name: "stackproof-cadvisor".into(),
            service: "cadvisor".into(),
            image: "c".into(),
            config_hash: "h".into(),
            release: "r0".into(),
            state: "running".into(),
            status: "".into(),
        });
        let p = plan_with(&files(), &remote(files(), &m), &obs, &m);
        assert!(matches!(&p.containers[0], ContainerAction::Recreate { reasons, .. } if reasons[0].starts_with("image old:1 →")));
        assert!(p.containers.contains(&ContainerAction::Remove { service: "cadvisor".into(), name: "stackproof-cadvisor".into() }));
    }

    #[test]
    fn exporter_files_change_restarts_it() {
        let m = manifest();
        let d = desired(&m, &BTreeMap::new(), "/srv/sp");
        let mut local = files();
        local.insert("host_exporter/exporter.py".into(), "e2".into());
        let p = plan_with(&local, &remote(files(), &m), &running(&d), &m);
        assert!(matches!(p.exporter, ExporterAction::Restart { .. }));
        assert!(p.alert_path_touched);
    }
}
