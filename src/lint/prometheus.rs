//! Prometheus configuration and rule files.

use super::ctx::StackCtx;
use super::versions::{self, check_keys, Product, Version};
use super::{parse_yaml, Severity, Sink, Source};
use crate::stack::paths;
use crate::stack::prometheus::{Config, RuleFile, Text};
use crate::stack::promql;
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

fn dur(sink: &mut Sink, src: &Source, code: &'static str, path: &str, t: &Option<Text>, what: &str) {
    if let Some(t) = t {
        if let Err(e) = t.duration() {
            sink.at(
                Severity::Error,
                code,
                src,
                path,
                format!("{what}: {e}"),
                "Prometheus durations are integers with units y, w, d, h, m, s, ms, largest first: 30s, 5m, 1h30m",
            );
        }
    }
}

pub fn check_config(src: &Source, ctx: Option<&StackCtx>, sink: &mut Sink) -> Option<Config> {
    let cfg: Config = parse_yaml::<Option<Config>>(src, sink, "Prometheus config")?.unwrap_or_default();
    let ver = ctx.map(|c| c.prometheus).unwrap_or(Version::PINNED_PROMETHEUS);
    let pk = |sink: &mut Sink, path: &str, extra, known, what: &str| check_keys(sink, src, Product::Prometheus, ver, path, extra, known, what);
    pk(sink, "", &cfg.extra, versions::PROM_TOP, "the Prometheus config");
    pk(sink, "global", &cfg.global.extra, versions::PROM_GLOBAL, "`global`");
    dur(sink, src, "prom.duration", "global/scrape_interval", &cfg.global.scrape_interval, "global scrape_interval");
    dur(sink, src, "prom.duration", "global/scrape_timeout", &cfg.global.scrape_timeout, "global scrape_timeout");
    dur(sink, src, "prom.duration", "global/evaluation_interval", &cfg.global.evaluation_interval, "global evaluation_interval");
    let mut seen = BTreeSet::new();
    for (i, job) in cfg.scrape_configs.iter().enumerate() {
        let base = format!("scrape_configs/{i}");
        pk(sink, &base, &job.extra, versions::PROM_SCRAPE, &format!("scrape job `{}`", job.job_name));
        if !seen.insert(job.job_name.clone()) {
            sink.at(
                Severity::Error,
                "prom.duplicate_job",
                src,
                &format!("{base}/job_name"),
                format!("scrape job `{}` is defined twice; Prometheus refuses the config", job.job_name),
                "give every scrape job its own job_name",
            );
        }
        dur(sink, src, "prom.duration", &format!("{base}/scrape_interval"), &job.scrape_interval, &format!("scrape_interval of job `{}`", job.job_name));
        dur(sink, src, "prom.duration", &format!("{base}/scrape_timeout"), &job.scrape_timeout, &format!("scrape_timeout of job `{}`", job.job_name));
        for (j, sc) in job.static_configs.iter().enumerate() {
            let sbase = format!("{base}/static_configs/{j}");
            pk(sink, &sbase, &sc.extra, versions::PROM_STATIC, "a static_config");
            if let Some(ctx) = ctx {
                for (k, t) in sc.targets.iter().enumerate() {
                    check_target(src, ctx, &format!("{sbase}/targets/{k}"), t, &job.job_name, job.metrics_path.as_deref(), sink);
                }
            }
        }
    }
    if let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(&src.text) {
        super::promcfg::check(src, &doc, ver, sink);
    }
    pk(sink, "alerting", &cfg.alerting.extra, versions::PROM_ALERTING, "`alerting`");
    for (i, am) in cfg.alerting.alertmanagers.iter().enumerate() {
        let base = format!("alerting/alertmanagers/{i}");
        pk(sink, &base, &am.extra, versions::PROM_AM, "an alertmanagers entry");
        dur(sink, src, "prom.duration", &format!("{base}/timeout"), &am.timeout, "alertmanager timeout");
        for (j, sc) in am.static_configs.iter().enumerate() {
            pk(sink, &format!("{base}/static_configs/{j}"), &sc.extra, versions::PROM_STATIC, "a static_config");
            let Some(ctx) = ctx else { continue };
            let am_port = ctx.manifest.service_port("alertmanager");
            for (k, t) in sc.targets.iter().enumerate() {
                let ok = split_target(t).is_some_and(|(h, p)| is_loopback(h) && Some(p) == am_port);
                if !ok {
                    let path = super::locate::path(&format!("{base}/static_configs/{j}/targets/{k}"));
                    let pos = src.value_pos(&path);
                    sink.push(
                        Severity::Error,
                        "prom.alerting_nowhere",
                        &src.display,
                        pos,
                        format!("alerts go to {t}, which is not the stack's Alertmanager"),
                        match am_port {
                            Some(p) => format!("use 127.0.0.1:{p} (services use host networking and bind to loopback)"),
                            None => "the stack runs no alertmanager service; add one to stackproof.yml".into(),
                        },
                    );
                }
            }
        }
    }
    Some(cfg)
}

fn is_loopback(h: &str) -> bool {
    matches!(h, "127.0.0.1" | "localhost" | "[::1]" | "::1")
}

fn split_target(t: &str) -> Option<(&str, u16)> {
    let (h, p) = t.rsplit_once(':')?;
    Some((h, p.parse().ok()?))
}

fn check_target(src: &Source, ctx: &StackCtx, path: &str, t: &str, job: &str, metrics_path: Option<&str>, sink: &mut Sink) {
    let pos = src.value_pos(&super::locate::path(path));
    let known: Vec<String> = ctx.ports.iter().map(|(p, s)| format!("127.0.0.1:{p} ({s})")).collect();
    match split_target(t) {
        Some((h, p)) if is_loopback(h) && ctx.ports.contains_key(&p) => {
            if ctx.ports.get(&p).map(String::as_str) == Some("host_exporter") {
                let want = &ctx.manifest.host_exporter.metrics_path;
                let have = metrics_path.unwrap_or("/metrics");
                if have != want {
                    sink.push(
                        Severity::Warning,
                        "prom.metrics_path",
                        &src.display,
                        pos,
                        format!("job `{job}` scrapes the host exporter at {have}, but it serves {want}"),
                        format!("set metrics_path: {want}"),
                    );
                }
            }
        }
        Some((h, p)) => sink.push(
            Severity::Error,
            "prom.target_unknown",
            &src.display,
            pos,
            if is_loopback(h) {
                format!("job `{job}` scrapes {t}, but nothing in the stack listens on port {p}")
            } else {
                format!("job `{job}` scrapes {t}: the stack's services use host networking and listen on 127.0.0.1 only")
            },
            format!("scrape one of {}", known.join(", ")),
        ),
        None => sink.push(
            Severity::Error,
            "prom.target_unknown",
            &src.display,
            pos,
            format!("job `{job}` has target `{t}`, which is not host:port"),
            format!("scrape one of {}", known.join(", ")),
        ),
    }
}

/// The rule files a config names, as stack paths (stack) or checked on disk (lone).
pub fn resolve_rule_files(src: &Source, cfg: &Config, ctx: Option<&StackCtx>, sink: &mut Sink) -> Vec<String> {
    let mut out = Vec::new();
    if ctx.is_some() && !cfg.rule_files.iter().any(|p| p == paths::DRILL_TWINS_GLOB) {
        sink.at(
            Severity::Info,
            "drill.twins_glob_missing",
            src,
            "rule_files",
            format!(
                "rule_files has no `{}`: `stackproof drill --alert/--all` cannot load its drill twins on this stack (the plain drill works)",
                paths::DRILL_TWINS_GLOB
            ),
            format!("add `- {}` under rule_files to prove every alert live (README \"stackproof drill\")", paths::DRILL_TWINS_GLOB),
        );
    }
    for (i, pat) in cfg.rule_files.iter().enumerate() {
        let at = format!("rule_files/{i}");
        let pos = src.value_pos(&super::locate::path(&at));
        if ctx.is_some() && pat == paths::DRILL_TWINS_GLOB {
            continue; // the drill's twins, outside every release on purpose
        }
        match ctx {
            Some(ctx) => {
                let rel_cfg = src.path.strip_prefix(&ctx.dir).ok().map(|p| p.to_string_lossy().replace('\\', "/"));
                let cfg_dir = rel_cfg.as_deref().map(paths::parent).unwrap_or_default();
                let Some(rel) = paths::resolve(pat, cfg_dir) else {
                    sink.push(
                        Severity::Error,
                        "prom.rule_files_no_match",
                        &src.display,
                        pos,
                        format!("rule_files entry `{pat}` is outside the release the deploy syncs ({})", crate::stack::manifest::CONTAINER_CURRENT),
                        "use a path relative to prometheus.yml, e.g. rules/*.yml",
                    );
                    continue;
                };
                let matched: Vec<String> = match ctx.files.glob(&rel) {
                    Ok(m) => m,
                    Err(e) => {
                        sink.push(
                            Severity::Error,
                            "prom.rule_files_no_match",
                            &src.display,
                            pos,
                            format!("rule_files entry `{pat}` is not a valid glob: {e}"),
                            "fix the pattern",
                        );
                        continue;
                    }
                };
                if matched.is_empty() {
                    sink.push(
                        Severity::Error,
                        "prom.rule_files_no_match",
                        &src.display,
                        pos,
                        format!("rule_files entry `{pat}` matches no file of the stack (looked for {rel})"),
                        format!("put the rules under {} or fix the pattern (relative to the config file's directory)", ctx.display(cfg_dir)),
                    );
                }
                out.extend(matched);
            }
            None => {
                if pat.starts_with('/') {
                    continue; // an absolute path on some other machine: cannot check
                }
                let dir = src.path.parent().unwrap_or(std::path::Path::new("."));
                let full = dir.join(pat).to_string_lossy().into_owned();
                let any = glob::glob(&full).map(|mut g| g.next().is_some()).unwrap_or(false);
                if !any {
                    sink.push(
                        Severity::Error,
                        "prom.rule_files_no_match",
                        &src.display,
                        pos,
                        format!("rule_files entry `{pat}` matches no file next to this config"),
                        "rule_files are relative to the config file's directory",
                    );
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Jobs and alerting against the manifest.
pub fn check_stack_jobs(prom: Option<(&Source, &Config)>, has_rules: bool, ctx: &StackCtx, sink: &mut Sink) {
    let Some((src, cfg)) = prom else { return };
    let am_targets: usize = cfg.alerting.alertmanagers.iter().map(|a| a.static_configs.iter().map(|s| s.targets.len()).sum::<usize>()).sum();
    if am_targets == 0 && (has_rules || ctx.manifest.services.contains_key("alertmanager")) {
        let at = if cfg.alerting.alertmanagers.is_empty() { "alerting" } else { "alerting/alertmanagers" };
        sink.at(
            Severity::Error,
            "prom.alerting_nowhere",
            src,
            at,
            "Prometheus sends its alerts nowhere: no Alertmanager target under `alerting`",
            format!(
                "add alerting: {{alertmanagers: [{{static_configs: [{{targets: ['127.0.0.1:{}']}}]}}]}}",
                ctx.manifest.service_port("alertmanager").unwrap_or(9093)
            ),
        );
    }
    let jobs: BTreeSet<&str> = cfg.scrape_configs.iter().map(|j| j.job_name.as_str()).collect();
    for (i, t) in ctx.manifest.verify.targets.iter().enumerate() {
        if !jobs.contains(t.as_str()) {
            sink.at(
                Severity::Error,
                "manifest.verify_job_unknown",
                &ctx.manifest_src,
                &format!("verify/targets/{i}"),
                format!("verify expects scrape job `{t}`, which {} does not define", src.display),
                format!("jobs are: {}", jobs.iter().copied().collect::<Vec<_>>().join(", ")),
            );
        }
    }
    if !jobs.contains(ctx.manifest.drill.job.as_str()) {
        sink.at(
            Severity::Error,
            "manifest.verify_job_unknown",
            &ctx.manifest_src,
            "drill/job",
            format!("the drill stops job `{}`, which {} does not define", ctx.manifest.drill.job, src.display),
            format!("jobs are: {}", jobs.iter().copied().collect::<Vec<_>>().join(", ")),
        );
    }
}

fn label_ref_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r#"\$labels\.([A-Za-z_][A-Za-z0-9_]*)|\.Labels\.([A-Za-z_][A-Za-z0-9_]*)|index\s+\$labels\s+"([A-Za-z_][A-Za-z0-9_]*)""#)
            .expect("static regex")
    })
}

/// Labels a template text reads from the alert's series (`$labels.X`, `.Labels.X`).
pub fn template_labels(text: &str) -> Vec<String> {
    if !text.contains("abels") {
        return vec![];
    }
    label_ref_regex().captures_iter(text).filter_map(|c| c.get(1).or(c.get(2)).or(c.get(3)).map(|m| m.as_str().to_string())).collect()
}

/// What Go's text/template parser refuses in an alert template, as promtool does when it
/// expands one (its data defines `$labels`, `$externalLabels`, `$externalURL`, `$value`):
/// an action left open, and a variable used but never declared. One pass over the text.
pub fn template_check(text: &str) -> Result<(), String> {
    if !text.contains("{{") {
        return Ok(());
    }
    let mut declared: BTreeSet<&str> = ["labels", "externalLabels", "externalURL", "value"].into_iter().collect();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else { return Err("unclosed action".into()) };
        let action = &after[..close];
        // Skip comments and string literals; collect `$name` tokens in order.
        if !action.trim_start_matches('-').trim_start().starts_with("/*") {
            let b = action.as_bytes();
            let mut i = 0;
            while i < b.len() {
                match b[i] {
                    q @ (b'"' | b'`' | b'\'') => {
                        i += 1;
                        while i < b.len() && b[i] != q {
                            i += if b[i] == b'\\' && q != b'`' { 2 } else { 1 };
                        }
                    }
                    b'$' => {
                        let start = i + 1;
                        let mut end = start;
                        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
                            end += 1;
                        }
                        let name = &action[start..end];
                        let tail = action[end..].trim_start();
                        let declares = tail.starts_with(":=") || tail.starts_with(',') && action.contains(":=");
                        if !name.is_empty() && !declares && !declared.contains(name) {
                            return Err(format!("undefined variable \"${name}\""));
                        }
                        declared.insert(name);
                        i = end;
                        continue;
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        rest = &after[close + 2..];
    }
    Ok(())
}

fn valid_metric_name(s: &str) -> bool {
    let mut ch = s.chars();
    matches!(ch.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':') && ch.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Files at least this large are read group by group.
const BY_GROUP: usize = 1 << 20;

/// Read a rules file. A large one is read one group at a time: the YAML reader holds a
/// whole document's events in memory (several times the text), so a 10 MB file read at
/// once peaks at hundreds of MB; a group at a time it peaks at the model's size. Any
/// doubt (another top-level key, a group that does not read alone) reads the whole file,
/// which also gives the exact error.
fn read_rules(src: &Source, sink: &mut Sink) -> Option<RuleFile> {
    if src.text.len() >= BY_GROUP && src.invalid_utf8.is_none() {
        if let Some(rf) = read_rules_by_group(&src.text) {
            return Some(rf);
        }
    }
    parse_yaml::<Option<RuleFile>>(src, sink, "rules file").map(Option::unwrap_or_default)
}

fn read_rules_by_group(text: &str) -> Option<RuleFile> {
    let blank = |l: &str| l.trim().is_empty() || l.trim_start().starts_with('#');
    let mut lines = text.split_inclusive('\n').scan(0usize, |off, l| {
        let at = *off;
        *off += l.len();
        Some((at, l))
    });
    // Only comments before `groups:`, and nothing after it on its line.
    loop {
        let (_, l) = lines.next()?;
        if blank(l) {
            continue;
        }
        if l.trim_end() == "groups:" {
            break;
        }
        return None;
    }
    let mut starts: Vec<usize> = Vec::new();
    let mut indent: Option<usize> = None;
    for (at, l) in lines {
        if blank(l) {
            continue;
        }
        let n = l.len() - l.trim_start_matches(' ').len();
        let item = l[n..].starts_with("- ") || l[n..].trim_end() == "-";
        match indent {
            None if item => indent = Some(n),
            None => return None,
            Some(k) if n < k => return None,
            _ => {}
        }
        if Some(n) == indent && item {
            starts.push(at);
        } else if Some(n) == indent {
            return None;
        }
    }
    let mut groups = Vec::new();
    for (i, &from) in starts.iter().enumerate() {
        let to = starts.get(i + 1).copied().unwrap_or(text.len());
        let part: Vec<crate::stack::prometheus::RuleGroup> = serde_yaml::from_str(&text[from..to]).ok()?;
        groups.extend(part);
    }
    Some(RuleFile { groups, extra: Default::default() })
}

pub fn check_rules(src: &Source, ctx: Option<&StackCtx>, sink: &mut Sink) -> Option<RuleFile> {
    let rf: RuleFile = read_rules(src, sink)?;
    let ver = ctx.map(|c| c.prometheus).unwrap_or(Version::PINNED_PROMETHEUS);
    check_keys(sink, src, Product::Rules, ver, "", &rf.extra, versions::RULE_FILE, "the rules file");
    let mut groups = BTreeSet::new();
    for (g, group) in rf.groups.iter().enumerate() {
        let gbase = format!("groups/{g}");
        check_keys(sink, src, Product::Rules, ver, &gbase, &group.extra, versions::RULE_GROUP, &format!("group `{}`", group.name));
        if group.name.trim().is_empty() {
            sink.at(Severity::Error, "rules.invalid", src, &gbase, "a rule group without a name", "give the group a `name:`");
        } else if !groups.insert(group.name.clone()) {
            sink.at(
                Severity::Error,
                "rules.duplicate_group",
                src,
                &format!("{gbase}/name"),
                format!("group `{}` is repeated in this file; Prometheus refuses to load it", group.name),
                "rename or merge the groups",
            );
        }
        dur(sink, src, "rules.for_duration", &format!("{gbase}/interval"), &group.interval, &format!("interval of group `{}`", group.name));
        let mut alerts: BTreeMap<(String, Vec<(String, String)>), usize> = BTreeMap::new();
        for (r, rule) in group.rules.iter().enumerate() {
            let base = format!("{gbase}/rules/{r}");
            check_keys(sink, src, Product::Rules, ver, &base, &rule.extra, versions::RULE, &format!("rule `{}`", rule.name()));
            match (&rule.alert, &rule.record) {
                (Some(_), Some(_)) | (None, None) => sink.at(
                    Severity::Error,
                    "rules.invalid",
                    src,
                    &base,
                    "a rule needs exactly one of `alert:` and `record:`",
                    "name the alert (`alert: Name`) or the recorded series (`record: level:metric:op`)",
                ),
                (None, Some(rec)) => {
                    if !valid_metric_name(rec) {
                        sink.at(
                            Severity::Error,
                            "rules.invalid",
                            src,
                            &format!("{base}/record"),
                            format!("`{rec}` is not a valid metric name"),
                            "use [a-zA-Z_:][a-zA-Z0-9_:]*",
                        );
                    }
                    for (field, set) in
                        [("for", rule.for_.is_some()), ("keep_firing_for", rule.keep_firing_for.is_some()), ("annotations", !rule.annotations.is_empty())]
                    {
                        if set {
                            sink.at(
                                Severity::Error,
                                "rules.invalid",
                                src,
                                &format!("{base}/{field}"),
                                format!("invalid field '{field}' in recording rule `{rec}`: only alerting rules take it"),
                                "remove it, or make the rule an alert",
                            );
                        }
                    }
                }
                (Some(name), None) => {
                    let mut labels: Vec<(String, String)> = rule.labels.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect();
                    labels.sort();
                    let key = (name.clone(), labels);
                    if let Some(first) = alerts.get(&key) {
                        // promtool only warns ("duplicate rule(s) found ... Might cause
                        // inconsistency"); Prometheus loads both rules.
                        sink.at(
                            Severity::Warning,
                            "rules.duplicate_alert",
                            src,
                            &format!("{base}/alert"),
                            format!(
                                "alert `{name}` appears twice in group `{}` with the same labels (first as rule {}): Prometheus loads both, and while both fire they are one alert to Alertmanager (promtool: \"duplicate rule(s) found\")",
                                group.name,
                                first + 1
                            ),
                            "fine when the two expressions are alternatives on purpose; otherwise rename one or give them different labels (e.g. severity)",
                        );
                    } else {
                        alerts.insert(key, r);
                    }
                }
            }
            for (kind, map) in [("labels", &rule.labels), ("annotations", &rule.annotations)] {
                for (k, v) in map {
                    if !super::promcfg::valid_label_name(k) || (kind == "labels" && k == "__name__") {
                        sink.at(
                            Severity::Error,
                            "rules.invalid",
                            src,
                            &format!("{base}/{kind}/{k}"),
                            format!("invalid {} name: {k} (rule `{}`)", if kind == "labels" { "label" } else { "annotation" }, rule.name()),
                            "names are [a-zA-Z_][a-zA-Z0-9_]*, and a rule cannot set __name__",
                        );
                    }
                    if rule.alert.is_some() {
                        if let Err(e) = template_check(v.as_str()) {
                            sink.at(
                                Severity::Error,
                                "rules.template",
                                src,
                                &format!("{base}/{kind}/{k}"),
                                format!("{kind}.{k} of `{}` is not a valid template: {e}; Prometheus refuses the file", rule.name()),
                                "alert templates know $labels, $externalLabels, $externalURL and $value, and variables they declare with :=",
                            );
                        }
                    }
                }
            }
            dur(sink, src, "rules.for_duration", &format!("{base}/for"), &rule.for_, &format!("`for` of `{}`", rule.name()));
            dur(sink, src, "rules.for_duration", &format!("{base}/keep_firing_for"), &rule.keep_firing_for, &format!("`keep_firing_for` of `{}`", rule.name()));
            let q = match promql::parse(rule.expr.as_str()) {
                Ok(q) => q,
                Err(e) => {
                    sink.at(
                        Severity::Error,
                        "rules.promql",
                        src,
                        &format!("{base}/expr"),
                        format!("expr of `{}` does not parse: {e}", rule.name()),
                        "fix the PromQL; `promtool check rules` shows the same error",
                    );
                    continue;
                }
            };
            for why in promql::impossible_selectors(&q.ast) {
                sink.at(
                    Severity::Warning,
                    "promql.impossible_selector",
                    src,
                    &format!("{base}/expr"),
                    format!("in `{}`: {why}", rule.name()),
                    "this part of the expression is always empty; fix the matcher",
                );
            }
            if rule.alert.is_some() {
                let out = promql::output_labels(&q.ast);
                for (kind, map) in [("annotations", &rule.annotations), ("labels", &rule.labels)] {
                    for (k, v) in map {
                        for l in template_labels(v.as_str()) {
                            if !out.may_have(&l) {
                                sink.at(
                                    Severity::Warning,
                                    "rules.template_label_dropped",
                                    src,
                                    &format!("{base}/{kind}/{k}"),
                                    format!("{kind}.{k} of `{}` uses $labels.{l}, but the expression's result has no `{l}` label", rule.name()),
                                    format!("keep it in the aggregation (e.g. `by ({l}, ...)`) or stop using it in the template"),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    Some(rf)
}
