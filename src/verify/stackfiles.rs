//! The deployed stack's files as `verify` needs them: the Prometheus config and its rule
//! groups, the Alertmanager config, Grafana's provisioned datasources, dashboard
//! providers and dashboard files, and the timing that bounds every poll.
//!
//! Services see their files under `/stackproof/current/...` (see the manifest); this
//! module maps such container paths back into the stack directory.

use crate::stack::manifest::CONTAINER_CURRENT;
use crate::stack::Stack;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Timing {
    /// Longest scrape interval of any job.
    pub scrape: Duration,
    pub scrape_timeout: Duration,
    pub evaluation: Duration,
    /// Longest `updateIntervalSeconds` of Grafana's dashboard providers.
    pub provider_update: Duration,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub alerting: bool,
    pub expr: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct RuleGroup {
    /// Stack-relative path of the rule file.
    pub file: String,
    pub name: String,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
pub struct Datasource {
    pub name: String,
    pub uid: Option<String>,
    pub kind: String,
    pub url: String,
    pub is_default: bool,
    /// `jsonData.timeInterval`: the panel's minimum step.
    pub time_interval: Option<String>,
    pub file: String,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub folder: String,
    pub folder_uid: Option<String>,
    pub allow_ui_updates: bool,
    pub from_structure: bool,
    pub file: String,
}

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
    pub json: Option<Json>,
    /// Why Grafana would skip this file (wrapped, invalid JSON, no title).
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct StackFiles {
    pub prom_config_file: Option<String>,
    /// The config file as the container sees it (relative paths in it resolve here).
    pub prom_config_container: String,
    pub prom_config: Option<Yaml>,
    pub rule_groups: Vec<RuleGroup>,
    pub am_config_file: Option<String>,
    pub am_config: Option<Yaml>,
    pub datasources: Vec<Datasource>,
    pub providers: Vec<Provider>,
    pub dashboards: Vec<DashFile>,
    pub timing: Timing,
    /// Files that could not be read or parsed (lint's job, but verify says so too).
    pub problems: Vec<String>,
}

impl Default for Timing {
    fn default() -> Self {
        // Prometheus' and Grafana's own defaults.
        Timing {
            scrape: Duration::from_secs(60),
            scrape_timeout: Duration::from_secs(10),
            evaluation: Duration::from_secs(60),
            provider_update: Duration::from_secs(10),
        }
    }
}

/// `--flag=value` or `--flag value` from an argv.
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

/// Map a path as a container sees it to the stack directory: `/stackproof/current/x` →
/// `<stack>/x`; an absolute path already inside the stack dir stays; a relative path is
/// relative to `base_rel` (a stack-relative directory). Anything else is outside the
/// stack (None).
pub fn to_stack(stack_dir: &Path, p: &str, base_rel: &Path) -> Option<PathBuf> {
    if let Some(rest) = p.strip_prefix(CONTAINER_CURRENT) {
        return Some(stack_dir.join(rest.trim_start_matches('/')));
    }
    let path = Path::new(p);
    if path.is_absolute() {
        return path.starts_with(stack_dir).then(|| path.to_path_buf());
    }
    Some(stack_dir.join(base_rel).join(path))
}

fn rel_display(stack_dir: &Path, p: &Path) -> String {
    p.strip_prefix(stack_dir).unwrap_or(p).display().to_string()
}

/// A Prometheus duration (`1m30s`, `15s`, `500ms`), None if it is not one.
pub fn prom_duration(s: &str) -> Option<Duration> {
    crate::stack::prometheus::parse_duration(s).ok()
}

fn ystr(v: &Yaml, key: &str) -> Option<String> {
    match v.get(key)? {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn ybool(v: &Yaml, key: &str) -> Option<bool> {
    v.get(key).and_then(Yaml::as_bool)
}

fn read_yaml(path: &Path) -> Result<Yaml, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

impl StackFiles {
    pub fn load(stack: &Stack) -> StackFiles {
        let mut f = StackFiles::default();
        let dir = stack.dir.as_path();
        let m = &stack.manifest;

        // Prometheus config and its rule files.
        let prom_args = m.services.get("prometheus").map(|s| s.args.clone()).unwrap_or_default();
        f.prom_config_container = arg_value(&prom_args, "--config.file").unwrap_or("/etc/prometheus/prometheus.yml").to_string();
        let prom_path = to_stack(dir, &f.prom_config_container, Path::new("")).unwrap_or_else(|| dir.join("prometheus/prometheus.yml"));
        f.prom_config_file = Some(rel_display(dir, &prom_path));
        match read_yaml(&prom_path) {
            Ok(y) => f.prom_config = Some(y),
            Err(e) => f.problems.push(format!("Prometheus config: {e}")),
        }
        let prom_dir_rel = prom_path.parent().map(|p| p.strip_prefix(dir).unwrap_or(p).to_path_buf()).unwrap_or_default();
        if let Some(cfg) = f.prom_config.clone() {
            f.timing = timing_of(&cfg);
            for pat in cfg.get("rule_files").and_then(Yaml::as_sequence).into_iter().flatten() {
                let Some(pat) = pat.as_str() else { continue };
                let Some(p) = to_stack(dir, pat, &prom_dir_rel) else {
                    f.problems.push(format!("rule file pattern {pat} points outside the stack"));
                    continue;
                };
                let paths: Vec<PathBuf> = glob::glob(&p.to_string_lossy()).map(|g| g.filter_map(Result::ok).collect()).unwrap_or_default();
                for p in paths {
                    match read_yaml(&p) {
                        Ok(y) => f.rule_groups.extend(rule_groups(&y, &rel_display(dir, &p))),
                        Err(e) => f.problems.push(format!("rule file: {e}")),
                    }
                }
            }
        }

        // Alertmanager.
        let am_args = m.services.get("alertmanager").map(|s| s.args.clone()).unwrap_or_default();
        let am_container = arg_value(&am_args, "--config.file").unwrap_or("/etc/alertmanager/alertmanager.yml");
        let am_path = to_stack(dir, am_container, Path::new("")).unwrap_or_else(|| dir.join("alertmanager/alertmanager.yml"));
        f.am_config_file = Some(rel_display(dir, &am_path));
        match read_yaml(&am_path) {
            Ok(y) => f.am_config = Some(y),
            Err(e) => f.problems.push(format!("Alertmanager config: {e}")),
        }

        // Grafana provisioning.
        let prov_container =
            m.services.get("grafana").and_then(|s| s.env.get("GF_PATHS_PROVISIONING").cloned()).unwrap_or_else(|| "/etc/grafana/provisioning".into());
        let prov = to_stack(dir, &prov_container, Path::new("")).unwrap_or_else(|| dir.join("grafana/provisioning"));
        for p in yaml_files(&prov.join("datasources")) {
            match read_yaml(&p) {
                Ok(y) => {
                    for d in y.get("datasources").and_then(Yaml::as_sequence).into_iter().flatten() {
                        f.datasources.push(Datasource {
                            name: ystr(d, "name").unwrap_or_default(),
                            uid: ystr(d, "uid"),
                            kind: ystr(d, "type").unwrap_or_default(),
                            url: ystr(d, "url").unwrap_or_default(),
                            is_default: ybool(d, "isDefault").unwrap_or(false),
                            time_interval: d.get("jsonData").and_then(|j| ystr(j, "timeInterval")),
                            file: rel_display(dir, &p),
                        });
                    }
                }
                Err(e) => f.problems.push(format!("datasource provisioning: {e}")),
            }
        }
        let mut max_update = None::<Duration>;
        for p in yaml_files(&prov.join("dashboards")) {
            let y = match read_yaml(&p) {
                Ok(y) => y,
                Err(e) => {
                    f.problems.push(format!("dashboard provider: {e}"));
                    continue;
                }
            };
            for pr in y.get("providers").and_then(Yaml::as_sequence).into_iter().flatten() {
                let upd = pr.get("updateIntervalSeconds").and_then(Yaml::as_u64).unwrap_or(10);
                max_update = Some(max_update.unwrap_or_default().max(Duration::from_secs(upd)));
                let opts = pr.get("options");
                let from_structure = opts.and_then(|o| ybool(o, "foldersFromFilesStructure")).unwrap_or(false);
                let idx = f.providers.len();
                f.providers.push(Provider {
                    name: ystr(pr, "name").unwrap_or_default(),
                    folder: ystr(pr, "folder").unwrap_or_default(),
                    folder_uid: ystr(pr, "folderUid"),
                    allow_ui_updates: ybool(pr, "allowUiUpdates").unwrap_or(false),
                    from_structure,
                    file: rel_display(dir, &p),
                });
                let Some(path) = opts.and_then(|o| ystr(o, "path")) else { continue };
                let Some(root) = to_stack(dir, &path, Path::new("")) else {
                    f.problems.push(format!("{}: dashboard path {path} is outside the stack", rel_display(dir, &p)));
                    continue;
                };
                let mut files = vec![];
                collect_json(&root, &mut files);
                for file in files {
                    f.dashboards.push(dash_file(idx, &root, &file, dir));
                }
            }
        }
        if let Some(u) = max_update {
            f.timing.provider_update = u;
        }
        f
    }

    /// A failing check naming every stack file `verify` could not read.
    pub fn problems_as_checks(&self) -> Vec<super::Check> {
        if self.problems.is_empty() {
            return vec![];
        }
        vec![super::Check {
            name: "stack files readable".into(),
            status: super::Status::Fail,
            detail: self.problems.join("; "),
            hint: "run `stackproof lint` on the stack that was deployed".into(),
            duration_ms: 0,
        }]
    }

    /// The default datasource as Grafana would pick it (the one marked default, else the
    /// first one provisioned).
    pub fn default_datasource(&self) -> Option<&Datasource> {
        self.datasources.iter().find(|d| d.is_default).or_else(|| self.datasources.first())
    }

    /// The expected folder title of a dashboard file.
    pub fn folder_of(&self, d: &DashFile) -> String {
        let p = &self.providers[d.provider];
        if p.from_structure {
            if let Some(parent) = Path::new(&d.rel).parent().filter(|p| !p.as_os_str().is_empty()) {
                return parent.display().to_string();
            }
        }
        p.folder.clone()
    }
}

fn collect_json(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_json(&p, out);
        } else if p.extension().and_then(|e| e.to_str()) == Some("json") {
            out.push(p);
        }
    }
}

/// Read one dashboard file and decide, like Grafana's file provisioner, whether it loads.
fn dash_file(provider: usize, root: &Path, path: &Path, stack_dir: &Path) -> DashFile {
    let rel = path.strip_prefix(root).unwrap_or(path).display().to_string();
    let mut d = DashFile { provider, rel, file: rel_display(stack_dir, path), uid: None, title: None, json: None, problem: None };
    let v: Json = match std::fs::read_to_string(path).map_err(|e| e.to_string()).and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string())) {
        Ok(v) => v,
        Err(e) => {
            d.problem = Some(format!("not valid JSON ({e}); Grafana skips it"));
            return d;
        }
    };
    let title = v.get("title").and_then(Json::as_str).filter(|t| !t.is_empty()).map(str::to_string);
    match title {
        Some(t) => {
            d.title = Some(t);
            d.uid = v.get("uid").and_then(Json::as_str).map(str::to_string);
            d.json = Some(v);
        }
        None => {
            if let Some(inner) = v.get("dashboard").filter(|i| i.is_object()) {
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

fn rule_groups(y: &Yaml, file: &str) -> Vec<RuleGroup> {
    let mut out = vec![];
    for g in y.get("groups").and_then(Yaml::as_sequence).into_iter().flatten() {
        let mut rules = vec![];
        for r in g.get("rules").and_then(Yaml::as_sequence).into_iter().flatten() {
            let (name, alerting) = match (ystr(r, "alert"), ystr(r, "record")) {
                (Some(a), _) => (a, true),
                (None, Some(rec)) => (rec, false),
                _ => continue,
            };
            let labels = r
                .get("labels")
                .and_then(Yaml::as_mapping)
                .map(|m| {
                    m.iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str().map(str::to_string).unwrap_or_else(|| format!("{v:?}"))))).collect()
                })
                .unwrap_or_default();
            rules.push(Rule { name, alerting, expr: ystr(r, "expr").unwrap_or_default(), labels });
        }
        out.push(RuleGroup { file: file.to_string(), name: ystr(g, "name").unwrap_or_default(), rules });
    }
    out
}

/// Scrape and evaluation timing of a Prometheus config (Prometheus' defaults where unset).
pub fn timing_of(cfg: &Yaml) -> Timing {
    let d = |v: Option<&Yaml>, key: &str| v.and_then(|g| g.get(key)).and_then(Yaml::as_str).and_then(prom_duration);
    let global = cfg.get("global");
    let g_scrape = d(global, "scrape_interval").unwrap_or(Duration::from_secs(60));
    let g_timeout = d(global, "scrape_timeout").unwrap_or(Duration::from_secs(10));
    let mut t = Timing {
        scrape: g_scrape,
        scrape_timeout: g_timeout.min(g_scrape),
        evaluation: d(global, "evaluation_interval").unwrap_or(Duration::from_secs(60)),
        provider_update: Duration::from_secs(10),
    };
    let jobs: Vec<&Yaml> = cfg.get("scrape_configs").and_then(Yaml::as_sequence).into_iter().flatten().collect();
    if !jobs.is_empty() {
        t.scrape = Duration::ZERO;
        t.scrape_timeout = Duration::ZERO;
        for j in jobs {
            let s = d(Some(j), "scrape_interval").unwrap_or(g_scrape);
            let to = d(Some(j), "scrape_timeout").unwrap_or(g_timeout).min(s);
            t.scrape = t.scrape.max(s);
            t.scrape_timeout = t.scrape_timeout.max(to);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(prom_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(prom_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(prom_duration("1d"), Some(Duration::from_secs(86400)));
        assert_eq!(prom_duration("abc"), None);
        assert_eq!(prom_duration(""), None);
    }

    #[test]
    fn container_paths_map_into_the_stack() {
        let dir = Path::new("/tmp/s");
        assert_eq!(to_stack(dir, "/stackproof/current/prometheus/x.yml", Path::new("")), Some(dir.join("prometheus/x.yml")));
        assert_eq!(to_stack(dir, "rules/*.yml", Path::new("prometheus")), Some(dir.join("prometheus/rules/*.yml")));
        assert_eq!(to_stack(dir, "/etc/x", Path::new("")), None);
        assert_eq!(to_stack(dir, "/tmp/s/a/b", Path::new("")), Some(dir.join("a/b")));
    }

    #[test]
    fn timing_takes_the_slowest_job() {
        let y: Yaml = serde_yaml::from_str(
            "global: {scrape_interval: 5s, evaluation_interval: 2s}\nscrape_configs:\n- job_name: a\n- job_name: b\n  scrape_interval: 10s\n",
        )
        .unwrap();
        let t = timing_of(&y);
        assert_eq!(t.scrape, Duration::from_secs(10));
        assert_eq!(t.evaluation, Duration::from_secs(2));
        assert_eq!(t.scrape_timeout, Duration::from_secs(10));
    }

    #[test]
    fn arg_values() {
        let a: Vec<String> = vec!["--x=1".into(), "--config.file".into(), "/c.yml".into()];
        assert_eq!(arg_value(&a, "--config.file"), Some("/c.yml"));
        assert_eq!(arg_value(&a, "--x"), Some("1"));
        assert_eq!(arg_value(&a, "--y"), None);
    }
}
