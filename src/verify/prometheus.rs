//! Prometheus: ready, running the deployed config, expected targets up, every rule group
//! loaded and evaluating, Alertmanager discovered, and every metric a rule or a panel
//! reads present now. Facts: docs/research/prometheus-facts.md §1.

use super::alertmanager::first;
use super::{config_diff, poll, skipped, timed, Attempt, Check, Ctx, Outcome, Status};
use crate::remote::http::join;
use serde_json::Value;
use serde_yaml::Value as Yaml;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn url(ctx: &Ctx<'_>, path: &str) -> String {
    join(&ctx.input.endpoints.prometheus, path)
}

/// GET a Prometheus API path and return its `data`.
pub(crate) async fn api(ctx: &Ctx<'_>, path: &str) -> Result<Value, String> {
    let a = ctx.http.get(&url(ctx, path), None).await?;
    let v = a.json()?;
    if v.get("status").and_then(Value::as_str) != Some("success") {
        return Err(format!("{path}: HTTP {}: {}", a.status, a.message()));
    }
    Ok(v.get("data").cloned().unwrap_or(Value::Null))
}

pub(crate) async fn ready(ctx: &Ctx<'_>) -> Check {
    super::ready_check(ctx, "prometheus", &ctx.input.endpoints.prometheus).await
}

pub(crate) async fn checks(ctx: &Ctx<'_>) -> Vec<Check> {
    let r = ready(ctx).await;
    if r.status != Status::Pass {
        let why = "Prometheus is not ready";
        return vec![
            r,
            skipped("prometheus: config loaded", why),
            skipped("prometheus: targets up", why),
            skipped("prometheus: rules loaded", why),
            skipped("prometheus: alertmanager discovered", why),
            skipped("metrics live: panels", why),
            skipped("metrics live: rules", why),
        ];
    }
    let (c, t, ru, am, m) = tokio::join!(config(ctx), targets(ctx), rules(ctx), alertmanagers(ctx), metrics_live(ctx));
    let mut out = vec![r, c, t, ru, am];
    out.extend(m);
    out
}

async fn config(ctx: &Ctx<'_>) -> Check {
    let file = &ctx.files.prometheus.file;
    let base = std::path::Path::new(&ctx.files.prometheus.container).parent().map(|p| p.display().to_string()).unwrap_or_else(|| "/".into());
    timed("prometheus: config loaded", async {
        let Some(deployed) = &ctx.files.prometheus.yaml else {
            return Outcome::fail(format!("cannot read the deployed {file}"), "run `stackproof lint`");
        };
        // A reload right before verify may still be in flight: poll briefly.
        let r = poll(ctx.bounds.rules, || async {
            let data = match api(ctx, "/api/v1/status/config").await {
                Ok(d) => d,
                Err(e) => return Attempt::Retry(e),
            };
            let loaded: Yaml = match serde_yaml::from_str(data.get("yaml").and_then(Value::as_str).unwrap_or("")) {
                Ok(y) => y,
                Err(e) => return Attempt::Retry(format!("the running config is not YAML: {e}")),
            };
            let d = config_diff::diff(deployed, &loaded, &base);
            if d.is_empty() {
                Attempt::Done(())
            } else {
                Attempt::Retry(format!("running config differs from {file}: {}", first(&d, 5)))
            }
        })
        .await;
        match r {
            Ok(()) => Outcome::pass(format!("running config matches {file}")),
            Err(e) => Outcome::fail(e, "the reload did not take effect: POST /-/reload and read the Prometheus log for the error"),
        }
    })
    .await
}

async fn targets(ctx: &Ctx<'_>) -> Check {
    let jobs = ctx.input.stack.manifest.verify.targets.clone();
    timed("prometheus: targets up", async {
        if jobs.is_empty() {
            return Outcome::skip("the manifest lists no `verify.targets`");
        }
        let r = poll(ctx.bounds.targets, || async {
            let data = match api(ctx, "/api/v1/targets?state=active").await {
                Ok(d) => d,
                Err(e) => return Attempt::Retry(e),
            };
            let active = data.get("activeTargets").and_then(Value::as_array).cloned().unwrap_or_default();
            let mut problems = vec![];
            let mut up = 0;
            for job in &jobs {
                let mine: Vec<&Value> = active.iter().filter(|t| t.pointer("/labels/job").and_then(Value::as_str) == Some(job.as_str())).collect();
                if mine.is_empty() {
                    problems.push(format!("job `{job}` has no target (is it in prometheus.yml?)"));
                }
                for t in mine {
                    let health = t.get("health").and_then(Value::as_str).unwrap_or("unknown");
                    let inst = t.pointer("/labels/instance").and_then(Value::as_str).unwrap_or("?");
                    if health == "up" {
                        up += 1;
                    } else {
                        let err = t.get("lastError").and_then(Value::as_str).filter(|e| !e.is_empty()).unwrap_or("not scraped yet");
                        problems.push(format!("job `{job}` target {inst} is {health}: {err}"));
                    }
                }
            }
            if problems.is_empty() {
                Attempt::Done(up)
            } else {
                Attempt::Retry(problems.join("; "))
            }
        })
        .await;
        match r {
            Ok(n) => Outcome::pass(format!("{n} targets of {} jobs up ({})", jobs.len(), jobs.join(", "))),
            Err(e) => Outcome::fail(
                e,
                "start the service behind the down target (or fix its address in prometheus.yml); `stackproof status` shows containers and the host exporter",
            ),
        }
    })
    .await
}

async fn rules(ctx: &Ctx<'_>) -> Check {
    let expected: Vec<_> = ctx.files.rule_groups().collect();
    timed("prometheus: rules loaded", async {
        if expected.is_empty() {
            return Outcome::skip("the deployed prometheus.yml names no rule files");
        }
        let r = poll(ctx.bounds.rules, || async {
            let data = match api(ctx, "/api/v1/rules").await {
                Ok(d) => d,
                Err(e) => return Attempt::Retry(e),
            };
            let groups = data.get("groups").and_then(Value::as_array).cloned().unwrap_or_default();
            let mut problems = vec![];
            let mut not_yet = vec![];
            let mut n = 0;
            for (file, g) in &expected {
                let Some(lg) = groups.iter().find(|lg| lg.get("name").and_then(Value::as_str) == Some(g.name.as_str())) else {
                    problems.push(format!("group `{}` ({file}) is not loaded", g.name));
                    continue;
                };
                let lrules = lg.get("rules").and_then(Value::as_array).cloned().unwrap_or_default();
                for rule in g.named_rules() {
                    n += 1;
                    let Some(lr) = lrules.iter().find(|lr| lr.get("name").and_then(Value::as_str) == Some(rule.name())) else {
                        problems.push(format!("rule `{}` of group `{}` is not loaded", rule.name(), g.name));
                        continue;
                    };
                    let health = lr.get("health").and_then(Value::as_str).unwrap_or("unknown");
                    let err = lr.get("lastError").and_then(Value::as_str).unwrap_or("");
                    if health == "err" || !err.is_empty() {
                        problems.push(format!("rule `{}` of group `{}` fails to evaluate: {err}", rule.name(), g.name));
                    } else if health != "ok" {
                        not_yet.push(format!("rule `{}` of group `{}` not evaluated yet", rule.name(), g.name));
                    }
                }
            }
            problems.extend(not_yet);
            if problems.is_empty() {
                Attempt::Done(n)
            } else {
                Attempt::Retry(problems.join("; "))
            }
        })
        .await;
        match r {
            Ok(n) => Outcome::pass(format!("{} groups, {n} rules loaded and evaluating", expected.len())),
            Err(e) => Outcome::fail(e, "check rule_files in prometheus.yml and the rule expressions (`promtool check rules`)"),
        }
    })
    .await
}

async fn alertmanagers(ctx: &Ctx<'_>) -> Check {
    let configured: Vec<String> = ctx
        .files
        .prometheus
        .model
        .iter()
        .flat_map(|c| &c.alerting.alertmanagers)
        .flat_map(|am| &am.static_configs)
        .flat_map(|sc| sc.targets.iter().cloned())
        .collect();
    timed("prometheus: alertmanager discovered", async {
        if configured.is_empty() {
            return Outcome::fail(
                "prometheus.yml configures no Alertmanager: alerts go nowhere",
                "add `alerting.alertmanagers` with the Alertmanager's address",
            );
        }
        let r = poll(ctx.bounds.alertmanagers, || async {
            let data = match api(ctx, "/api/v1/alertmanagers").await {
                Ok(d) => d,
                Err(e) => return Attempt::Retry(e),
            };
            let urls: Vec<String> = data
                .get("activeAlertmanagers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| a.get("url").and_then(Value::as_str).map(str::to_string))
                .collect();
            let missing: Vec<&String> = configured.iter().filter(|c| !urls.iter().any(|u| u.contains(c.as_str()))).collect();
            if missing.is_empty() {
                Attempt::Done(urls)
            } else {
                Attempt::Retry(format!(
                    "Alertmanager {} is not an active alertmanager (active: [{}])",
                    missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    urls.join(", ")
                ))
            }
        })
        .await;
        match r {
            Ok(urls) => Outcome::pass(format!("active: {}", urls.join(", "))),
            Err(e) => Outcome::fail(e, "check `alerting.alertmanagers` in prometheus.yml"),
        }
    })
    .await
}

/// Metric names each panel of the stack's dashboards and each rule reads.
struct Uses {
    panels: Vec<(String, BTreeSet<String>)>,
    rules: Vec<(String, BTreeSet<String>)>,
    unreadable: Vec<String>,
}

async fn uses(ctx: &Ctx<'_>) -> Uses {
    use crate::stack::{dashboard, promql};
    let names = |expr: &str| promql::parse(expr).map(|q| promql::metric_names(&q.ast));
    let mut u = Uses { panels: vec![], rules: vec![], unreadable: vec![] };
    for (_, g) in ctx.files.rule_groups() {
        for r in g.named_rules() {
            match names(r.expr.as_str()) {
                Ok(n) => u.rules.push((format!("rule `{}` (group `{}`)", r.name(), g.name), n)),
                Err(e) => u.unreadable.push(format!("rule `{}`: {e}", r.name())),
            }
        }
    }
    let b = dashboard::Builtins::default();
    for d in &ctx.files.dashboards {
        let Some(model) = &d.dashboard else { continue };
        let dtitle = d.title.clone().unwrap_or_default();
        for p in model.panels() {
            for t in p.prometheus_targets() {
                let expr = model.substitute(t.expr.as_deref().unwrap_or(""), &b);
                let what = format!("{dtitle} › {}", p.title);
                match names(&expr) {
                    Ok(n) => u.panels.push((what, n)),
                    Err(e) => u.unreadable.push(format!("{what}: `{expr}`: {e}")),
                }
            }
        }
    }
    u
}

/// How long until every metric should exist, counted from Prometheus' start: a stack
/// that has been up longer than that will not grow the missing names by waiting.
async fn metrics_deadline(ctx: &Ctx<'_>) -> Instant {
    let t = &ctx.files.timing;
    let needed = Duration::from_secs(6) + t.scrape * 2 + t.scrape_timeout + t.evaluation * 2;
    let started = api(ctx, "/api/v1/status/runtimeinfo")
        .await
        .ok()
        .and_then(|d| d.get("startTime").and_then(Value::as_str).map(str::to_string))
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok());
    match started {
        Some(s) => {
            let up_for = (chrono::Utc::now() - s.with_timezone(&chrono::Utc)).to_std().unwrap_or_default();
            let left = needed.saturating_sub(up_for);
            (Instant::now() + left).min(ctx.bounds.metrics)
        }
        None => ctx.bounds.metrics,
    }
}

async fn metrics_live(ctx: &Ctx<'_>) -> Vec<Check> {
    let t0 = Instant::now();
    let uses = uses(ctx).await;
    let deadline = metrics_deadline(ctx).await;
    let path = "/api/v1/label/__name__/values";
    // The last answer is kept: when the deadline passes, judge what is there.
    let last: std::sync::Mutex<Option<BTreeSet<String>>> = std::sync::Mutex::new(None);
    let r = poll(deadline, || async {
        match api(ctx, path).await {
            Ok(d) => {
                let live: BTreeSet<String> = d.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
                let textfile = &ctx.input.stack.manifest.metrics.textfile;
                let all_there = uses.panels.iter().chain(&uses.rules).all(|(_, n)| n.iter().all(|m| live.contains(m) || textfile.contains(m)));
                if all_there {
                    Attempt::Done(live)
                } else {
                    *last.lock().expect("not poisoned") = Some(live);
                    Attempt::Retry("some metrics are missing".into())
                }
            }
            Err(e) => Attempt::Retry(e),
        }
    })
    .await;
    let r = r.or_else(|e| last.lock().expect("not poisoned").take().ok_or(e));
    let ms = t0.elapsed().as_millis() as u64;
    let live = match r {
        Ok(l) => l,
        Err(e) => {
            let mk = |name: &str| Check { name: name.into(), status: Status::Fail, detail: e.clone(), hint: String::new(), duration_ms: ms };
            return vec![mk("metrics live: panels"), mk("metrics live: rules")];
        }
    };
    // Names stackproof publishes itself (textfile collector) appear once it has run.
    let textfile = &ctx.input.stack.manifest.metrics.textfile;
    let missing = |list: &[(String, BTreeSet<String>)]| -> Vec<String> {
        list.iter()
            .filter_map(|(what, names)| {
                let m: Vec<&str> = names.iter().filter(|n| !live.contains(*n) && !textfile.contains(n)).map(String::as_str).collect();
                (!m.is_empty()).then(|| format!("{what}: {}", m.join(", ")))
            })
            .collect()
    };
    let panel_missing = missing(&uses.panels);
    let rule_missing = missing(&uses.rules);
    let mut panels = if panel_missing.is_empty() {
        Check {
            name: "metrics live: panels".into(),
            status: Status::Pass,
            detail: format!("every metric of {} panel queries exists", uses.panels.len()),
            hint: String::new(),
            duration_ms: ms,
        }
    } else {
        Check {
            name: "metrics live: panels".into(),
            status: Status::Fail,
            detail: format!("no target exposes these metrics: {}", first(&panel_missing, 6)),
            hint: "fix the metric name in the dashboard, or add the scrape job/exporter that exposes it".into(),
            duration_ms: ms,
        }
    };
    if !uses.unreadable.is_empty() {
        panels.detail.push_str(&format!("; warning: cannot read {}", first(&uses.unreadable, 3)));
    }
    let rules = Check {
        name: "metrics live: rules".into(),
        status: Status::Pass,
        detail: if rule_missing.is_empty() {
            format!("every metric of {} rules exists", uses.rules.len())
        } else {
            format!("warning: can never fire (no target exposes the metric): {}", first(&rule_missing, 6))
        },
        hint: if rule_missing.is_empty() { String::new() } else { "fix the metric name in the rule, or scrape the exporter that exposes it".into() },
        duration_ms: ms,
    };
    vec![panels, rules]
}
