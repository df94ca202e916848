//! Where the services find their files: the paths the manifest gives them (args, env),
//! mapped from inside a container back into the stack directory, and the stack's files
//! as a release holds them. The one place `lint`, `verify` and the drill learn which
//! stack file a service reads.
//!
//! Every container sees the current release at [`CONTAINER_CURRENT`], so
//! `/stackproof/current/prometheus/rules/x.yml` is the stack file `prometheus/rules/x.yml`;
//! any other absolute path is outside the release the deploy syncs.

use super::manifest::{Manifest, CONTAINER_CURRENT};
use super::Stack;
use crate::error::Result;

/// Where Prometheus reads its config when `--config.file` is not given (the image's default).
pub const PROMETHEUS_CONFIG: &str = "/etc/prometheus/prometheus.yml";
/// Where Alertmanager reads its config when `--config.file` is not given.
pub const ALERTMANAGER_CONFIG: &str = "/etc/alertmanager/alertmanager.yml";
/// Grafana's provisioning directory when `GF_PATHS_PROVISIONING` is not set.
pub const GRAFANA_PROVISIONING: &str = "/etc/grafana/provisioning";

/// `--flag=value` or `--flag value` from an argv (the first occurrence).
pub fn arg_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let eq = format!("{flag}=");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix(&eq) {
            return Some(v);
        }
        if a == flag {
            return it.next().map(String::as_str);
        }
    }
    None
}

/// Collapse `a/./b`, `a/x/../b` and doubled or trailing slashes.
pub fn normalise(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            x => out.push(x),
        }
    }
    out.join("/")
}

/// The `rule_files` glob under which `stackproof drill --alert/--all` puts its twin rules
/// (the remote dir's `drill/`, outside every release; the containers see the remote dir
/// at /stackproof). Not a stack file: readers of the stack skip it.
pub const DRILL_TWINS_GLOB: &str = "/stackproof/drill/*.yml";

/// A path as a container sees it, as a stack-relative path: `/stackproof/current/x/y` →
/// `x/y`. None for any path outside the current release.
pub fn container_to_stack(p: &str) -> Option<String> {
    let rest = p.strip_prefix(CONTAINER_CURRENT)?;
    Some(normalise(rest.trim_start_matches('/')))
}

/// A path written in a stack file (a `rule_files` entry): absolute paths are container
/// paths, relative ones are relative to `base`, the stack directory of the file that
/// names them (Prometheus resolves them against its config file's directory).
pub fn resolve(p: &str, base: &str) -> Option<String> {
    if p.starts_with('/') {
        container_to_stack(p)
    } else {
        Some(normalise(&format!("{base}/{p}")))
    }
}

/// The directory part of a stack-relative path (`""` at the top).
pub fn parent(rel: &str) -> &str {
    rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

/// A file or directory a service reads, as the manifest sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePath {
    /// The path inside the container (the manifest's value, else the image's default).
    pub container: String,
    /// Where the manifest sets it, as a path into the manifest (`services/prometheus/args/0`).
    pub at: String,
    /// The stack-relative path it maps to; None when it is outside the release.
    pub stack: Option<String>,
}

fn config_file(m: &Manifest, service: &str, default: &str) -> Option<ServicePath> {
    let flag = "--config.file";
    let args = &m.services.get(service)?.args;
    let container = arg_value(args, flag).unwrap_or(default).to_string();
    let at = match args.iter().position(|a| a.starts_with(flag)) {
        Some(i) => format!("services/{service}/args/{i}"),
        None => format!("services/{service}"),
    };
    Some(ServicePath { stack: container_to_stack(&container), container, at })
}

/// Prometheus' config file (`--config.file`); None when the stack runs no Prometheus.
pub fn prometheus_config(m: &Manifest) -> Option<ServicePath> {
    config_file(m, "prometheus", PROMETHEUS_CONFIG)
}

/// Alertmanager's config file (`--config.file`); None when the stack runs no Alertmanager.
pub fn alertmanager_config(m: &Manifest) -> Option<ServicePath> {
    config_file(m, "alertmanager", ALERTMANAGER_CONFIG)
}

/// Grafana's provisioning directory (`GF_PATHS_PROVISIONING`); None without Grafana.
pub fn grafana_provisioning(m: &Manifest) -> Option<ServicePath> {
    let g = m.services.get("grafana")?;
    let container = g.env.get("GF_PATHS_PROVISIONING").map(String::as_str).unwrap_or(GRAFANA_PROVISIONING).to_string();
    Some(ServicePath { stack: container_to_stack(&container), container, at: "services/grafana/env".into() })
}

/// The stack's files as a release holds them: stack-relative paths with `/`, sorted.
#[derive(Debug, Clone, Default)]
pub struct FileList(Vec<String>);

impl FileList {
    /// Every file of the stack directory (see [`Stack::files`]).
    pub fn of(stack: &Stack) -> Result<FileList> {
        Ok(FileList::new(stack.files()?.into_iter().map(|p| p.to_string_lossy().replace('\\', "/")).collect()))
    }

    pub fn new(mut files: Vec<String>) -> FileList {
        files.sort();
        FileList(files)
    }

    pub fn iter(&self) -> impl Iterator<Item = &String> {
        self.0.iter()
    }

    pub fn contains(&self, rel: &str) -> bool {
        self.0.binary_search_by(|f| f.as_str().cmp(rel)).is_ok()
    }

    /// Files under a stack directory (recursively; `""` is the whole stack).
    pub fn under<'a>(&'a self, rel_dir: &str) -> impl Iterator<Item = &'a String> + 'a {
        let prefix = if rel_dir.is_empty() { String::new() } else { format!("{}/", rel_dir.trim_end_matches('/')) };
        self.0.iter().filter(move |f| f.starts_with(&prefix))
    }

    /// Files a stack-relative glob matches (a resolved `rule_files` entry).
    pub fn glob(&self, pattern: &str) -> std::result::Result<Vec<String>, glob::PatternError> {
        let p = glob::Pattern::new(pattern)?;
        Ok(self.0.iter().filter(|f| p.matches(f)).cloned().collect())
    }

    /// Grafana's provisioning files of one kind (`datasources`, `dashboards`): the YAML
    /// files under `<provisioning>/<kind>`.
    pub fn provisioning(&self, prov_rel: &str, kind: &str) -> Vec<String> {
        self.under(&format!("{prov_rel}/{kind}")).filter(|f| f.ends_with(".yml") || f.ends_with(".yaml")).cloned().collect()
    }

    /// The dashboard files (`.json`) under a stack directory.
    pub fn dashboards(&self, rel_dir: &str) -> Vec<String> {
        self.under(rel_dir).filter(|f| f.ends_with(".json")).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_map_into_the_stack() {
        assert_eq!(container_to_stack("/stackproof/current/prometheus/rules/x.yml").as_deref(), Some("prometheus/rules/x.yml"));
        assert_eq!(container_to_stack("/stackproof/current//grafana/./dashboards/../provisioning/").as_deref(), Some("grafana/provisioning"));
        assert_eq!(container_to_stack("/stackproof/current").as_deref(), Some(""));
        assert_eq!(container_to_stack("/etc/prometheus/prometheus.yml"), None);
        assert_eq!(container_to_stack("/stackproof/textfile/x.prom"), None);
        assert_eq!(container_to_stack("grafana/dashboards"), None, "a relative path is no container path");
    }

    #[test]
    fn written_paths_resolve_against_their_file() {
        assert_eq!(resolve("rules/*.yml", "prometheus").as_deref(), Some("prometheus/rules/*.yml"));
        assert_eq!(resolve("./rules/../rules/a.yml", "prometheus").as_deref(), Some("prometheus/rules/a.yml"));
        assert_eq!(resolve("/stackproof/current/prometheus/rules/*.yml", "anything").as_deref(), Some("prometheus/rules/*.yml"));
        assert_eq!(resolve("/etc/prometheus/rules/*.yml", "prometheus"), None);
        assert_eq!(parent("prometheus/prometheus.yml"), "prometheus");
        assert_eq!(parent("top.yml"), "");
    }

    #[test]
    fn arg_values() {
        let a: Vec<String> = vec!["--x=1".into(), "--config.file".into(), "/c.yml".into()];
        assert_eq!(arg_value(&a, "--config.file"), Some("/c.yml"));
        assert_eq!(arg_value(&a, "--x"), Some("1"));
        assert_eq!(arg_value(&a, "--y"), None);
    }

    #[test]
    fn service_paths_of_the_default_stack() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/stack/stackproof.yml")).unwrap();
        let m = Manifest::from_yaml(&text).unwrap();
        let p = prometheus_config(&m).unwrap();
        assert_eq!(p.stack.as_deref(), Some("prometheus/prometheus.yml"));
        assert_eq!(p.at, "services/prometheus/args/0");
        assert_eq!(alertmanager_config(&m).unwrap().stack.as_deref(), Some("alertmanager/alertmanager.yml"));
        assert_eq!(grafana_provisioning(&m).unwrap().stack.as_deref(), Some("grafana/provisioning"));

        let mut m = m;
        m.services.get_mut("prometheus").unwrap().args.retain(|a| !a.starts_with("--config.file"));
        let p = prometheus_config(&m).unwrap();
        assert_eq!((p.container.as_str(), p.stack, p.at.as_str()), (PROMETHEUS_CONFIG, None, "services/prometheus"));
        m.services.remove("alertmanager");
        assert_eq!(alertmanager_config(&m), None);
    }

    #[test]
    fn file_list_finds_what_services_read() {
        let l = FileList::new(
            [
                "grafana/provisioning/datasources/p.yml",
                "grafana/dashboards/a.json",
                "grafana/dashboards/team/b.json",
                "grafana/dashboards/notes.md",
                "prometheus/rules/a.yml",
            ]
            .map(String::from)
            .to_vec(),
        );
        assert!(l.contains("prometheus/rules/a.yml") && !l.contains("prometheus/rules"));
        assert_eq!(l.dashboards("grafana/dashboards"), ["grafana/dashboards/a.json", "grafana/dashboards/team/b.json"]);
        assert_eq!(l.provisioning("grafana/provisioning", "datasources"), ["grafana/provisioning/datasources/p.yml"]);
        assert_eq!(l.glob("prometheus/rules/*.yml").unwrap(), ["prometheus/rules/a.yml"]);
        assert!(l.glob("prometheus/rules/[a.yml").is_err());
    }
}
