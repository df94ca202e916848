//! Linting a whole stack: the manifest, then every file it names, then the checks that
//! need several files together (targets vs services, rules vs routing, panels vs
//! datasources, metric names vs what the stack exposes).

use super::versions::Version;
use super::{alertmanager, grafana, metrics, parse_yaml, prometheus, promtool, Options, Severity, Sink, Source};
use crate::error::Result;
use crate::stack::manifest::{Manifest, CONTAINER_CURRENT};
use crate::stack::Stack;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the checks of one file need to know about the stack around it.
pub struct StackCtx {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Every file of the stack, relative, with `/` separators.
    pub files: Vec<String>,
    pub prometheus: Version,
    pub alertmanager: Version,
    pub node_exporter: Version,
    /// Listening port -> service name (`host_exporter` for the host exporter).
    pub ports: BTreeMap<u16, String>,
    /// Where the manifest is, for findings about it.
    pub manifest_src: Source,
}

impl StackCtx {
    /// A container path under `/stackproof/current/` as a stack-relative path.
    pub fn container_to_stack(&self, p: &str) -> Option<String> {
        let rest = p.strip_prefix(CONTAINER_CURRENT)?;
        let rest = rest.trim_start_matches('/');
        Some(normalise(rest))
    }

    pub fn display(&self, rel: &str) -> String {
        self.dir.join(rel).display().to_string()
    }

    pub fn has_file(&self, rel: &str) -> bool {
        self.files.binary_search(&rel.to_string()).is_ok()
    }

    /// Files under a stack directory (recursively).
    pub fn files_under<'a>(&'a self, rel_dir: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        let prefix = if rel_dir.is_empty() { String::new() } else { format!("{}/", rel_dir.trim_end_matches('/')) };
        self.files.iter().filter(move |f| f.starts_with(&prefix))
    }

    pub fn read(&self, rel: &str) -> Option<Source> {
        Source::read(&self.dir.join(rel), self.display(rel)).ok()
    }

    /// The port a service listens on (its first `ports` entry).
    pub fn port_of(&self, service: &str) -> Option<u16> {
        if service == "host_exporter" {
            return Some(self.manifest.host_exporter.port);
        }
        self.manifest.services.get(service).and_then(|s| s.ports.first()).map(|p| p.port)
    }

    /// The value of `--flag=VALUE` in a service's args.
    pub fn arg(&self, service: &str, flag: &str) -> Option<&str> {
        let s = self.manifest.services.get(service)?;
        s.args.iter().find_map(|a| a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')))
    }
}

/// Collapse `a/./b` and `a/x/../b`.
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

/// Check the manifest text alone (also used for a lone `stackproof.yml`).
pub fn check_manifest_text(src: &Source, sink: &mut Sink) -> Option<Manifest> {
    let m: Manifest = parse_yaml(src, sink, "manifest")?;
    for (name, s) in &m.services {
        if !crate::stack::manifest::SERVICE_NAMES.contains(&name.as_str()) {
            sink.at(
                Severity::Error,
                "manifest.invalid",
                src,
                &format!("services/{name}"),
                format!("unknown service `{name}`"),
                format!("services are {}", crate::stack::manifest::SERVICE_NAMES.join(", ")),
            );
        }
        if Version::from_image(&s.image).is_none() {
            sink.at(
                Severity::Warning,
                "manifest.invalid",
                src,
                &format!("services/{name}/image"),
                format!("image `{}` has no version tag; lint cannot tell which syntax it reads", s.image),
                "pin a tag such as prom/prometheus:v2.42.0",
            );
        }
    }
    for (i, c) in m.gate.criteria.iter().enumerate() {
        if let Err(e) = crate::stack::promql::parse(&c.query) {
            sink.at(
                Severity::Error,
                "manifest.gate_promql",
                src,
                &format!("gate/criteria/{i}/query"),
                format!("gate criterion `{}`: query does not parse: {e}", c.name),
                "fix the PromQL (try it in Prometheus' expression browser)",
            );
        }
    }
    Some(m)
}

fn version_of(m: &Manifest, service: &str) -> Version {
    m.services.get(service).and_then(|s| Version::from_image(&s.image)).unwrap_or(Version::CURRENT)
}

/// Lint a stack directory.
pub fn lint_stack(dir: &Path, opts: &Options, sink: &mut Sink) -> Result<()> {
    let mpath = dir.join("stackproof.yml");
    let msrc = Source::read(&mpath, mpath.display().to_string()).map_err(|e| crate::error::Error::io(&mpath, e))?;
    let Some(manifest) = check_manifest_text(&msrc, sink) else {
        sink.push(
            Severity::Info,
            "lint.lone_file",
            &msrc.display,
            None,
            "the manifest does not read, so the stack's other files were not linted",
            "fix the manifest first",
        );
        return Ok(());
    };
    let stack = Stack { dir: dir.to_path_buf(), manifest: manifest.clone() };
    let files: Vec<String> = stack.files()?.into_iter().map(|p| p.to_string_lossy().replace('\\', "/")).collect::<Vec<_>>();
    let mut files = files;
    files.sort();
    let mut ports = BTreeMap::new();
    for (name, s) in &manifest.services {
        for p in &s.ports {
            ports.insert(p.port, name.clone());
        }
    }
    ports.insert(manifest.host_exporter.port, "host_exporter".to_string());
    let ctx = StackCtx {
        dir: dir.to_path_buf(),
        prometheus: version_of(&manifest, "prometheus"),
        alertmanager: version_of(&manifest, "alertmanager"),
        node_exporter: version_of(&manifest, "node_exporter"),
        manifest,
        files,
        ports,
        manifest_src: msrc,
    };

    // Prometheus and its rules.
    let prom_rel = config_file(&ctx, "prometheus", "--config.file", "/etc/prometheus/prometheus.yml", sink);
    let mut prom = None;
    let mut rule_files: Vec<(Source, crate::stack::prometheus::RuleFile)> = Vec::new();
    if let Some(rel) = &prom_rel {
        if let Some(src) = ctx.read(rel) {
            if let Some(cfg) = prometheus::check_config(&src, Some(&ctx), sink) {
                for r in prometheus::resolve_rule_files(&src, &cfg, Some(&ctx), sink) {
                    if let Some(rsrc) = ctx.read(&r) {
                        if let Some(rf) = prometheus::check_rules(&rsrc, Some(&ctx), sink) {
                            rule_files.push((rsrc, rf));
                        }
                    }
                }
                prom = Some((src, cfg));
            }
        }
    }

    // Alertmanager.
    let am_rel = config_file(&ctx, "alertmanager", "--config.file", "/etc/alertmanager/alertmanager.yml", sink);
    let mut am = None;
    if let Some(rel) = &am_rel {
        if let Some(src) = ctx.read(rel) {
            if let Some(cfg) = alertmanager::check_config(&src, Some(&ctx), sink) {
                am = Some((src, cfg));
            }
        }
    }

    // What the stack can expose, then Grafana (panels are checked against it).
    let rules: Vec<(&Source, &crate::stack::prometheus::RuleFile)> = rule_files.iter().map(|(s, r)| (s, r)).collect();
    let known = prom.as_ref().map(|(_, c)| metrics::Known::build(c, &rules, &ctx));
    let g = grafana::lint_stack_grafana(&ctx, known.as_ref(), sink);

    // Together.
    if let Some((src, cfg)) = &am {
        alertmanager::check_with_rules(src, cfg, &rules, prom.as_ref().map(|(_, c)| c), &ctx, sink);
    }
    prometheus::check_stack_jobs(prom.as_ref().map(|(s, c)| (s, c)), !rules.is_empty(), &ctx, sink);
    if let Some(k) = &known {
        metrics::check_rules(k, &rules, sink);
    }
    grafana::check_verify_dashboards(&g.dashboards, &ctx, sink);

    if opts.with_promtool {
        promtool::run_stack(&ctx, prom_rel.as_deref(), &rule_files.iter().map(|(s, _)| s.path.clone()).collect::<Vec<_>>(), am_rel.as_deref(), sink)?;
    }
    Ok(())
}

/// The stack file a service reads as its config (`--config.file=/stackproof/current/X`).
fn config_file(ctx: &StackCtx, service: &str, flag: &str, default: &str, sink: &mut Sink) -> Option<String> {
    ctx.manifest.services.get(service)?;
    let arg = ctx.arg(service, flag).unwrap_or(default);
    let idx = ctx.manifest.services.get(service).and_then(|s| s.args.iter().position(|a| a.starts_with(flag)));
    let at = match idx {
        Some(i) => format!("services/{service}/args/{i}"),
        None => format!("services/{service}"),
    };
    let Some(rel) = ctx.container_to_stack(arg) else {
        sink.at(
            Severity::Error,
            "manifest.config_path",
            &ctx.manifest_src,
            &at,
            format!("{service} reads its config from {arg}, which is not a file of the stack"),
            format!("set {flag}={CONTAINER_CURRENT}/<path in the stack>"),
        );
        return None;
    };
    if !ctx.has_file(&rel) {
        sink.at(
            Severity::Error,
            "file.missing",
            &ctx.manifest_src,
            &at,
            format!("{service} reads {arg}, but the stack has no file {rel}"),
            format!("create {} or fix {flag}", ctx.display(&rel)),
        );
        return None;
    }
    Some(rel)
}
