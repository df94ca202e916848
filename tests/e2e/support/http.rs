//! HTTP to services on this machine's loopback (the sandbox's services, the host
//! exporter, programs a test started).

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn get(url: &str, query: &[(&str, &str)], auth: Option<(&str, &str)>) -> Result<(u16, String), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
        let mut r = c.get(url).query(query);
        if let Some((u, p)) = auth {
            r = r.basic_auth(u, Some(p));
        }
        let resp = r.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.map_err(|e| e.to_string())?))
    })
}

/// GET `url`, with basic auth when given: (status, body).
pub fn http_get(url: &str, auth: Option<(&str, &str)>) -> Result<(u16, String), String> {
    get(url, &[], auth)
}

/// POST (with a JSON body) or DELETE `url`: (status, body).
pub fn http_send(method: &str, url: &str, body: Option<&Value>) -> Result<(u16, String), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
        let mut r = c.request(method.parse().map_err(|e| format!("{e}"))?, url);
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = r.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.map_err(|e| e.to_string())?))
    })
}

/// Silences, in the sandbox's Alertmanager, every alert but the named ones for a few
/// minutes, and expires that silence when dropped: isolates a test that reads
/// Alertmanager's notification counters from the alerts earlier tests left firing.
pub struct SilenceOthers(String);

impl SilenceOthers {
    pub fn except(alerts: &[&str]) -> SilenceOthers {
        let now = chrono::Utc::now();
        let body = serde_json::json!({
            "matchers": [{"name": "alertname", "value": alerts.join("|"), "isRegex": true, "isEqual": false}],
            "startsAt": now.to_rfc3339(), "endsAt": (now + chrono::Duration::minutes(10)).to_rfc3339(),
            "createdBy": "stackproof e2e", "comment": "isolates a test from alerts earlier tests left firing",
        });
        let (status, text) = http_send("POST", "http://127.0.0.1:9093/api/v2/silences", Some(&body)).expect("Alertmanager answers");
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        SilenceOthers(v["silenceID"].as_str().unwrap().to_string())
    }
}

impl Drop for SilenceOthers {
    fn drop(&mut self) {
        let _ = http_send("DELETE", &format!("http://127.0.0.1:9093/api/v2/silence/{}", self.0), None);
    }
}

/// An instant query against the sandbox's Prometheus (127.0.0.1:9090 on this machine):
/// the first sample's value.
pub fn prom(query: &str) -> Option<f64> {
    let (_, body) = get("http://127.0.0.1:9090/api/v1/query", &[("query", query)], None).ok()?;
    let v: Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// A minimal HTTP/1.0 GET of 127.0.0.1:`port``path`: (status, content type, body).
/// Hand-written because the host exporter speaks HTTP/1.0 and the test must see exactly
/// what it sends.
pub fn get_raw(port: u16, path: &str) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let ctype = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_default();
    Ok((status, ctype, body.to_string()))
}

/// Does a host exporter answer on 127.0.0.1:`port` with exposition text?
pub fn exporter_answers(port: u16) -> bool {
    matches!(get_raw(port, "/metrics"), Ok((200, _, body)) if body.contains("# TYPE "))
}
