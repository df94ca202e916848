//! stackproof's own webhook receiver for the drill: an axum server on 127.0.0.1:0 that
//! records every notification with the moment it arrived. It stops when dropped.
//!
//! Only Alertmanager may make a drill pass: each webhook has a fresh random token, which
//! the drill writes into the Alertmanager container as the drill receiver's
//! `http_config.authorization.credentials_file` (read on every request); a POST without
//! `Authorization: Bearer <token>` is answered 401 and not recorded (only counted). The
//! inbox is capped ([`MAX_BODIES`] bodies, [`MAX_BYTES`] in all, [`MAX_BODY`] each):
//! past the cap a POST is answered 507 and counted, never kept.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The most notifications one webhook keeps (a drill needs a handful).
pub const MAX_BODIES: usize = 256;
/// The most bytes of bodies one webhook keeps, in all.
pub const MAX_BYTES: usize = 4 << 20;
/// The largest body one POST may carry (Alertmanager's notification for a small group).
pub const MAX_BODY: usize = 1 << 20;

/// One received notification.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub body: serde_json::Value,
}

#[derive(Default)]
struct Inbox {
    token: String,
    state: Mutex<InboxState>,
}

#[derive(Default)]
struct InboxState {
    got: Vec<Received>,
    bytes: usize,
    /// POSTs refused: without the token (401), or past the cap (507).
    unauthorized: usize,
    dropped: usize,
}

pub struct Webhook {
    pub port: u16,
    inbox: Arc<Inbox>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// Compare without an early exit on the first differing byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn receive(State(inbox): State<Arc<Inbox>>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let at = Instant::now();
    let auth = headers.get(axum::http::header::AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default();
    let expected = format!("Bearer {}", inbox.token);
    let mut st = inbox.state.lock().expect("inbox lock");
    if !same(auth, expected.as_bytes()) {
        st.unauthorized += 1;
        return StatusCode::UNAUTHORIZED;
    }
    if st.got.len() >= MAX_BODIES || st.bytes + body.len() > MAX_BYTES {
        st.dropped += 1;
        return StatusCode::INSUFFICIENT_STORAGE;
    }
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) => {
            st.bytes += body.len();
            st.got.push(Received { at, body: v });
            StatusCode::OK
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

/// A fresh random token (32 bytes from the kernel's CSPRNG, hex).
fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(crate::engine::spec::hex(&b))
}

impl Webhook {
    /// Listen on 127.0.0.1 on an ephemeral port with a fresh token; every POST (any
    /// path) bearing the token is recorded, up to the caps.
    pub async fn start() -> std::io::Result<Webhook> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let inbox = Arc::new(Inbox { token: new_token()?, state: Mutex::default() });
        let app = axum::Router::new().fallback(axum::routing::post(receive)).layer(DefaultBodyLimit::max(MAX_BODY)).with_state(inbox.clone());
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

    /// The token a POST must bear (`Authorization: Bearer <token>`). Secret: never print it.
    pub fn token(&self) -> &str {
        &self.inbox.token
    }

    /// Everything received (with the token) so far.
    pub fn received(&self) -> Vec<Received> {
        self.inbox.state.lock().expect("inbox lock").got.clone()
    }

    /// POSTs refused so far: (without the token, past the inbox's cap).
    pub fn refused(&self) -> (usize, usize) {
        let st = self.inbox.state.lock().expect("inbox lock");
        (st.unauthorized, st.dropped)
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
        assert_eq!(c.post(&url).bearer_auth(w.token()).json(&body).send().await.unwrap().status(), 200);
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

    #[tokio::test]
    async fn a_post_without_the_token_is_refused_and_not_recorded() {
        let w = Webhook::start().await.unwrap();
        let other = Webhook::start().await.unwrap();
        assert_ne!(w.token(), other.token(), "each webhook has its own token");
        assert_eq!(w.token().len(), 64);
        let url = format!("http://127.0.0.1:{}/any/path", w.port);
        let c = reqwest::Client::builder().no_proxy().build().unwrap();
        let body = serde_json::json!({"alerts": [{"status": "firing", "labels": {"alertname": "StackproofDrill"}}]});
        assert_eq!(c.post(&url).json(&body).send().await.unwrap().status(), 401);
        assert_eq!(c.post(&url).bearer_auth(other.token()).json(&body).send().await.unwrap().status(), 401);
        assert_eq!(c.post(&url).header("Authorization", w.token()).json(&body).send().await.unwrap().status(), 401);
        assert!(w.received().is_empty());
        assert_eq!(w.refused(), (3, 0));
        assert_eq!(c.post(&url).bearer_auth(w.token()).json(&body).send().await.unwrap().status(), 200);
        assert_eq!(w.received().len(), 1);
    }

    #[tokio::test]
    async fn the_inbox_is_capped_in_count_and_bytes() {
        let c = reqwest::Client::builder().no_proxy().build().unwrap();
        let w = Webhook::start().await.unwrap();
        let url = format!("http://127.0.0.1:{}/", w.port);
        for _ in 0..MAX_BODIES {
            assert_eq!(c.post(&url).bearer_auth(w.token()).json(&serde_json::json!({})).send().await.unwrap().status(), 200);
        }
        assert_eq!(c.post(&url).bearer_auth(w.token()).json(&serde_json::json!({})).send().await.unwrap().status(), 507);
        assert_eq!(w.received().len(), MAX_BODIES);
        assert_eq!(w.refused(), (0, 1));

        // Bytes: bodies just under the per-POST limit fill MAX_BYTES after a few.
        let w = Webhook::start().await.unwrap();
        let url = format!("http://127.0.0.1:{}/", w.port);
        let big = serde_json::Value::String("x".repeat(MAX_BODY - 16));
        let fit = MAX_BYTES / (MAX_BODY - 14);
        for _ in 0..fit {
            assert_eq!(c.post(&url).bearer_auth(w.token()).json(&big).send().await.unwrap().status(), 200);
        }
        assert_eq!(c.post(&url).bearer_auth(w.token()).json(&big).send().await.unwrap().status(), 507);
        assert_eq!(w.received().len(), fit);
        // One body over the per-POST limit is refused outright.
        let huge = serde_json::Value::String("x".repeat(MAX_BODY + 1));
        assert_eq!(c.post(&url).bearer_auth(w.token()).json(&huge).send().await.unwrap().status(), 413);
    }
}
