//! The real-world corpus (../shared/realworld, README there): every VALID/EDGE file
//! lints without an error and without a crash; every FLAG file gets the finding its
//! README row names. Also the lone-file fixtures under tests/fixtures/lint.

use crate::support::{assert_finding, errors, repo, show, Copy};
use stackproof::lint::{lint_paths, Finding, Options, Severity};
use std::path::PathBuf;

fn corpus() -> PathBuf {
    let p = repo().join("../shared/realworld");
    assert!(p.join("README.md").is_file(), "the real-world corpus is missing at {} (CI keeps a copy there)", p.display());
    p
}

fn lint(rel: &str) -> Vec<Finding> {
    lint_paths(&[corpus().join(rel)], &Options::default()).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

const VALID_OR_EDGE: &[&str] = &[
    "stefanprodan__dockprom/prometheus/prometheus.yml",
    "stefanprodan__dockprom/prometheus/alert.rules",
    "stefanprodan__dockprom/alertmanager/config.yml",
    "stefanprodan__dockprom/grafana/provisioning/datasources/datasource.yml",
    "stefanprodan__dockprom/grafana/provisioning/dashboards/dashboard.yml",
    "stefanprodan__dockprom/grafana/provisioning/dashboards/docker_host.json",
    "stefanprodan__dockprom/grafana/provisioning/dashboards/docker_containers.json",
    "stefanprodan__dockprom/grafana/provisioning/dashboards/monitor_services.json",
    "stefanprodan__dockprom/grafana/provisioning/dashboards/nginx_container.json",
    "rfmoz__grafana-dashboards/prometheus/node-exporter-full.json",
    "rfmoz__grafana-dashboards/history/node-exporter-freebsd.b83ce27f.after-fix.json",
    "kubernetes__ingress-nginx/deploy/grafana/dashboards/nginx.json",
    "samber__awesome-prometheus-alerts/dist/rules/prometheus-self-monitoring/embedded-exporter.yml",
    "samber__awesome-prometheus-alerts/dist/rules/host-and-hardware/node-exporter.yml",
    "samber__awesome-prometheus-alerts/dist/rules/docker-containers/google-cadvisor.yml",
    "monitoring-mixins__website/assets/node-exporter/alerts.yaml",
    "monitoring-mixins__website/assets/node-exporter/rules.yaml",
    "monitoring-mixins__website/assets/alertmanager/alerts.yaml",
    "monitoring-mixins__website/assets/prometheus/alerts.yaml",
    "monitoring-mixins__website/assets/prometheus/rules.yaml",
    "monitoring-mixins__website/assets/node-exporter/dashboards/nodes.json",
];

#[test]
fn valid_and_edge_files_lint_without_errors() {
    let mut bad = String::new();
    for rel in VALID_OR_EDGE {
        let f = lint(rel);
        if !errors(&f).is_empty() {
            bad.push_str(&format!("--- {rel}\n{}", show(&f)));
        }
        // Each was read as what it is, not skipped as unrecognised.
        assert!(!f.iter().any(|x| x.code == "file.unrecognised"), "{rel} not recognised:\n{}", show(&f));
        // Lone files say which checks were skipped.
        assert!(f.iter().any(|x| x.code == "lint.lone_file"), "{rel}:\n{}", show(&f));
    }
    assert!(bad.is_empty(), "false errors:\n{bad}");
}

#[test]
fn a_directory_without_manifest_lints_file_by_file() {
    let f = lint("stefanprodan__dockprom");
    assert!(errors(&f).is_empty(), "{}", show(&f));
    assert!(f.iter().filter(|x| x.code == "lint.lone_file").count() >= 9, "{}", show(&f));
}

#[test]
fn ds_prometheus_placeholder_never_backed_by_a_variable() {
    let rel = "rfmoz__grafana-dashboards/history/node-exporter-freebsd.10f9abba.before-fix.json";
    let f = lint(rel);
    let hit = f.iter().find(|x| x.code == "grafana.ds_placeholder" && x.severity == Severity::Error).unwrap_or_else(|| panic!("{}", show(&f)));
    assert!(hit.message.contains("${DS_PROMETHEUS}"), "{}", hit.message);
    assert!(hit.line.is_some());
    // `$$hashKey` is not a variable.
    assert!(!f.iter().any(|x| x.message.contains("hashKey")), "{}", show(&f));
}

#[test]
fn before_after_pair() {
    let before = lint("rfmoz__grafana-dashboards/history/node-exporter-freebsd.10f9abba.before-fix.json");
    let after = lint("rfmoz__grafana-dashboards/history/node-exporter-freebsd.b83ce27f.after-fix.json");
    assert!(!errors(&before).is_empty());
    assert!(errors(&after).is_empty(), "{}", show(&after));
    // The leftover __inputs is a warning in both.
    assert!(after.iter().any(|x| x.code == "grafana.inputs_left" && x.severity == Severity::Warning));
}

#[test]
fn datasource_variable_with_another_name_does_not_back_the_placeholder() {
    let f = lint("rfmoz__grafana-dashboards/history/node-exporter-full.34a51d65.before-fix.json");
    let hit = f.iter().find(|x| x.code == "grafana.ds_placeholder").unwrap_or_else(|| panic!("{}", show(&f)));
    assert!(hit.message.contains("DS_PROMETHEUS"), "{}", hit.message);
}

fn dropped(f: &[Finding], alert: &str, label: &str) -> bool {
    f.iter().any(|x| {
        x.code == "rules.template_label_dropped"
            && x.severity == Severity::Warning
            && x.message.contains(&format!("`{alert}`"))
            && x.message.contains(&format!("$labels.{label}"))
    })
}

#[test]
fn labels_dropped_by_aggregation_dockprom() {
    let f = lint("stefanprodan__dockprom/prometheus/alert.rules");
    assert!(dropped(&f, "high_memory_load", "instance") && dropped(&f, "high_memory_load", "job"), "{}", show(&f));
    // high_cpu_load (`node_load1 > 1.5`) keeps its labels.
    assert!(!dropped(&f, "high_cpu_load", "instance"), "{}", show(&f));
}

#[test]
fn labels_dropped_by_aggregation_awesome_prometheus_alerts() {
    let f = lint("samber__awesome-prometheus-alerts/dist/rules/prometheus-self-monitoring/embedded-exporter.yml");
    for a in [
        "PrometheusAllTargetsMissing",
        "PrometheusJobMissing",
        "PrometheusAlertmanagerJobMissing",
        "PrometheusAlertmanagerConfigNotSynced",
        "PrometheusAlertmanagerE2eDeadManSwitch",
        "PrometheusTimeseriesCardinality",
    ] {
        assert!(dropped(&f, a, "instance"), "{a}:\n{}", show(&f));
    }
    let f = lint("samber__awesome-prometheus-alerts/dist/rules/docker-containers/google-cadvisor.yml");
    for a in ["ContainerAbsent", "ContainerHighCpuUtilization", "ContainerLowCpuUtilization", "ContainerHighThrottleRate"] {
        assert!(dropped(&f, a, "instance"), "{a}:\n{}", show(&f));
    }
}

#[test]
fn impossible_selector_in_the_alertmanager_mixin() {
    let f = lint("monitoring-mixins__website/assets/alertmanager/alerts.yaml");
    let hits: Vec<_> = f.iter().filter(|x| x.code == "promql.impossible_selector").collect();
    assert_eq!(hits.len(), 1, "{}", show(&f));
    assert!(hits[0].message.contains("integration!~\".*\""), "{}", hits[0].message);
    // The prometheus mixin's `alertmanager!~``` is fine.
    let f = lint("monitoring-mixins__website/assets/prometheus/alerts.yaml");
    assert!(!f.iter().any(|x| x.code == "promql.impossible_selector"), "{}", show(&f));
}

#[test]
fn alertmanager_examples_against_an_older_pinned_version() {
    for (file, key, needs) in [
        ("prometheus__alertmanager/doc/examples/simple.yml", "tracing:", "v0.30.0"),
        ("prometheus__alertmanager/doc/examples/route_labels.yml", "labels:", "v0.34.0"),
    ] {
        // Lone: checked against the pinned Alertmanager 0.25 too, as amtool 0.25 would.
        assert!(lint(file).iter().any(|x| x.code == "version.unsupported" && x.severity == Severity::Error), "{file}");
        // In a stack pinning prom/alertmanager:v0.25.0: an error naming both versions.
        let c = Copy::new();
        let text = std::fs::read_to_string(corpus().join(file)).unwrap();
        c.write("alertmanager/alertmanager.yml", &text);
        let line = text.lines().position(|l| l.trim_start().starts_with(key) && !l.trim_start().starts_with('#')).unwrap() + 1;
        let hit = assert_finding(&c.lint(), Severity::Error, "version.unsupported", "alertmanager/alertmanager.yml", line);
        assert!(hit.message.contains(needs) && hit.message.contains("v0.25.0"), "{}", hit.message);
    }
}

#[test]
fn slack_placeholder_url_is_a_warning() {
    let f = lint("stefanprodan__dockprom/alertmanager/config.yml");
    assert!(f.iter().any(|x| x.code == "am.url_placeholder" && x.severity == Severity::Warning && x.line == Some(11)), "{}", show(&f));
}

#[test]
fn stale_metric_names_are_caught_inside_a_stack() {
    // monitor_services.json queries Prometheus 1.x storage metrics and cAdvisor's: in the
    // default stack they are names nothing exposes.
    let c = Copy::new();
    let mut text = std::fs::read_to_string(corpus().join("stefanprodan__dockprom/grafana/provisioning/dashboards/monitor_services.json")).unwrap();
    text = text.replacen("{", "{\n\"uid\": \"monitor-services\",", 1);
    c.write("grafana/dashboards/monitor_services.json", &text);
    let f = c.lint();
    assert!(
        f.iter()
            .any(|x| x.code == "metrics.unknown" && x.message.contains("`prometheus_local_storage_target_heap_size_bytes`") && x.severity == Severity::Error),
        "{}",
        show(&f)
    );
    // Its `node_cpu` query (refId A of "Container CPU Usage") is hidden: Grafana never runs it.
    assert!(!f.iter().any(|x| x.message.contains("`node_cpu`")), "{}", show(&f));
    // Prometheus 2.42's own names are known (from the catalogue).
    assert!(!f.iter().any(|x| x.message.contains("`prometheus_target_interval_length_seconds`")), "{}", show(&f));
    // Its string datasource "Prometheus" matches the provisioned datasource's name.
    assert!(!f.iter().any(|x| x.code == "grafana.datasource_unknown" && x.file.ends_with("monitor_services.json")), "{}", show(&f));
}

// ---- lone fixtures -------------------------------------------------------------------

fn fixture(name: &str) -> Vec<Finding> {
    lint_paths(&[repo().join("tests/fixtures/lint").join(name)], &Options::default()).unwrap()
}

#[test]
fn lone_wrapped_dashboard() {
    let f = fixture("wrapped-dashboard.json");
    let hit = assert_finding(&f, Severity::Error, "grafana.dashboard_wrapped", "wrapped-dashboard.json", 2);
    assert!(hit.message.contains("Dashboard title cannot be empty"));
}

#[test]
fn lone_broken_rules() {
    let f = fixture("broken-rules.yml");
    assert_finding(&f, Severity::Error, "rules.promql", "broken-rules.yml", 5);
    assert_finding(&f, Severity::Error, "rules.for_duration", "broken-rules.yml", 9);
    // promtool only warns about a duplicate alert name (the mixins reuse names on purpose).
    assert_finding(&f, Severity::Warning, "rules.duplicate_alert", "broken-rules.yml", 13);
}

#[test]
fn lone_unrecognised_file_is_a_note() {
    let f = fixture("notes.yml");
    assert!(f.iter().any(|x| x.code == "file.unrecognised" && x.severity == Severity::Info), "{}", show(&f));
    assert!(errors(&f).is_empty());
}
