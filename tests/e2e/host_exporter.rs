//! The default stack's host exporter (`stack/host_exporter/exporter.py`), run for real
//! with python3: honest counters after one run, a valid text exposition, and a clean
//! exit on SIGTERM. Needs only python3 (no Docker, no sshd).

use crate::support::http::get_raw;
use crate::support::stack::{default_stack, manifest};
use crate::support::{free_port, signal, KillOnDrop};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn exporter_script() -> PathBuf {
    default_stack().join("host_exporter/exporter.py")
}

/// The exporter process (killed on drop, so a failing assertion never leaks it) and its port.
struct Exporter {
    child: KillOnDrop,
    port: u16,
}

fn start(dir: &std::path::Path, tests_json: &serde_json::Value, interval: &str) -> Exporter {
    start_with(dir, tests_json, interval, "0")
}

/// `warmup`: when the second run starts after the first (`0`: one interval later).
fn start_with(dir: &std::path::Path, tests_json: &serde_json::Value, interval: &str, warmup: &str) -> Exporter {
    let tests = dir.join("tests.json");
    std::fs::write(&tests, serde_json::to_vec_pretty(tests_json).unwrap()).unwrap();
    let port = free_port();
    let child = Command::new("python3")
        .arg(exporter_script())
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--interval={interval}"))
        .arg(format!("--warmup={warmup}"))
        .arg(format!("--tests={}", tests.display()))
        // As the default stack runs it: faults from this file (absent = none).
        .arg(format!("--fault-file={}", dir.join("fault.json").display()))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 must be installed to run the host exporter test");
    Exporter { child: KillOnDrop(child), port }
}

/// Polls /metrics until `done` holds for the body, or panics at the deadline.
fn wait_for_metrics(exp: &mut Exporter, deadline: Duration, done: impl Fn(&str) -> bool) -> String {
    let until = Instant::now() + deadline;
    let mut last = String::new();
    loop {
        if let Some(status) = exp.child.0.try_wait().unwrap() {
            panic!("exporter exited early with {status}; last /metrics:\n{last}");
        }
        if let Ok((200, _, body)) = get_raw(exp.port, "/metrics") {
            if done(&body) {
                return body;
            }
            last = body;
        }
        assert!(Instant::now() < until, "no finished run reported within {deadline:?}; last /metrics:\n{last}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict reader of the text exposition format (version 0.0.4): every line must be a
/// HELP, TYPE or sample line; every sample must belong to a family with a TYPE declared
/// before it; families are contiguous; no series twice. Returns the samples and types.
fn parse_exposition(text: &str) -> (Vec<Sample>, HashMap<String, String>) {
    assert!(text.ends_with('\n'), "exposition must end with a newline");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashSet<String> = HashSet::new();
    let mut samples = Vec::new();
    let mut finished_families: HashSet<String> = HashSet::new();
    let mut current_family: Option<String> = None;
    let mut seen_series = HashSet::new();
    let name_ok = |n: &str| {
        let mut c = n.chars();
        c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':') && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
    };
    for (i, line) in text.lines().enumerate() {
        let ln = i + 1;
        assert!(!line.is_empty(), "line {ln}: empty line");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(name_ok(name), "line {ln}: bad metric name in HELP: {line}");
            assert!(helps.insert(name.to_string()), "line {ln}: second HELP for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            assert!(parts.next().is_none(), "line {ln}: trailing text in TYPE: {line}");
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "line {ln}: unknown type {kind:?}");
            assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "line {ln}: second TYPE for {name}");
            assert!(!finished_families.contains(name), "line {ln}: TYPE after samples of {name}");
            continue;
        }
        assert!(!line.starts_with('#'), "line {ln}: unexpected comment {line}");
        let sample = parse_sample(line).unwrap_or_else(|e| panic!("line {ln}: {e}: {line}"));
        assert!(name_ok(&sample.name), "line {ln}: bad metric name {}", sample.name);
        let family = family_of(&sample.name, &types).unwrap_or_else(|| panic!("line {ln}: sample {} has no TYPE declared before it", sample.name));
        if current_family.as_deref() != Some(family.as_str()) {
            assert!(!finished_families.contains(&family), "line {ln}: family {family} is split in two groups");
            if let Some(prev) = current_family.take() {
                finished_families.insert(prev);
            }
            current_family = Some(family.clone());
        }
        assert!(helps.contains(&family), "line {ln}: family {family} has no HELP");
        assert!(seen_series.insert((sample.name.clone(), sample.labels.clone())), "line {ln}: duplicate series");
        if types[&family] == "counter" {
            assert!(sample.name.ends_with("_total"), "line {ln}: counter {} lacks _total", sample.name);
            assert!(sample.value >= 0.0, "line {ln}: negative counter");
        }
        samples.push(sample);
    }
    (samples, types)
}

fn family_of(name: &str, types: &HashMap<String, String>) -> Option<String> {
    if types.contains_key(name) {
        return Some(name.to_string());
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).is_some_and(|t| t == "histogram" || (t == "summary" && suffix != "_bucket")) {
                return Some(base.to_string());
            }
        }
    }
    None
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return Err("no value".into()),
    };
    let mut labels = BTreeMap::new();
    let mut rest = rest;
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let end;
        loop {
            // label name
            let start = match chars.peek() {
                Some(&(_, '}')) => {
                    end = chars.next().unwrap().0 + 1;
                    break;
                }
                Some(&(i, _)) => i,
                None => return Err("unterminated label set".into()),
            };
            let mut eq = None;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    eq = Some(i);
                    break;
                }
            }
            let eq = eq.ok_or("label without =")?;
            let lname = &after[start..eq];
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("label value not quoted".into());
            }
            let mut value = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\n' => return Err("raw newline in label value".into()),
                    c => value.push(c),
                }
            }
            if !closed {
                return Err("unterminated label value".into());
            }
            if labels.insert(lname.to_string(), value).is_some() {
                return Err(format!("label {lname} twice"));
            }
            match chars.peek().map(|&(_, c)| c) {
                Some(',') => {
                    chars.next();
                }
                Some('}') => {}
                _ => return Err("expected , or } after label".into()),
            }
        }
        rest = &after[end..];
    }
    let fields: Vec<&str> = rest.strip_prefix(' ').ok_or("expected a space before the value")?.split(' ').collect();
    if fields.is_empty() || fields.len() > 2 {
        return Err("expected `value [timestamp]`".into());
    }
    let value = match fields[0] {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    Ok(Sample { name: name.to_string(), labels, value })
}

/// Histogram checks for every label set of every histogram family: buckets in rising
/// `le`, cumulative, ending in `+Inf`, which equals `_count`; `_sum` present.
fn check_histograms(samples: &[Sample], types: &HashMap<String, String>) -> usize {
    let mut checked = 0;
    for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for s in samples.iter().filter(|s| s.name == format!("{family}_bucket")) {
            let mut key = s.labels.clone();
            let le = key.remove("le").unwrap_or_else(|| panic!("{family}_bucket without le"));
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
            series.entry(key).or_default().push((le, s.value));
        }
        assert!(!series.is_empty(), "histogram {family} has no buckets");
        for (key, buckets) in series {
            for w in buckets.windows(2) {
                assert!(w[0].0 < w[1].0, "{family}{key:?}: le not rising");
                assert!(w[0].1 <= w[1].1, "{family}{key:?}: buckets not cumulative");
            }
            let (last_le, last_v) = *buckets.last().unwrap();
            assert_eq!(last_le, f64::INFINITY, "{family}{key:?}: last bucket is not +Inf");
            let find = |suffix: &str| {
                samples
                    .iter()
                    .find(|s| s.name == format!("{family}{suffix}") && s.labels == key)
                    .unwrap_or_else(|| panic!("{family}{suffix}{key:?} missing"))
                    .value
            };
            assert_eq!(last_v, find("_count"), "{family}{key:?}: +Inf bucket != _count");
            assert!(find("_sum") >= 0.0);
            checked += 1;
        }
    }
    checked
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && s.labels.len() == labels.len() && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
}

/// SIGTERM to the exporter's pid only; its exit status (a panic after `deadline`).
fn sigterm(exp: &mut Exporter, deadline: Duration) -> std::process::ExitStatus {
    signal("-TERM", exp.child.0.id());
    exp.child.wait_exit(deadline)
}

#[test]
fn one_run_is_reported_exactly_and_the_exposition_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let tests = serde_json::json!({"tests": [
        {"name": "passes", "argv": ["true"]},
        {"name": "fails", "argv": ["false"]},
        {"name": "missing-binary", "argv": ["/nonexistent/stackproof-no-such-binary"]},
        {"name": "hangs", "argv": ["sleep", "30"], "timeout": "300ms"},
    ]});
    // A long interval: exactly one run happens during the test, so the counters are exact.
    let mut exp = start(dir.path(), &tests, "1h");
    let body = wait_for_metrics(&mut exp, Duration::from_secs(30), |b| b.contains("\nsuite_test_pass_rate "));

    let (samples, types) = parse_exposition(&body);
    let v = |name: &str| value(&samples, name, &[]).unwrap_or_else(|| panic!("{name} missing:\n{body}"));
    assert_eq!(v("suite_tests_total"), 4.0);
    assert_eq!(v("suite_tests_passed_total"), 1.0);
    assert_eq!(v("suite_tests_failed_total"), 3.0, "fails + missing + timeout did not pass");
    assert_eq!(v("suite_errors_total"), 2.0, "missing binary and timeout could not run");
    assert_eq!(v("suite_runs_total"), 1.0);
    assert_eq!(v("suite_test_pass_rate"), 0.25);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let last = v("suite_last_run_timestamp_seconds");
    assert!((now - 60.0..=now + 1.0).contains(&last), "last run {last} not near now {now}");
    for (test, ok) in [("passes", 1.0), ("fails", 0.0), ("missing-binary", 0.0), ("hangs", 0.0)] {
        assert_eq!(value(&samples, "suite_test_success", &[("test", test)]), Some(ok), "suite_test_success{{test={test}}}");
        let count = value(&samples, "suite_operation_duration_seconds_count", &[("operation", test)]);
        assert_eq!(count, Some(1.0), "one operation timed for {test}");
    }
    let hang = value(&samples, "suite_operation_duration_seconds_sum", &[("operation", "hangs")]).unwrap();
    assert!((0.3..5.0).contains(&hang), "the timed-out test was timed until its timeout, got {hang}");
    assert_eq!(types["suite_operation_duration_seconds"], "histogram");
    assert_eq!(check_histograms(&samples, &types), 4);

    // The manifest lists exactly what the exporter exposes (lint relies on that list).
    let manifest = manifest();
    let mut declared: Vec<String> = manifest["metrics"]["host_exporter"].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let mut exposed: Vec<String> = samples.iter().map(|s| s.name.clone()).collect::<HashSet<_>>().into_iter().collect();
    declared.sort();
    exposed.sort();
    assert_eq!(declared, exposed, "stack/stackproof.yml metrics.host_exporter must match the exposition");

    let (status, ctype, _) = get_raw(exp.port, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "content type {ctype}");
    assert_eq!(get_raw(exp.port, "/nope").unwrap().0, 404);

    let status = sigterm(&mut exp, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "SIGTERM must end the exporter cleanly, got {status}");
}

#[test]
fn before_the_first_run_only_zero_counters_are_exposed() {
    let dir = tempfile::tempdir().unwrap();
    // The only test blocks until the test releases it: the first run cannot finish.
    let gate = dir.path().join("release");
    let tests = serde_json::json!({"tests": [
        {"name": "slow", "argv": ["sh", "-c", format!("while [ ! -e '{}' ]; do sleep 0.05; done", gate.display())], "timeout": "60s"},
    ]});
    let mut exp = start(dir.path(), &tests, "1h");
    let body = wait_for_metrics(&mut exp, Duration::from_secs(30), |b| b.contains("suite_tests_total"));
    let (samples, types) = parse_exposition(&body);
    for s in samples.iter().filter(|s| s.name != "suite_fault_mode") {
        assert_eq!(s.value, 0.0, "{} before any run must be 0:\n{body}", s.name);
    }
    assert_eq!(value(&samples, "suite_fault_mode", &[("mode", "none")]), Some(1.0), "the fault mode is known from the start");
    for absent in ["suite_test_pass_rate", "suite_last_run_timestamp_seconds", "suite_test_success"] {
        assert!(!types.contains_key(absent), "{absent} exposed before any run:\n{body}");
    }
    assert_eq!(check_histograms(&samples, &types), 1);

    std::fs::write(&gate, b"").unwrap();
    let body = wait_for_metrics(&mut exp, Duration::from_secs(30), |b| b.contains("\nsuite_test_pass_rate "));
    let (samples, _) = parse_exposition(&body);
    assert_eq!(value(&samples, "suite_test_pass_rate", &[]), Some(1.0));
    assert_eq!(value(&samples, "suite_tests_passed_total", &[]), Some(1.0));

    let status = sigterm(&mut exp, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn after_a_start_the_second_run_follows_the_first_within_the_warmup_not_an_interval() {
    let dir = tempfile::tempdir().unwrap();
    let tests = serde_json::json!({"tests": [{"name": "ok", "argv": ["true"]}]});
    let t0 = Instant::now();
    let mut exp = start_with(dir.path(), &tests, "1h", "1s");
    let body = wait_for_metrics(&mut exp, Duration::from_secs(20), |b| b.contains("\nsuite_runs_total 2"));
    assert!(t0.elapsed() < Duration::from_secs(15), "two runs took {:?}", t0.elapsed());
    let (samples, _) = parse_exposition(&body);
    assert_eq!(value(&samples, "suite_runs_total", &[]), Some(2.0), "{body}");
    // Then the interval: no third run for an hour.
    std::thread::sleep(Duration::from_millis(1500));
    let (samples, _) = parse_exposition(&wait_for_metrics(&mut exp, Duration::from_secs(5), |_| true));
    assert_eq!(value(&samples, "suite_runs_total", &[]), Some(2.0));
    assert_eq!(sigterm(&mut exp, Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn a_bad_tests_file_or_taken_port_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let run = |tests: &serde_json::Value, listen: &str| {
        std::fs::write(dir.path().join("tests.json"), serde_json::to_vec(tests).unwrap()).unwrap();
        Command::new("python3")
            .arg(exporter_script())
            .arg(format!("--listen={listen}"))
            .arg("--tests=tests.json")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let ok = serde_json::json!({"tests": [{"name": "t", "argv": ["true"]}]});
    for bad in [
        serde_json::json!({"tests": []}),
        serde_json::json!({"tests": [{"name": "t", "argv": "true"}]}),
        serde_json::json!({"tests": [{"name": "t", "argv": ["true"]}, {"name": "t", "argv": ["true"]}]}),
        serde_json::json!({"tests": [{"name": "t", "argv": ["true"], "timeout": "soon"}]}),
        serde_json::json!({"tets": []}),
    ] {
        let out = run(&bad, "127.0.0.1:0");
        assert_eq!(out.status.code(), Some(2), "{bad} should be refused; stderr: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("error:"), "{bad}: message expected");
    }
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let out = run(&ok, &taken.local_addr().unwrap().to_string());
    assert_eq!(out.status.code(), Some(2), "a taken port is an error: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
}

/// Write the fault file the exporter of `dir` reads (`until` seconds from now).
fn fault(dir: &std::path::Path, mode: &str, until_in: f64, delay: f64) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let doc = serde_json::json!({"mode": mode, "until": now + until_in, "delay_s": delay});
    let tmp = dir.join("fault.json.tmp");
    std::fs::write(&tmp, doc.to_string()).unwrap();
    std::fs::rename(tmp, dir.join("fault.json")).unwrap();
}

fn sample(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    value(&parse_exposition(body).0, name, labels)
}

fn two_passing_tests() -> serde_json::Value {
    serde_json::json!({"tests": [{"name": "a", "argv": ["true"]}, {"name": "b", "argv": ["true"]}]})
}

#[test]
fn fault_fail_reports_every_test_failed_at_once_and_ends_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut exp = start(dir.path(), &two_passing_tests(), "1h");
    let body = wait_for_metrics(&mut exp, Duration::from_secs(30), |b| b.contains("\nsuite_test_pass_rate 1.0"));
    assert_eq!(sample(&body, "suite_fault_mode", &[("mode", "none")]), Some(1.0), "{body}");
    let t0 = Instant::now();
    fault(dir.path(), "fail", 60.0, 0.0);
    // Picked up at once, not an interval (1h) later.
    let body = wait_for_metrics(&mut exp, Duration::from_secs(5), |b| b.contains("\nsuite_test_pass_rate 0.0"));
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert_eq!(sample(&body, "suite_fault_mode", &[("mode", "fail")]), Some(1.0));
    assert_eq!(sample(&body, "suite_errors_total", &[]), Some(0.0), "failed, not errors");
    std::fs::remove_file(dir.path().join("fault.json")).unwrap();
    let body = wait_for_metrics(&mut exp, Duration::from_secs(5), |b| b.contains("\nsuite_test_pass_rate 1.0") && b.contains("mode=\"none\""));
    assert_eq!(sample(&body, "suite_runs_total", &[]), Some(3.0), "a run when the fault began and one when it ended");
}

#[test]
fn fault_error_counts_errors_and_an_expired_fault_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut exp = start(dir.path(), &two_passing_tests(), "1h");
    wait_for_metrics(&mut exp, Duration::from_secs(30), |b| b.contains("\nsuite_test_pass_rate 1.0"));
    fault(dir.path(), "error", 1.5, 0.0);
    let body = wait_for_metrics(&mut exp, Duration::from_secs(5), |b| b.contains("\nsuite_errors_total 2"));
    assert_eq!(sample(&body, "suite_test_pass_rate", &[]), Some(0.0));
    assert_eq!(sample(&body, "suite_tests_failed_total", &[]), Some(2.0), "an error is a failed test too");
    // Past `until` the file is ignored although it is still there: a normal run follows.
    let body = wait_for_metrics(&mut exp, Duration::from_secs(10), |b| b.contains("\nsuite_test_pass_rate 1.0"));
    assert!(dir.path().join("fault.json").exists());
    assert_eq!(sample(&body, "suite_fault_mode", &[("mode", "none")]), Some(1.0));
    assert_eq!(sample(&body, "suite_errors_total", &[]), Some(2.0));
}

#[test]
fn fault_slow_makes_operations_genuinely_slower_and_runs_back_to_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut exp = start(dir.path(), &two_passing_tests(), "1h");
    wait_for_metrics(&mut exp, Duration::from_secs(30), |b| b.contains("\nsuite_test_pass_rate 1.0"));
    fault(dir.path(), "slow", 60.0, 0.4);
    // Two slow runs back to back (the interval is an hour): 4 operations of >= 0.4 s.
    let body = wait_for_metrics(&mut exp, Duration::from_secs(10), |b| b.contains("\nsuite_runs_total 3"));
    let sum = sample(&body, "suite_operation_duration_seconds_sum", &[("operation", "a")]).unwrap();
    assert!(sum >= 0.8, "two slow operations of a took {sum} s");
    assert_eq!(sample(&body, "suite_operation_duration_seconds_bucket", &[("operation", "a"), ("le", "0.2")]), Some(1.0), "only the first, normal run is fast");
    assert_eq!(sample(&body, "suite_test_pass_rate", &[]), Some(1.0), "slow tests still pass");
}

#[test]
fn fault_silence_answers_but_runs_nothing_and_a_bad_file_is_no_fault() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fault.json"), "{not json").unwrap();
    let mut exp = start(dir.path(), &two_passing_tests(), "1s");
    let body = wait_for_metrics(&mut exp, Duration::from_secs(30), |b| b.contains("\nsuite_runs_total 2"));
    assert_eq!(sample(&body, "suite_fault_mode", &[("mode", "none")]), Some(1.0), "an unreadable file is no fault");
    fault(dir.path(), "silence", 60.0, 0.0);
    let body = wait_for_metrics(&mut exp, Duration::from_secs(5), |b| b.contains("mode=\"silence\""));
    let runs = sample(&body, "suite_runs_total", &[]).unwrap();
    // Three intervals later: still answering, still no new run.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let (status, _, b) = get_raw(exp.port, "/metrics").unwrap();
        assert_eq!(status, 200);
        assert!(sample(&b, "suite_runs_total", &[]).unwrap() <= runs + 1.0, "a run in progress may finish, no new one starts: {b}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
