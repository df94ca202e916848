//! The HTML report: one self-contained file (inline CSS, inline SVG charts, no script,
//! no external resource), readable without a network. It holds only what the report
//! holds — check details and returned data — never a credential.

use crate::verify::frames::Series;
use crate::verify::{Report, Status};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use std::fmt::Write;

const CSS: &str = r#"
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{padding:18px 28px;color:#fff}
header.ok{background:#1f8a4c} header.fail{background:#c62828}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0}
main{padding:8px 28px 40px}
h2{font-size:17px;margin:26px 0 10px}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0002}
td,th{padding:6px 10px;border-bottom:1px solid #e4e6eb;text-align:left;vertical-align:top}
th{background:#eef0f4;font-weight:600}
.s{font-weight:700;width:1.5em;text-align:center}
.pass .s{color:#1f8a4c} .fail .s{color:#c62828} .skip .s{color:#8a8f99} .warn .s{color:#b26a00}
tr.warn{background:#fff8e6}
tr.fail{background:#fff3f3}
.hint{color:#5b6270;font-style:italic}
.ms{color:#8a8f99;white-space:nowrap;text-align:right}
.dash{margin:14px 0 24px}
.dash h3{margin:0 0 8px;font-size:15px} .dash h3 small{color:#8a8f99;font-weight:400}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.panel{background:#fff;border-radius:6px;box-shadow:0 1px 2px #0002;padding:10px 12px;width:300px;border-top:4px solid #8a8f99}
.panel.pass{border-top-color:#1f8a4c} .panel.fail{border-top-color:#c62828}
.panel h4{margin:0 0 6px;font-size:14px}
.q{font:12px ui-monospace,Menlo,Consolas,monospace;color:#39404d;word-break:break-all;margin:4px 0}
.qd{font-size:12px;color:#5b6270} .qd.fail{color:#c62828}
.legend{font-size:11px;color:#5b6270;margin:2px 0 0;word-break:break-all}
svg{display:block;background:#fbfcfd;border:1px solid #e4e6eb;border-radius:4px}
.empty{color:#8a8f99;font-size:12px;padding:8px 0}
pre{background:#fff;padding:10px;overflow:auto}
"#;

const COLORS: [&str; 6] = ["#3366cc", "#dc7633", "#1f8a4c", "#8e44ad", "#c0392b", "#16a085"];

fn class(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Fail => "fail",
        Status::Skip => "skip",
        Status::Warn => "warn",
    }
}

fn mark(s: Status) -> &'static str {
    match s {
        Status::Pass => "✓",
        Status::Fail => "✗",
        Status::Skip => "–",
        Status::Warn => "!",
    }
}

pub fn render_html(r: &Report) -> String {
    let mut h = String::new();
    let failed = r.checks.iter().filter(|c| c.status == Status::Fail).count();
    let verdict = if r.ok { format!("All {} checks passed", r.checks.len()) } else { format!("{failed} of {} checks failed", r.checks.len()) };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>stackproof verify — {}</title><style>{CSS}</style></head><body>\n",
        text(&verdict)
    );
    let _ = write!(
        h,
        "<header class=\"{}\"><h1>{} stackproof verify: {}</h1><p>{}</p></header>\n<main>\n",
        if r.ok { "ok" } else { "fail" },
        if r.ok { "✓" } else { "✗" },
        if r.ok { "OK" } else { "FAILED" },
        text(&verdict)
    );

    // Checks, failures first.
    h.push_str("<h2>Checks</h2>\n<table><tr><th></th><th>check</th><th>detail</th><th>time</th></tr>\n");
    let mut checks: Vec<_> = r.checks.iter().collect();
    checks.sort_by_key(|c| c.status != Status::Fail);
    for c in checks {
        let hint = if c.hint.is_empty() { String::new() } else { format!("<div class=\"hint\">→ {}</div>", text(&c.hint)) };
        let _ = writeln!(
            h,
            "<tr class=\"{}\"><td class=\"s\">{}</td><td>{}</td><td>{}{hint}</td><td class=\"ms\">{} ms</td></tr>",
            class(c.status),
            mark(c.status),
            text(&c.name),
            text(&c.detail),
            c.duration_ms
        );
    }
    h.push_str("</table>\n");

    // Dashboards and panels.
    h.push_str("<h2>Dashboards</h2>\n");
    if r.dashboards.is_empty() {
        h.push_str("<p class=\"empty\">No dashboard was reached in this run.</p>\n");
    }
    for d in &r.dashboards {
        let _ =
            writeln!(h, "<section class=\"dash\"><h3>{} <small>{} · uid {}</small></h3><div class=\"grid\">", text(&d.title), text(&d.folder), text(&d.uid));
        for p in &d.panels {
            let _ = write!(h, "<div class=\"panel {}\"><h4>{} {}</h4>", class(p.status), mark(p.status), text(&p.title));
            if p.queries.is_empty() {
                h.push_str("<div class=\"empty\">no queries (text or row panel)</div>");
            }
            for q in &p.queries {
                let _ =
                    write!(h, "<div class=\"q\">{}: {}</div><div class=\"qd {}\">{}</div>", text(&q.ref_id), text(&q.expr), class(q.status), text(&q.detail));
                if !q.series.is_empty() {
                    h.push_str(&chart(&q.series));
                    let names: Vec<String> = q
                        .series
                        .iter()
                        .enumerate()
                        .map(|(i, s)| format!("<span style=\"color:{}\">■</span> {}", COLORS[i % COLORS.len()], text(&s.name)))
                        .collect();
                    let _ = write!(h, "<div class=\"legend\">{}</div>", names.join(" "));
                }
            }
            h.push_str("</div>\n");
        }
        h.push_str("</div></section>\n");
    }

    // The drill (its own issue fills `report.drill`).
    h.push_str("<h2 id=\"drill\">Outage drill</h2>\n");
    match &r.drill {
        None => h.push_str("<p class=\"empty\">No drill in this run (<code>stackproof verify --drill</code> runs one).</p>\n"),
        Some(d) => h.push_str(&drill(d)),
    }
    h.push_str("</main></body></html>\n");
    h
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 1e4 || (v != 0.0 && v.abs() < 1e-2) {
        format!("{v:.2e}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// A small line chart of the returned series (inline SVG).
pub fn chart(series: &[Series]) -> String {
    const W: f64 = 276.0;
    const H: f64 = 80.0;
    const PAD: f64 = 4.0;
    let pts: Vec<&(i64, f64)> = series.iter().flat_map(|s| s.points.iter()).filter(|p| p.1.is_finite()).collect();
    if pts.is_empty() {
        return String::new();
    }
    let (mut x0, mut x1) = (pts.iter().map(|p| p.0).min().unwrap_or(0), pts.iter().map(|p| p.0).max().unwrap_or(1));
    let (mut y0, mut y1) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if x0 == x1 {
        x0 -= 1;
        x1 += 1;
    }
    if (y1 - y0).abs() < f64::EPSILON {
        y0 -= 1.0;
        y1 += 1.0;
    }
    let sx = |x: i64| PAD + (x - x0) as f64 / (x1 - x0) as f64 * (W - 2.0 * PAD);
    let sy = |y: f64| H - PAD - (y - y0) / (y1 - y0) * (H - 2.0 * PAD);
    let mut s = format!("<svg width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\">");
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"11\" font-size=\"9\" fill=\"#8a8f99\" text-anchor=\"end\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"9\" fill=\"#8a8f99\" text-anchor=\"end\">{}</text>",
        W - 3.0,
        attr(&fmt_num(y1)),
        W - 3.0,
        H - 3.0,
        attr(&fmt_num(y0))
    );
    for (i, ser) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let p: Vec<String> = ser.points.iter().filter(|p| p.1.is_finite()).map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.1))).collect();
        if p.len() == 1 {
            let (x, y) = p[0].split_once(',').unwrap_or(("0", "0"));
            let _ = write!(s, "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{color}\"/>");
        } else if !p.is_empty() {
            let _ = write!(s, "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.6\" points=\"{}\"/>", p.join(" "));
        }
    }
    s.push_str("</svg>");
    s
}

/// The drill section: each stage as a row, its bound drawn as a grey band and the
/// measured moment as a dot (green within the bound, red beyond it or missed); the
/// outage measured from the exporter's stop, the recovery from its return. Older
/// documents with `timeline: [{"at_ms", "event"}]` are drawn as a plain timeline.
fn drill(d: &serde_json::Value) -> String {
    if d.get("stages").and_then(|s| s.as_array()).is_some_and(|s| !s.is_empty()) {
        return drill_stages(d);
    }
    let events: Vec<(f64, String)> = d
        .get("timeline")
        .and_then(|t| t.as_array())
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let at = e.get("at_ms").and_then(|v| v.as_f64())?;
            let what = e.get("event").and_then(|v| v.as_str()).unwrap_or("").to_string();
            Some((at, what))
        })
        .collect();
    let mut s = String::new();
    if !events.is_empty() {
        let max = events.iter().map(|e| e.0).fold(1.0, f64::max);
        let h = 24.0 * events.len() as f64 + 10.0;
        let _ = write!(s, "<svg width=\"760\" height=\"{h}\" role=\"img\">");
        for (i, (at, what)) in events.iter().enumerate() {
            let y = 16.0 + 24.0 * i as f64;
            let x = 10.0 + at / max * 420.0;
            let _ = write!(
                s,
                "<line x1=\"10\" x2=\"430\" y1=\"{y}\" y2=\"{y}\" stroke=\"#e4e6eb\"/><circle cx=\"{x:.1}\" cy=\"{y}\" r=\"5\" fill=\"#3366cc\"/><text x=\"445\" y=\"{}\" font-size=\"12\">{:.1} s — {}</text>",
                y + 4.0,
                at / 1000.0,
                text(what)
            );
        }
        s.push_str("</svg>\n");
    }
    let _ = writeln!(s, "<pre>{}</pre>", text(&serde_json::to_string_pretty(d).unwrap_or_default()));
    s
}

fn drill_stages(d: &serde_json::Value) -> String {
    let f = |v: &serde_json::Value| v.as_f64();
    let stages: Vec<&serde_json::Value> = d["stages"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
    let ok = d["ok"].as_bool().unwrap_or(false);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<p><b>{}</b> {} — fired after {} (bound {}), delivered: {}, resolved notification after {} (bound {}).</p>",
        if ok { "✓ passed" } else { "✗ FAILED" },
        text(d["alert"].as_str().unwrap_or("")),
        f(&d["fired_after_s"]).map(|v| format!("{v:.1} s")).unwrap_or_else(|| "—".into()),
        f(&d["fire_bound_s"]).map(|v| format!("{v:.1} s")).unwrap_or_else(|| "—".into()),
        if d["delivered"].as_bool().unwrap_or(false) { "yes" } else { "no" },
        f(&d["resolved_after_s"]).map(|v| format!("{v:.1} s")).unwrap_or_else(|| "—".into()),
        f(&d["resolve_bound_s"]).map(|v| format!("{v:.1} s")).unwrap_or_else(|| "—".into()),
    );
    if let Some(e) = d["error"].as_str() {
        let _ = writeln!(s, "<p class=\"qd fail\">{}</p>", text(e));
    }
    const X0: f64 = 300.0;
    const W: f64 = 420.0;
    const ROW: f64 = 22.0;
    for (phase, title) in [("outage", "After the exporter stopped"), ("recovery", "After the exporter answered again")] {
        let rows: Vec<&&serde_json::Value> = stages.iter().filter(|st| st["phase"] == phase).collect();
        if rows.is_empty() {
            continue;
        }
        let max = rows.iter().flat_map(|st| [f(&st["bound_s"]), f(&st["after_s"])]).flatten().fold(1.0, f64::max);
        let sx = |v: f64| X0 + v / max * W;
        let h = ROW * rows.len() as f64 + 30.0;
        let _ = write!(s, "<h3>{}</h3><svg width=\"{}\" height=\"{h}\" role=\"img\">", text(title), X0 + W + 80.0);
        for (i, st) in rows.iter().enumerate() {
            let y = 8.0 + ROW * i as f64;
            let bound = f(&st["bound_s"]).unwrap_or(0.0);
            let good = st["ok"].as_bool().unwrap_or(false);
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\">{}</text><rect x=\"{X0}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"14\" fill=\"#e4e6eb\"><title>bound {bound:.1} s</title></rect>",
                X0 - 8.0,
                y + 11.0,
                text(st["name"].as_str().unwrap_or("")),
                sx(bound) - X0
            );
            match f(&st["after_s"]) {
                Some(a) => {
                    let color = if good { "#1f8a4c" } else { "#c62828" };
                    let _ = write!(
                        s,
                        "<line x1=\"{X0}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{color}\" stroke-width=\"2\"/><circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"{color}\">{a:.1} s</text>",
                        sx(a), y + 7.0, y + 7.0, sx(a), y + 7.0, sx(a.max(bound)) + 8.0, y + 11.0
                    );
                }
                None => {
                    let _ = write!(s, "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#c62828\">✗ not seen</text>", sx(bound) + 8.0, y + 11.0);
                }
            }
        }
        // Axis: 0 and the phase's longest bound.
        let ya = 8.0 + ROW * rows.len() as f64 + 4.0;
        let _ = writeln!(
            s,
            "<line x1=\"{X0}\" x2=\"{:.1}\" y1=\"{ya:.1}\" y2=\"{ya:.1}\" stroke=\"#8a8f99\"/><text x=\"{X0}\" y=\"{:.1}\" font-size=\"10\" fill=\"#8a8f99\">0 s</text><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#8a8f99\" text-anchor=\"end\">{max:.1} s</text></svg>",
            X0 + W, ya + 12.0, X0 + W, ya + 12.0
        );
    }
    s.push_str("<p class=\"legend\">grey band: the stage's bound computed from the configuration; dot: when it was seen.</p>\n");
    let _ = writeln!(s, "<details><summary>drill JSON</summary><pre>{}</pre></details>", text(&serde_json::to_string_pretty(d).unwrap_or_default()));
    s
}

/// The alert-coverage section of `drill --alert/--all` (its JSON document): one row per
/// alerting rule, offline and live proofs with their times against their bounds.
pub fn coverage_section(j: &serde_json::Value) -> String {
    let mut h = String::from("<h2 id=\"coverage\">Alert coverage</h2>\n");
    let Some(alerts) = j["alerts"].as_array() else {
        h.push_str("<p class=\"empty\">No alert was drilled in this run.</p>\n");
        return h;
    };
    h.push_str("<table><tr><th></th><th>alert</th><th>offline</th><th>live</th><th>fault</th><th>fired / bound</th><th>delivered</th><th>resolved / bound</th><th>how / reason</th></tr>\n");
    let secs = |v: &serde_json::Value| v.as_f64().map(|x| format!("{x:.1} s")).unwrap_or_else(|| "–".into());
    for a in alerts {
        let tried = a["tried"].as_bool().unwrap_or(false);
        let live = a["live"].as_bool().unwrap_or(false);
        let offline = a["offline"].as_bool().unwrap_or(false);
        let status = if tried && !live {
            Status::Fail
        } else if live || offline {
            Status::Pass
        } else {
            Status::Skip
        };
        let yes = |b: bool| if b { "✓" } else { "✗" };
        let (fired, deliv, res) = if tried {
            (
                format!("{} / {}", secs(&a["fired_after_s"]), secs(&a["fire_bound_s"])),
                format!("{} {}", yes(a["delivered"].as_bool().unwrap_or(false)), secs(&a["delivered_after_s"])),
                format!("{} / {}", secs(&a["resolved_after_s"]), secs(&a["resolve_bound_s"])),
            )
        } else {
            ("–".into(), "–".into(), "–".into())
        };
        let how = a["how"].as_str().unwrap_or("");
        let reason = a["reason"].as_str().unwrap_or("");
        let _ = writeln!(
            h,
            "<tr class=\"{}\"><td class=\"s\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"ms\">{}</td><td class=\"ms\">{}</td><td class=\"ms\">{}</td><td>{}{}</td></tr>",
            class(status),
            mark(status),
            text(a["alert"].as_str().unwrap_or("")),
            yes(offline),
            if tried { yes(live) } else { "–" },
            text(a["fault"].as_str().unwrap_or("–")),
            text(&fired),
            text(&deliv),
            text(&res),
            text(how),
            if reason.is_empty() { String::new() } else { format!("<div class=\"hint\">{}</div>", text(reason)) }
        );
    }
    h.push_str("</table>\n");
    if let Some(s) = j["silences"].as_array().filter(|s| !s.is_empty()) {
        h.push_str("<p>Real alerts silenced in Alertmanager while the faults' aftermath lasts (they end by themselves):</p><ul>\n");
        for si in s {
            let _ = writeln!(h, "<li>{} until {}</li>", text(si["alert"].as_str().unwrap_or("")), text(si["until"].as_str().unwrap_or("")));
        }
        h.push_str("</ul>\n");
    }
    h
}

/// The page of `stackproof drill --report FILE`: the verdict and the coverage (or the
/// outage drill's stages).
pub fn render_drill_html(j: &serde_json::Value) -> String {
    let ok = j["ok"].as_bool().unwrap_or(false);
    let n = j["alerts"].as_array().map(|a| a.len()).unwrap_or(0);
    let live = j["alerts"].as_array().map(|a| a.iter().filter(|x| x["live"] == true).count()).unwrap_or(0);
    let verdict =
        if n > 0 { format!("{live} of {n} alerts proven live, in {:.1} s", j["total_s"].as_f64().unwrap_or(0.0)) } else { "outage drill".to_string() };
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>stackproof drill — {}</title><style>{CSS}</style></head><body>\n<header class=\"{}\"><h1>{} stackproof drill: {}</h1><p>{}</p></header>\n<main>\n",
        text(&verdict),
        if ok { "ok" } else { "fail" },
        if ok { "✓" } else { "✗" },
        if ok { "PASSED" } else { "FAILED" },
        text(&verdict)
    );
    if n > 0 {
        h.push_str(&coverage_section(j));
    } else {
        let _ = writeln!(h, "<pre>{}</pre>", text(&serde_json::to_string_pretty(&j["drill"]).unwrap_or_default()));
    }
    if let Some(e) = j["error"].as_str() {
        let _ = writeln!(h, "<p class=\"hint\">{}</p>", text(e));
    }
    h.push_str("</main></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_self_contained_and_escaped() {
        let mut r = crate::report::tests::sample();
        r.checks[0].detail = "<script>alert(1)</script> http://127.0.0.1:9090".into();
        r.drill = Some(serde_json::json!({"timeline": [{"at_ms": 0, "event": "exporter stopped"}, {"at_ms": 6400, "event": "webhook firing"}]}));
        let h = render_html(&r);
        assert!(h.contains("&lt;script&gt;"), "detail must be escaped");
        assert!(!h.contains("<script"), "no script at all");
        let resource =
            regex::Regex::new(r#"(?i)(src|href)\s*=\s*["']?\s*(https?:)?//|url\(\s*["']?\s*(https?:)?//|@import|<link|<iframe|<object|<embed"#).unwrap();
        assert!(!resource.is_match(&h), "external resource reference: {:?}", resource.find(&h));
        assert!(h.contains("<polyline"), "chart drawn");
        assert!(h.contains("webhook firing"));
        assert!(h.contains("Dash &lt;1&gt;"));
    }

    #[test]
    fn drill_stages_are_drawn_against_their_bounds() {
        let mut r = crate::report::tests::sample();
        r.drill = Some(serde_json::json!({
        "ok": false, "alert": "StackproofDrill", "fired_after_s": 7.8, "fire_bound_s": 16.0, "delivered": false,
        "delivered_after_s": null, "resolved_after_s": null, "resolve_bound_s": 13.0,
        "stages": [
            {"name": "target down", "phase": "outage", "after_s": 2.9, "bound_s": 10.0, "ok": true},
            {"name": "StackproofDrill delivered <to> stackproof", "phase": "outage", "after_s": null, "bound_s": 18.0, "ok": false},
            {"name": "target up", "phase": "recovery", "after_s": 7.0, "bound_s": 6.0, "ok": false}
        ]}));
        let h = render_html(&r);
        assert!(h.contains("After the exporter stopped") && h.contains("After the exporter answered again"));
        assert!(h.contains("delivered &lt;to&gt; stackproof"), "names escaped");
        assert!(h.contains("✗ not seen"));
        assert!(h.contains("fill=\"#c62828\">7.0 s"), "late stage in red");
        assert!(h.contains("fill=\"#1f8a4c\">2.9 s"), "stage within bound in green");
        assert!(h.contains("<rect x=\"300\""), "bound band drawn");
        assert!(!h.contains("NaN"));
    }

    #[test]
    fn single_point_and_flat_series_are_drawn() {
        let one = chart(&[Series { name: "x".into(), points: vec![(5, 2.0)] }]);
        assert!(one.contains("<circle"));
        let flat = chart(&[Series { name: "x".into(), points: vec![(1, 1.0), (2, 1.0)] }]);
        assert!(flat.contains("<polyline") && !flat.contains("NaN"));
        assert_eq!(chart(&[]), "");
    }
}
