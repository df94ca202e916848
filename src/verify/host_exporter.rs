//! The host exporter: answers on its metrics path, with valid exposition text, and every
//! series the manifest declares under `metrics.host_exporter`.

use super::exposition;
use super::http::join;
use super::{alertmanager::first, poll, skipped, timed, Attempt, Check, Ctx, Outcome, Status};

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
    let parsed = exposition::validate(&body);
    let valid = Check {
        name: "host exporter: exposition valid".into(),
        status: if parsed.is_ok() { Status::Pass } else { Status::Fail },
        detail: match &parsed {
            // Prometheus 3 refuses a scrape without a valid Content-Type.
            Ok(ex) if content_type.starts_with("text/plain") => format!("{} series names, {content_type}", ex.samples.len()),
            Ok(ex) => format!("{} series names; warning: Content-Type is `{content_type}`, not text/plain; version=0.0.4 (Prometheus 3 refuses such scrapes)", ex.samples.len()),
            Err(errs) => first(errs, 5),
        },
        hint: if parsed.is_ok() { String::new() } else { "fix the exporter's output (`promtool check metrics` shows the same problems)".into() },
        duration_ms: t0.elapsed().as_millis() as u64,
    };
    let declared = &ctx.input.stack.manifest.metrics.host_exporter;
    let present = |n: &str| match &parsed {
        Ok(ex) => ex.samples.contains_key(n),
        // still look for the names in invalid text, to say as much as possible
        Err(_) => body.lines().any(|l| l.split(['{', ' ']).next() == Some(n)),
    };
    let missing: Vec<&str> = declared.iter().map(String::as_str).filter(|n| !present(n)).collect();
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
