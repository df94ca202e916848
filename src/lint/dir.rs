//! Linting a whole stack: the manifest, then every file it names, then the checks that
//! need several files together (targets vs services, rules vs routing, panels vs
//! datasources, metric names vs what the stack exposes).

use super::ctx::StackCtx;
use super::manifest::check_manifest_text;
use super::versions::Version;
use super::{alertmanager, grafana, metrics, prometheus, promtool, Options, Severity, Sink, Source};
use crate::error::Result;
use crate::stack::manifest::{Manifest, CONTAINER_CURRENT};
use crate::stack::paths::{self, FileList, ServicePath};
use crate::stack::Stack;
use std::path::Path;

fn version_of(m: &Manifest, service: &str) -> Version {
    m.services.get(service).and_then(|s| Version::from_image(&s.image)).unwrap_or(Version::CURRENT)
}

/// Lint a stack directory; the offline proof of each alerting rule.
pub fn lint_stack(dir: &Path, opts: &Options, sink: &mut Sink) -> Result<Vec<super::proof::AlertProof>> {
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
        return Ok(vec![]);
    };
    let files = FileList::of(&Stack { dir: dir.to_path_buf(), manifest: manifest.clone(), overrides: Default::default() })?;
    let ctx = StackCtx {
        dir: dir.to_path_buf(),
        prometheus: version_of(&manifest, "prometheus"),
        alertmanager: version_of(&manifest, "alertmanager"),
        node_exporter: version_of(&manifest, "node_exporter"),
        ports: manifest.ports(),
        manifest,
        files,
        manifest_src: msrc,
    };

    // Prometheus and its rules.
    let prom_rel = config_file(&ctx, "prometheus", paths::prometheus_config(&ctx.manifest), sink);
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
    let am_rel = config_file(&ctx, "alertmanager", paths::alertmanager_config(&ctx.manifest), sink);
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

    // Every alerting rule proven to fire and routed (issue 13).
    let alerts = match &prom {
        Some((_, cfg)) => super::proof::check_stack(&ctx, cfg, &rules, am.as_ref().map(|(_, c)| c), opts.evaluator, sink)?,
        None => vec![],
    };

    if opts.with_promtool {
        promtool::run_stack(&ctx, prom_rel.as_deref(), &rule_files.iter().map(|(s, _)| s.path.clone()).collect::<Vec<_>>(), am_rel.as_deref(), sink)?;
    }
    Ok(alerts)
}

/// The stack file a service reads as its config (`--config.file=/stackproof/current/X`).
fn config_file(ctx: &StackCtx, service: &str, path: Option<ServicePath>, sink: &mut Sink) -> Option<String> {
    let flag = "--config.file";
    let ServicePath { container: arg, at, stack } = path?;
    let Some(rel) = stack else {
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
    if !ctx.files.contains(&rel) {
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
