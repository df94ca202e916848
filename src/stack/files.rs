//! The stack's files, read once and typed, for the stages that run against a deployed
//! stack (`verify`, the drill): the Prometheus config and its rule files, the
//! Alertmanager config, Grafana's provisioned datasources, dashboard providers and the
//! dashboard files each serves, and the timing that bounds every poll.
//!
//! Which file a service reads comes from [`super::paths`], the models from
//! [`super::prometheus`], [`super::alertmanager`] and [`super::provisioning`]: the same
//! ones `lint` checks file by file (with positions). A file that cannot be read or parsed
//! is a [`Problem`]: `lint` reports it in detail, `verify` and the drill say so too.

use super::alertmanager::Config as AmConfig;
use super::dashboard::Dashboard;
use super::paths::{self, FileList};
use super::prometheus::{Config as PromConfig, RuleFile, RuleGroup};
use super::provisioning::{Datasource, DatasourceFile, Provider, ProviderFile, DEFAULT_UPDATE_INTERVAL};
use super::Stack;
use serde_json::Value as Json;
use std::path::Path;
use std::time::Duration;

/// Scrape and evaluation timing of the stack (Prometheus' and Grafana's defaults where unset).
#[derive(Debug, Clone)]
pub struct Timing {
    /// Longest scrape interval of any job.
    pub scrape: Duration,
    pub scrape_timeout: Duration,
    pub evaluation: Duration,
    /// Longest `updateIntervalSeconds` of Grafana's dashboard providers.
    pub provider_update: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            scrape: Duration::from_secs(60),
            scrape_timeout: Duration::from_secs(10),
            evaluation: Duration::from_secs(60),
            provider_update: DEFAULT_UPDATE_INTERVAL,
        }
    }
}

impl Timing {
    /// Scrape and evaluation timing of a Prometheus config.
    pub fn of(cfg: &PromConfig) -> Timing {
        let d = |t: &Option<super::prometheus::Text>| t.as_ref().and_then(|t| t.duration().ok());
        let g_scrape = cfg.global_scrape_interval();
        let g_timeout = d(&cfg.global.scrape_timeout).unwrap_or(Duration::from_secs(10));
        let mut t = Timing {
            scrape: g_scrape,
            scrape_timeout: g_timeout.min(g_scrape),
            evaluation: cfg.evaluation_interval(),
            provider_update: DEFAULT_UPDATE_INTERVAL,
        };
        if !cfg.scrape_configs.is_empty() {
            t.scrape = Duration::ZERO;
            t.scrape_timeout = Duration::ZERO;
            for j in &cfg.scrape_configs {
                let s = d(&j.scrape_interval).unwrap_or(g_scrape);
                t.scrape = t.scrape.max(s);
                t.scrape_timeout = t.scrape_timeout.max(d(&j.scrape_timeout).unwrap_or(g_timeout).min(s));
            }
        }
        t
    }
}

/// Which part of the stack a problem is in (the drill needs Prometheus, its rules and
/// Alertmanager; `verify` reports every part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The stack directory itself (its files could not be listed).
    Stack,
    Prometheus,
    Rules,
    Alertmanager,
    Grafana,
}

/// A stack file that could not be read or parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub part: Part,
    pub message: String,
}

/// A service's config file.
#[derive(Debug, Clone, Default)]
pub struct ConfigFile<T> {
    /// Stack-relative path.
    pub file: String,
    /// The path as the container sees it (relative paths in the file resolve against its directory).
    pub container: String,
    /// The file as YAML: what `verify` compares with the config the service runs.
    pub yaml: Option<serde_yaml::Value>,
    /// The typed model; None when the file does not read as this config.
    pub model: Option<T>,
}

/// A model read from one stack file.
#[derive(Debug, Clone)]
pub struct InFile<T> {
    /// Stack-relative path.
    pub file: String,
    pub value: T,
}

/// A dashboard provider and the dashboard files it serves.
#[derive(Debug, Clone)]
pub struct Served {
    pub file: String,
    pub provider: Provider,
    /// Stack-relative `.json` files under the provider's path.
    pub dashboards: Vec<String>,
}

/// One dashboard file as Grafana's file provisioner sees it.
#[derive(Debug, Clone)]
pub struct DashFile {
    /// Index into `providers`.
    pub provider: usize,
    /// Path relative to the provider's path (what Grafana calls `provisionedExternalId`).
    pub rel: String,
    /// Stack-relative path, for messages.
    pub file: String,
    pub uid: Option<String>,
    pub title: Option<String>,
    /// The dashboard model as Grafana would load it (None when it cannot).
    pub dashboard: Option<Dashboard>,
    /// Why Grafana would skip this file (wrapped, invalid JSON, no title).
    pub problem: Option<String>,
}

/// The deployed stack's files.
#[derive(Debug, Clone, Default)]
pub struct StackFiles {
    pub prometheus: ConfigFile<PromConfig>,
    /// The rule files `rule_files` matches, sorted.
    pub rules: Vec<InFile<RuleFile>>,
    pub alertmanager: ConfigFile<AmConfig>,
    pub datasources: Vec<InFile<Datasource>>,
    pub providers: Vec<Served>,
    pub dashboards: Vec<DashFile>,
    pub timing: Timing,
    pub problems: Vec<Problem>,
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Read a service's config: the file as YAML (for comparisons) and as its typed model.
/// An absolute path under the stack directory, as a service reading the stack's files in
/// place names them, mapped to the container path of the same file.
fn host_to_container(p: &str, dir: &Path) -> String {
    match Path::new(p).strip_prefix(dir) {
        Ok(rest) if Path::new(p).is_absolute() => format!("{}/{}", crate::stack::manifest::CONTAINER_CURRENT, rest.display()),
        _ => p.to_string(),
    }
}

/// Read through `Stack::read_text`, so a file as deployed to a host (its Alertmanager
/// config with the host's receivers) is what verify and the drill compare against.
fn read_config<T>(stack: &Stack, rel: &str, parse: fn(&str) -> Result<T, serde_yaml::Error>) -> (Option<serde_yaml::Value>, Result<T, String>) {
    let path = stack.dir.join(rel);
    let at = |e: serde_yaml::Error| format!("{}: {e}", path.display());
    let text = match stack.read_text(rel) {
        Ok(t) => t,
        Err(e) => return (None, Err(e)),
    };
    match serde_yaml::from_str::<serde_yaml::Value>(&text) {
        Ok(yaml) => (Some(yaml), parse(&text).map_err(at)),
        Err(e) => (None, Err(at(e))),
    }
}

impl StackFiles {
    pub fn load(stack: &Stack) -> StackFiles {
        let mut f = StackFiles::default();
        let dir = stack.dir.as_path();
        let m = &stack.manifest;
        let list = FileList::of(stack).unwrap_or_else(|e| {
            f.problems.push(Problem { part: Part::Stack, message: format!("cannot list the stack's files: {e}") });
            FileList::default()
        });

        // Prometheus and its rule files. A config outside the release is read from the
        // conventional place (lint reports the manifest).
        let prom = paths::prometheus_config(m);
        f.prometheus.container = prom.as_ref().map(|p| p.container.clone()).unwrap_or_else(|| paths::PROMETHEUS_CONFIG.into());
        f.prometheus.file = prom.and_then(|p| p.stack).unwrap_or_else(|| "prometheus/prometheus.yml".into());
        let (yaml, model) = read_config(stack, &f.prometheus.file, PromConfig::from_yaml);
        f.prometheus.yaml = yaml;
        match model {
            Ok(c) => f.prometheus.model = Some(c),
            Err(e) => f.problems.push(Problem { part: Part::Prometheus, message: format!("Prometheus config: {e}") }),
        }
        if let Some(cfg) = &f.prometheus.model {
            f.timing = Timing::of(cfg);
            let base = paths::parent(&f.prometheus.file).to_string();
            let mut rule_files = vec![];
            for pat in &cfg.rule_files {
                if pat == paths::DRILL_TWINS_GLOB {
                    continue; // outside every release on purpose: the drill's twins (src/drill/live)
                }
                let Some(rel) = paths::resolve(&host_to_container(pat, dir), &base) else {
                    f.problems.push(Problem { part: Part::Rules, message: format!("rule file pattern {pat} points outside the stack") });
                    continue;
                };
                match list.glob(&rel) {
                    Ok(files) => rule_files.extend(files),
                    Err(e) => f.problems.push(Problem { part: Part::Rules, message: format!("rule file pattern {pat} is not a valid glob: {e}") }),
                }
            }
            rule_files.sort();
            rule_files.dedup();
            for file in rule_files {
                let path = dir.join(&file);
                match read_text(&path).and_then(|t| RuleFile::from_yaml(&t).map_err(|e| format!("{}: {e}", path.display()))) {
                    Ok(value) => f.rules.push(InFile { file, value }),
                    Err(e) => f.problems.push(Problem { part: Part::Rules, message: format!("rule file: {e}") }),
                }
            }
        }

        // Alertmanager.
        let am = paths::alertmanager_config(m);
        f.alertmanager.container = am.as_ref().map(|p| p.container.clone()).unwrap_or_else(|| paths::ALERTMANAGER_CONFIG.into());
        f.alertmanager.file = am.and_then(|p| p.stack).unwrap_or_else(|| "alertmanager/alertmanager.yml".into());
        let (yaml, model) = read_config(stack, &f.alertmanager.file, AmConfig::from_yaml);
        f.alertmanager.yaml = yaml;
        match model {
            Ok(c) => f.alertmanager.model = Some(c),
            Err(e) => f.problems.push(Problem { part: Part::Alertmanager, message: format!("Alertmanager config: {e}") }),
        }

        // Grafana provisioning.
        let prov = paths::grafana_provisioning(m).and_then(|p| p.stack).unwrap_or_else(|| "grafana/provisioning".into());
        for file in list.provisioning(&prov, "datasources") {
            let path = dir.join(&file);
            match read_text(&path).and_then(|t| DatasourceFile::from_yaml(&t).map_err(|e| format!("{}: {e}", path.display()))) {
                Ok(d) => f.datasources.extend(d.datasources().iter().map(|ds| InFile { file: file.clone(), value: ds.clone() })),
                Err(e) => f.problems.push(Problem { part: Part::Grafana, message: format!("datasource provisioning: {e}") }),
            }
        }
        let mut max_update = None::<Duration>;
        for file in list.provisioning(&prov, "dashboards") {
            let path = dir.join(&file);
            let pf = match read_text(&path).and_then(|t| ProviderFile::from_yaml(&t).map_err(|e| format!("{}: {e}", path.display()))) {
                Ok(p) => p,
                Err(e) => {
                    f.problems.push(Problem { part: Part::Grafana, message: format!("dashboard provider: {e}") });
                    continue;
                }
            };
            for p in pf.providers() {
                // A provider path under the stack directory itself (services run on
                // the stack's files directly, as the tests' local world does) is the
                // same as its container path.
                let mut p = p.clone();
                if let Some(path) = p.path().map(|x| host_to_container(x, dir)) {
                    let key = if p.options.contains_key("path") { "path" } else { "folder" };
                    p.options.insert(key.into(), serde_yaml::Value::String(path));
                }
                let p = &p;
                max_update = Some(max_update.unwrap_or_default().max(p.update_interval()));
                let idx = f.providers.len();
                f.providers.push(Served { file: file.clone(), provider: p.clone(), dashboards: p.dashboards(&list) });
                let Some(path) = p.path() else { continue };
                let Some(root) = p.stack_dir() else {
                    f.problems.push(Problem { part: Part::Grafana, message: format!("{file}: dashboard path {path} is outside the stack") });
                    continue;
                };
                for d in &f.providers[idx].dashboards {
                    f.dashboards.push(dash_file(idx, &root, d, dir));
                }
            }
        }
        if let Some(u) = max_update {
            f.timing.provider_update = u;
        }
        f
    }

    /// Every problem, in one line.
    pub fn problem_text(&self) -> String {
        self.problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; ")
    }

    /// Every rule group with the file it is in.
    pub fn rule_groups(&self) -> impl Iterator<Item = (&str, &RuleGroup)> {
        self.rules.iter().flat_map(|f| f.value.groups.iter().map(move |g| (f.file.as_str(), g)))
    }

    /// The expected folder title of a dashboard file.
    pub fn folder_of(&self, d: &DashFile) -> String {
        let p = &self.providers[d.provider].provider;
        if p.folders_from_files_structure() {
            if let Some(parent) = Path::new(&d.rel).parent().filter(|p| !p.as_os_str().is_empty()) {
                return parent.display().to_string();
            }
        }
        p.folder().to_string()
    }
}

/// Read one dashboard file and decide, like Grafana's file provisioner, whether it loads.
fn dash_file(provider: usize, root: &str, file: &str, stack_dir: &Path) -> DashFile {
    let rel = file.strip_prefix(root).map(|r| r.trim_start_matches('/')).unwrap_or(file).to_string();
    let mut d = DashFile { provider, rel, file: file.to_string(), uid: None, title: None, dashboard: None, problem: None };
    let v: Json =
        match std::fs::read_to_string(stack_dir.join(file)).map_err(|e| e.to_string()).and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string())) {
            Ok(v) => v,
            Err(e) => {
                d.problem = Some(format!("not valid JSON ({e}); Grafana skips it"));
                return d;
            }
        };
    let model = Dashboard::from_value(v);
    match model.title.clone().filter(|t| !t.is_empty()) {
        Some(t) => {
            d.title = Some(t);
            d.uid = model.uid.clone();
            d.dashboard = Some(model);
        }
        None => {
            if let Some(inner) = model.raw.get("dashboard").filter(|i| i.is_object()) {
                d.uid = inner.get("uid").and_then(Json::as_str).map(str::to_string);
                d.title = inner.get("title").and_then(Json::as_str).map(str::to_string);
                d.problem = Some(
                    "is wrapped in {\"dashboard\": …} (the HTTP API shape); Grafana's file provisioning rejects it with \"Dashboard title cannot be empty\""
                        .into(),
                );
            } else {
                d.problem = Some("has no top-level title; Grafana rejects it with \"Dashboard title cannot be empty\"".into());
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::stack::testing::{default_stack, edited};

    #[test]
    fn the_default_stack_reads_completely() {
        let f = StackFiles::load(&default_stack());
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        assert_eq!(f.prometheus.file, "prometheus/prometheus.yml");
        assert_eq!(f.prometheus.container, "/stackproof/current/prometheus/prometheus.yml");
        assert!(f.prometheus.yaml.is_some() && f.prometheus.model.is_some());
        assert_eq!(f.alertmanager.file, "alertmanager/alertmanager.yml");
        let rule_files: Vec<&str> = f.rules.iter().map(|r| r.file.as_str()).collect();
        assert!(rule_files.contains(&"prometheus/rules/drill.yml"), "{rule_files:?}");
        assert!(f.rule_groups().any(|(file, g)| file == "prometheus/rules/drill.yml" && g.rules.iter().any(|r| r.alert.as_deref() == Some("StackproofDrill"))));
    }

    #[test]
    fn provisioning_of_the_default_stack() {
        let f = StackFiles::load(&default_stack());
        let ds: Vec<(&str, &str, Option<&str>, bool)> =
            f.datasources.iter().map(|d| (d.file.as_str(), d.value.name(), d.value.uid.as_deref(), d.value.is_default())).collect();
        assert_eq!(ds, [("grafana/provisioning/datasources/prometheus.yml", "Prometheus", Some("prometheus"), true)]);
        assert_eq!(f.datasources[0].value.url(), "http://127.0.0.1:9090");
        assert_eq!(f.providers.len(), 1);
        let p = &f.providers[0];
        assert_eq!((p.file.as_str(), p.provider.name(), p.provider.folder()), ("grafana/provisioning/dashboards/stackproof.yml", "stackproof", "stackproof"));
        assert_eq!(p.provider.stack_dir().as_deref(), Some("grafana/dashboards"));
        assert_eq!(p.dashboards.len(), 3);
        assert!(p.dashboards.iter().all(|d| d.starts_with("grafana/dashboards/") && d.ends_with(".json")));
        assert_eq!(f.dashboards.len(), 3);
        let sys = f.dashboards.iter().find(|d| d.uid.as_deref() == Some("stackproof-system")).unwrap();
        assert_eq!((sys.rel.as_str(), sys.file.as_str()), ("stackproof-system.json", "grafana/dashboards/stackproof-system.json"));
        assert!(sys.problem.is_none() && sys.dashboard.is_some());
        assert_eq!(f.folder_of(sys), "stackproof");
        assert_eq!(f.timing.provider_update, Duration::from_secs(5));
    }

    #[test]
    fn a_provider_outside_the_stack_is_a_problem() {
        let (_t, s) = edited("grafana/provisioning/dashboards/stackproof.yml", |t| {
            t.replace("path: /stackproof/current/grafana/dashboards", "path: /var/lib/grafana/dashboards")
        });
        let f = StackFiles::load(&s);
        assert_eq!(f.providers.len(), 1);
        assert!(f.providers[0].dashboards.is_empty() && f.dashboards.is_empty());
        assert_eq!(f.problems.len(), 1, "{:?}", f.problems);
        assert_eq!(f.problems[0].part, Part::Grafana);
        assert_eq!(f.problems[0].message, "grafana/provisioning/dashboards/stackproof.yml: dashboard path /var/lib/grafana/dashboards is outside the stack");
    }

    #[test]
    fn unreadable_files_are_problems_of_their_part() {
        let (_t, s) = edited("prometheus/rules/drill.yml", |t| t.replace("groups:", "groups: [").replace("for: 4s", "for: 4s ]]"));
        let f = StackFiles::load(&s);
        assert!(f.problems.iter().all(|p| p.part == Part::Rules), "{:?}", f.problems);
        assert!(f.problem_text().starts_with("rule file: ") && f.problem_text().contains("drill.yml"), "{}", f.problem_text());
        assert!(!f.rules.iter().any(|r| r.file.ends_with("drill.yml")));

        let (_t, s) = edited("alertmanager/alertmanager.yml", |t| t.replace("route:", "route: [\n"));
        let f = StackFiles::load(&s);
        assert_eq!(f.problems.len(), 1);
        assert_eq!(f.problems[0].part, Part::Alertmanager);
        assert!(f.alertmanager.model.is_none());
    }

    #[test]
    fn a_wrapped_dashboard_is_served_but_not_loaded() {
        let (_t, s) = edited("grafana/dashboards/stackproof-system.json", |t| format!("{{\"dashboard\": {t}}}"));
        let f = StackFiles::load(&s);
        let d = f.dashboards.iter().find(|d| d.file.ends_with("stackproof-system.json")).unwrap();
        assert_eq!(d.uid.as_deref(), Some("stackproof-system"));
        assert!(d.dashboard.is_none() && d.problem.as_deref().unwrap().contains("wrapped"));
    }

    #[test]
    fn timing_takes_the_slowest_job() {
        let c = PromConfig::from_yaml(
            "global: {scrape_interval: 5s, evaluation_interval: 2s}\nscrape_configs:\n- job_name: a\n- job_name: b\n  scrape_interval: 10s\n",
        )
        .unwrap();
        let t = Timing::of(&c);
        assert_eq!(t.scrape, Duration::from_secs(10));
        assert_eq!(t.evaluation, Duration::from_secs(2));
        assert_eq!(t.scrape_timeout, Duration::from_secs(10));
        let t = Timing::of(&PromConfig::default());
        assert_eq!((t.scrape, t.scrape_timeout, t.evaluation), (Duration::from_secs(60), Duration::from_secs(10), Duration::from_secs(60)));
    }
}
