//! Alertmanager: ready, running the deployed config, every receiver of the routing tree
//! defined, and the drill alert routed to the drill receiver only.
//!
//! Routing is evaluated with the shared model (`crate::stack::alertmanager`), on the
//! config Alertmanager reports it runs (falling back to the deployed file).

use super::config_diff;
use super::{timed, Check, Ctx, Outcome};
use crate::remote::http::{join, Answer};
use crate::stack::alertmanager::{Config as AmConfig, Route};
use serde_yaml::Value as Yaml;
use std::collections::BTreeMap;

/// Every receiver name the routing tree refers to, in tree order.
pub fn tree_receivers(r: &Route, out: &mut Vec<String>) {
    if let Some(n) = &r.receiver {
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    for c in &r.routes {
        tree_receivers(c, out);
    }
}

/// The receivers an alert with these labels is delivered to.
pub fn receivers_for(cfg: &AmConfig, labels: &BTreeMap<String, String>) -> Vec<String> {
    cfg.route_alert(labels).into_iter().map(|m| m.receiver).collect()
}

pub(crate) async fn ready(ctx: &Ctx<'_>) -> Check {
    super::ready_check(ctx, "alertmanager", &ctx.input.endpoints.alertmanager).await
}

pub(crate) async fn checks(ctx: &Ctx<'_>) -> Vec<Check> {
    let r = ready(ctx).await;
    if r.status != super::Status::Pass {
        let why = "Alertmanager is not ready";
        return vec![
            r,
            super::skipped("alertmanager: config loaded", why),
            super::skipped("alertmanager: receivers defined", why),
            super::skipped("alertmanager: drill route", why),
        ];
    }
    let status_url = join(&ctx.input.endpoints.alertmanager, "/api/v2/status");
    let t0 = std::time::Instant::now();
    let loaded: Result<Yaml, String> = match ctx.http.get(&status_url, None).await.and_then(|a: Answer| a.json()) {
        Ok(v) => match v.pointer("/config/original").and_then(|o| o.as_str()) {
            Some(text) => serde_yaml::from_str(text).map_err(|e| format!("the running config is not YAML: {e}")),
            None => Err("/api/v2/status has no config.original".into()),
        },
        Err(e) => Err(e),
    };
    let fetch_ms = t0.elapsed().as_millis() as u64;
    let deployed = ctx.files.alertmanager.yaml.as_ref();
    let file = &ctx.files.alertmanager.file;
    let mut out = vec![r];

    let mut c = timed("alertmanager: config loaded", async {
        match (&loaded, deployed) {
            (Err(e), _) => Outcome::fail(e.clone(), "is the Alertmanager API reachable?"),
            (_, None) => Outcome::fail(format!("cannot read the deployed {file}"), "run `stackproof lint`"),
            (Ok(l), Some(d)) => {
                let diffs = config_diff::diff(d, l, "/");
                if diffs.is_empty() {
                    Outcome::pass(format!("running config matches {file}"))
                } else {
                    Outcome::fail(
                        format!("running config differs from {file}: {}", first(&diffs, 5)),
                        "the reload did not take effect: POST /-/reload and read the Alertmanager log for the error",
                    )
                }
            }
        }
    })
    .await;
    c.duration_ms += fetch_ms;
    out.push(c);

    // Judge routing on the running config when we have it (that is what routes alerts).
    let cfg: Option<Result<AmConfig, String>> =
        loaded.as_ref().ok().or(deployed).map(|y| serde_yaml::from_value::<AmConfig>(y.clone()).map_err(|e| format!("cannot read the routing tree: {e}")));
    out.push(
        timed("alertmanager: receivers defined", async {
            let cfg = match &cfg {
                Some(Ok(c)) => c,
                Some(Err(e)) => return Outcome::fail(e.clone(), ""),
                None => return Outcome::fail("no Alertmanager config to read", ""),
            };
            let Some(route) = &cfg.route else {
                return Outcome::fail("the config has no `route`", "add a root route with a receiver");
            };
            let mut used = vec![];
            tree_receivers(route, &mut used);
            let missing: Vec<&String> = used.iter().filter(|u| cfg.receiver(u).is_none()).collect();
            if missing.is_empty() {
                Outcome::pass(format!("{} receivers used by the routing tree, all defined", used.len()))
            } else {
                Outcome::fail(
                    format!("routing tree names undefined receivers: {}", missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
                    "define them under `receivers:` in alertmanager.yml",
                )
            }
        })
        .await,
    );

    let drill = &ctx.input.stack.manifest.drill;
    out.push(
        timed("alertmanager: drill route", async {
            let Some(Ok(cfg)) = &cfg else { return Outcome::fail("no routing tree to evaluate", "") };
            let labels = drill_labels(ctx);
            let got = receivers_for(cfg, &labels);
            let shown = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect::<Vec<_>>().join(",");
            if got == [drill.receiver.clone()] {
                Outcome::pass(format!("{{{shown}}} → {}", drill.receiver))
            } else {
                Outcome::fail(
                    format!("{{{shown}}} is routed to [{}], expected only `{}`", got.join(", "), drill.receiver),
                    format!("put a route `matchers: [alertname=\"{}\"]` → `{}` with `continue: false` first under the root route", drill.alert, drill.receiver),
                )
            }
        })
        .await,
    );
    out
}

/// The labels the drill alert will carry: alertname, the rule's own labels, and the
/// target labels of the drill job.
fn drill_labels(ctx: &Ctx<'_>) -> BTreeMap<String, String> {
    let drill = &ctx.input.stack.manifest.drill;
    let mut l = BTreeMap::new();
    l.insert("job".to_string(), drill.job.clone());
    for (_, g) in ctx.files.rule_groups() {
        for r in &g.rules {
            if r.alert.as_deref() == Some(drill.alert.as_str()) {
                l.extend(r.labels.iter().map(|(k, v)| (k.clone(), v.0.clone())));
            }
        }
    }
    l.insert("alertname".to_string(), drill.alert.clone());
    l
}

pub(crate) fn first(lines: &[String], n: usize) -> String {
    let mut s = lines.iter().take(n).cloned().collect::<Vec<_>>().join("; ");
    if lines.len() > n {
        s.push_str(&format!("; and {} more", lines.len() - n));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const AM: &str = r#"
route:
  receiver: default
  routes:
    - matchers: ['alertname="StackproofDrill"']
      receiver: stackproof-drill
    - match: {severity: critical}
      receiver: pager
receivers: [{name: default}, {name: stackproof-drill}]
"#;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn drill_alert_reaches_only_the_drill_receiver() {
        let c = AmConfig::from_yaml(AM).unwrap();
        assert_eq!(receivers_for(&c, &labels(&[("alertname", "StackproofDrill"), ("severity", "critical")])), vec!["stackproof-drill"]);
        assert_eq!(receivers_for(&c, &labels(&[("alertname", "X"), ("severity", "critical")])), vec!["pager"]);
    }

    #[test]
    fn an_earlier_catch_all_swallows_the_drill() {
        let c = AmConfig::from_yaml(
            "route:\n  receiver: default\n  routes:\n    - receiver: all\n    - matchers: [alertname=StackproofDrill]\n      receiver: stackproof-drill\n",
        )
        .unwrap();
        assert_eq!(receivers_for(&c, &labels(&[("alertname", "StackproofDrill")])), vec!["all"]);
    }

    #[test]
    fn undefined_receivers_are_found() {
        let c = AmConfig::from_yaml(AM).unwrap();
        let mut used = vec![];
        tree_receivers(c.route.as_ref().unwrap(), &mut used);
        assert_eq!(used, vec!["default", "stackproof-drill", "pager"]);
        assert!(c.receiver("pager").is_none());
    }
}
