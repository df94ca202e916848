//! Unit tests of lone-file lint, one per item of the real-world comparison (tests/lint_wide.rs):
//! each false error and each miss found against promtool 2.42, amtool 0.25 and Grafana.

use super::*;

/// Lint `text` as a lone file called `name`.
pub(super) fn lint_text(name: &str, text: &str) -> Vec<Finding> {
    let src = Source::new(PathBuf::from(name), name.to_string(), text.to_string());
    let mut sink = Sink::default();
    lint_lone(&src, &mut sink);
    sink.findings
}

fn errors(f: &[Finding]) -> Vec<&Finding> {
    f.iter().filter(|x| x.severity == Severity::Error).collect()
}

fn has(f: &[Finding], sev: Severity, code: &str) -> bool {
    f.iter().any(|x| x.severity == sev && x.code == code)
}

#[track_caller]
fn clean(name: &str, text: &str) {
    let f = lint_text(name, text);
    assert!(errors(&f).is_empty(), "false error:\n{}", render_text(&f));
}

#[track_caller]
fn error(name: &str, text: &str, code: &str) -> Finding {
    let f = lint_text(name, text);
    f.iter().find(|x| x.severity == Severity::Error && x.code == code).cloned().unwrap_or_else(|| panic!("no error {code}:\n{}", render_text(&f)))
}

// ---- false errors -------------------------------------------------------------------

#[test]
fn every_service_discovery_of_prometheus_2_42() {
    for sd in [
        "azure",
        "consul",
        "digitalocean",
        "docker",
        "dockerswarm",
        "dns",
        "ec2",
        "eureka",
        "file",
        "gce",
        "hetzner",
        "http",
        "ionos",
        "kubernetes",
        "kuma",
        "lightsail",
        "linode",
        "marathon",
        "nerve",
        "nomad",
        "openstack",
        "ovhcloud",
        "puppetdb",
        "scaleway",
        "serverset",
        "triton",
        "uyuni",
        "vultr",
    ] {
        clean("prometheus.yml", &format!("scrape_configs:\n  - job_name: x\n    {sd}_sd_configs: []\n"));
    }
}

#[test]
fn duplicate_alert_is_a_warning() {
    let f = lint_text("r.rules.yml", "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n  - alert: A\n    expr: absent(up)\n");
    assert!(errors(&f).is_empty() && has(&f, Severity::Warning, "rules.duplicate_alert"), "{}", render_text(&f));
    assert!(f.iter().any(|x| x.message.contains("Prometheus loads both")), "{}", render_text(&f));
}

const LOKI_DASH: &str = r#"{"title": "t", "uid": "u",
  "templating": {"list": [{"name": "loki", "type": "datasource", "query": "loki"}, {"name": "ds", "type": "datasource", "query": "prometheus"}]},
  "panels": [
    {"type": "logs", "title": "logs", "datasource": {"uid": "$loki"}, "targets": [{"refId": "A", "expr": "{job=\"x\"} |= \"error\" | logfmt"}]},
    {"type": "timeseries", "title": "rate", "datasource": "$loki", "targets": [{"refId": "A", "expr": "sum(rate({job=\"x\"} [$__auto]))"}]},
    {"type": "timeseries", "title": "prom", "datasource": {"uid": "$ds"}, "targets": [{"refId": "A", "expr": "rate(up[$__auto])"}]}
  ]}"#;

#[test]
fn non_prometheus_panels_are_not_promql_and_auto_is_a_builtin() {
    clean("d.json", LOKI_DASH);
    // The Prometheus panel is still read: a broken one is still an error.
    error("d.json", &LOKI_DASH.replace("rate(up[$__auto])", "rate(up[$__auto]"), "grafana.panel_promql");
}

#[test]
fn repeated_row_variable_is_one_value() {
    let d = r#"{"title": "t", "uid": "u",
      "templating": {"list": [{"name": "m", "type": "query", "multi": true, "includeAll": true, "current": {"value": ["$__all"]}}]},
      "panels": [{"type": "row", "title": "$m", "repeat": "m", "collapsed": true, "panels": [
        {"type": "timeseries", "title": "p", "targets": [{"refId": "A", "expr": "rate(vault_route_create_${m}__sum[5m])"}]}]}]}"#;
    clean("d.json", d);
}

#[test]
fn unknown_variable_inside_a_string_is_a_warning() {
    let d = |e: &str| format!(r#"{{"title": "t", "uid": "u", "panels": [{{"type": "stat", "title": "p", "targets": [{{"refId": "A", "expr": "{e}"}}]}}]}}"#);
    let f = lint_text("d.json", &d(r#"up{cluster=~\"${Cluster}\"}"#));
    assert!(errors(&f).is_empty() && has(&f, Severity::Warning, "grafana.variable_unknown"), "{}", render_text(&f));
    error("d.json", &d("rate(up[$window])"), "grafana.variable_unknown");
}

#[test]
fn dashboard_without_uid_is_a_warning() {
    let f = lint_text("d.json", r#"{"title": "t", "panels": []}"#);
    assert!(errors(&f).is_empty() && has(&f, Severity::Warning, "grafana.missing_uid"), "{}", render_text(&f));
}

#[test]
fn one_default_datasource_per_organisation() {
    let two_orgs = "apiVersion: 1\ndatasources:\n- {name: a, type: prometheus, isDefault: true}\n- {name: b, type: graphite, is_default: true}\n- {orgId: 2, name: a, type: prometheus, isDefault: true}\n";
    clean("ds.yaml", two_orgs);
    error("ds.yaml", &two_orgs.replace("orgId: 2, ", ""), "grafana.multiple_default_datasources");
}

// ---- misses: Prometheus' load-time validation ---------------------------------------

const JOB: &str = "scrape_configs:\n  - job_name: p\n";

#[test]
fn relabel_configs_are_validated() {
    let r = |body: &str| format!("{JOB}    relabel_configs:\n      - {body}\n");
    error("p.yml", &r("regex: abc(def"), "prom.invalid");
    error("p.yml", &r("{regex: abcdef, action: hashmod}"), "prom.invalid");
    error("p.yml", &r("regex: abcdef"), "prom.invalid"); // replace without target_label
    error("p.yml", &r("{source_labels: [a], target_label: null}"), "prom.invalid");
    error("p.yml", &r("{action: lowercase, source_labels: [a]}"), "prom.invalid");
    error("p.yml", &r("{source_labels: [a-b], target_label: x}"), "prom.invalid");
    error("p.yml", &r("{source_labels: [a], target_label: 1abc}"), "prom.invalid");
    clean("p.yml", &r("{action: keepequal, source_labels: [a], target_label: b}"));
    clean("p.yml", &r("{source_labels: [a], target_label: \"${1}x\", regex: \"(.+):\\\\d+\"}"));
    clean("p.yml", &r("{action: Keep, source_labels: [a]}"));
    clean("p.yml", &r("{action: hashmod, source_labels: [a], target_label: h, modulus: 4}"));
}

#[test]
fn scrape_timeout_above_interval() {
    let e = error("p.yml", &format!("{JOB}    scrape_interval: 5s\n    scrape_timeout: 6s\n"), "prom.invalid");
    assert!(e.message.contains("scrape timeout greater than scrape interval"), "{}", e.message);
    error("p.yml", "global:\n  scrape_timeout: 2m\n", "prom.invalid");
    clean("p.yml", "global:\n  scrape_interval: 5s\n");
    clean("p.yml", &format!("{JOB}    scrape_interval: 5s\n"));
}

#[test]
fn remote_write_names_rule_paths_auth_labels_targets() {
    error("p.yml", "remote_write:\n  - {url: 'http://a', name: q}\n  - {url: 'http://b', name: q}\n", "prom.invalid");
    clean("p.yml", "remote_write:\n  - {url: 'http://a'}\n  - {url: 'http://a'}\n");
    error("p.yml", "rule_files: ['ok/*.yml', 'my/*/rule']\n", "prom.invalid");
    error("p.yml", &format!("{JOB}    bearer_token: x\n    basic_auth: {{username: u, password: p}}\n"), "prom.invalid");
    error("p.yml", "global:\n  external_labels:\n    a-b: x\n", "prom.invalid");
    error("p.yml", &format!("{JOB}    static_configs:\n      - targets: ['http://bad']\n"), "prom.invalid");
    error("p.yml", "scrape_configs:\n  - job_name: h\n    http_sd_configs:\n      - url: invalid\n", "prom.invalid");
    error("p.yml", &format!("{JOB}    authorization:\n      credentials_file: {{a: 1}}\n"), "prom.type");
    error("p.yml", "global:\n  nonexistent_field: test\n", "prom.unknown_key");
    error("p.yml", "storage:\n  tsdb:\n    retention:\n      time: 1d\n", "prom.unknown_key");
    error("p.yml", "targets: ['a:1']\nlabels: {a: b}\n", "prom.unknown_key");
}

#[test]
fn lone_files_are_checked_against_the_pinned_versions() {
    let e = error("p.yml", "global:\n  keep_dropped_targets: 1\n", "version.unsupported");
    assert!(e.message.contains("v2.42.0"), "{}", e.message);
    let e = error("p.yml", "otlp:\n  promote_resource_attributes: [a]\n", "version.unsupported");
    assert!(e.message.contains("v2.55.0"), "{}", e.message);
    error("am.yml", "route: {receiver: r}\nreceivers:\n  - name: r\n    rocketchat_configs: [{channel: x}]\n", "version.unsupported");
    clean("p.yml", &format!("{JOB}    kubernetes_sd_configs: [{{role: pod}}]\n"));
}

// ---- misses: Alertmanager's load-time validation -------------------------------------

fn am(receiver: &str) -> String {
    format!("route:\n  receiver: r\nreceivers:\n  - name: r\n{receiver}")
}

#[test]
fn integrations_need_their_required_fields() {
    for (body, msg) in [
        ("    opsgenie_configs: [{message: m}]\n", "OpsGenie API Key"),
        ("    victorops_configs: [{routing_key: k}]\n", "VictorOps API Key"),
        ("    wechat_configs: [{corp_id: c}]\n", "Wechat ApiSecret"),
        ("    telegram_configs: [{chat_id: 1}]\n", "bot_token"),
        ("    email_configs: [{to: a@b}]\n", "smarthost"),
        ("    pagerduty_configs: [{}]\n", "routing key"),
        ("    pushover_configs: [{token: t}]\n", "user key"),
        ("    sns_configs: [{}]\n", "Topic ARN"),
        ("    slack_configs: [{api_url: 'http://x', api_url_file: /f}]\n", "at most one of api_url & api_url_file"),
    ] {
        let e = error("am.yml", &am(body), "am.invalid");
        assert!(e.message.contains(msg), "{body}: {}", e.message);
    }
    // Global fallbacks count.
    clean(
        "am.yml",
        &format!(
            "global:\n  opsgenie_api_key: k\n  smtp_smarthost: 'a:25'\n  smtp_from: a@b\n{}",
            am("    opsgenie_configs: [{message: m}]\n    email_configs: [{to: a@b}]\n")
        ),
    );
}

#[test]
fn global_settings_inline_and_in_a_file_and_types() {
    let e = error("am.yml", &format!("global:\n  slack_api_url: 'http://x'\n  slack_api_url_file: /f\n{}", am("")), "am.invalid");
    assert!(e.message.contains("at most one of slack_api_url & slack_api_url_file"), "{}", e.message);
    error("am.yml", &format!("global:\n  smtp_auth_password: p\n  smtp_auth_password_file: /f\n{}", am("")), "am.invalid");
    error("am.yml", &format!("global:\n  smtp_smarthost: [a]\n{}", am("")), "am.type");
}

#[test]
fn route_matchers_are_validated() {
    let r = |m: &str| format!("route:\n  receiver: r\n  routes:\n    - receiver: r\n      {m}\nreceivers:\n  - name: r\n");
    error("am.yml", &r("match_re:\n        invalid_label:"), "am.invalid");
    error("am.yml", &r("match_re: {a: '[x'}"), "am.invalid");
    error("am.yml", &r("match: {a-b: x}"), "am.invalid");
    clean("am.yml", &r("match_re: {a: 'x|y'}"));
}

// ---- misses: rules, templates, resources ---------------------------------------------

const GROUP: &str = "groups:\n  - name: g\n    rules:\n";

#[test]
fn alert_templates_are_parsed_like_prometheus() {
    let r = |a: &str| format!("{GROUP}      - alert: A\n        expr: up == 0\n        annotations:\n          summary: '{a}'\n");
    let e = error("r.yml", &r("{{$label.instance}} down"), "rules.template");
    assert!(e.message.contains("undefined variable \"$label\""), "{}", e.message);
    error("r.yml", &r("{{ $labels.instance down"), "rules.template");
    clean("r.yml", &r("{{ $labels.instance }} {{ $value | humanize }} {{ $externalLabels.x }} {{ $externalURL }}"));
    clean("r.yml", &r("{{ $x := 1 }}{{ $x }} {{ range $i, $e := $labels }}{{ $i }}{{ $e }}{{ end }} {{ \"$notavar\" }}"));
}

#[test]
fn rule_label_names_and_recording_rule_fields() {
    error("r.yml", &format!("{GROUP}      - record: r\n        expr: '1'\n        labels:\n          __name__: x\n"), "rules.invalid");
    error("r.yml", &format!("{GROUP}      - alert: A\n        expr: '1'\n        labels:\n          a-b: x\n"), "rules.invalid");
    let e = error("r.yml", &format!("{GROUP}      - record: r\n        expr: '1'\n        keep_firing_for: 1m\n"), "rules.invalid");
    assert!(e.message.contains("invalid field 'keep_firing_for' in recording rule"), "{}", e.message);
}

#[test]
fn helm_templates_and_kubernetes_resources_are_named() {
    error("r.yaml", "{{- if .Values.rules }}\ngroups:\n  - name: g\n{{- end }}\n", "file.template");
    let e = error("r.yaml", "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: x}\nspec:\n  groups: []\n", "file.k8s_resource");
    assert!(e.message.contains("PrometheusRule") && e.line == Some(2), "{e:?}");
}

#[test]
fn v2_dashboard_resource_has_no_title() {
    let e = error(
        "d.json",
        r#"{"apiVersion": "dashboard.grafana.app/v2alpha1", "kind": "Dashboard", "metadata": {"name": "x"}, "spec": {"title": "t"}}"#,
        "grafana.missing_title",
    );
    assert!(e.message.contains("v2alpha1"), "{}", e.message);
}

// ---- misses: encodings ------------------------------------------------------------------

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn a_file_that_is_not_utf8_is_an_error_in_a_stack_and_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = tmp.path().join("stack");
    copy_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("stack"), &stack);
    let rules = stack.join("prometheus/rules/health.yml");
    let mut bytes = std::fs::read(&rules).unwrap();
    bytes.extend_from_slice(b"# caf\xe9\n");
    std::fs::write(&rules, &bytes).unwrap();
    for paths in [vec![stack.clone()], vec![rules.clone()]] {
        let f = lint_paths(&paths, &Options::default()).expect("no exit 2 on a readable file");
        let hit = f.iter().find(|x| x.code == "file.encoding" && x.severity == Severity::Error).unwrap_or_else(|| panic!("{}", render_text(&f)));
        assert!(hit.file.ends_with("health.yml") && hit.line.is_some(), "{hit:?}");
    }
}

#[test]
fn a_byte_order_mark_is_fine_in_yaml() {
    clean("am.yml", "\u{feff}route:\n  receiver: r\nreceivers:\n  - name: r\n");
    clean("dashboards.yml", "\u{feff}apiVersion: 1\nproviders:\n  - name: d\n    options:\n      path: /x\n");
}

// ---- cost ---------------------------------------------------------------------------------

#[test]
fn a_large_rules_file_reads_group_by_group_with_the_same_findings() {
    let group = |i: usize| {
        format!(
            "  - name: g{i}\n    rules:\n      - alert: A\n        expr: sum(up) > 0\n        annotations:\n          summary: '{{{{ $labels.instance }}}}'\n"
        )
    };
    let mut text = String::from("# generated\ngroups:\n");
    let mut i = 0;
    while text.len() < (1 << 20) + 10 {
        text.push_str(&group(i));
        i += 1;
    }
    let f = lint_text("big.rules.yml", &text);
    let dropped: Vec<_> = f.iter().filter(|x| x.code == "rules.template_label_dropped").collect();
    assert_eq!(dropped.len(), i, "one per group");
    assert_eq!(dropped.last().unwrap().line, Some(text.lines().count()));
    // A broken group falls back to reading the whole file, for the exact error.
    let broken = format!("{text}  - name: [x\n");
    let e = error("big.rules.yml", &broken, "yaml.parse");
    assert!(e.line.is_some());
}

#[test]
fn deep_yaml_is_located_in_linear_time() {
    // 20,000 nested mappings, and a finding at the bottom: positions without quadratic paths.
    let depth = 20_000;
    let mut text = String::from("global:\n  external_labels:\n    ok: x\nx: ");
    text.push_str(&"{a: ".repeat(depth));
    text.push('1');
    text.push_str(&"}".repeat(depth));
    text.push('\n');
    let t = std::time::Instant::now();
    let _ = lint_text("p.yml", &text);
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
}
