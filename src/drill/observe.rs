//! Reading the live state the drill watches: one poll of Prometheus' targets and alerts,
//! Alertmanager's alerts and counters, the host's clock and the exporter.

use crate::verify::Endpoints;

/// One poll of Prometheus and Alertmanager.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    /// Health of the drill job's targets (`up`/`down`/`unknown`).
    pub job_health: Vec<String>,
    /// (alertname, state) in Prometheus.
    pub prom: Vec<(String, String)>,
    /// (alertname, state) in Alertmanager.
    pub am: Vec<(String, String)>,
    pub am_metrics: Option<String>,
    pub errors: Vec<String>,
}

impl Snapshot {
    pub fn prom_state(&self, alert: &str) -> Option<&str> {
        // Firing wins over pending when several series exist.
        let states: Vec<&str> = self.prom.iter().filter(|(n, _)| n == alert).map(|(_, s)| s.as_str()).collect();
        if states.contains(&"firing") {
            Some("firing")
        } else {
            states.first().copied()
        }
    }
    pub fn am_state(&self, alert: &str) -> Option<&str> {
        self.am.iter().find(|(n, _)| n == alert).map(|(_, s)| s.as_str())
    }
    pub fn job_all(&self, health: &str) -> bool {
        !self.job_health.is_empty() && self.job_health.iter().all(|h| h == health)
    }
}

pub(super) async fn get_json(client: &reqwest::Client, url: &str) -> std::result::Result<serde_json::Value, String> {
    let r = client.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("{url} answered {}", r.status()));
    }
    r.json().await.map_err(|e| format!("{url}: {e}"))
}

pub(super) async fn snapshot(client: &reqwest::Client, ep: &Endpoints, job: &str, metrics: bool) -> Snapshot {
    let targets = format!("{}/api/v1/targets?state=active", ep.prometheus);
    let alerts = format!("{}/api/v1/alerts", ep.prometheus);
    let am = format!("{}/api/v2/alerts", ep.alertmanager);
    let am_metrics = format!("{}/metrics", ep.alertmanager);
    let (t, a, m, mm) = tokio::join!(get_json(client, &targets), get_json(client, &alerts), get_json(client, &am), async {
        if !metrics {
            return Ok(None);
        }
        let r = client.get(&am_metrics).send().await.map_err(|e| e.to_string())?;
        r.text().await.map(Some).map_err(|e| e.to_string())
    });
    let mut s = Snapshot::default();
    match t {
        Ok(v) => {
            s.job_health = v["data"]["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["labels"]["job"] == job)
                .map(|t| t["health"].as_str().unwrap_or("").to_string())
                .collect()
        }
        Err(e) => s.errors.push(e),
    }
    match a {
        Ok(v) => {
            s.prom = v["data"]["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| (a["labels"]["alertname"].as_str().unwrap_or("").to_string(), a["state"].as_str().unwrap_or("").to_string()))
                .collect()
        }
        Err(e) => s.errors.push(e),
    }
    match m {
        Ok(v) => {
            s.am = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| (a["labels"]["alertname"].as_str().unwrap_or("").to_string(), a["status"]["state"].as_str().unwrap_or("").to_string()))
                .collect()
        }
        Err(e) => s.errors.push(e),
    }
    match mm {
        Ok(v) => s.am_metrics = v,
        Err(e) => s.errors.push(format!("{am_metrics}: {e}")),
    }
    s
}

/// Sum of a counter over the lines with `integration="…"` (and, where Alertmanager
/// labels its counters by receiver — newer releases — `receiver_name="…"`).
/// Hand-written: one counter from a text exposition needs no parser crate.
pub fn counter(text: &str, name: &str, integration: &str, receiver: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter(|l| l.contains(&format!("integration=\"{integration}\"")))
        .filter(|l| !l.contains("receiver_name=") || l.contains(&format!("receiver_name=\"{receiver}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Whether Alertmanager counts notifications per receiver (not only per integration).
pub(super) fn per_receiver(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("alertmanager_notifications_total{") && l.contains("receiver_name="))
}

/// Seconds since the epoch on the host's clock (Prometheus' `time()`).
pub(super) async fn host_time(client: &reqwest::Client, ep: &Endpoints) -> Option<f64> {
    let v = get_json(client, &format!("{}/api/v1/query?query=time()", ep.prometheus)).await.ok()?;
    v["data"]["result"][1].as_str()?.parse().ok()
}

/// Does the exporter answer with exposition text?
pub(super) async fn exporter_answers(client: &reqwest::Client, ep: &Endpoints, path: &str) -> bool {
    match client.get(format!("{}{path}", ep.host_exporter)).send().await {
        Ok(r) if r.status().is_success() => r.text().await.map(|t| t.contains("# TYPE ")).unwrap_or(false),
        _ => false,
    }
}
