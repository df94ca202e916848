//! What the stack knows about its series, for the synthetic inputs: the scrape targets
//! with their labels and intervals (prometheus.yml), which service is behind each (by
//! port), what each exposes (catalogs/, the manifest's `metrics:`), and the host
//! exporter's exposition (test names from its tests file, its histogram buckets).

use super::synth::{Knowledge, Target};
use crate::lint::ctx::StackCtx;
use crate::lint::metrics::service_exposes;
use crate::lint::Source;
use crate::stack::prometheus::{Config, RuleFile};
use crate::stack::promql;
use std::collections::BTreeMap;

pub fn build(ctx: &StackCtx, prom: &Config, rules: &[(&Source, &RuleFile)]) -> Knowledge {
    let mut k = Knowledge { default_step: prom.global_scrape_interval().as_secs_f64(), ..Default::default() };
    for j in &prom.scrape_configs {
        let opaque = j.extra.keys().any(|key| key.ends_with("_sd_configs") || key == "relabel_configs" || key == "metric_relabel_configs");
        let step = prom.scrape_interval(&j.job_name).map(|d| d.as_secs_f64()).unwrap_or(k.default_step);
        let mut any = false;
        for sc in &j.static_configs {
            for t in &sc.targets {
                let mut labels: BTreeMap<String, String> = sc.labels.iter().map(|(k, v)| (k.clone(), v.as_str().to_string())).collect();
                labels.insert("job".into(), j.job_name.clone());
                labels.insert("instance".into(), t.clone());
                let service = t.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).and_then(|p| ctx.ports.get(&p)).cloned();
                k.targets.push(Target { labels, service, step, opaque });
                any = true;
            }
        }
        if !any {
            // Only service discovery: a target whose labels are not known here.
            k.targets.push(Target { labels: BTreeMap::from([("job".into(), j.job_name.clone())]), service: None, step, opaque: true });
        }
    }
    let mut names: Vec<String> = Vec::new();
    for (_, rf) in rules {
        for g in &rf.groups {
            for r in &g.rules {
                if let Ok(q) = promql::parse(r.expr.as_str()) {
                    names.extend(promql::metric_names(&q.ast));
                }
            }
        }
    }
    names.sort();
    names.dedup();
    let services: Vec<String> = k.targets.iter().filter_map(|t| t.service.clone()).collect();
    for s in &services {
        for n in &names {
            k.exposes.insert((s.clone(), n.clone()), service_exposes(ctx, s, n));
        }
    }
    // The host exporter: its script's BUCKETS and its tests file's names.
    let cmd = &ctx.manifest.host_exporter.command;
    if let Some(script) = cmd.iter().find(|a| a.ends_with(".py")) {
        if let Ok(text) = std::fs::read_to_string(ctx.dir.join(script)) {
            k.host_buckets = buckets(&text);
        }
    }
    if let Some(tests) = cmd.iter().find_map(|a| a.strip_prefix("--tests=")) {
        if let Ok(text) = std::fs::read_to_string(ctx.dir.join(tests)) {
            let names = test_names(&text);
            if !names.is_empty() {
                k.values.insert("operation".into(), names.clone());
                k.values.insert("test".into(), names);
            }
        }
    }
    k
}

/// `BUCKETS = (0.005, 0.01, ...)` in the exporter's source, as it writes `le` (Python's
/// `repr(float)`), `+Inf` last.
pub fn buckets(py: &str) -> Vec<String> {
    let Some(line) = py.lines().find(|l| l.trim_start().starts_with("BUCKETS =")) else { return vec![] };
    let Some(inner) = line.split_once('(').and_then(|(_, r)| r.split_once(')')).map(|(i, _)| i) else { return vec![] };
    let mut out: Vec<String> = inner.split(',').filter_map(|x| x.trim().parse::<f64>().ok()).map(|v| format!("{v:?}")).collect();
    if !out.is_empty() {
        out.push("+Inf".into());
    }
    out
}

fn test_names(json: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else { return vec![] };
    v["tests"].as_array().map(|a| a.iter().filter_map(|t| t["name"].as_str().map(String::from)).collect()).unwrap_or_default()
}
