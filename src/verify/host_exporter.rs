//! The host exporter: answers on its metrics path, with valid exposition text, and every
//! series the manifest declares under `metrics.host_exporter`.

use super::exposition;
use super::{alertmanager::first, poll, skipped, timed, Attempt, Check, Ctx, Outcome, Status};
use crate::remote::http::join;

/// `full: false` is the quick reachability check deploy uses (answers only).
pub(crate) async fn checks(ctx: &Ctx<'_>, full: bool) -> Vec<Check> {
    let he = &ctx.input.stack.manifest.host_exporter;
    let u = join(&ctx.input.endpoints.host_exporter, &he.metrics_path);
    let path = he.metrics_path.clone();
    let mut body = String::new();
    let mut content_type = String::new();
    let answers = timed("host exporter: answers", async {
        let r = poll(ctx.bounds.ready, || async {
            match ctx.http.get(&u, None).await {
                Ok(a) if a.ok() => Attempt::Done((a.body, a.content_type)),
                Ok(a) => Attempt::Retry(format!("{path} answered HTTP {}: {}", a.status, a.message())),
                Err(e) => Attempt::Retry(e),
            }
        })
        .await;
        match r {
            Ok((b, ct)) => {
                body = b;
                content_type = ct;
                Outcome::pass(format!("{path} answers ({} bytes)", body.len()))
            }
            Err(e) => Outcome::fail(e, "is the host exporter running? `stackproof status` shows its PID; its log is in <remote_dir>/run/"),
        }
    })
    .await;
    if !full {
        return vec![answers];
    }
    if answers.status != Status::Pass {
        return vec![
            answers,
            skipped("host exporter: exposition valid", "the host exporter does not answer"),
            skipped("host exporter: declared metrics", "the host exporter does not answer"),
        ];
    }
    let t0 = std::time::Instant::now();
    let declared = &ctx.input.stack.manifest.metrics.host_exporter;
    // The exporter publishes its results after its first run, which may still be going
    // on (its HTTP smoke tests retry while a service starts): poll until the declared
    // series are there, then judge the last answer.
    let missing_in = |body: &str| -> Vec<String> {
        let ex = exposition::validate(body).ok();
        declared
            .iter()
            .filter(|n| match &ex {
                Some(ex) => !ex.samples.contains_key(n.as_str()),
                None => !body.lines().any(|l| l.split(['{', ' ']).next() == Some(n.as_str())),
            })
            .cloned()
            .collect()
    };
    if !missing_in(&body).is_empty() || exposition::validate(&body).is_err() {
        let last = std::sync::Mutex::new(None::<(String, String)>);
        let _ = poll(ctx.bounds.targets, || async {
            match ctx.http.get(&u, None).await {
                Ok(a) if a.ok() => {
                    let done = missing_in(&a.body).is_empty() && exposition::validate(&a.body).is_ok();
                    *last.lock().expect("not poisoned") = Some((a.body, a.content_type));
                    if done {
                        Attempt::Done(())
                    } else {
                        Attempt::Retry(String::new())
                    }
                }
                Ok(a) => Attempt::Retry(format!("HTTP {}", a.status)),
                Err(e) => Attempt::Retry(e),
            }
        })
        .await;
        if let Some((b, ct)) = last.into_inner().expect("not poisoned") {
            body = b;
            content_type = ct;
        }
    }
    let parsed = exposition::validate(&body);
    let valid = Check {
        name: "host exporter: exposition valid".into(),
        status: if parsed.is_ok() { Status::Pass } else { Status::Fail },
        detail: match &parsed {
            // Prometheus 3 refuses a scrape without a valid Content-Type.
            Ok(ex) if content_type.starts_with("text/plain") => format!("{} series names, {content_type}", ex.samples.len()),
            Ok(ex) => format!(
                "{} series names; warning: Content-Type is `{content_type}`, not text/plain; version=0.0.4 (Prometheus 3 refuses such scrapes)",
                ex.samples.len()
            ),
            Err(errs) => first(errs, 5),
        },
        hint: if parsed.is_ok() { String::new() } else { "fix the exporter's output (`promtool check metrics` shows the same problems)".into() },
        duration_ms: t0.elapsed().as_millis() as u64,
    };
    let missing = missing_in(&body);
    let metrics = Check {
        name: "host exporter: declared metrics".into(),
        status: if missing.is_empty() { Status::Pass } else { Status::Fail },
        detail: if missing.is_empty() {
            format!("all {} declared series present", declared.len())
        } else {
            format!("declared under metrics.host_exporter but not exposed: {}", missing.join(", "))
        },
        hint: if missing.is_empty() { String::new() } else { "the exporter and stackproof.yml disagree: fix one of them".into() },
        duration_ms: 0,
    };
    vec![answers, valid, metrics]
}
