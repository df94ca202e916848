//! Grafana: healthy, the admin login works with the deployed secret and not with the
//! default, each provisioned datasource present and healthy (Grafana reaching Prometheus
//! from its own container), each dashboard visible in its folder and provisioned from the
//! deployed file, and every panel's every query returning data through `/api/ds/query`
//! the way a browser would run it. Facts: docs/research/grafana-facts.md §2.7, §3, §4.

use super::alertmanager::first;
use super::frames::{self, Outcome as Judged};
use super::panels;
use super::{poll, skipped, timed, Attempt, Check, Ctx, DashboardResult, Outcome, PanelResult, QueryResult, Status};
use crate::remote::http::{join, Auth};
use crate::stack::dashboard::Dashboard;
use crate::stack::files::DashFile;
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Instant;

mod query;
use query::{browser_builtins, build_body, only_textfile, value_at, Ds};

fn url(ctx: &Ctx<'_>, path: &str) -> String {
    join(&ctx.input.endpoints.grafana, path)
}

fn admin<'a>(ctx: &'a Ctx<'_>) -> Auth<'a> {
    Auth { user: &ctx.input.grafana_user, password: ctx.input.grafana_password.expose() }
}

/// GET with the admin's basic auth; non-2xx is an error carrying Grafana's message.
async fn get(ctx: &Ctx<'_>, path: &str) -> Result<Value, String> {
    let a = ctx.http.get(&url(ctx, path), Some(admin(ctx))).await?;
    if !a.ok() {
        return Err(format!("{path}: HTTP {}: {}", a.status, a.message()));
    }
    a.json()
}

pub(crate) async fn healthy(ctx: &Ctx<'_>) -> Check {
    let u = url(ctx, "/api/health");
    timed("grafana: healthy", async {
        let r = poll(ctx.bounds.ready, || async {
            match ctx.http.get(&u, None).await {
                Ok(a) if a.ok() => match a.json().ok().and_then(|v| v.get("database").and_then(Value::as_str).map(str::to_string)) {
                    Some(db) if db == "ok" => Attempt::Done(()),
                    other => Attempt::Retry(format!("/api/health: database {}", other.unwrap_or_else(|| "unknown".into()))),
                },
                Ok(a) => Attempt::Retry(format!("/api/health answered HTTP {}: {}", a.status, a.message())),
                Err(e) => Attempt::Retry(e),
            }
        })
        .await;
        match r {
            Ok(()) => Outcome::pass("healthy, database ok"),
            Err(e) => Outcome::fail(e, "check the grafana container's log (`stackproof status`): a datasource provisioning error stops Grafana"),
        }
    })
    .await
}

pub(crate) async fn checks(ctx: &Ctx<'_>) -> (Vec<Check>, Vec<DashboardResult>) {
    let skip_rest = |first: Vec<Check>, why: &str| {
        let mut out = first;
        if !out.iter().any(|c| c.name == "grafana: admin login") {
            out.push(skipped("grafana: admin login", why));
        }
        out.push(skipped("grafana: default password refused", why));
        out.extend(ctx.files.datasources.iter().map(|d| skipped(format!("grafana: datasource {}", d.value.name()), why)));
        out.push(skipped("grafana: dashboards", why));
        out
    };
    let h = healthy(ctx).await;
    if h.status != Status::Pass {
        return (skip_rest(vec![h], "Grafana is not healthy"), vec![]);
    }
    // The login first, alone: Grafana counts failed logins per user and blocks the user
    // after 5 within 5 minutes (brute-force protection), so when the deployed secret does
    // not log in, every further request with it would be one more failed login.
    let login = login(ctx).await;
    if login.status != Status::Pass {
        let why = "the admin login failed (each further request with that password would count as one more failed login)";
        return (skip_rest(vec![h, login], why), vec![]);
    }
    let (default_pw, ds, dashes) = tokio::join!(default_refused(ctx), datasources(ctx), dashboards(ctx));
    let mut out = vec![h, login, default_pw];
    out.extend(ds);
    let (dash_checks, visible) = dashes;
    out.extend(dash_checks);
    let (panel_checks, results) = panel_checks(ctx, &visible).await;
    out.extend(panel_checks);
    (out, results)
}

/// Whether a dashboard as Grafana serves it (`/api/dashboards/uid/…`) comes from the
/// deployed file `f` through its provider, with the file's content.
fn provenance(full: &Value, f: &DashFile, provider: &crate::stack::provisioning::Provider, title: &str) -> Result<(), Outcome> {
    let meta = full.get("meta").cloned().unwrap_or(Value::Null);
    let ext = meta.get("provisionedExternalId").and_then(Value::as_str).unwrap_or("");
    let prov = meta.get("provisioned").and_then(Value::as_bool).unwrap_or(false);
    if ext.is_empty() {
        return Err(Outcome::fail(
            format!("`{title}` is not provisioned from a file (saved through the UI or API?)"),
            "delete the UI copy; provisioning recreates it from the file",
        ));
    }
    if ext != f.rel {
        return Err(Outcome::fail(format!("`{title}` is provisioned from `{ext}`, expected `{}`", f.rel), "two files share this uid: keep one"));
    }
    if prov == provider.allow_ui_updates() {
        let detail = format!("meta.provisioned is {prov} but provider `{}` has allowUiUpdates: {}", provider.name(), provider.allow_ui_updates());
        return Err(Outcome::fail(detail, ""));
    }
    if let (Some(file_json), Some(running)) = (f.dashboard.as_ref().map(|d| &d.raw), full.get("dashboard")) {
        let differs = |k: &str| file_json.get(k) != running.get(k);
        if differs("title") || differs("panels") || differs("templating") {
            return Err(Outcome::fail(
                format!("`{title}` in Grafana differs from {} (title, panels or variables): Grafana has not picked up the deployed file", f.file),
                format!("wait for the provider's updateIntervalSeconds or POST /api/admin/provisioning/dashboards/reload; check {}", f.file),
            ));
        }
    }
    Ok(())
}

/// Whether Grafana's answer says the user is blocked by its brute-force protection.
pub fn blocked(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("blocked") || m.contains("too many consecutive incorrect login attempts")
}

/// What to do about a refused admin login.
fn refused_hint(message: &str) -> &'static str {
    if blocked(message) {
        "Grafana blocked this user after 5 failed logins within 5 minutes (brute-force protection; the right password does not unlock it): wait 5 minutes after the last failed attempt, and find what keeps trying a wrong password"
    } else {
        "either Grafana's brute-force protection blocked the user (5 failed logins within 5 minutes; it answers a blocked user with the same 401, even for the right password: wait 5 minutes after the last failed attempt), or the password in force is another one: GF_SECURITY_ADMIN_PASSWORD only applies when Grafana creates its database, and `stackproof deploy` changes it through Grafana's API only when it can read the old secret from the running container; otherwise reset it on the host (`docker exec <grafana container> grafana cli admin reset-admin-password NEW`)"
    }
}

async fn login(ctx: &Ctx<'_>) -> Check {
    let user = ctx.input.grafana_user.clone();
    timed("grafana: admin login", async {
        match ctx.http.get(&url(ctx, "/api/user"), Some(admin(ctx))).await {
            Ok(a) if a.ok() => Outcome::pass(format!("`{user}` logs in with the deployed secret")),
            Ok(a) if blocked(&a.message()) => {
                Outcome::fail(format!("Grafana has blocked `{user}`: HTTP {}: {}", a.status, a.message()), refused_hint(&a.message()))
            }
            Ok(a) => Outcome::fail(format!("`{user}` cannot log in with the deployed secret: HTTP {}: {}", a.status, a.message()), refused_hint(&a.message())),
            Err(e) => Outcome::fail(e, ""),
        }
    })
    .await
}

/// admin/admin must not log in. Proven without a failed login where possible (each one
/// counts towards Grafana's lockout): a user has one password, so when the configured
/// admin is `admin` and logs in with a deployed secret other than `admin`, admin/admin is
/// refused; when the admin has another name and no user `admin` exists, there is no one
/// to log in as. Only an existing second user `admin` costs one try.
async fn default_refused(ctx: &Ctx<'_>) -> Check {
    timed("grafana: default password refused", async {
        if ctx.input.grafana_password.expose() == "admin" {
            return Outcome::fail("the deployed admin secret is the default `admin`", "set a strong value for the grafana_admin_password secret");
        }
        if ctx.input.grafana_user == "admin" {
            return Outcome::pass("admin logs in with the deployed secret, so admin/admin is refused (shown without a failed login)");
        }
        match ctx.http.get(&url(ctx, "/api/users/lookup?loginOrEmail=admin"), Some(admin(ctx))).await {
            Ok(a) if a.status == 404 => return Outcome::pass("no user `admin` exists (shown without a failed login)"),
            Ok(a) if a.ok() => {}
            Ok(a) => return Outcome::fail(format!("looking up the user `admin`: HTTP {}: {}", a.status, a.message()), ""),
            Err(e) => return Outcome::fail(e, ""),
        }
        match ctx.http.get(&url(ctx, "/api/user"), Some(Auth { user: "admin", password: "admin" })).await {
            Ok(a) if a.status == 401 => Outcome::pass("admin/admin is refused"),
            Ok(a) if a.ok() => Outcome::fail(
                "admin/admin logs in: anyone reaching Grafana is its admin",
                "a user `admin` kept the default password: change it, or delete that user",
            ),
            Ok(a) => Outcome::fail(format!("unexpected answer to admin/admin: HTTP {}: {}", a.status, a.message()), ""),
            Err(e) => Outcome::fail(e, ""),
        }
    })
    .await
}

async fn datasources(ctx: &Ctx<'_>) -> Vec<Check> {
    let futs = ctx.files.datasources.iter().map(|f| {
        let (d, file) = (&f.value, &f.file);
        timed(format!("grafana: datasource {}", d.name()), async move {
            let path = match &d.uid {
                Some(u) => format!("/api/datasources/uid/{u}"),
                None => format!("/api/datasources/name/{}", d.name()),
            };
            // Provisioning runs after Grafana starts answering: poll for presence.
            let found = poll(ctx.bounds.dashboards, || async {
                match get(ctx, &path).await {
                    Ok(v) => Attempt::Done(v),
                    Err(e) => Attempt::Retry(e),
                }
            })
            .await;
            let v = match found {
                Ok(v) => v,
                Err(e) => return Outcome::fail(format!("not provisioned: {e}"), format!("check {file} and Grafana's log (logger=provisioning.datasources)")),
            };
            let running_url = v.get("url").and_then(Value::as_str).unwrap_or("");
            if !d.url().is_empty() && running_url != d.url() {
                return Outcome::fail(
                    format!("Grafana has url `{running_url}`, {file} says `{}`", d.url()),
                    "a datasource whose uid changed or that is edited in the UI keeps the old settings: restart Grafana with the deployed provisioning",
                );
            }
            let uid = v.get("uid").and_then(Value::as_str).unwrap_or("").to_string();
            if d.kind() != "prometheus" {
                return Outcome::pass(format!("present (uid {uid}); health not checked for type {}", d.kind()));
            }
            let health = poll(ctx.bounds.targets, || async {
                match ctx.http.get(&url(ctx, &format!("/api/datasources/uid/{uid}/health")), Some(admin(ctx))).await {
                    Ok(a) => {
                        let v = a.json().unwrap_or(Value::Null);
                        let status = v.get("status").and_then(Value::as_str).unwrap_or("").to_string();
                        let msg = v.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| a.message());
                        if a.ok() && status == "OK" {
                            Attempt::Done(msg)
                        } else {
                            Attempt::Retry(format!("health {}: {msg}", if status.is_empty() { format!("HTTP {}", a.status) } else { status }))
                        }
                    }
                    Err(e) => Attempt::Retry(e),
                }
            })
            .await;
            match health {
                Ok(msg) => Outcome::pass(format!("uid {uid}, {running_url}: {msg}")),
                Err(e) => Outcome::fail(
                    format!("uid {uid}, url {running_url}: {e}"),
                    format!("Grafana cannot reach Prometheus at {running_url} from its own container: fix `url` in {file}"),
                ),
            }
        })
    });
    futures_util::future::join_all(futs).await
}

/// A dashboard verify expects, with where it should come from.
struct Expected<'a> {
    uid: String,
    file: Option<&'a DashFile>,
}

/// Dashboard checks; returns the uids (and titles) that are visible, for the panel checks.
async fn dashboards(ctx: &Ctx<'_>) -> (Vec<Check>, Vec<(String, String, String)>) {
    let mut expected: Vec<Expected> = vec![];
    for uid in &ctx.input.stack.manifest.verify.dashboards {
        let file = ctx.files.dashboards.iter().find(|d| d.uid.as_deref() == Some(uid.as_str()));
        expected.push(Expected { uid: uid.clone(), file });
    }
    for d in &ctx.files.dashboards {
        match &d.uid {
            Some(u) if !expected.iter().any(|e| &e.uid == u) => expected.push(Expected { uid: u.clone(), file: Some(d) }),
            None => expected.push(Expected { uid: String::new(), file: Some(d) }),
            _ => {}
        }
    }
    if expected.is_empty() {
        return (vec![skipped("grafana: dashboards", "the stack has no dashboards")], vec![]);
    }
    let t0 = Instant::now();
    // One search, polled until every expected uid is listed (provisioning is async).
    let wanted: Vec<String> = expected.iter().filter(|e| !e.uid.is_empty() && e.file.is_none_or(|f| f.problem.is_none())).map(|e| e.uid.clone()).collect();
    let last: std::sync::Mutex<Vec<Value>> = std::sync::Mutex::new(vec![]);
    let search = poll(ctx.bounds.dashboards, || async {
        match get(ctx, "/api/search?type=dash-db&limit=5000").await {
            Ok(Value::Array(hits)) => {
                let all = wanted.iter().all(|u| hits.iter().any(|h| h.get("uid").and_then(Value::as_str) == Some(u.as_str())));
                *last.lock().expect("not poisoned") = hits.clone();
                if all {
                    Attempt::Done(())
                } else {
                    Attempt::Retry("missing".into())
                }
            }
            Ok(_) => Attempt::Retry("/api/search did not answer a list".into()),
            Err(e) => Attempt::Retry(e),
        }
    })
    .await;
    let search_err = match &search {
        Err(e) if e != "missing" => Some(e.clone()),
        _ => None,
    };
    let hits = last.lock().expect("not poisoned").clone();
    let waited_ms = t0.elapsed().as_millis() as u64;

    let mut visible = vec![];
    let mut checks = vec![];
    for e in &expected {
        let label = e.file.and_then(|f| f.title.clone()).unwrap_or_else(|| e.uid.clone());
        let name = format!("grafana: dashboard {}", if e.uid.is_empty() { e.file.map(|f| f.file.clone()).unwrap_or_default() } else { e.uid.clone() });
        let hit = hits.iter().find(|h| !e.uid.is_empty() && h.get("uid").and_then(Value::as_str) == Some(e.uid.as_str())).cloned();
        let mut c = timed(name, async {
            let Some(hit) = hit else {
                if let Some(err) = &search_err {
                    return Outcome::fail(err.clone(), "");
                }
                return match e.file {
                    Some(f) if f.problem.is_some() => Outcome::fail(
                        format!("`{label}` is not in Grafana: {} {}", f.file, f.problem.clone().unwrap_or_default()),
                        "write the bare dashboard model (title, uid, panels at the top level) to the file, then deploy again",
                    ),
                    Some(f) => Outcome::fail(
                        format!("`{label}` ({}) is not listed by /api/search after {:.0}s", f.file, waited_ms as f64 / 1000.0),
                        "read Grafana's log for `failed to load dashboard from` and check the provider's `path`",
                    ),
                    None => Outcome::fail(
                        format!("uid `{}` is listed in verify.dashboards but no dashboard file of the stack has it", e.uid),
                        "fix the uid in stackproof.yml or add the dashboard file",
                    ),
                };
            };
            let title = hit.get("title").and_then(Value::as_str).unwrap_or("").to_string();
            let folder = hit.get("folderTitle").and_then(Value::as_str).unwrap_or("").to_string();
            let Some(f) = e.file else {
                return Outcome::pass(format!("`{title}` visible in {}", folder_name(&folder)));
            };
            let want_folder = ctx.files.folder_of(f);
            if !want_folder.is_empty() && want_folder != folder {
                return Outcome::fail(
                    format!("`{title}` is in folder {} but its provider puts it in {}", folder_name(&folder), folder_name(&want_folder)),
                    "a dashboard with the same uid provisioned elsewhere wins: look for duplicate uids",
                );
            }
            // Polled like the others: right after a release swap Grafana may still hold the
            // previous file's dashboard until its provider (or the reload deploy asks for)
            // has read the new one.
            let provider = &ctx.files.providers[f.provider].provider;
            let last = std::sync::Mutex::new(Outcome::fail("not read yet", ""));
            let r = poll(ctx.bounds.dashboards, || async {
                let full = match get(ctx, &format!("/api/dashboards/uid/{}", e.uid)).await {
                    Ok(v) => v,
                    Err(err) => {
                        *last.lock().expect("not poisoned") = Outcome::fail(err.clone(), "");
                        return Attempt::Retry(err);
                    }
                };
                match provenance(&full, f, provider, &title) {
                    Ok(()) => Attempt::Done(()),
                    Err(o) => {
                        let why = o.detail.clone();
                        *last.lock().expect("not poisoned") = o;
                        Attempt::Retry(why)
                    }
                }
            })
            .await;
            if r.is_err() {
                return last.into_inner().expect("not poisoned");
            }
            Outcome::pass(format!("`{title}` in {}, provisioned from {}", folder_name(&folder), f.rel))
        })
        .await;
        c.duration_ms += waited_ms;
        if c.status == Status::Pass {
            visible.push((e.uid.clone(), label.clone(), hit_folder(&hits, &e.uid)));
        }
        checks.push(c);
    }
    (checks, visible)
}

fn hit_folder(hits: &[Value], uid: &str) -> String {
    hits.iter()
        .find(|h| h.get("uid").and_then(Value::as_str) == Some(uid))
        .and_then(|h| h.get("folderTitle").and_then(Value::as_str))
        .unwrap_or("General")
        .to_string()
}

fn folder_name(f: &str) -> String {
    if f.is_empty() {
        "General".into()
    } else {
        format!("`{f}`")
    }
}

async fn grafana_datasources(ctx: &Ctx<'_>) -> Result<Vec<Ds>, String> {
    Ok(Ds::list(&get(ctx, "/api/datasources").await?))
}

/// One query to run: where it comes from and what to send.
#[derive(Clone)]
struct Job {
    dash: usize,
    panel: usize,
    ref_id: String,
    expr: String,
    body: Result<Value, String>,
}

async fn panel_checks(ctx: &Ctx<'_>, visible: &[(String, String, String)]) -> (Vec<Check>, Vec<DashboardResult>) {
    if visible.is_empty() {
        return (vec![], vec![]);
    }
    let t0 = Instant::now();
    let ds_list = match grafana_datasources(ctx).await {
        Ok(l) => l,
        Err(e) => {
            let checks = visible
                .iter()
                .map(|(_, title, _)| Check {
                    name: format!("grafana: panels of {title}"),
                    status: Status::Fail,
                    detail: e.clone(),
                    hint: String::new(),
                    duration_ms: 0,
                })
                .collect();
            return (checks, vec![]);
        }
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut results: Vec<DashboardResult> = vec![];
    let mut jobs: Vec<Job> = vec![];
    for (uid, label, folder) in visible.iter() {
        let dash = match get(ctx, &format!("/api/dashboards/uid/{uid}")).await {
            Ok(v) => v.get("dashboard").cloned().unwrap_or(Value::Null),
            Err(e) => {
                results.push(DashboardResult {
                    uid: uid.clone(),
                    title: label.clone(),
                    folder: folder.clone(),
                    panels: vec![PanelResult {
                        title: "(dashboard)".into(),
                        status: Status::Fail,
                        queries: vec![QueryResult { ref_id: String::new(), expr: String::new(), status: Status::Fail, detail: e, series: vec![] }],
                    }],
                });
                continue;
            }
        };
        let model = Dashboard::from_value(dash.clone());
        let (from, to) = panels::time_range(&dash, now_ms);
        let b = browser_builtins(from, to);
        let mut dr = DashboardResult { uid: uid.clone(), title: model.title.clone().unwrap_or_else(|| label.clone()), folder: folder.clone(), panels: vec![] };
        for (pi, p) in model.panels().iter().enumerate() {
            let targets: Vec<_> = p.prometheus_targets().collect();
            dr.panels.push(PanelResult {
                title: if p.title.is_empty() { "(untitled)".into() } else { p.title.clone() },
                status: if targets.is_empty() { Status::Skip } else { Status::Pass },
                queries: vec![],
            });
            let raw_panel = value_at(&model.raw, &p.path);
            for t in targets {
                let raw_expr = t.expr.clone().unwrap_or_default();
                let expr = model.substitute(&raw_expr, &b);
                let raw_target = value_at(&model.raw, &t.path);
                let ref_id = if t.ref_id.is_empty() { "A".to_string() } else { t.ref_id.clone() };
                let body = build_body(&model, &raw_panel, &raw_target, p.target_datasource(t), &ref_id, &raw_expr, &expr, &b, &ds_list, from, to);
                jobs.push(Job { dash: results.len(), panel: pi, ref_id, expr, body });
            }
        }
        results.push(dr);
    }

    // Run every query; poll the ones without data until the deadline (a fresh deploy
    // needs a couple of scrapes before a rate has two samples).
    let mut outcomes: BTreeMap<usize, (Judged, String)> = BTreeMap::new();
    let mut pending: Vec<usize> = (0..jobs.len()).collect();
    loop {
        let round: Vec<(usize, Judged)> = stream::iter(pending.clone())
            .map(|i| {
                let job = &jobs[i];
                async move { (i, run_query(ctx, job, now_ms).await) }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        pending.clear();
        for (i, o) in round {
            // An invalid query stays invalid; stackproof's own textfile metrics appear
            // only after `watch` ran: waiting for either would only burn the deadline.
            let settled = jobs[i].body.is_err() || (o == Judged::NoData && only_textfile(&jobs[i].expr, &ctx.input.stack.manifest.metrics.textfile));
            if !matches!(o, Judged::Data(_)) && !settled {
                pending.push(i);
            }
            outcomes.insert(i, (o, String::new()));
        }
        pending.sort();
        if pending.is_empty() || Instant::now() >= ctx.bounds.panels {
            break;
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std((Instant::now() + super::POLL_INTERVAL * 2).min(ctx.bounds.panels))).await;
    }
    let total_ms = t0.elapsed().as_millis() as u64;

    // Fold outcomes into panels and checks.
    let textfile = &ctx.input.stack.manifest.metrics.textfile;
    for (i, job) in jobs.iter().enumerate() {
        let (o, _) = outcomes.remove(&i).unwrap_or((Judged::Error("not run".into()), String::new()));
        let (status, detail, series) = match o {
            Judged::Data(s) => (Status::Pass, format!("{} series", s.len()), s),
            Judged::NoData if only_textfile(&job.expr, textfile) => {
                (Status::Skip, "no data yet: its metrics are published by stackproof itself (`metrics.textfile`) once `watch` has run".to_string(), vec![])
            }
            Judged::NoData => (Status::Fail, "no data (the query returned no values)".to_string(), vec![]),
            Judged::Error(e) => (Status::Fail, e, vec![]),
        };
        let panel = &mut results[job.dash].panels[job.panel];
        if status == Status::Fail {
            panel.status = Status::Fail;
        } else if status == Status::Skip && panel.status == Status::Pass && panel.queries.iter().all(|q| q.status == Status::Skip) {
            panel.status = Status::Skip;
        }
        panel.queries.push(QueryResult { ref_id: job.ref_id.clone(), expr: job.expr.clone(), status, detail, series });
    }
    let checks = results
        .iter()
        .map(|d| {
            let mut bad = vec![];
            let mut n_queries = 0;
            for p in &d.panels {
                for q in &p.queries {
                    n_queries += 1;
                    if q.status == Status::Fail {
                        bad.push(format!("{} › {} › `{}`: {}", d.title, p.title, q.expr, q.detail));
                    }
                }
            }
            let n_panels = d.panels.iter().filter(|p| p.status != Status::Skip).count();
            if bad.is_empty() {
                Check {
                    name: format!("grafana: panels of {}", d.uid),
                    status: Status::Pass,
                    detail: format!("`{}`: {n_panels} panels, {n_queries} queries, all returned data", d.title),
                    hint: String::new(),
                    duration_ms: total_ms,
                }
            } else {
                Check {
                    name: format!("grafana: panels of {}", d.uid),
                    status: Status::Fail,
                    detail: format!("{} of {n_queries} queries without data: {}", bad.len(), first(&bad, 6)),
                    hint: "run the query in Prometheus: a metric no target exposes, a label that does not match, or a datasource Grafana cannot reach".into(),
                    duration_ms: total_ms,
                }
            }
        })
        .collect();
    (checks, results)
}

async fn run_query(ctx: &Ctx<'_>, job: &Job, built_at_ms: i64) -> Judged {
    let mut body = match &job.body {
        Ok(b) => b.clone(),
        Err(e) => return Judged::Error(e.clone()),
    };
    // Each try is a browser refresh: the relative range moves with the clock (a range
    // frozen at the first try would never see the samples of a fresh deploy).
    let shift = chrono::Utc::now().timestamp_millis() - built_at_ms;
    for k in ["from", "to"] {
        if let Some(t) = body.get(k).and_then(Value::as_str).and_then(|t| t.parse::<i64>().ok()) {
            body[k] = json!((t + shift).to_string());
        }
    }
    match ctx.http.post_json(&url(ctx, "/api/ds/query"), Some(admin(ctx)), &body).await {
        Ok(a) => match a.json() {
            Ok(v) if v.get("results").is_some() => frames::judge(v.pointer(&format!("/results/{}", job.ref_id))),
            Ok(_) => Judged::Error(format!("HTTP {}: {}", a.status, a.message())),
            Err(e) => Judged::Error(e),
        },
        Err(e) => Judged::Error(e),
    }
}
