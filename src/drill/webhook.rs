//! stackproof's own webhook receiver for the drill: an axum server on 127.0.0.1:0 that
//! records every notification with the moment it arrived. It stops when dropped.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One received notification.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub body: serde_json::Value,
}

#[derive(Default)]
struct Inbox {
    got: Mutex<Vec<Received>>,
}

pub struct Webhook {
    pub port: u16,
    inbox: Arc<Inbox>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn receive(State(inbox): State<Arc<Inbox>>, body: Option<Json<serde_json::Value>>) -> StatusCode {
    let at = Instant::now();
    match body {
        Some(Json(body)) => {
            inbox.got.lock().expect("inbox lock").push(Received { at, body });
            StatusCode::OK
        }
        None => StatusCode::BAD_REQUEST,
    }
}

impl Webhook {
    /// Listen on 127.0.0.1 on an ephemeral port; every POST (any path) is recorded.
    pub async fn start() -> std::io::Result<Webhook> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let inbox = Arc::new(Inbox::default());
        let app = axum::Router::new().fallback(axum::routing::post(receive)).with_state(inbox.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Webhook { port, inbox, stop: Some(tx), task })
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.inbox.got.lock().expect("inbox lock").clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

/// The first notification received after `since` that carries `alertname` with the
/// given status (`firing`/`resolved`) and, when known, started at or after
/// `host_since` (Prometheus' clock, RFC 3339) — so a late retry of an earlier drill's
/// notification is not mistaken for this one.
pub fn first<'a>(got: &'a [Received], since: Instant, alertname: &str, status: &str, host_since: Option<f64>) -> Option<&'a Received> {
    got.iter().find(|r| {
        r.at >= since
            && r.body["alerts"].as_array().into_iter().flatten().any(|a| {
                a["labels"]["alertname"] == alertname
                    && a["status"] == status
                    && match (host_since, a["startsAt"].as_str().and_then(rfc3339_secs)) {
                        (Some(h), Some(st)) => st + 1.0 >= h,
                        _ => true,
                    }
            })
    })
}

pub fn rfc3339_secs(s: &str) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_posts_and_stops_when_dropped() {
        let w = Webhook::start().await.unwrap();
        let url = format!("http://127.0.0.1:{}/", w.port);
        let c = reqwest::Client::builder().no_proxy().build().unwrap();
        let body = serde_json::json!({"status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "StackproofDrill"}, "startsAt": "2026-01-01T00:00:10Z"}]});
        let t0 = Instant::now();
        assert_eq!(c.post(&url).json(&body).send().await.unwrap().status(), 200);
        let got = w.received();
        assert_eq!(got.len(), 1);
        assert!(first(&got, t0, "StackproofDrill", "firing", None).is_some());
        assert!(first(&got, t0, "StackproofDrill", "resolved", None).is_none());
        assert!(first(&got, t0, "Other", "firing", None).is_none());
        // Started before the drill (host clock): an old notification.
        let host_t0 = rfc3339_secs("2026-01-01T00:01:00Z").unwrap();
        assert!(first(&got, t0, "StackproofDrill", "firing", Some(host_t0)).is_none());
        let port = w.port;
        drop(w);
        let mut refused = false;
        for _ in 0..50 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await; // poll interval (50 tries)
        }
        assert!(refused, "the server still listens after drop");
    }
}
