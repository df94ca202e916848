//! Grafana: datasource and dashboard provisioning files, and dashboards.

use super::ctx::StackCtx;
use super::metrics::{self, Known};
use super::versions::Version;
use super::{parse_yaml, Severity, Sink, Source};
use crate::stack::dashboard::{Builtins, Dashboard, DsRef, JsonPath, PathSeg};
use crate::stack::manifest::CONTAINER_CURRENT;
use crate::stack::paths;
use crate::stack::provisioning::{DatasourceFile, ProviderFile};
use std::collections::{BTreeSet, HashMap};

mod query;
use query::{only_in_strings, read_query};

/// A provisioned datasource.
#[derive(Debug, Clone)]
pub struct Datasource {
    pub name: String,
    pub uid: Option<String>,
    /// Plugin type (`prometheus`, ...).
    pub kind: String,
    pub is_default: bool,
    pub org: i64,
    pub file: String,
    pub index: usize,
}

pub fn check_datasources(src: &Source, ctx: Option<&StackCtx>, sink: &mut Sink) -> Vec<Datasource> {
    let Some(f) = parse_yaml::<Option<DatasourceFile>>(src, sink, "Grafana datasource provisioning file") else { return vec![] };
    let list = f.and_then(|f| f.datasources).unwrap_or_default();
    let mut out = Vec::new();
    let mut default_seen: HashMap<i64, String> = HashMap::new();
    for (i, d) in list.iter().enumerate() {
        let base = format!("datasources/{i}");
        let Some(name) = d.name.clone().filter(|n| !n.is_empty()) else {
            sink.at(Severity::Error, "grafana.datasource_invalid", src, &base, "a datasource without a name; Grafana refuses the file", "set `name:`");
            continue;
        };
        if d.is_default == Some(true) {
            // One default per organisation (grafana-facts §1.3); `is_default` (v0 spelling) is ignored in v1 files.
            let org = d.org_id();
            if let Some(first) = default_seen.get(&org) {
                sink.at(
                    Severity::Error,
                    "grafana.multiple_default_datasources",
                    src,
                    &format!("{base}/isDefault"),
                    format!("datasource `{name}` is a second default (after `{first}`); Grafana 11+ refuses to start with \"datasource.yaml config is invalid. Only one datasource per organization can be marked as default\""),
                    "keep `isDefault: true` on one datasource only",
                );
            }
            default_seen.entry(org).or_insert(name.clone());
        }
        if d.uid.as_deref().unwrap_or("").is_empty() {
            sink.at(
                Severity::Warning,
                "grafana.datasource_no_uid",
                src,
                &base,
                format!("datasource `{name}` has no `uid`, so Grafana makes up a random one and dashboards cannot bind to it by uid"),
                "set `uid:` explicitly and use it in the dashboards' datasource references",
            );
        }
        let kind = d.kind.clone().unwrap_or_default();
        if let (Some(ctx), "prometheus") = (ctx, kind.as_str()) {
            let port = ctx.manifest.service_port("prometheus");
            let ok = d
                .url
                .as_deref()
                .and_then(|u| reqwest::Url::parse(u).ok())
                .is_some_and(|u| matches!(u.host_str(), Some("127.0.0.1") | Some("localhost")) && u.port_or_known_default() == port);
            if !ok {
                sink.at(
                    Severity::Error,
                    "grafana.datasource_url",
                    src,
                    &format!("{base}/url"),
                    format!("datasource `{name}` points at {}, not at the stack's Prometheus", d.url.as_deref().unwrap_or("(no url)")),
                    format!("use url: http://127.0.0.1:{} (host networking, loopback binds)", port.unwrap_or(9090)),
                );
            }
        }
        out.push(Datasource {
            name,
            uid: d.uid.clone().filter(|u| !u.is_empty()),
            kind,
            is_default: d.is_default == Some(true),
            org: d.org_id(),
            file: src.display.clone(),
            index: i,
        });
    }
    out
}

/// A dashboard provider and the stack directory its path maps to.
#[derive(Debug, Clone)]
pub struct Provider {
    pub folder: String,
    pub stack_dir: Option<String>,
}

pub fn check_providers(src: &Source, ctx: Option<&StackCtx>, sink: &mut Sink) -> Vec<Provider> {
    let Some(f) = parse_yaml::<Option<ProviderFile>>(src, sink, "Grafana dashboard provider file") else { return vec![] };
    let list = f.and_then(|f| f.providers).unwrap_or_default();
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (i, p) in list.iter().enumerate() {
        let base = format!("providers/{i}");
        let name = p.name.clone().unwrap_or_default();
        if name.is_empty() {
            sink.at(
                Severity::Error,
                "grafana.provider_invalid",
                src,
                &base,
                "a dashboard provider without a name",
                "set `name:` (unique across provider files)",
            );
        } else if !names.insert(name.clone()) {
            sink.at(
                Severity::Error,
                "grafana.provider_invalid",
                src,
                &format!("{base}/name"),
                format!("dashboard name \"{name}\" is not unique: Grafana refuses to start"),
                "give each provider its own name",
            );
        }
        if let Some(k) = p.kind.as_deref().filter(|k| *k != "file") {
            sink.at(Severity::Error, "grafana.provider_invalid", src, &format!("{base}/type"), format!("type {k} is not supported"), "use `type: file`");
        }
        if p.folders_from_files_structure() && (p.folder.as_deref().is_some_and(|f| !f.is_empty()) || p.folder_uid.as_deref().is_some_and(|f| !f.is_empty())) {
            sink.at(
                Severity::Error,
                "grafana.provider_invalid",
                src,
                &base,
                "'folder' and 'folderUID' should be empty using 'foldersFromFilesStructure' option",
                "drop folder/folderUid or foldersFromFilesStructure",
            );
        }
        let Some(path) = p.path() else {
            sink.at(
                Severity::Error,
                "grafana.provider_invalid",
                src,
                &format!("{base}/options"),
                format!("provider `{name}` has no options.path: Grafana fails with \"path param is not a string\""),
                "set options.path to the directory holding the dashboards",
            );
            continue;
        };
        let mut stack_dir = None;
        if let Some(ctx) = ctx {
            let rel = p.stack_dir();
            let any = !p.dashboards(&ctx.files).is_empty();
            if !any {
                sink.at(
                    Severity::Error,
                    "grafana.provider_path_empty",
                    src,
                    &format!("{base}/options/path"),
                    match &rel {
                        Some(r) => format!("provider `{name}` reads {path}, but the stack has no .json dashboard under {r}/"),
                        None => format!("provider `{name}` reads {path}, which is outside the release the deploy syncs ({CONTAINER_CURRENT})"),
                    },
                    format!("point options.path at {CONTAINER_CURRENT}/<dir with the dashboards>"),
                );
            }
            // Grafana 12.3 watches a provider's folder with fsnotify when its update
            // interval is 10 s or less (grafana#115416), and fsnotify misses the swap of
            // the `current` symlink every deploy makes: dashboards would stop updating.
            let grafana = ctx.manifest.services.get("grafana").and_then(|g| Version::from_image(&g.image));
            let interval = p.update_interval_seconds.unwrap_or(10);
            if rel.is_some() && interval <= 10 && grafana.is_some_and(|v| v >= Version(12, 3, 0)) {
                sink.at(
                    Severity::Warning,
                    "grafana.provider_file_watch",
                    src,
                    &format!("{base}/updateIntervalSeconds"),
                    format!(
                        "Grafana {} watches provider `{name}`'s folder for changes when updateIntervalSeconds is {interval} (10 or less), and misses the swap of the `current` symlink each deploy makes: the dashboards would stop updating (grafana issue 115416)",
                        grafana.map(|v| v.to_string()).unwrap_or_default()
                    ),
                    "set `updateIntervalSeconds: 11` or more (Grafana then polls), or pin a Grafana image before 12.3",
                );
            }
            stack_dir = rel;
        }
        out.push(Provider { folder: p.folder.clone().unwrap_or_default(), stack_dir });
    }
    out
}

/// What a dashboard's checks need from the stack.
pub struct DashCtx<'a> {
    pub datasources: &'a [Datasource],
    pub known: Option<&'a Known>,
}

fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.to_string())
}

pub fn check_dashboard(src: &Source, stack: Option<&DashCtx>, sink: &mut Sink) -> Option<Dashboard> {
    src.check_encoding(sink, false);
    let value: serde_json::Value = match serde_json::from_str(&src.text) {
        Ok(v) => v,
        Err(e) => {
            let msg = if src.text.trim().is_empty() { "the file is empty (Grafana: \"EOF\")".to_string() } else { e.to_string() };
            sink.push(
                Severity::Error,
                "json.parse",
                &src.display,
                Some((e.line().max(1), e.column().max(1))),
                format!("dashboard JSON does not parse: {msg}"),
                "Grafana skips this file (\"failed to load dashboard from\"); fix the JSON",
            );
            return None;
        }
    };
    if !value.is_object() {
        sink.push(
            Severity::Error,
            "grafana.missing_title",
            &src.display,
            Some((1, 1)),
            "the file is not a JSON object: Grafana rejects it with \"Dashboard title cannot be empty\"",
            "a dashboard file holds one dashboard model object",
        );
        return None;
    }
    let d = Dashboard::from_value(value);
    let file = src.path.display().to_string();
    if d.is_wrapped() {
        sink.at(
            Severity::Error,
            "grafana.dashboard_wrapped",
            src,
            "dashboard",
            "this is the HTTP API's wrapper {\"dashboard\": {...}}, not a dashboard model: file provisioning reads the top level, finds no title and rejects it with \"Dashboard title cannot be empty\"",
            format!("unwrap it: jq .dashboard {file} > {file}.new && mv {file}.new {file}"),
        );
        return None;
    }
    let v2 = d.raw.get("apiVersion").and_then(serde_json::Value::as_str).filter(|a| a.starts_with("dashboard.grafana.app/"));
    if let (Some(api), None) = (v2, &d.title) {
        sink.at(
            Severity::Error,
            "grafana.missing_title",
            src,
            "apiVersion",
            format!("a `{api}` dashboard resource, not the classic dashboard model: file provisioning reads a top-level title, finds none and rejects it with \"Dashboard title cannot be empty\""),
            "provision the classic JSON model (export the dashboard as JSON from a classic-schema Grafana), with `title` at the top level",
        );
    } else if d.title.as_deref().unwrap_or("").trim().is_empty() {
        sink.at(
            Severity::Error,
            "grafana.missing_title",
            src,
            "title",
            "the dashboard has no title: Grafana rejects it with \"Dashboard title cannot be empty\"",
            "add a top-level \"title\"",
        );
    }
    match d.uid.as_deref() {
        // Inside a stack the caller decides (an error only when `verify` needs the uid).
        None | Some("") if stack.is_none() => missing_uid(src, Severity::Warning, sink),
        None | Some("") => {}
        Some(u) if u.len() > 40 || !u.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') => sink.at(
            Severity::Error,
            "grafana.uid_invalid",
            src,
            "uid",
            format!("uid `{u}` is {}", if u.len() > 40 { "too long, max 40 characters" } else { "made of illegal characters" }),
            "use at most 40 characters of a-z, A-Z, 0-9, - and _",
        ),
        _ => {}
    }
    if !d.inputs.is_empty() {
        sink.at(
            Severity::Warning,
            "grafana.inputs_left",
            src,
            "__inputs",
            format!("`__inputs` ({}) is left from an \"export for sharing externally\": file provisioning does not process it", d.inputs.join(", ")),
            "remove `__inputs` and bind panels to the provisioned datasource's uid",
        );
    }

    // Datasource references, reported once per distinct reference (with a count).
    let mut reported: HashMap<String, usize> = HashMap::new();
    let mut first: Vec<(String, JsonPath, &'static str, String, String)> = Vec::new();
    for (path, r) in d.datasource_refs() {
        let problem: Option<(&'static str, String, String)> = if let Some(var) = r.variable() {
            match d.variable(var) {
                Some(v) => match (stack, v.kind.as_str(), v.query.as_deref()) {
                    (Some(st), "datasource", Some(plugin)) if !st.datasources.iter().any(|ds| ds.kind == plugin) => Some((
                        "grafana.datasource_unknown",
                        format!("datasource variable `{var}` picks a `{plugin}` datasource, and the stack provisions none"),
                        format!("provisioned: {}", ds_list(st.datasources)),
                    )),
                    _ => None,
                },
                None if var.starts_with("DS_") || d.inputs.iter().any(|i| i == var) => Some((
                    "grafana.ds_placeholder",
                    format!("datasource `${{{var}}}` is an export placeholder that no template variable backs: file provisioning never replaces it, and panels fail with \"Datasource ${{{var}}} was not found\""),
                    format!("replace it with the provisioned datasource's uid, or add a template variable {{\"type\": \"datasource\", \"name\": \"{var}\", \"query\": \"prometheus\"}}"),
                )),
                None => Some((
                    "grafana.variable_unknown",
                    format!("datasource `{}` names template variable `{var}`, which the dashboard does not define", r.text().unwrap_or("")),
                    "define the variable under templating.list, or use the datasource's uid".to_string(),
                )),
            }
        } else if let Some(stack) = stack {
            match &r {
                DsRef::Uid { uid, .. } if !stack.datasources.iter().any(|ds| ds.uid.as_deref() == Some(uid.as_str())) => Some((
                    "grafana.datasource_unknown",
                    format!("datasource uid `{uid}` is not provisioned by the stack"),
                    format!("provisioned: {}", ds_list(stack.datasources)),
                )),
                DsRef::Name(n) if !stack.datasources.iter().any(|ds| &ds.name == n || ds.uid.as_deref() == Some(n.as_str())) => Some((
                    "grafana.datasource_unknown",
                    format!("datasource `{n}` is not provisioned by the stack"),
                    format!("provisioned: {}", ds_list(stack.datasources)),
                )),
                DsRef::Default if stack.datasources.is_empty() => Some((
                    "grafana.datasource_unknown",
                    "the panel uses the default datasource, but the stack provisions none".to_string(),
                    "add a datasource provisioning file".to_string(),
                )),
                _ => None,
            }
        } else {
            None
        };
        if let Some((code, msg, hint)) = problem {
            // Point at the uid itself for object references.
            let mut path = path;
            if matches!(r, DsRef::Uid { .. }) {
                path.push(key("uid"));
            }
            let k = format!("{code}\u{0}{}", r.text().unwrap_or(""));
            let n = reported.entry(k.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                first.push((k, path, code, msg, hint));
            }
        }
    }
    for (k, path, code, msg, hint) in first {
        let n = reported[&k];
        let msg = if n > 1 { format!("{msg} ({n} references, the first here)") } else { msg };
        sink.at_path(Severity::Error, code, src, &path, msg, hint);
    }

    // Panel queries.
    let b = Builtins::default();
    let mut unknown_vars: BTreeSet<String> = BTreeSet::new();
    for p in d.panels() {
        for t in p.prometheus_targets().filter(|t| d.may_be_prometheus(p.target_datasource(t))) {
            let expr = t.expr.as_deref().unwrap_or("");
            let path: JsonPath = {
                let mut x = t.path.clone();
                x.push(key("expr"));
                x
            };
            let what = format!("panel `{}` query {}", p.title, t.ref_id);
            let unresolved = d.unresolved(expr);
            if !unresolved.is_empty() {
                // Grafana leaves an undefined variable as written. Inside a string literal
                // the query still runs (the matcher just matches nothing): Grafana loads
                // the dashboard, so alone it is a warning. Anywhere else Prometheus cannot
                // parse it: an error.
                let mut breaks = false;
                for v in &unresolved {
                    let quoted = only_in_strings(expr, v);
                    breaks |= !quoted;
                    if unknown_vars.insert(v.clone()) {
                        // In a stack it stays an error: `verify` then sees the panel empty.
                        let (sev, tail) = if quoted {
                            (
                                if stack.is_some() { Severity::Error } else { Severity::Warning },
                                ": Grafana sends it as written, inside a string, so that matcher matches nothing",
                            )
                        } else {
                            (Severity::Error, ": Grafana sends it as written and Prometheus cannot parse the query")
                        };
                        sink.at_path(
                            sev,
                            "grafana.variable_unknown",
                            src,
                            &path,
                            format!("{what} uses `${v}`, which is neither a template variable of the dashboard nor a Grafana built-in{tail}"),
                            "define the variable under templating.list or fix the name (variable names are case-sensitive)",
                        );
                    }
                }
                if breaks {
                    continue;
                }
            }
            let e = d.substitute(expr, &b);
            let parsed = read_query(&e);
            match &*parsed {
                Err(err) => sink.at_path(
                    Severity::Error,
                    "grafana.panel_promql",
                    src,
                    &path,
                    format!("{what} does not parse{}: {err}", if e != expr { format!(" (after substitution: `{e}`)") } else { String::new() }),
                    "fix the PromQL; Grafana shows this panel as an error",
                ),
                Ok(q) => {
                    for why in &q.impossible {
                        sink.at_path(
                            Severity::Warning,
                            "promql.impossible_selector",
                            src,
                            &path,
                            format!("{what}: {why}"),
                            "this part of the query is always empty; fix the matcher",
                        );
                    }
                    if let Some(known) = stack.and_then(|s| s.known) {
                        metrics::check_names(known, &q.names, src, &path, &what, true, sink);
                    }
                }
            }
        }
    }
    Some(d)
}

/// Grafana provisions a dashboard without a uid (it makes one up), so this is a warning,
/// unless the stack's `verify` looks for a uid no dashboard has: then it is likely this one.
fn missing_uid(src: &Source, sev: Severity, sink: &mut Sink) {
    sink.at(
        sev,
        "grafana.missing_uid",
        src,
        "title",
        "the dashboard has no uid: Grafana provisions it under a random one on each fresh install, so links and `verify` cannot find it by uid",
        "add a top-level \"uid\" (at most 40 characters of a-z, A-Z, 0-9, - and _)",
    );
}

fn ds_list(ds: &[Datasource]) -> String {
    if ds.is_empty() {
        return "none".into();
    }
    ds.iter().map(|d| format!("{} (uid {})", d.name, d.uid.as_deref().unwrap_or("random"))).collect::<Vec<_>>().join(", ")
}

/// Grafana's files of a stack, found through the provisioning directory.
pub struct GrafanaOut {
    pub dashboards: Vec<(Source, Dashboard)>,
}

pub fn lint_stack_grafana(ctx: &StackCtx, known: Option<&Known>, sink: &mut Sink) -> GrafanaOut {
    let mut out = GrafanaOut { dashboards: vec![] };
    let Some(prov) = paths::grafana_provisioning(&ctx.manifest) else { return out };
    let Some(prov_rel) = prov.stack else {
        sink.at(
            Severity::Error,
            "manifest.config_path",
            &ctx.manifest_src,
            &prov.at,
            format!("Grafana reads its provisioning from {}, which is not in the stack", prov.container),
            format!("set GF_PATHS_PROVISIONING={CONTAINER_CURRENT}/grafana/provisioning"),
        );
        return out;
    };
    let ds_files = ctx.files.provisioning(&prov_rel, "datasources");
    let prov_files = ctx.files.provisioning(&prov_rel, "dashboards");
    let mut datasources = Vec::new();
    for f in &ds_files {
        if let Some(src) = ctx.read(f) {
            datasources.extend(check_datasources(&src, Some(ctx), sink));
        }
    }
    let mut by_org: std::collections::BTreeMap<i64, Vec<&Datasource>> = Default::default();
    for d in datasources.iter().filter(|d| d.is_default) {
        by_org.entry(d.org).or_default().push(d);
    }
    for defaults in by_org.values().filter(|d| d.len() > 1 && d.iter().any(|x| x.file != d[0].file)) {
        let second = defaults[1];
        if let Some(src) = ctx.read(second.file.strip_prefix(&format!("{}/", ctx.dir.display())).unwrap_or(&second.file)) {
            sink.at(
                Severity::Error,
                "grafana.multiple_default_datasources",
                &src,
                &format!("datasources/{}/isDefault", second.index),
                format!("datasource `{}` is a second default (after `{}` in {})", second.name, defaults[0].name, defaults[0].file),
                "keep `isDefault: true` on one datasource only",
            );
        }
    }
    let mut providers = Vec::new();
    for f in &prov_files {
        if let Some(src) = ctx.read(f) {
            providers.extend(check_providers(&src, Some(ctx), sink));
        }
    }
    let dctx = DashCtx { datasources: &datasources, known };
    let mut seen_files = BTreeSet::new();
    let mut uids: HashMap<String, String> = HashMap::new();
    let mut titles: HashMap<(String, String), String> = HashMap::new();
    for p in &providers {
        let Some(dir) = &p.stack_dir else { continue };
        for f in ctx.files.dashboards(dir) {
            if !seen_files.insert(f.clone()) {
                continue;
            }
            let Some(src) = ctx.read(&f) else { continue };
            let Some(d) = check_dashboard(&src, Some(&dctx), sink) else { continue };
            if let Some(uid) = d.uid.clone().filter(|u| !u.is_empty()) {
                if let Some(other) = uids.get(&uid) {
                    sink.at(
                        Severity::Error,
                        "grafana.duplicate_uid",
                        &src,
                        "uid",
                        format!(
                            "uid `{uid}` is also used by {other}: Grafana stops writing both providers' dashboards (\"the same UID is used more than once\")"
                        ),
                        "give every dashboard its own uid",
                    );
                } else {
                    uids.insert(uid, src.display.clone());
                }
            }
            if let Some(t) = d.title.clone() {
                let k = (p.folder.clone(), t.clone());
                if let Some(other) = titles.get(&k) {
                    sink.at(
                        Severity::Warning,
                        "grafana.duplicate_title",
                        &src,
                        "title",
                        format!("title `{t}` is also used by {other} in the same folder: Grafana keeps only one of them"),
                        "give the dashboards distinct titles",
                    );
                } else {
                    titles.insert(k, src.display.clone());
                }
            }
            out.dashboards.push((src, d));
        }
    }
    let needed = ctx.manifest.verify.dashboards.iter().any(|u| !uids.contains_key(u));
    for (src, d) in &out.dashboards {
        if d.uid.as_deref().unwrap_or("").is_empty() {
            missing_uid(src, if needed { Severity::Error } else { Severity::Warning }, sink);
        }
    }
    out
}

/// `verify.dashboards` must name dashboards the stack provisions.
pub fn check_verify_dashboards(dashboards: &[(Source, Dashboard)], ctx: &StackCtx, sink: &mut Sink) {
    let uids: BTreeSet<&str> = dashboards.iter().filter_map(|(_, d)| d.uid.as_deref()).collect();
    for (i, u) in ctx.manifest.verify.dashboards.iter().enumerate() {
        if !uids.contains(u.as_str()) {
            sink.at(
                Severity::Error,
                "manifest.dashboard_unknown",
                &ctx.manifest_src,
                &format!("verify/dashboards/{i}"),
                format!("verify expects dashboard uid `{u}`, which no provisioned dashboard has"),
                format!("provisioned uids: {}", uids.iter().copied().collect::<Vec<_>>().join(", ")),
            );
        }
    }
}
