//! `stackproof lint`: offline, fast and exact checks of a stack directory or of single
//! files (recognised by content). Every finding has a severity, a stable code, the file,
//! the line (and column where the parser gives one), a message and a hint.
//!
//! Finding codes (stable; see README "Lint finding codes"):
//!
//! | code | severity | what |
//! | --- | --- | --- |
//! | `yaml.parse`, `json.parse` | error | the file does not parse (parser's line and column) |
//! | `file.encoding` | error (YAML) / warning (JSON) | bytes that are not UTF-8 |
//! | `file.missing` | error | a file the manifest or a config names does not exist in the stack |
//! | `file.unrecognised` | info | a lone file that is none of the kinds lint knows |
//! | `file.template`, `file.k8s_resource` | error | a Helm template or a Kubernetes resource (e.g. `PrometheusRule`) given as a lone file |
//! | `lint.lone_file` | info | checks that need the rest of a stack were skipped |
//! | `manifest.unknown_key`, `manifest.invalid` | error | the manifest does not read |
//! | `manifest.config_path` | error | a service's config file is not a file of the stack |
//! | `manifest.verify_job_unknown` | error | `verify.targets`/`drill.job` names no scrape job |
//! | `manifest.dashboard_unknown` | error | `verify.dashboards` names no dashboard uid |
//! | `manifest.gate_promql` | error | a gate criterion's query does not parse |
//! | `prom.unknown_key` | error | a key Prometheus does not know |
//! | `prom.duration` | error | an invalid Prometheus duration |
//! | `prom.rule_files_no_match` | error | a `rule_files` entry matches no file |
//! | `prom.target_unknown` | error | a scrape target is no service or host exporter of the stack |
//! | `prom.alerting_nowhere` | error | rules but no Alertmanager, or one the stack does not run |
//! | `prom.duplicate_job` | error | two scrape jobs with one name |
//! | `prom.invalid` | error | a value Prometheus refuses on load (relabel regex/action/target, timeouts, auth, targets, URLs, names) |
//! | `prom.type` | error | a map or list where Prometheus reads a string |
//! | `prom.metrics_path` | warning | the host exporter's job scrapes another path than it serves |
//! | `rules.unknown_key`, `rules.invalid` | error | a rule or group Prometheus rejects |
//! | `rules.promql` | error | an `expr` that does not parse |
//! | `rules.template` | error | an alert label/annotation template Prometheus cannot parse (undefined `$var`, unclosed `{{`) |
//! | `rules.for_duration` | error | invalid `for`/`keep_firing_for`/group `interval` |
//! | `rules.duplicate_group` | error | a group name repeated in a file |
//! | `rules.duplicate_alert` | error | an alert repeated in a group with the same labels |
//! | `rules.missing_label` | error/warning | an alert lacks a label routing relies on |
//! | `rules.missing_annotation` | warning | an alert lacks an annotation its receiver's templates use |
//! | `rules.template_label_dropped` | warning | `$labels.X` where the expression's result has no `X` |
//! | `promql.impossible_selector` | warning | a selector that can never match a series |
//! | `am.unknown_key` | error | a key Alertmanager does not know |
//! | `am.no_route` | error | no `route` |
//! | `am.invalid` | error | a value Alertmanager refuses on load (an integration's required field, inline and file both, a route matcher) |
//! | `am.type` | error | a map or list where Alertmanager reads a string |
//! | `am.receiver_undefined` | error | a route names a receiver that is not defined |
//! | `am.duplicate_receiver` | error | two receivers with one name |
//! | `am.url_invalid` | error | a receiver URL that does not parse as http(s) |
//! | `am.url_placeholder` | warning | a receiver URL with a `<placeholder>` left in |
//! | `am.matcher_invalid` | error | a matcher that does not parse |
//! | `am.duration` | error | an invalid duration |
//! | `am.group_by_unknown` | warning | a `group_by` label no rule sets |
//! | `am.inhibit_matches_nothing` | warning | an inhibit rule whose source or target no alert can match |
//! | `am.drill_swallowed` | error | the drill alert does not reach the drill receiver |
//! | `drill.rule_missing`, `drill.receiver_missing`, `drill.receiver_url` | error | the drill's pieces are missing |
//! | `drill.twins_glob_missing` | info | prometheus.yml's `rule_files` lacks `/stackproof/drill/*.yml`: `drill --alert/--all` cannot load twins |
//! | `drill.receiver_auth` | error | the drill receiver does not present the per-drill token (`credentials_file`) |
//! | `version.unsupported` | error | syntax newer than the pinned image |
//! | `grafana.dashboard_wrapped` | error | `{"dashboard": ...}` API wrapper instead of a model |
//! | `grafana.missing_title` | error | no title |
//! | `grafana.missing_uid` | error (stack) / warning (lone) | no uid |
//! | `grafana.uid_invalid` | error | uid too long or with illegal characters |
//! | `grafana.duplicate_uid` | error | one uid in two dashboard files |
//! | `grafana.duplicate_title` | warning | one title twice in a folder |
//! | `grafana.datasource_unknown` | error | a datasource uid/name the stack does not provision |
//! | `grafana.ds_placeholder` | error | a `${DS_*}` placeholder no variable backs |
//! | `grafana.variable_unknown` | error | a `$var` the dashboard does not define |
//! | `grafana.inputs_left` | warning | `__inputs` left from an export |
//! | `grafana.panel_promql` | error | a panel query that does not parse after substitution |
//! | `grafana.multiple_default_datasources` | error | more than one `isDefault: true` |
//! | `grafana.datasource_no_uid` | warning | a provisioned datasource without a fixed uid |
//! | `grafana.datasource_url` | error | the Prometheus datasource points elsewhere than the stack's Prometheus |
//! | `grafana.provider_path_empty` | error | a provider path that no dashboard file is synced to |
//! | `grafana.provider_invalid` | error | a provider Grafana rejects (no path, duplicate name, type) |
//! | `metrics.unknown` | error (panels) / warning (rules) | a metric nothing in the stack exposes |
//! | `metrics.host_dependent` | info/warning | a node-exporter name that depends on the host's hardware |
//! | `promtool.config`, `promtool.rules`, `amtool.config` | error | findings of the official tools (`--with-promtool`) |
//! | `alerts.selector_no_target` | error | an alert's selector names a job (or target label) no scrape target has |
//! | `alerts.cannot_fire` | error | no input the stack can expose makes the alert fire (offline proof) |
//! | `alerts.unrouted` | error | the alert fires but the routing tree sends it to no receiver |
//! | `alerts.muted` | warning | the alert fires but reaches only receivers with no integration |
//! | `alerts.for_outlasts_drill` | info | `for` is longer than the drill waits (`drill.timeout`) |
//! | `alerts.not_proven` | info | the offline proof cannot evaluate the expression (needs promtool) |

mod alertmanager;
mod amcfg;
mod ctx;
mod dir;
mod grafana;
pub mod locate;
mod manifest;
mod metrics;
mod promcfg;
mod prometheus;
mod promtool;
pub mod proof;
mod render;
mod versions;

use crate::error::{Error, Kind, Result};
use crate::stack::dashboard::PathSeg;
use locate::{Pos, YamlIndex};
use serde::Serialize;
use std::cell::OnceCell;
use std::path::{Path, PathBuf};

pub use render::{render_json, render_report_json, render_report_text, render_text};
pub use versions::Version;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    pub severity: Severity,
    pub code: &'static str,
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    pub hint: String,
}

/// A file read once: its text, and positions computed only when a finding needs them.
pub struct Source {
    pub path: PathBuf,
    pub display: String,
    pub text: String,
    /// Where the file stops being UTF-8 (line, column), when it does: `text` then holds
    /// it with U+FFFD in place of the bad bytes.
    pub invalid_utf8: Option<Pos>,
    yaml_index: OnceCell<YamlIndex>,
}

impl Source {
    /// A YAML file's UTF-8 byte order mark is dropped (Go's YAML reader skips it); a JSON
    /// file keeps it, as Go's JSON reader refuses it (Grafana: "invalid character").
    pub fn new(path: PathBuf, display: String, mut text: String) -> Source {
        if text.starts_with('\u{feff}') && !path.extension().is_some_and(|e| e == "json") {
            text.drain(..3);
        }
        Source { path, display, text, invalid_utf8: None, yaml_index: OnceCell::new() }
    }

    /// Read a file. Bytes that are not UTF-8 do not stop lint: the checkers report them
    /// (`file.encoding`) the way the program reading the file would.
    pub fn read(path: &Path, display: String) -> std::io::Result<Source> {
        let bytes = std::fs::read(path)?;
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Source::new(path.to_path_buf(), display, text)),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let bytes = e.into_bytes();
                let before = &bytes[..at];
                let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
                let col = at - before.iter().rposition(|&b| b == b'\n').map(|i| i + 1).unwrap_or(0) + 1;
                let mut src = Source::new(path.to_path_buf(), display, String::from_utf8_lossy(&bytes).into_owned());
                src.invalid_utf8 = Some((line, col));
                Ok(src)
            }
        }
    }

    /// Report bytes that are not UTF-8: Go's YAML reader refuses the file (`fatal`);
    /// its JSON reader replaces them with U+FFFD and goes on.
    pub(crate) fn check_encoding(&self, sink: &mut Sink, fatal: bool) -> bool {
        let Some(pos) = self.invalid_utf8 else { return true };
        sink.push(
            if fatal { Severity::Error } else { Severity::Warning },
            "file.encoding",
            &self.display,
            Some(pos),
            if fatal {
                "the file is not UTF-8 here: Prometheus, Alertmanager and Grafana refuse YAML that is not (\"invalid leading UTF-8 octet\")"
            } else {
                "the file is not UTF-8 here: Grafana reads the bad bytes as \u{fffd}"
            },
            "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        );
        !fatal
    }

    fn is_json(&self) -> bool {
        self.text.trim_start().starts_with(['{', '['])
    }

    /// Line and column of a path into the file's document.
    pub fn pos(&self, path: &[PathSeg]) -> Option<Pos> {
        if path.is_empty() {
            return Some((1, 1));
        }
        if self.is_json() && self.path.extension().is_some_and(|e| e == "json") {
            locate::json_find(&self.text, path)
        } else {
            self.yaml_index.get_or_init(|| YamlIndex::build(&self.text)).find(path)
        }
    }

    /// Line and column of a value inside a flow sequence (e.g. one scrape target).
    pub fn value_pos(&self, path: &[PathSeg]) -> Option<Pos> {
        if self.is_json() && self.path.extension().is_some_and(|e| e == "json") {
            locate::json_find(&self.text, path)
        } else {
            self.yaml_index.get_or_init(|| YamlIndex::build(&self.text)).find_value(path)
        }
    }
}

/// Collects findings.
#[derive(Default)]
pub struct Sink {
    pub findings: Vec<Finding>,
}

impl Sink {
    /// A finding at a path inside a file (`"groups/0/rules/2/expr"`).
    pub fn at(&mut self, sev: Severity, code: &'static str, src: &Source, path: &str, msg: impl Into<String>, hint: impl Into<String>) {
        let pos = src.pos(&locate::path(path));
        self.push(sev, code, &src.display, pos, msg, hint);
    }

    /// A finding at a path given as segments.
    pub fn at_path(&mut self, sev: Severity, code: &'static str, src: &Source, path: &[PathSeg], msg: impl Into<String>, hint: impl Into<String>) {
        let pos = src.pos(path);
        self.push(sev, code, &src.display, pos, msg, hint);
    }

    /// A finding at a known position (or none).
    pub fn push(&mut self, sev: Severity, code: &'static str, file: &str, pos: Option<Pos>, msg: impl Into<String>, hint: impl Into<String>) {
        self.findings.push(Finding {
            severity: sev,
            code,
            file: file.to_string(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            message: msg.into(),
            hint: hint.into(),
        });
    }

    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// Parse YAML into `T`, reporting a parse error as `yaml.parse` with its line and column.
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(src: &Source, sink: &mut Sink, what: &str) -> Option<T> {
    if !src.check_encoding(sink, true) {
        return None;
    }
    if let Some(pos) = too_deep(&src.text) {
        sink.push(
            Severity::Error,
            "yaml.parse",
            &src.display,
            Some(pos),
            format!("{what} does not read: flow collections nested more than {MAX_FLOW_DEPTH} deep here"),
            "no real config nests this deep; a YAML reader spends time quadratic in the depth on it (and serde's stops at 128)",
        );
        return None;
    }
    match serde_yaml::from_str::<T>(&src.text) {
        Ok(v) => Some(v),
        Err(e) => {
            let pos = e.location().map(|l| (l.line(), l.column()));
            let msg = e.to_string();
            let code = if msg.contains("unknown field") { "manifest.unknown_key" } else { "yaml.parse" };
            let code = if what == "manifest" { code } else { "yaml.parse" };
            sink.push(
                Severity::Error,
                code,
                &src.display,
                pos,
                format!("{what} does not read: {msg}"),
                "fix the YAML at that line (indentation, quoting, a value of the wrong type)",
            );
            None
        }
    }
}

/// Deeper `{`/`[` nesting is refused before parsing: libyaml (which both serde_yaml and
/// Go's yaml.v2 port) checks every open flow level at each token, so depth d costs d² time.
const MAX_FLOW_DEPTH: usize = 512;

/// Where flow nesting first exceeds [`MAX_FLOW_DEPTH`] (quotes and comments skipped).
fn too_deep(text: &str) -> Option<Pos> {
    if !text.contains(['{', '[']) {
        return None;
    }
    let b = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    let mut quote: Option<u8> = None;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(b'"') if c == b'\\' => i += 1,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                b'"' | b'\'' if depth > 0 => quote = Some(c),
                b'#' if i == 0 || b[i - 1].is_ascii_whitespace() => {
                    while i < b.len() && b[i] != b'\n' {
                        i += 1;
                    }
                }
                b'{' | b'[' => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Some(locate::line_col(text, i));
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        i += 1;
    }
    None
}

/// What a lone file is, recognised by content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Manifest,
    PrometheusConfig,
    Rules,
    AlertmanagerConfig,
    GrafanaDatasources,
    GrafanaProviders,
    Dashboard,
    /// A Helm chart template (`{{ ... }}` around YAML): no program reads it as it is.
    HelmTemplate,
    /// A Kubernetes resource (`apiVersion`, `kind`, `spec`), e.g. a `PrometheusRule`.
    K8sResource,
    Unknown,
}

/// Recognise a file by its content (the extension only separates JSON from YAML).
/// Only the text is scanned (top-level keys), so each file is parsed once, by its checker.
pub fn recognise(src: &Source) -> FileKind {
    let name = src.path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    if !name.ends_with(".json") && is_helm_template(&src.text) {
        return FileKind::HelmTemplate;
    }
    if name.ends_with(".json") || src.is_json() {
        let t = &src.text;
        let dashboardish = ["\"panels\"", "\"rows\"", "\"dashboard\"", "\"schemaVersion\"", "\"templating\"", "dashboard.grafana.app/"];
        return if dashboardish.iter().any(|k| t.contains(k)) || (name.ends_with(".json") && serde_json::from_str::<serde::de::IgnoredAny>(t).is_err()) {
            // Broken JSON in a .json file is linted as a dashboard to report the parse error.
            FileKind::Dashboard
        } else {
            FileKind::Unknown
        };
    }
    let trimmed = src.text.trim();
    if trimmed.is_empty() || trimmed == "null" || trimmed == "~" {
        // `null` is what a mixin renders for "no rules": an empty rule file.
        return if name.contains("rule") { FileKind::Rules } else { FileKind::Unknown };
    }
    // Top-level keys: `key:` at column 0 (also `"key":`), skipping comments and documents.
    let keys: Vec<&str> = src
        .text
        .lines()
        .filter(|l| !l.starts_with([' ', '\t', '#', '-']) && !l.is_empty())
        .filter_map(|l| l.split_once(':').map(|(k, _)| k.trim().trim_matches(['"', '\''])))
        .collect();
    let has = |k: &str| keys.contains(&k);
    if has("services") && has("host_exporter") {
        FileKind::Manifest
    } else if has("apiVersion") && has("kind") && has("spec") && !has("datasources") && !has("providers") {
        FileKind::K8sResource
    } else if has("groups") {
        FileKind::Rules
    } else if has("scrape_configs")
        || has("rule_files")
        || has("alerting")
        || has("remote_write")
        || has("scrape_config_files")
        || has("remote_read")
        || has("storage")
        || has("otlp")
    {
        FileKind::PrometheusConfig
    } else if has("route") || has("receivers") || has("inhibit_rules") {
        FileKind::AlertmanagerConfig
    } else if has("datasources") || has("deleteDatasources") {
        FileKind::GrafanaDatasources
    } else if has("providers") {
        FileKind::GrafanaProviders
    } else if has("global") && !is_alertmanager_global(&src.text) {
        // Alertmanager's `global` holds notifier settings; anything else is Prometheus'.
        FileKind::PrometheusConfig
    } else if has("targets") {
        // A target group (file_sd's element) on its own: Prometheus reads no such file
        // (promtool check config: "field targets not found").
        FileKind::PrometheusConfig
    } else {
        FileKind::Unknown
    }
}

/// Go template actions at the start of lines and Helm's objects: a chart template.
fn is_helm_template(text: &str) -> bool {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or("");
    let actions = text.lines().any(|l| l.trim_start().starts_with("{{"));
    first.starts_with("{{") || actions && [".Values", ".Release", ".Capabilities", ".Chart"].iter().any(|k| text.contains(k))
}

fn is_alertmanager_global(text: &str) -> bool {
    ["resolve_timeout", "smtp_", "slack_api_url", "pagerduty_url", "opsgenie_", "wechat_", "victorops_", "telegram_api_url", "webex_api_url", "http_config"]
        .iter()
        .any(|k| text.contains(k))
}

/// Options of a lint run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub with_promtool: bool,
    /// The evaluator of the offline alert proof (stack mode).
    pub evaluator: proof::Evaluator,
}

/// What a lint run found: the findings, and the offline proof of each alerting rule of
/// the stacks linted (none for lone files).
#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub alerts: Vec<proof::AlertProof>,
}

/// Lint stack directories and single files; the findings, sorted by file and line.
pub fn lint_paths(paths: &[PathBuf], opts: &Options) -> Result<Vec<Finding>> {
    lint_report(paths, opts).map(|r| r.findings)
}

/// Lint stack directories and single files: the findings (sorted by file and line) and
/// the offline alert proofs.
pub fn lint_report(paths: &[PathBuf], opts: &Options) -> Result<Report> {
    let mut sink = Sink::default();
    let mut alerts = Vec::new();
    let mut lone: Vec<PathBuf> = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p)
            .map_err(|e| Error::config(Kind::LintPath, format!("cannot read {}: {e}", p.display()), "pass a stack directory or existing files"))?;
        if meta.is_dir() {
            if p.join("stackproof.yml").is_file() {
                alerts.extend(dir::lint_stack(p, opts, &mut sink)?);
            } else {
                collect_loose(p, &mut lone).map_err(|e| Error::io(p, e))?;
            }
        } else if p.file_name().is_some_and(|n| n == "stackproof.yml") {
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            alerts.extend(dir::lint_stack(dir, opts, &mut sink)?);
        } else {
            lone.push(p.clone());
        }
    }
    for p in &lone {
        let src = Source::read(p, p.display().to_string()).map_err(|e| Error::io(p, e))?;
        lint_lone(&src, &mut sink);
    }
    if opts.with_promtool && !lone.is_empty() {
        promtool::run_lone(&lone, &mut sink)?;
    }
    let mut f = sink.findings;
    f.sort_by(|a, b| (&a.file, a.line, a.column, a.severity).cmp(&(&b.file, b.line, b.column, b.severity)));
    f.dedup();
    Ok(Report { findings: f, alerts })
}

/// Files of a directory that has no manifest, linted one by one.
fn collect_loose(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let p = e.path();
        if e.file_type()?.is_dir() {
            collect_loose(&p, out)?;
        } else if [".yml", ".yaml", ".json", ".rules"].iter().any(|x| name.ends_with(x)) {
            out.push(p);
        }
    }
    Ok(())
}

/// Lint one file on its own.
pub fn lint_lone(src: &Source, sink: &mut Sink) {
    let kind = recognise(src);
    let skipped = match kind {
        FileKind::Manifest => {
            manifest::check_manifest_text(src, sink);
            None
        }
        FileKind::PrometheusConfig => {
            prometheus::check_config(src, None, sink);
            Some("scrape targets and Alertmanager addresses against the stack's services, version support")
        }
        FileKind::Rules => {
            prometheus::check_rules(src, None, sink);
            Some("metric names against what the stack exposes, labels routing relies on, version support")
        }
        FileKind::AlertmanagerConfig => {
            alertmanager::check_config(src, None, sink);
            Some("group_by and inhibitions against the stack's rules, the drill route, version support")
        }
        FileKind::GrafanaDatasources => {
            grafana::check_datasources(src, None, sink);
            Some("the datasource URL against the stack's Prometheus")
        }
        FileKind::GrafanaProviders => {
            grafana::check_providers(src, None, sink);
            Some("whether the provider path holds the stack's dashboards")
        }
        FileKind::Dashboard => {
            grafana::check_dashboard(src, None, sink);
            Some("datasource uids against provisioned datasources, metric names, duplicate uids")
        }
        FileKind::HelmTemplate => {
            sink.push(
                Severity::Error,
                "file.template",
                &src.display,
                Some((1, 1)),
                "a Helm chart template, not a file Prometheus, Alertmanager or Grafana can read: `{{ ... }}` is not YAML (promtool: \"did not find expected node content\")",
                "render the chart first (helm template ... > out.yaml) and lint what it renders",
            );
            None
        }
        FileKind::K8sResource => {
            let kind = src.text.lines().find_map(|l| l.strip_prefix("kind:")).map(|k| k.trim().trim_matches(['"', '\''])).unwrap_or("?").to_string();
            let pos = src.pos(&[PathSeg::Key("kind".into())]);
            sink.push(
                Severity::Error,
                "file.k8s_resource",
                &src.display,
                pos,
                format!("a Kubernetes `{kind}` resource, not a Prometheus, Alertmanager or Grafana file: they read no `apiVersion`/`kind`/`spec` (promtool: \"field apiVersion not found\")"),
                "an operator turns it into the real file; to lint its content, extract it (e.g. yq .spec file.yaml > rules.yml)",
            );
            None
        }
        FileKind::Unknown => {
            sink.push(
                Severity::Info,
                "file.unrecognised",
                &src.display,
                None,
                "not recognised as a dashboard, rules file, Prometheus/Alertmanager config or Grafana provisioning file; not checked",
                "lint a stack directory (with stackproof.yml) or one of those files",
            );
            None
        }
    };
    if let Some(what) = skipped {
        sink.push(
            Severity::Info,
            "lint.lone_file",
            &src.display,
            None,
            format!("linted on its own: checks that need the rest of a stack were skipped ({what})"),
            "lint the stack directory to run them",
        );
    }
}

#[cfg(test)]
mod tests;
