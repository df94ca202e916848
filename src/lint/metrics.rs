//! Metric names: every name a rule or panel uses must be one the stack's targets can
//! expose. The catalogues of Prometheus, Alertmanager and node-exporter at the pinned
//! versions are generated from the real binaries by `scripts/catalogs`; the stack's own
//! programs declare theirs in the manifest's `metrics`.

use super::ctx::StackCtx;
use super::versions::Version;
use super::{Severity, Sink, Source};
use crate::stack::prometheus::{Config, RuleFile};
use crate::stack::promql;
use std::collections::HashSet;

struct Catalog {
    names: HashSet<&'static str>,
    collectors: Vec<&'static str>,
}

fn parse_catalog(text: &'static str) -> Catalog {
    let mut names = HashSet::new();
    let mut collectors = Vec::new();
    for line in text.lines() {
        if let Some(c) = line.strip_prefix("# collectors:") {
            collectors = c.split_whitespace().collect();
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            names.insert(line.trim());
        }
    }
    Catalog { names, collectors }
}

const PROMETHEUS_2_42_0: &str = include_str!("../../catalogs/prometheus-2.42.0.txt");
const ALERTMANAGER_0_25_0: &str = include_str!("../../catalogs/alertmanager-0.25.0.txt");
const NODE_EXPORTER_1_5_0: &str = include_str!("../../catalogs/node-exporter-1.5.0.txt");

fn catalog(service: &str, v: Version) -> Option<Catalog> {
    let text = match (service, v) {
        ("prometheus", Version(2, 42, 0)) => PROMETHEUS_2_42_0,
        ("alertmanager", Version(0, 25, 0)) => ALERTMANAGER_0_25_0,
        ("node_exporter", Version(1, 5, 0)) => NODE_EXPORTER_1_5_0,
        _ => return None,
    };
    Some(parse_catalog(text))
}

/// Whether the service behind a scrape target exposes `name`: `None` when the stack has
/// no catalogue for it (an unknown program, or a version without one). The offline
/// alert proof picks the target a selector without a `job` matcher reads from.
pub fn service_exposes(ctx: &StackCtx, service: &str, name: &str) -> Option<bool> {
    if SYNTHETIC.contains(&name) {
        return Some(true);
    }
    let textfile = service == "node_exporter" && ctx.manifest.metrics.textfile.iter().any(|n| n == name);
    match service {
        "host_exporter" => Some(ctx.manifest.metrics.host_exporter.iter().any(|n| n == name)),
        "prometheus" => catalog(service, ctx.prometheus).map(|c| c.names.contains(name)),
        "alertmanager" => catalog(service, ctx.alertmanager).map(|c| c.names.contains(name)),
        "node_exporter" => catalog(service, ctx.node_exporter).map(|c| textfile || c.names.contains(name) || name.starts_with("node_")),
        _ => None,
    }
}

/// Series every scrape target gets from Prometheus itself, and the alert series.
const SYNTHETIC: [&str; 7] =
    ["up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling", "scrape_series_added", "ALERTS", "ALERTS_FOR_STATE"];

/// What the stack can expose.
pub struct Known {
    names: HashSet<String>,
    /// node-exporter collectors whose names depend on the host.
    node_collectors: Vec<String>,
    /// Services scraped whose pinned version has no catalogue.
    pub missing_catalogs: Vec<String>,
}

pub enum Verdict {
    Known,
    HostDependent(String),
    /// An old node-exporter name (before 0.16 units went into names): the new one.
    Renamed(String),
    Unknown,
}

/// node-exporter 0.16 renamed its metrics to carry their units (`_bytes`, `_seconds`,
/// `_total`); the few that changed more than a suffix.
const NODE_RENAMED: &[(&str, &str)] = &[
    ("node_disk_bytes_read", "node_disk_read_bytes_total"),
    ("node_disk_bytes_written", "node_disk_written_bytes_total"),
    ("node_disk_sectors_read", "node_disk_read_bytes_total"),
    ("node_disk_sectors_written", "node_disk_written_bytes_total"),
    ("node_disk_io_time_weighted", "node_disk_io_time_weighted_seconds_total"),
];

impl Known {
    /// Build from the scrape targets (which services are scraped), the catalogues, the
    /// manifest's declared names and the recording rules.
    pub fn build(prom: &Config, rules: &[(&Source, &RuleFile)], ctx: &StackCtx) -> Known {
        let mut scraped: HashSet<String> = HashSet::new();
        for j in &prom.scrape_configs {
            for s in &j.static_configs {
                for t in &s.targets {
                    if let Some(svc) = t.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).and_then(|p| ctx.ports.get(&p)) {
                        scraped.insert(svc.clone());
                    }
                }
            }
        }
        let mut names: HashSet<String> = SYNTHETIC.iter().map(|s| s.to_string()).collect();
        let mut node_collectors = Vec::new();
        let mut missing = Vec::new();
        for (svc, ver) in [("prometheus", ctx.prometheus), ("alertmanager", ctx.alertmanager), ("node_exporter", ctx.node_exporter)] {
            if !scraped.contains(svc) {
                continue;
            }
            match catalog(svc, ver) {
                Some(c) => {
                    names.extend(c.names.iter().map(|s| s.to_string()));
                    if svc == "node_exporter" {
                        node_collectors = c.collectors.iter().map(|s| s.to_string()).collect();
                    }
                }
                None => missing.push(format!("{svc} {ver}")),
            }
        }
        if scraped.contains("host_exporter") {
            names.extend(ctx.manifest.metrics.host_exporter.iter().cloned());
        }
        if scraped.contains("node_exporter") {
            names.extend(ctx.manifest.metrics.textfile.iter().cloned());
        }
        for (_, rf) in rules {
            for g in &rf.groups {
                for r in &g.rules {
                    if let Some(rec) = &r.record {
                        names.insert(rec.clone());
                    }
                }
            }
        }
        Known { names, node_collectors, missing_catalogs: missing }
    }

    pub fn verdict(&self, name: &str) -> Verdict {
        if self.names.contains(name) {
            return Verdict::Known;
        }
        if let Some(rest) = name.strip_prefix("node_") {
            let base = name.strip_suffix("_ms").unwrap_or(name);
            let renamed = NODE_RENAMED
                .iter()
                .find(|(old, _)| *old == name)
                .map(|(_, new)| new.to_string())
                .into_iter()
                .chain(["_bytes", "_total", "_seconds", "_seconds_total", "_bytes_total"].iter().map(|s| format!("{base}{s}")))
                .find(|n| self.names.contains(n));
            if let Some(n) = renamed {
                return Verdict::Renamed(n);
            }
            if let Some(c) = self.node_collectors.iter().find(|c| rest.starts_with(&format!("{c}_"))) {
                return Verdict::HostDependent(c.clone());
            }
        }
        Verdict::Unknown
    }

    fn hint(&self, name: &str) -> String {
        let mut close: Vec<&String> = self.names.iter().filter(|n| super::versions::similar(n, name)).collect();
        close.sort();
        let base = match close.first() {
            Some(c) => format!("did you mean `{c}`? "),
            None => String::new(),
        };
        format!(
            "{base}names come from the catalogues of the pinned Prometheus/Alertmanager/node-exporter (catalogs/), the manifest's `metrics:` (host exporter, textfile) and recording rules; declare the exporter's names there"
        )
    }
}

/// Check one query's metric names; `panel` decides the severity of unknown names.
pub fn check_query(
    known: &Known,
    ast: &promql_parser::parser::Expr,
    src: &Source,
    path: &[crate::stack::dashboard::PathSeg],
    what: &str,
    panel: bool,
    sink: &mut Sink,
) {
    check_names(known, &promql::metric_names(ast), src, path, what, panel, sink)
}

/// Check metric names already read from a query.
pub fn check_names(
    known: &Known,
    names: &std::collections::BTreeSet<String>,
    src: &Source,
    path: &[crate::stack::dashboard::PathSeg],
    what: &str,
    panel: bool,
    sink: &mut Sink,
) {
    for name in names {
        match known.verdict(name) {
            Verdict::Known => {}
            Verdict::HostDependent(c) => sink.at_path(
                if panel { Severity::Warning } else { Severity::Info },
                "metrics.host_dependent",
                src,
                path,
                format!("{what} uses `{name}`, which node-exporter's `{c}` collector exposes only on hosts with that hardware or kernel feature"),
                "fine if the VPS has it; verify checks the live metric after deploy",
            ),
            Verdict::Renamed(new) => sink.at_path(
                if panel { Severity::Error } else { Severity::Warning },
                "metrics.unknown",
                src,
                path,
                format!("{what} uses `{name}`, a node-exporter name gone since 0.16 (now `{new}`): {}", no_data(what, panel)),
                format!("use `{new}` (node-exporter 0.16 put units in names; check the expression's arithmetic, e.g. _ms became _seconds)"),
            ),
            Verdict::Unknown => {
                let missing = !known.missing_catalogs.is_empty();
                let sev = if panel && !missing { Severity::Error } else { Severity::Warning };
                let tail = no_data(what, panel);
                sink.at_path(
                    sev,
                    "metrics.unknown",
                    src,
                    path,
                    format!("{what} uses `{name}`, which nothing the stack scrapes exposes: {tail}"),
                    if missing { format!("no catalogue for {}: {}", known.missing_catalogs.join(", "), known.hint(name)) } else { known.hint(name) },
                );
            }
        }
    }
}

/// What a name nothing exposes means for the query.
fn no_data(what: &str, panel: bool) -> &'static str {
    if panel {
        "the panel will show no data"
    } else if what.starts_with("recording rule") {
        "this rule records nothing"
    } else {
        "this alert can never fire"
    }
}

/// Rules' metric names (warnings: "this alert can never fire" / "records nothing").
pub fn check_rules(known: &Known, rules: &[(&Source, &RuleFile)], sink: &mut Sink) {
    for (src, rf) in rules {
        for (g, group) in rf.groups.iter().enumerate() {
            for (r, rule) in group.rules.iter().enumerate() {
                let Ok(q) = promql::parse(rule.expr.as_str()) else { continue };
                let path = super::locate::path(&format!("groups/{g}/rules/{r}/expr"));
                let what = if rule.record.is_some() { format!("recording rule `{}`", rule.name()) } else { format!("rule `{}`", rule.name()) };
                check_query(known, &q.ast, src, &path, &what, false, sink);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Known {
        let c = catalog("node_exporter", Version(1, 5, 0)).unwrap();
        Known {
            names: c.names.iter().map(|s| s.to_string()).collect(),
            node_collectors: c.collectors.iter().map(|s| s.to_string()).collect(),
            missing_catalogs: vec![],
        }
    }

    #[test]
    fn pre_0_16_node_exporter_names_are_unknown_with_their_new_name() {
        let k = known();
        for (old, new) in [
            ("node_filesystem_avail", "node_filesystem_avail_bytes"),
            ("node_cpu", "node_cpu_seconds_total"),
            ("node_disk_io_time_ms", "node_disk_io_time_seconds_total"),
        ] {
            assert!(matches!(k.verdict(old), Verdict::Renamed(ref n) if n == new), "{old}");
        }
        let src = Source::new("r.yml".into(), "r.yml".into(), "groups: []\n".into());
        let mut sink = Sink::default();
        let names = ["node_filesystem_avail".to_string()].into_iter().collect();
        check_names(&k, &names, &src, &[], "recording rule `r`", false, &mut sink);
        let f = &sink.findings[0];
        assert_eq!((f.code, f.severity), ("metrics.unknown", Severity::Warning));
        assert!(f.message.contains("records nothing") && f.message.contains("node_filesystem_avail_bytes"), "{}", f.message);
        let mut sink = Sink::default();
        check_names(&k, &names, &src, &[], "panel `p` query A", true, &mut sink);
        assert_eq!(sink.findings[0].severity, Severity::Error);
    }
}
