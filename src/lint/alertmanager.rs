//! Alertmanager configuration, alone and against the stack's rules and the drill.

use super::ctx::StackCtx;
use super::versions::{self, check_keys, Product, Version};
use super::{parse_yaml, Severity, Sink, Source};
use crate::stack::alertmanager::{Config, Matcher, Route};
use crate::stack::prometheus::{self as pm, parse_duration, RuleFile};
use crate::stack::promql;
use std::collections::{BTreeMap, BTreeSet};

pub fn check_config(src: &Source, ctx: Option<&StackCtx>, sink: &mut Sink) -> Option<Config> {
    let cfg: Config = parse_yaml::<Option<Config>>(src, sink, "Alertmanager config")?.unwrap_or_default();
    let ver = ctx.map(|c| c.alertmanager).unwrap_or(Version::PINNED_ALERTMANAGER);
    let ak = |sink: &mut Sink, path: &str, extra, known, what: &str| check_keys(sink, src, Product::Alertmanager, ver, path, extra, known, what);
    ak(sink, "", &cfg.extra, versions::AM_TOP, "the Alertmanager config");
    if let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(&src.text) {
        super::amcfg::check(src, &doc, ver, sink);
    }

    let mut names = BTreeSet::new();
    for (i, r) in cfg.receivers.iter().enumerate() {
        let base = format!("receivers/{i}");
        ak(sink, &base, &r.extra, versions::AM_RECEIVER, &format!("receiver `{}`", r.name));
        if !names.insert(r.name.as_str()) {
            sink.at(
                Severity::Error,
                "am.duplicate_receiver",
                src,
                &format!("{base}/name"),
                format!("receiver `{}` is defined twice", r.name),
                "give every receiver its own name",
            );
        }
        for (j, w) in r.webhook_configs.iter().enumerate() {
            let wbase = format!("{base}/webhook_configs/{j}");
            ak(sink, &wbase, &w.extra, versions::AM_WEBHOOK, "a webhook_config");
            match (&w.url, &w.url_file) {
                (Some(u), _) => check_url(sink, src, &format!("{wbase}/url"), u),
                (None, Some(_)) => {}
                (None, None) => {
                    sink.at(Severity::Error, "am.url_invalid", src, &wbase, format!("a webhook of receiver `{}` has no url", r.name), "set `url: http://...`")
                }
            }
        }
        // Other integrations: check the URL-valued fields they have.
        for (k, v) in &r.extra {
            let Some(list) = v.as_sequence() else { continue };
            for (j, item) in list.iter().enumerate() {
                let Some(map) = item.as_mapping() else { continue };
                for (fk, fv) in map {
                    let (Some(fk), Some(fv)) = (fk.as_str(), fv.as_str()) else { continue };
                    if matches!(fk, "url" | "api_url" | "webhook_url") && !fv.contains("{{") {
                        check_url(sink, src, &format!("{base}/{k}/{j}/{fk}"), fv);
                    }
                }
            }
        }
    }

    match &cfg.route {
        None => sink.at(
            Severity::Error,
            "am.no_route",
            src,
            "",
            "the config has no `route`; Alertmanager refuses it (\"no routes provided\")",
            "add `route: {receiver: NAME}`",
        ),
        Some(root) => {
            if root.receiver.is_none() {
                sink.at(Severity::Error, "am.receiver_undefined", src, "route", "the root route has no receiver", "set `receiver:` on the root route");
            }
            if !root.match_.is_empty() || !root.match_re.is_empty() || !root.matchers.is_empty() {
                sink.at(Severity::Error, "am.matcher_invalid", src, "route", "the root route must not have matchers", "move the matchers to a child route");
            }
            check_route(root, "route", &names, src, ver, sink);
            check_integrations(&cfg, root, ctx, src, sink);
        }
    }
    for (i, ir) in cfg.inhibit_rules.iter().enumerate() {
        let base = format!("inhibit_rules/{i}");
        ak(sink, &base, &ir.extra, versions::AM_INHIBIT, "an inhibit rule");
        for (side, res) in [("source", ir.source()), ("target", ir.target())] {
            if let Err(e) = res {
                sink.at(
                    Severity::Error,
                    "am.matcher_invalid",
                    src,
                    &format!("{base}/{side}_matchers"),
                    format!("inhibit rule {}: {e}", i + 1),
                    "matchers look like severity=\"critical\" or team=~\"a|b\"",
                );
            }
        }
    }
    Some(cfg)
}

/// Every receiver the routing tree uses must reach someone: one with no integration
/// (no `*_configs`) pages nobody, unless the manifest says the host entry gives its
/// endpoints (`receivers.from_host`), and then it must be declared by name only.
fn check_integrations(cfg: &Config, root: &Route, ctx: Option<&StackCtx>, src: &Source, sink: &mut Sink) {
    let from_host: Vec<String> = ctx.map(|c| c.manifest.receivers.from_host.clone()).unwrap_or_default();
    let mut used = vec![];
    used_receivers(root, &mut used);
    for (i, r) in cfg.receivers.iter().enumerate() {
        let configs: Vec<&String> = r.extra.keys().filter(|k| k.ends_with("_configs")).collect();
        let has = r.has_integrations();
        let path = format!("receivers/{i}/name");
        if from_host.contains(&r.name) {
            if has || !configs.is_empty() {
                sink.at(
                    Severity::Error,
                    "am.receiver_from_host",
                    src,
                    &path,
                    format!(
                        "receiver `{}` takes its endpoint from each host entry (receivers.from_host in stackproof.yml), but it has integrations here",
                        r.name
                    ),
                    "declare it by name only (`- name: NAME`); give the endpoints under `receivers:` in the host entry",
                );
            }
        } else if !has && used.contains(&r.name) {
            let (sev, hint) = match ctx {
                Some(_) => (Severity::Error, "give it an integration (webhook_configs, email_configs, ...), or list it under `receivers.from_host` in stackproof.yml so each host entry gives its endpoint"),
                None => (Severity::Warning, "give it an integration (webhook_configs, email_configs, ...), unless the deploy tool fills it in per host"),
            };
            sink.at(sev, "am.receiver_empty", src, &path, format!("alerts routed to receiver `{}` page nobody: it has no integration", r.name), hint);
        }
    }
    if let Some(ctx) = ctx {
        for name in from_host.iter().filter(|n| !cfg.receivers.iter().any(|r| &r.name == *n)) {
            sink.at(
                Severity::Error,
                "am.receiver_undefined",
                src,
                "receivers",
                format!("receivers.from_host in stackproof.yml names `{name}`, which this config does not define"),
                format!("add `- name: {name}` under `receivers:`, or drop it from receivers.from_host in {}", ctx.manifest_src.display),
            );
        }
    }
}

fn used_receivers(r: &Route, out: &mut Vec<String>) {
    if let Some(n) = &r.receiver {
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    for c in &r.routes {
        used_receivers(c, out);
    }
}

fn check_url(sink: &mut Sink, src: &Source, path: &str, u: &str) {
    match reqwest::Url::parse(u) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty()) => {
            if u.contains('<') && u.contains('>') {
                sink.at(
                    Severity::Warning,
                    "am.url_placeholder",
                    src,
                    path,
                    format!("receiver URL {u} still holds a <placeholder>"),
                    "put the real URL here (or in a url_file outside the stack)",
                );
            }
        }
        Ok(url) => sink.at(
            Severity::Error,
            "am.url_invalid",
            src,
            path,
            format!("receiver URL {u} is not an http(s) URL (scheme `{}`)", url.scheme()),
            "use http://host:port/path or https://...",
        ),
        Err(e) => {
            sink.at(Severity::Error, "am.url_invalid", src, path, format!("receiver URL {u:?} does not parse: {e}"), "use http://host:port/path or https://...")
        }
    }
}

fn check_route(r: &Route, path: &str, receivers: &BTreeSet<&str>, src: &Source, ver: Version, sink: &mut Sink) {
    check_keys(sink, src, Product::Alertmanager, ver, path, &r.extra, versions::AM_ROUTE, "a route");
    if let Some(name) = &r.receiver {
        if !receivers.contains(name.as_str()) {
            sink.at(
                Severity::Error,
                "am.receiver_undefined",
                src,
                &format!("{path}/receiver"),
                format!("route sends to receiver `{name}`, which is not defined"),
                format!("define it under `receivers:` or use one of: {}", receivers.iter().copied().collect::<Vec<_>>().join(", ")),
            );
        }
    }
    if let Err(e) = r.matchers() {
        sink.at(Severity::Error, "am.matcher_invalid", src, &format!("{path}/matchers"), e, "matchers look like severity=\"critical\" or team=~\"a|b\"");
    }
    for (k, v) in [("group_wait", &r.group_wait), ("group_interval", &r.group_interval), ("repeat_interval", &r.repeat_interval)] {
        if let Some(t) = v {
            if let Err(e) = parse_duration(t.as_str()) {
                sink.at(Severity::Error, "am.duration", src, &format!("{path}/{k}"), format!("{k}: {e}"), "durations look like 30s, 5m, 4h");
            }
        }
    }
    for (i, c) in r.routes.iter().enumerate() {
        check_route(c, &format!("{path}/routes/{i}"), receivers, src, ver, sink);
    }
}

/// One alerting rule as routing sees it: its static labels and what its series may add.
struct AlertInfo<'a> {
    name: &'a str,
    src: &'a Source,
    path: String,
    /// alertname + static labels without templates.
    labels: BTreeMap<String, String>,
    /// Labels set statically but templated (value unknown).
    templated: BTreeSet<String>,
    output: promql::OutputLabels,
    annotations: BTreeSet<String>,
}

impl AlertInfo<'_> {
    /// Whether an alert of this rule could satisfy every matcher.
    fn may_match(&self, ms: &[Matcher]) -> bool {
        ms.iter().all(|m| match self.labels.get(&m.name) {
            Some(v) => m.matches(v),
            None if self.templated.contains(&m.name) || self.output.may_have(&m.name) => true,
            None => m.matches(""),
        })
    }
    fn may_have(&self, l: &str) -> bool {
        self.labels.contains_key(l) || self.templated.contains(l) || self.output.may_have(l)
    }
}

fn alert_infos<'a>(rules: &[(&'a Source, &'a RuleFile)]) -> Vec<AlertInfo<'a>> {
    let mut out = Vec::new();
    for (src, rf) in rules {
        for (g, group) in rf.groups.iter().enumerate() {
            for (r, rule) in group.rules.iter().enumerate() {
                let Some(name) = rule.alert.as_deref() else { continue };
                let mut labels = BTreeMap::new();
                let mut templated = BTreeSet::new();
                for (k, v) in group.labels.iter().chain(rule.labels.iter()) {
                    if v.as_str().contains("{{") {
                        templated.insert(k.clone());
                    } else {
                        labels.insert(k.clone(), v.as_str().to_string());
                    }
                }
                labels.insert("alertname".into(), name.to_string());
                let output =
                    promql::parse(rule.expr.as_str()).map(|q| promql::output_labels(&q.ast)).unwrap_or(promql::OutputLabels::Open { dropped: BTreeSet::new() });
                out.push(AlertInfo {
                    name,
                    src,
                    path: format!("groups/{g}/rules/{r}"),
                    labels,
                    templated,
                    output,
                    annotations: rule.annotations.keys().cloned().collect(),
                });
            }
        }
    }
    out
}

/// Labels/annotations receivers' templates read (`.CommonAnnotations.summary`, ...).
fn template_refs(v: &serde_yaml::Value, annotations: &mut BTreeSet<String>) {
    match v {
        serde_yaml::Value::String(s) if s.contains("{{") => {
            for part in s.split("Annotations.").skip(1) {
                let name: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    annotations.insert(name);
                }
            }
        }
        serde_yaml::Value::Sequence(s) => s.iter().for_each(|x| template_refs(x, annotations)),
        serde_yaml::Value::Mapping(m) => m.values().for_each(|x| template_refs(x, annotations)),
        _ => {}
    }
}

fn route_at<'a>(root: &'a Route, path: &[usize]) -> &'a Route {
    let mut r = root;
    for &i in path {
        r = &r.routes[i];
    }
    r
}

fn route_path(path: &[usize]) -> String {
    let mut s = "route".to_string();
    for i in path {
        s.push_str(&format!("/routes/{i}"));
    }
    s
}

/// Routing, grouping, inhibitions and the drill against the stack's rules.
pub fn check_with_rules(src: &Source, cfg: &Config, rules: &[(&Source, &RuleFile)], prom: Option<&pm::Config>, ctx: &StackCtx, sink: &mut Sink) {
    let Some(root) = &cfg.route else { return };
    let alerts = alert_infos(rules);

    // Labels routes match on; an alert without them falls through to the root.
    let mut route_labels: BTreeSet<String> = BTreeSet::new();
    let mut group_bys: Vec<(String, String)> = Vec::new(); // (path, label)
    fn walk(r: &Route, path: String, labels: &mut BTreeSet<String>, gb: &mut Vec<(String, String)>) {
        if let Ok(ms) = r.matchers() {
            labels.extend(ms.into_iter().map(|m| m.name).filter(|n| n != "alertname"));
        }
        for (i, l) in r.group_by.iter().flatten().enumerate() {
            gb.push((format!("{path}/group_by/{i}"), l.clone()));
        }
        for (i, c) in r.routes.iter().enumerate() {
            walk(c, format!("{path}/routes/{i}"), labels, gb);
        }
    }
    walk(root, "route".into(), &mut route_labels, &mut group_bys);

    for a in &alerts {
        let dest = cfg.route_alert(&a.labels);
        // Missing routing labels: an alert that lands on the root only because it lacks
        // a label the routes match on.
        if dest.iter().all(|d| d.path.is_empty()) && !root.routes.is_empty() {
            let missing: Vec<&String> = route_labels.iter().filter(|l| !a.labels.contains_key(*l) && !a.templated.contains(*l)).collect();
            if !missing.is_empty() {
                let l = missing.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ");
                sink.at(
                    Severity::Error,
                    "rules.missing_label",
                    a.src,
                    &format!("{}/alert", a.path),
                    format!(
                        "alert `{}` has no {l} label, so no route takes it and it goes to the root receiver `{}`",
                        a.name,
                        root.receiver.as_deref().unwrap_or("")
                    ),
                    format!("add {l} under the rule's `labels:`"),
                );
            }
        }
        // Annotations the receiver's templates read.
        for d in &dest {
            if let Some(rcv) = cfg.receiver(&d.receiver) {
                let mut used = BTreeSet::new();
                for v in rcv.extra.values() {
                    template_refs(v, &mut used);
                }
                for ann in used.iter().filter(|x| !a.annotations.contains(*x)) {
                    sink.at(
                        Severity::Warning,
                        "rules.missing_annotation",
                        a.src,
                        &format!("{}/alert", a.path),
                        format!("alert `{}` goes to receiver `{}`, whose message uses annotation `{ann}`, which the rule does not set", a.name, d.receiver),
                        format!("add `{ann}:` under the rule's annotations"),
                    );
                }
            }
        }
    }

    // group_by labels no rule can carry.
    let mut target_labels: BTreeSet<String> = ["job", "instance", "alertname"].iter().map(|s| s.to_string()).collect();
    if let Some(p) = prom {
        target_labels.extend(p.global.external_labels.keys().cloned());
        for j in &p.scrape_configs {
            for s in &j.static_configs {
                target_labels.extend(s.labels.keys().cloned());
            }
        }
    }
    for (path, l) in &group_bys {
        if l == "..." || target_labels.contains(l) {
            continue;
        }
        let set_by_any = alerts.iter().any(|a| a.labels.contains_key(l) || a.templated.contains(l))
            || rules.iter().any(|(_, rf)| {
                rf.groups.iter().flat_map(|g| &g.rules).any(|r| {
                    promql::parse(r.expr.as_str())
                        .map(|q| promql::grouping_labels(&q.ast).contains(l) || promql::matcher_labels(&q.ast).contains(l))
                        .unwrap_or(false)
                })
            });
        if !set_by_any {
            sink.at(
                Severity::Warning,
                "am.group_by_unknown",
                src,
                path,
                format!("group_by `{l}`: no rule of the stack sets this label, so every alert groups under an empty `{l}`"),
                format!("set `{l}` in the rules' labels, or drop it from group_by"),
            );
        }
    }

    // Inhibit rules that can match nothing.
    if !alerts.is_empty() {
        for (i, ir) in cfg.inhibit_rules.iter().enumerate() {
            let (Ok(s), Ok(t)) = (ir.source(), ir.target()) else { continue };
            for (side, ms) in [("source", &s), ("target", &t)] {
                if !alerts.iter().any(|a| a.may_match(ms)) {
                    let key = if ir.source_matchers.is_empty() && side == "source" {
                        "source_match"
                    } else if ir.target_matchers.is_empty() && side == "target" {
                        "target_match"
                    } else if side == "source" {
                        "source_matchers"
                    } else {
                        "target_matchers"
                    };
                    sink.at(
                        Severity::Warning,
                        "am.inhibit_matches_nothing",
                        src,
                        &format!("inhibit_rules/{i}/{key}"),
                        format!("inhibit rule {}: no alert of the stack matches its {side} matchers, so it never inhibits anything", i + 1),
                        "match labels the rules set (see their `labels:`)",
                    );
                }
            }
        }
    }

    check_drill(src, cfg, root, &alerts, ctx, sink);
}

fn check_drill(src: &Source, cfg: &Config, root: &Route, alerts: &[AlertInfo], ctx: &StackCtx, sink: &mut Sink) {
    let d = &ctx.manifest.drill;
    let Some(drill) = alerts.iter().find(|a| a.name == d.alert) else {
        sink.at(
            Severity::Error,
            "drill.rule_missing",
            &ctx.manifest_src,
            "drill/alert",
            format!("the drill alert `{}` is in no rule file of the stack", d.alert),
            "add a group `stackproof-drill` with that alert on the host exporter's `up` (see docs/architecture.md \"The drill\")",
        );
        return;
    };
    if !alerts.iter().any(|a| a.name == d.real_alert) {
        sink.at(
            Severity::Error,
            "drill.rule_missing",
            &ctx.manifest_src,
            "drill/real_alert",
            format!("the real alert `{}` the drill watches is in no rule file of the stack", d.real_alert),
            "add it, or fix drill.real_alert",
        );
    }
    let Some(rcv) = cfg.receiver(&d.receiver) else {
        sink.at(
            Severity::Error,
            "drill.receiver_missing",
            src,
            "receivers",
            format!("no receiver `{}` for the drill", d.receiver),
            format!("add a receiver `{}` with a webhook to http://127.0.0.1:{}/ and send_resolved: true", d.receiver, d.port),
        );
        return;
    };
    let idx = cfg.receivers.iter().position(|r| r.name == d.receiver).unwrap_or(0);
    let want_port = d.port;
    let ok_url = rcv.webhook_configs.iter().any(|w| {
        w.url
            .as_deref()
            .and_then(|u| reqwest::Url::parse(u).ok())
            .is_some_and(|u| u.host_str().is_some_and(|h| h == "127.0.0.1" || h == "localhost") && u.port_or_known_default() == Some(want_port))
    });
    if !ok_url {
        sink.at(
            Severity::Error,
            "drill.receiver_url",
            src,
            &format!("receivers/{idx}"),
            format!("receiver `{}` must be a webhook to http://127.0.0.1:{want_port}/ (the drill's reverse tunnel)", d.receiver),
            format!("webhook_configs: [{{url: 'http://127.0.0.1:{want_port}/', send_resolved: true}}]"),
        );
    }
    // Only Alertmanager may make a drill pass: the drill receiver presents a per-drill
    // token that stackproof writes into the container (docs/design.md).
    if let Err(why) = cfg.bearer_file(&d.receiver) {
        sink.at(
            Severity::Error,
            "drill.receiver_auth",
            src,
            &format!("receivers/{idx}"),
            why,
            "http_config: {authorization: {type: Bearer, credentials_file: /run/secrets/drill/token}}",
        );
    }
    let dest = cfg.route_alert(&drill.labels);
    let reaches = dest.iter().any(|m| m.receiver == d.receiver);
    let others: Vec<&str> = dest.iter().filter(|m| m.receiver != d.receiver).map(|m| m.receiver.as_str()).collect();
    if !reaches {
        let first = dest.first();
        let at = first.map(|m| route_path(&m.path)).unwrap_or_else(|| "route".into());
        let by = first.map(|m| {
            if m.path.is_empty() {
                "no route matches it, so the root route".to_string()
            } else {
                let r = route_at(root, &m.path);
                format!(
                    "an earlier route ({}) takes it first",
                    r.matchers.join(", ").trim().to_string() + &r.match_.iter().map(|(k, v)| format!("{k}={}", v.as_str())).collect::<Vec<_>>().join(",")
                )
            }
        });
        sink.at(
            Severity::Error,
            "am.drill_swallowed",
            src,
            &at,
            format!(
                "the drill alert `{}` never reaches receiver `{}`: {} sends it to `{}`",
                d.alert,
                d.receiver,
                by.unwrap_or_default(),
                first.map(|m| m.receiver.as_str()).unwrap_or("")
            ),
            format!("put a route `matchers: [drill=\"true\"]` (the label `{}` and the drill twins carry), receiver `{}`, continue: false first under the root route", d.alert, d.receiver),
        );
    } else if !others.is_empty() {
        sink.at(
            Severity::Error,
            "am.drill_swallowed",
            src,
            "route",
            format!(
                "the drill alert `{}` also reaches {} (a route with `continue: true` before the drill route): a drill would page real receivers",
                d.alert,
                others.join(", ")
            ),
            "put the drill route first, with continue: false",
        );
    }
    // Inhibitions that could silence the drill alert while the outage lasts.
    for (i, ir) in cfg.inhibit_rules.iter().enumerate() {
        let (Ok(s), Ok(t)) = (ir.source(), ir.target()) else { continue };
        if !t.iter().all(|m| m.matches_labels(&drill.labels) || (!drill.labels.contains_key(&m.name) && drill.may_have(&m.name))) {
            continue;
        }
        // A source alert that can fire during the drill and agree on `equal`.
        // Prefer a source known to agree on every `equal` label over one that only might.
        let candidates = alerts.iter().filter(|a| a.name != drill.name && a.may_match(&s));
        let agrees = |a: &&AlertInfo, strict: bool| {
            ir.equal.iter().all(|l| match (a.labels.get(l), drill.labels.get(l)) {
                (Some(x), Some(y)) => x == y,
                _ => !strict,
            })
        };
        let source = candidates.clone().find(|a| agrees(a, true)).or_else(|| candidates.clone().find(|a| agrees(a, false)));
        if let Some(a) = source {
            sink.at(
                Severity::Error,
                "am.drill_swallowed",
                src,
                &format!("inhibit_rules/{i}"),
                format!("inhibit rule {} can silence the drill alert `{}` while `{}` fires", i + 1, d.alert, a.name),
                format!("exclude it from the target: add `alertname!=\"{}\"` to target_matchers", d.alert),
            );
        }
    }
}
