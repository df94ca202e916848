//! The coverage of `drill --alert/--all`: one row per alerting rule (offline proof, live
//! proof against its bounds, or why not), as JSON and as a table read in one look.

use super::host::Silence;
use super::plan::{Live, Plan};
use crate::drill::{round2, Goal};
use crate::lint::proof::{prove_stack, Evaluator};
use crate::stack::Stack;
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertResult {
    pub alert: String,
    /// The offline proof made it fire (and route) from synthetic series.
    pub offline: bool,
    /// Caused for real: its twin fired, was delivered and resolved within the bounds.
    pub live: bool,
    pub how: String,
    pub fired_after_s: Option<f64>,
    pub fire_bound_s: Option<f64>,
    pub delivered: bool,
    pub delivered_after_s: Option<f64>,
    pub deliver_bound_s: Option<f64>,
    pub resolved_after_s: Option<f64>,
    pub resolve_bound_s: Option<f64>,
    /// Why not live (offline only, or what failed); why not offline.
    pub reason: String,
    /// The fault that causes it live (`stop`, `fail`, `error`, `slow`), none when offline only.
    pub fault: Option<String>,
    /// The alert the drill watched (its twin, or the drill alert itself).
    pub watched: Option<String>,
    /// A live drill was tried for it (chosen and causable).
    pub tried: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LiveReport {
    pub ok: bool,
    pub alerts: Vec<AlertResult>,
    /// The real alerts silenced while the faults' aftermath lasts (they end by themselves).
    pub silences: Vec<Silence>,
    pub total_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl LiveReport {
    /// `ok`: every live drill tried passed, no error, and — when the offline proof ran —
    /// every chosen alert is proven one way or the other.
    pub fn new(alerts: Vec<AlertResult>, silences: Vec<Silence>, total_s: f64, error: Option<String>) -> LiveReport {
        let offline_ran = alerts.iter().any(|a| a.offline);
        let ok = error.is_none() && alerts.iter().all(|a| (!a.tried || a.live) && (!offline_ran || a.offline || a.live));
        LiveReport { ok, alerts, silences, total_s, error }
    }
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("serializable")
    }
}

/// One row per chosen alert before the drill: offline verdicts, live ones still open.
pub fn initial(plan: &Plan, stack: &Stack) -> Vec<AlertResult> {
    let proofs = prove_stack(&stack.dir, Evaluator::Auto).unwrap_or_default();
    plan.chosen
        .iter()
        .map(|&i| {
            let e = &plan.entries[i];
            let p = proofs.iter().find(|p| p.alert == e.alert);
            let offline = p.is_some_and(|p| p.fires && !p.receivers.is_empty());
            let offline_why = match p {
                None => "not proven offline".to_string(),
                Some(p) if !offline => format!("offline: {}", if p.reason.is_empty() { "does not fire or routes nowhere" } else { &p.reason }),
                Some(_) => String::new(),
            };
            let live = plan.live.iter().find(|l| l.alert == e.alert);
            let how = match (live, p) {
                (Some(l), _) => l.fault.how().to_string(),
                (None, Some(p)) if offline => format!("offline ({})", p.how),
                _ => "offline only".to_string(),
            };
            let reason = [if live.is_none() { format!("offline only: {}", e.reason) } else { String::new() }, offline_why]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            AlertResult {
                alert: e.alert.clone(),
                offline,
                live: false,
                how,
                fired_after_s: None,
                fire_bound_s: live.map(|l| round2(l.fire_bound.as_secs_f64())),
                delivered: false,
                delivered_after_s: None,
                deliver_bound_s: live.map(|l| round2(l.deliver_bound.as_secs_f64())),
                resolved_after_s: None,
                resolve_bound_s: live.map(|l| round2(l.resolve_bound.as_secs_f64())),
                reason,
                fault: live.map(|l| l.fault.as_str().to_string()),
                watched: live.map(|l| l.watch.clone()),
                tried: live.is_some(),
            }
        })
        .collect()
}

fn after(g: &Goal, start: Instant) -> Option<f64> {
    g.seen.map(|t| round2(t.saturating_duration_since(start).as_secs_f64()))
}

/// Record the outcome of one live alert: fired/delivered measured from the fault in
/// force (`t0`), resolved from its end (`t1`).
pub(super) fn record(results: &mut [AlertResult], l: &Live, fire: &Goal, deliver: &Goal, resolve: &Goal, t0: Instant, t1: Instant) {
    let Some(r) = results.iter_mut().find(|r| r.alert == l.alert) else { return };
    r.fired_after_s = after(fire, t0);
    r.delivered_after_s = after(deliver, t0);
    r.delivered = deliver.seen.is_some();
    r.resolved_after_s = after(resolve, t1);
    let within = |g: &Goal, a: Option<f64>| g.failed.is_none() && a.is_some_and(|a| a <= g.bound.as_secs_f64());
    let ok = within(fire, r.fired_after_s) && within(deliver, r.delivered_after_s) && within(resolve, r.resolved_after_s);
    r.live = ok;
    if !ok {
        let mut why = vec![];
        for (g, a, what) in [(fire, r.fired_after_s, "fired"), (deliver, r.delivered_after_s, "delivered"), (resolve, r.resolved_after_s, "resolved")] {
            match a {
                Some(a) if a > g.bound.as_secs_f64() => why.push(format!("{what} after {a:.1} s (bound {:.1} s)", g.bound.as_secs_f64())),
                None => {
                    why.push(format!("not {what} within {:.1} s{}", g.bound.as_secs_f64(), g.failed.as_ref().map(|f| format!(" ({f})")).unwrap_or_default()))
                }
                _ => {}
            }
        }
        r.reason = [why.join("; "), r.reason.clone()].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join("; ");
    }
}

fn secs(v: Option<f64>) -> String {
    v.map(|a| format!("{a:.1}")).unwrap_or_else(|| "–".into())
}

/// The table: one line per alert.
pub fn render_text(r: &LiveReport) -> String {
    let w = r.alerts.iter().map(|a| a.alert.chars().count()).max().unwrap_or(5).max(5);
    let mut s = format!("alert coverage ({} alerts):\n", r.alerts.len());
    s.push_str(&format!(
        "  {:<w$}  offline  live  {:<7}  {:>13}  {:>13}  {:>13}  how / reason\n",
        "alert", "fault", "fired/bound", "delivered", "resolved/bound"
    ));
    for a in &r.alerts {
        let m = |b: bool| if b { "✓" } else { "✗" };
        let live = if a.tried { m(a.live) } else { "–" };
        let fired = if a.tried { format!("{}/{}", secs(a.fired_after_s), secs(a.fire_bound_s)) } else { "–".into() };
        let deliv = if a.tried { format!("{} {}", m(a.delivered), secs(a.delivered_after_s)) } else { "–".into() };
        let res = if a.tried { format!("{}/{}", secs(a.resolved_after_s), secs(a.resolve_bound_s)) } else { "–".into() };
        let note = if a.reason.is_empty() {
            a.how.clone()
        } else if a.tried {
            format!("{}: {}", a.how, a.reason)
        } else {
            a.reason.clone()
        };
        s.push_str(&format!(
            "  {:<w$}  {:^7}  {:^4}  {:<7}  {fired:>13}  {deliv:>13}  {res:>13}  {note}\n",
            a.alert,
            m(a.offline),
            live,
            a.fault.as_deref().unwrap_or("–")
        ));
    }
    for si in &r.silences {
        s.push_str(&format!(
            "  silenced in Alertmanager: {} ({}) until {}\n",
            si.alert,
            si.matchers.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
            si.until
        ));
    }
    if let Some(e) = &r.error {
        s.push_str(&format!("  ✗ {e}\n"));
    }
    let live = r.alerts.iter().filter(|a| a.live).count();
    let tried = r.alerts.iter().filter(|a| a.tried).count();
    s.push_str(&format!("  drill {} in {:.1} s: {live} of {tried} live proofs passed\n", if r.ok { "passed" } else { "FAILED" }, r.total_s));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stack() -> Stack {
        Stack::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/stack"))).unwrap()
    }

    #[test]
    fn rows_and_verdicts() {
        let s = stack();
        let p = super::super::plan::plan(&s, &[], true, false).unwrap();
        let mut rows = initial(&p, &s);
        assert_eq!(rows.len(), 17);
        let mem = rows.iter().find(|r| r.alert == "HostMemoryHigh").unwrap();
        assert!(!mem.tried && mem.reason.contains("offline only"), "{mem:?}");
        let l = p.live.iter().find(|l| l.alert == "TestPassRateLow").unwrap().clone();
        let t0 = Instant::now();
        let g = |n: &str, b: u64, after: Option<u64>| {
            let mut g = Goal::new(n, "x", Duration::from_secs(b));
            g.seen = after.map(|a| t0 + Duration::from_secs(a));
            g
        };
        let (f, d, r) = (g("f", 8, Some(6)), g("d", 10, Some(7)), g("r", 5, Some(9)));
        record(&mut rows, &l, &f, &d, &r, t0, t0);
        let row = rows.iter().find(|r| r.alert == "TestPassRateLow").unwrap().clone();
        assert!(!row.live && row.delivered, "{row:?}");
        assert!(row.reason.contains("resolved after 9.0 s (bound 5.0 s)"), "{}", row.reason);
        let rep = LiveReport::new(rows.clone(), vec![], 1.0, None);
        assert!(!rep.ok);
        let t = render_text(&rep);
        assert!(t.contains("TestPassRateLow") && t.contains("6.0/") && t.contains("drill FAILED"), "{t}");
        let j = rep.to_json();
        for k in ["alert", "offline", "live", "how", "fired_after_s", "fire_bound_s", "delivered", "resolved_after_s", "resolve_bound_s", "reason"] {
            assert!(j["alerts"][0].get(k).is_some(), "{k} missing: {}", j["alerts"][0]);
        }
        // All within bounds: live and ok (the offline proof is not there to require).
        let r2 = g("r", 5, Some(3));
        record(&mut rows, &l, &f, &d, &r2, t0, t0);
        let rows: Vec<AlertResult> = rows.into_iter().filter(|r| r.alert == "TestPassRateLow" || !r.tried).collect();
        assert!(LiveReport::new(rows, vec![], 1.0, None).ok);
    }
}
