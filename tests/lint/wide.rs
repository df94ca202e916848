//! The wider real-world corpus (../shared/realworld-wide, README there): lint agrees with
//! the programs that load each file. The verdicts are in tests/lint/wide_verdicts.tsv, made by
//! scripts/lint-wide-verdicts: promtool 2.42 / amtool 0.25 (tool, version and exit code in each
//! row) and, for Grafana, the rule of docs/research/grafana-facts.md the row names.
//!
//! - no crash and no exit 2 on the whole folder (it is readable);
//! - a file the real program loads gets no error finding (a "false error");
//! - a file it refuses gets at least one error finding (a "miss").
//!
//! Skipped, with a message, when the folder is absent.

use assert_cmd::Command;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn corpus() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/realworld-wide");
    p.join("README.md").is_file().then_some(p)
}

struct Verdict {
    file: String,
    kind: String,
    verdict: String,
    how: String,
}

fn verdicts() -> Vec<Verdict> {
    let text = include_str!("wide_verdicts.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            Verdict { file: c[0].into(), kind: c[1].into(), verdict: c[2].into(), how: c.get(3).copied().unwrap_or("").into() }
        })
        .collect()
}

#[test]
fn verdict_table_is_complete() {
    let v = verdicts();
    for x in &v {
        assert!(["load", "refuse", "-"].contains(&x.verdict.as_str()), "{}: verdict {:?}", x.file, x.verdict);
        assert!(x.verdict == "-" || !x.how.is_empty(), "{}: no note of how the verdict was obtained", x.file);
    }
    let Some(dir) = corpus() else {
        eprintln!("SKIPPED: ../shared/realworld-wide is absent (CI keeps a copy there)");
        return;
    };
    let listed: std::collections::BTreeSet<&str> = v.iter().map(|x| x.file.as_str()).collect();
    for sub in ["curated", "mixins-rules", "mixins-dashboards", "samber-rules"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let rel = format!("{sub}/{}", e.unwrap().file_name().to_string_lossy());
            assert!(listed.contains(rel.as_str()), "{rel} has no verdict: rerun scripts/lint-wide-verdicts");
        }
    }
}

#[test]
fn lint_agrees_with_promtool_amtool_and_grafana() {
    let Some(dir) = corpus() else {
        eprintln!("SKIPPED: ../shared/realworld-wide is absent (CI keeps a copy there)");
        return;
    };
    // The whole folder at once, as a user would run it: no manifest, so file by file.
    let out = Command::cargo_bin("stackproof").unwrap().args(["lint", "--format", "json"]).arg(&dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(0) | Some(1)), "exit {:?} (crash or exit 2) on readable input:\n{stderr}", out.status.code());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in v["findings"].as_array().unwrap() {
        let file = f["file"].as_str().unwrap();
        let rel = PathBuf::from(file).strip_prefix(&dir).map(|p| p.to_string_lossy().into_owned()).unwrap_or(file.to_string());
        let e = errors.entry(rel).or_default();
        if f["severity"] == "error" {
            e.push(format!("{}:{} {}: {}", f["line"], f["column"], f["code"].as_str().unwrap(), f["message"].as_str().unwrap()));
        }
    }
    let (mut false_errors, mut misses, mut by) = (Vec::new(), Vec::new(), BTreeMap::<String, usize>::new());
    let table = verdicts();
    for x in &table {
        *by.entry(format!("{} {}", x.kind, x.verdict)).or_default() += 1;
        let errs = errors.get(&x.file).cloned().unwrap_or_default();
        match x.verdict.as_str() {
            "load" if !errs.is_empty() => false_errors.push(format!("{} ({})\n    {}", x.file, x.how, errs.join("\n    "))),
            "refuse" if errs.is_empty() => misses.push(format!("{} ({})", x.file, x.how)),
            _ => {}
        }
    }
    eprintln!("realworld-wide: {} files {by:?}; false errors {}, misses {}", table.len(), false_errors.len(), misses.len());
    assert!(
        false_errors.is_empty() && misses.is_empty(),
        "false errors ({}):\n{}\nmisses ({}):\n{}",
        false_errors.len(),
        false_errors.join("\n"),
        misses.len(),
        misses.join("\n")
    );
}
