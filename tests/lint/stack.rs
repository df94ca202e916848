//! One test per lint check: a copy of the default stack with one thing broken, asserting
//! the finding's code, file and line.

use crate::support::{assert_finding, errors, show, Copy};
use stackproof::lint::Severity::{Error, Info, Warning};

const PROM: &str = "prometheus/prometheus.yml";
const AM: &str = "alertmanager/alertmanager.yml";
const CRIT: &str = "prometheus/rules/critical.yml";
const DRILL: &str = "prometheus/rules/drill.yml";
const SYS: &str = "grafana/dashboards/stackproof-system.json";
const ORCH: &str = "grafana/dashboards/stackproof-orchestration.json";
const DS: &str = "grafana/provisioning/datasources/prometheus.yml";
const PROV: &str = "grafana/provisioning/dashboards/stackproof.yml";

#[test]
fn default_stack_is_clean() {
    let c = Copy::new();
    let f = c.lint();
    assert!(errors(&f).is_empty(), "{}", show(&f));
    let warnings: Vec<_> = f.iter().filter(|x| x.severity == Warning).collect();
    assert!(warnings.is_empty(), "the default stack should lint without warnings:\n{}", show(&f));
}

#[test]
fn yaml_that_does_not_parse() {
    let c = Copy::new();
    let line = c.replace(PROM, "  scrape_timeout: 5s\n", "  scrape_timeout: [5s\n");
    let f = c.lint();
    let hit = f.iter().find(|x| x.code == "yaml.parse" && x.file.ends_with(PROM)).unwrap_or_else(|| panic!("{}", show(&f)));
    assert!(hit.line.unwrap() >= line, "{hit:?}");
    assert!(hit.column.is_some());
}

#[test]
fn json_that_does_not_parse() {
    let c = Copy::new();
    let line = c.replace(SYS, "\"timezone\": \"browser\",", "\"timezone\": \"browser\",,");
    let f = c.lint();
    let hit = assert_finding(&f, Error, "json.parse", SYS, line);
    assert!(hit.column.is_some());
}

#[test]
fn misspelt_manifest_key() {
    let c = Copy::new();
    let line = c.replace("stackproof.yml", "\nverify:\n", "\nverfy:\n") + 1;
    let f = c.lint();
    let hit = assert_finding(&f, Error, "manifest.unknown_key", "stackproof.yml", line);
    assert!(hit.message.contains("verfy"), "{}", hit.message);
}

#[test]
fn invalid_duration_in_prometheus_config() {
    let c = Copy::new();
    let line = c.replace(PROM, "scrape_interval: 10s", "scrape_interval: 10 seconds");
    assert_finding(&c.lint(), Error, "prom.duration", PROM, line);
}

#[test]
fn rule_files_matching_nothing() {
    let c = Copy::new();
    let line = c.replace(PROM, "prometheus/rules/*.yml", "prometheus/rule/*.yml");
    assert_finding(&c.lint(), Error, "prom.rule_files_no_match", PROM, line);
}

#[test]
fn scrape_target_of_no_service() {
    let c = Copy::new();
    let line = c.replace(PROM, "127.0.0.1:9100", "127.0.0.1:9200");
    let f = c.lint();
    assert_finding(&f, Error, "prom.target_unknown", PROM, line);
}

#[test]
fn scrape_target_not_on_loopback() {
    let c = Copy::new();
    let line = c.replace(PROM, "127.0.0.1:9100", "node-exporter:9100");
    assert_finding(&c.lint(), Error, "prom.target_unknown", PROM, line);
}

#[test]
fn alerting_pointing_nowhere() {
    let c = Copy::new();
    // The first 9093 in the file is the `alerting` section's.
    let line = c.replace(PROM, "127.0.0.1:9093", "127.0.0.1:9094");
    assert_finding(&c.lint(), Error, "prom.alerting_nowhere", PROM, line);
}

#[test]
fn alerting_missing() {
    let c = Copy::new();
    let text = c.read(PROM);
    let start = text.find("alerting:").unwrap();
    let end = text.find("scrape_configs:").unwrap();
    c.write(PROM, &format!("{}{}", &text[..start], &text[end..]));
    let f = c.lint();
    assert!(f.iter().any(|x| x.code == "prom.alerting_nowhere" && x.file.ends_with(PROM)), "{}", show(&f));
}

#[test]
fn rule_promql_that_does_not_parse() {
    let c = Copy::new();
    let line = c.replace(DRILL, "expr: up{job=\"host-exporter\"} == 0", "expr: up{job=\"host-exporter\" == 0");
    assert_finding(&c.lint(), Error, "rules.promql", DRILL, line);
}

#[test]
fn invalid_for_duration() {
    let c = Copy::new();
    let line = c.replace(DRILL, "for: 4s", "for: 4 sec");
    assert_finding(&c.lint(), Error, "rules.for_duration", DRILL, line);
}

#[test]
fn alert_without_the_label_routing_needs() {
    let c = Copy::new();
    let alert_line = c.line_of(CRIT, "alert: TestPassRateCritical");
    c.replace(CRIT, "severity: critical", "level: critical");
    let hit = assert_finding(&c.lint(), Error, "rules.missing_label", CRIT, alert_line);
    assert!(hit.message.contains("severity"), "{}", hit.message);
}

#[test]
fn duplicate_alert_in_a_group() {
    let c = Copy::new();
    let line = c.replace(CRIT, "alert: TestErrorRateCritical", "alert: TestPassRateCritical");
    // A warning, as promtool gives it.
    assert_finding(&c.lint(), Warning, "rules.duplicate_alert", CRIT, line);
}

#[test]
fn same_alert_name_with_other_labels_is_not_a_duplicate() {
    let c = Copy::new();
    c.replace(CRIT, "alert: TestErrorRateCritical", "alert: TestPassRateCritical");
    c.replace_nth(CRIT, "component: test-suite", "component: other", 1);
    let f = c.lint();
    assert!(!f.iter().any(|x| x.code == "rules.duplicate_alert"), "{}", show(&f));
}

#[test]
fn template_label_dropped_by_aggregation() {
    let c = Copy::new();
    let text = c.read(CRIT);
    let rule_at = text.find("alert: TestErrorRateCritical").unwrap();
    let rule_end = text[rule_at..].find("- alert:").map(|i| rule_at + i).unwrap();
    let fixed = text[rule_at..rule_end].replace("sum by (job, instance)", "sum by (job)");
    c.write(CRIT, &format!("{}{}{}", &text[..rule_at], fixed, &text[rule_end..]));
    let line = text[..rule_at].matches('\n').count() + 1 + fixed.lines().position(|l| l.trim_start().starts_with("summary:")).unwrap();
    let hit = assert_finding(&c.lint(), Warning, "rules.template_label_dropped", CRIT, line);
    assert!(hit.message.contains("$labels.instance"), "{}", hit.message);
}

#[test]
fn impossible_selector_in_a_rule() {
    let c = Copy::new();
    let line = c.replace(DRILL, "up{job=\"host-exporter\"} == 0", "up{job=\"host-exporter\", job!~\".*\"} == 0");
    assert_finding(&c.lint(), Warning, "promql.impossible_selector", DRILL, line);
}

#[test]
fn route_to_undefined_receiver() {
    let c = Copy::new();
    let line = c.replace(AM, "receiver: critical", "receiver: criticl");
    assert_finding(&c.lint(), Error, "am.receiver_undefined", AM, line);
}

#[test]
fn invalid_receiver_url() {
    let c = Copy::new();
    let line = c.replace(AM, "url: http://127.0.0.1:9799/", "url: htp//127.0.0.1:9799/");
    assert_finding(&c.lint(), Error, "am.url_invalid", AM, line);
}

#[test]
fn group_by_label_no_rule_sets() {
    let c = Copy::new();
    let line = c.replace(AM, "group_by: [alertname, component]", "group_by: [alertname, componnt]");
    assert_finding(&c.lint(), Warning, "am.group_by_unknown", AM, line);
}

#[test]
fn inhibit_rule_matching_nothing() {
    let c = Copy::new();
    let line = c.replace(AM, "source_matchers: [severity=\"critical\"]", "source_matchers: [severity=\"critcal\"]");
    assert_finding(&c.lint(), Warning, "am.inhibit_matches_nothing", AM, line);
}

#[test]
fn drill_receiver_without_its_token_file() {
    let c = Copy::new();
    c.replace(AM, "            credentials_file: /run/secrets/drill/token\n", "");
    let line = c.line_of(AM, "- name: stackproof-drill");
    let hit = assert_finding(&c.lint(), Error, "drill.receiver_auth", AM, line);
    assert!(hit.message.contains("credentials_file: /run/secrets/drill/token"), "{}", hit.message);
}

#[test]
fn drill_swallowed_by_a_route() {
    let c = Copy::new();
    c.replace(AM, "matchers: [drill=\"true\"]", "matchers: [drill=\"tru\"]");
    // StackproofDrill (severity info) now lands on the info route.
    let line = c.line_of(AM, "matchers: [severity=\"info\"]");
    let hit = assert_finding(&c.lint(), Error, "am.drill_swallowed", AM, line);
    assert!(hit.message.contains("info"), "{}", hit.message);
}

#[test]
fn drill_swallowed_by_an_inhibition() {
    let c = Copy::new();
    let line = c.replace(AM, "target_matchers: [severity=\"warning\"]", "target_matchers: [severity=~\"warning|info\"]") - 1;
    // HostExporterDown (critical, component host-exporter) fires in every drill.
    let hit = assert_finding(&c.lint(), Error, "am.drill_swallowed", AM, line);
    assert!(hit.message.contains("HostExporterDown"), "{}", hit.message);
}

#[test]
fn alertmanager_syntax_newer_than_the_pinned_version() {
    let c = Copy::new();
    let text = c.read(AM);
    c.write(AM, &format!("{text}\ntracing:\n  endpoint: localhost:4317\n"));
    let line = c.line_of(AM, "tracing:");
    let hit = assert_finding(&c.lint(), Error, "version.unsupported", AM, line);
    assert!(hit.message.contains("v0.30.0") && hit.message.contains("v0.25.0"), "{}", hit.message);
}

#[test]
fn route_labels_need_alertmanager_0_34() {
    let c = Copy::new();
    let line = c.replace(AM, "      receiver: info\n", "      receiver: info\n      labels: {reason: x}\n") + 1;
    let hit = assert_finding(&c.lint(), Error, "version.unsupported", AM, line);
    assert!(hit.message.contains("v0.34.0"), "{}", hit.message);
}

#[test]
fn wrapped_dashboard() {
    let c = Copy::new();
    let text = c.read(SYS);
    c.write(SYS, &format!("{{\"dashboard\": {text}, \"overwrite\": true}}"));
    let hit = assert_finding(&c.lint(), Error, "grafana.dashboard_wrapped", SYS, 1);
    assert!(hit.message.contains("Dashboard title cannot be empty"), "{}", hit.message);
    assert!(hit.hint.contains("jq .dashboard"), "{}", hit.hint);
}

#[test]
fn dashboard_without_uid() {
    let c = Copy::new();
    c.replace(SYS, "\"uid\": \"stackproof-system\",\n", "");
    let line = c.line_of(SYS, "\"title\": \"stackproof / system\"");
    let f = c.lint();
    assert_finding(&f, Error, "grafana.missing_uid", SYS, line);
}

#[test]
fn dashboard_without_title() {
    let c = Copy::new();
    let line = c.replace(SYS, "\"title\": \"stackproof / system\"", "\"title\": \"\"");
    assert_finding(&c.lint(), Error, "grafana.missing_title", SYS, line);
}

#[test]
fn duplicate_dashboard_uid() {
    let c = Copy::new();
    let line = c.replace(SYS, "\"uid\": \"stackproof-system\"", "\"uid\": \"stackproof-orchestration\"");
    // Files are linted in name order: orchestration first, system second.
    assert_finding(&c.lint(), Error, "grafana.duplicate_uid", SYS, line);
}

#[test]
fn panel_datasource_uid_unknown() {
    let c = Copy::new();
    let line = c.replace_nth(ORCH, "\"uid\": \"prometheus\"", "\"uid\": \"prom\"", 0);
    assert_finding(&c.lint(), Error, "grafana.datasource_unknown", ORCH, line);
}

#[test]
fn ds_placeholder_left() {
    let c = Copy::new();
    let line = c.replace_nth(ORCH, "\"uid\": \"prometheus\"", "\"uid\": \"${DS_PROMETHEUS}\"", 0);
    assert_finding(&c.lint(), Error, "grafana.ds_placeholder", ORCH, line);
}

#[test]
fn inputs_left() {
    let c = Copy::new();
    let line = c.replace(ORCH, "{\n", "{\n  \"__inputs\": [{\"name\": \"DS_PROMETHEUS\", \"type\": \"datasource\", \"pluginId\": \"prometheus\"}],\n") + 1;
    assert_finding(&c.lint(), Warning, "grafana.inputs_left", ORCH, line);
}

#[test]
fn panel_promql_that_does_not_parse() {
    let c = Copy::new();
    let line = c.replace(SYS, "\"expr\": \"1 - node_memory_MemAvailable_bytes", "\"expr\": \"1 - (node_memory_MemAvailable_bytes");
    assert_finding(&c.lint(), Error, "grafana.panel_promql", SYS, line);
}

#[test]
fn panel_variable_unknown() {
    let c = Copy::new();
    let line = c.replace(SYS, "node_memory_MemAvailable_bytes{job=\\\"node-exporter\\\"}", "node_memory_MemAvailable_bytes{job=\\\"$job\\\"}");
    assert_finding(&c.lint(), Error, "grafana.variable_unknown", SYS, line);
}

#[test]
fn two_default_datasources() {
    let c = Copy::new();
    let text = c.read(DS);
    c.write(DS, &format!("{text}  - name: Other\n    type: prometheus\n    uid: other\n    url: http://127.0.0.1:9090\n    isDefault: true\n"));
    let line = text.lines().count() + 5;
    assert_finding(&c.lint(), Error, "grafana.multiple_default_datasources", DS, line);
}

#[test]
fn datasource_url_not_the_stacks_prometheus() {
    let c = Copy::new();
    let line = c.replace(DS, "url: http://127.0.0.1:9090", "url: http://prometheus:9090");
    assert_finding(&c.lint(), Error, "grafana.datasource_url", DS, line);
}

#[test]
fn provider_path_with_no_dashboards() {
    let c = Copy::new();
    let line = c.replace(PROV, "path: /stackproof/current/grafana/dashboards", "path: /stackproof/current/grafana/dashbords");
    assert_finding(&c.lint(), Error, "grafana.provider_path_empty", PROV, line);
}

#[test]
fn panel_metric_nothing_exposes() {
    let c = Copy::new();
    let line = c.replace(SYS, "1 - node_memory_MemAvailable_bytes", "1 - node_memory_MemAvail_bytes");
    let hit = assert_finding(&c.lint(), Error, "metrics.unknown", SYS, line);
    assert!(hit.hint.contains("node_memory_MemAvailable_bytes"), "{}", hit.hint);
}

#[test]
fn rule_metric_nothing_exposes_is_a_warning() {
    let c = Copy::new();
    let line = c.replace(CRIT, "expr: suite_test_pass_rate{", "expr: suite_tests_pass_rate{");
    let hit = assert_finding(&c.lint(), Warning, "metrics.unknown", CRIT, line);
    assert!(hit.message.contains("never fire"), "{}", hit.message);
}

#[test]
fn verify_job_that_prometheus_does_not_scrape() {
    let c = Copy::new();
    c.replace(PROM, "job_name: node-exporter", "job_name: node");
    let line = c.line_of("stackproof.yml", "targets: [prometheus, alertmanager, node-exporter");
    assert_finding(&c.lint(), Error, "manifest.verify_job_unknown", "stackproof.yml", line);
}

#[test]
fn missing_rule_of_the_drill() {
    let c = Copy::new();
    c.replace(DRILL, "alert: StackproofDrill", "alert: SomethingElse");
    let line = c.line_of("stackproof.yml", "alert: StackproofDrill");
    assert_finding(&c.lint(), Error, "drill.rule_missing", "stackproof.yml", line);
}

#[test]
fn a_routed_receiver_with_no_integration_pages_nobody() {
    let c = Copy::new();
    // `info` no longer comes from the host entry: as declared (by name only), it pages nobody.
    c.replace("stackproof.yml", "from_host: [critical, warning, info]", "from_host: [critical, warning]");
    let line = c.line_of(AM, "- name: info");
    let hit = assert_finding(&c.lint(), Error, "am.receiver_empty", AM, line);
    assert!(hit.message.contains("`info`") && hit.hint.contains("receivers.from_host"), "{hit:?}");
}

#[test]
fn a_host_given_receiver_declared_with_integrations_is_an_error() {
    let c = Copy::new();
    let line = c.line_of(AM, "- name: critical");
    c.replace(AM, "  - name: critical\n", "  - name: critical\n    webhook_configs: [{url: 'http://127.0.0.1:1/'}]\n");
    assert_finding(&c.lint(), Error, "am.receiver_from_host", AM, line);
}

#[test]
fn receivers_from_host_naming_an_undefined_receiver_is_an_error() {
    let c = Copy::new();
    c.replace("stackproof.yml", "from_host: [critical, warning, info]", "from_host: [critical, warning, info, pager]");
    let f = c.lint();
    assert!(f.iter().any(|x| x.code == "am.receiver_undefined" && x.message.contains("`pager`")), "{}", show(&f));
}

#[test]
fn grafana_12_3_watching_the_current_symlink_is_a_warning() {
    let c = Copy::new();
    assert!(!c.lint().iter().any(|x| x.code == "grafana.provider_file_watch"), "12.0.2 polls");
    c.replace("stackproof.yml", "image: grafana/grafana:12.0.2", "image: grafana/grafana:12.3.1");
    let line = c.line_of(PROV, "updateIntervalSeconds");
    let hit = assert_finding(&c.lint(), Warning, "grafana.provider_file_watch", PROV, line);
    assert!(hit.hint.contains("updateIntervalSeconds: 11"), "{hit:?}");
    c.replace(PROV, "updateIntervalSeconds: 5", "updateIntervalSeconds: 30");
    assert!(!c.lint().iter().any(|x| x.code == "grafana.provider_file_watch"), "a polling provider is fine");
}

#[test]
fn a_stack_without_the_drill_twins_glob_gets_a_note() {
    let c = Copy::new();
    assert!(!c.lint().iter().any(|f| f.code == "drill.twins_glob_missing"), "the default stack has the glob");
    c.replace(PROM, "  - /stackproof/drill/*.yml\n", "");
    let line = c.line_of(PROM, "rule_files:");
    let hit = assert_finding(&c.lint(), Info, "drill.twins_glob_missing", PROM, line);
    assert!(hit.message.contains("/stackproof/drill/*.yml"), "{}", hit.message);
}
