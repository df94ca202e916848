//! The HTTP adapter: one reqwest client (no proxy: every URL is a local tunnel end),
//! answers reduced to status + body, and errors phrased for a person.

use std::time::Duration;

/// Upper bound for one request; polling repeats requests, so one stuck answer must not
/// eat the whole deadline.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
}

/// Basic-auth credentials for one request. Never printed: `Debug` hides the password.
#[derive(Clone, Copy)]
pub struct Auth<'a> {
    pub user: &'a str,
    pub password: &'a str,
}

impl std::fmt::Debug for Auth<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Auth({}:***)", self.user)
    }
}

pub struct Answer {
    pub status: u16,
    pub body: String,
    pub content_type: String,
}

impl Answer {
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_str(&self.body).map_err(|e| format!("HTTP {}: answer is not JSON ({e}): {}", self.status, clip(&self.body, 200)))
    }
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// `message` of a Grafana/Prometheus error body, else the body's start.
    pub fn message(&self) -> String {
        match serde_json::from_str::<serde_json::Value>(&self.body) {
            Ok(v) => v.get("message").or_else(|| v.get("error")).and_then(|m| m.as_str()).map(str::to_string).unwrap_or_else(|| clip(&self.body, 200)),
            Err(_) => clip(self.body.trim(), 200),
        }
    }
}

pub fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

impl Http {
    /// The one client builder: no proxy (every URL is a local tunnel end), a short
    /// connect timeout and a per-request cap.
    pub fn new() -> Http {
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("reqwest client with static settings");
        Http { client }
    }

    /// The underlying client, for requests this adapter does not phrase (plain text
    /// bodies, POSTs without JSON).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub async fn put_json(&self, url: &str, auth: Option<Auth<'_>>, body: &serde_json::Value) -> Result<Answer, String> {
        let mut rb = self.client.put(url).json(body);
        if let Some(a) = auth {
            rb = rb.basic_auth(a.user, Some(a.password));
        }
        send(rb, url).await
    }

    pub async fn get(&self, url: &str, auth: Option<Auth<'_>>) -> Result<Answer, String> {
        let mut rb = self.client.get(url);
        if let Some(a) = auth {
            rb = rb.basic_auth(a.user, Some(a.password));
        }
        send(rb, url).await
    }

    pub async fn post_json(&self, url: &str, auth: Option<Auth<'_>>, body: &serde_json::Value) -> Result<Answer, String> {
        let mut rb = self.client.post(url).json(body);
        if let Some(a) = auth {
            rb = rb.basic_auth(a.user, Some(a.password));
        }
        send(rb, url).await
    }
}

async fn send(rb: reqwest::RequestBuilder, url: &str) -> Result<Answer, String> {
    let resp = rb.send().await.map_err(|e| describe(&e, url))?;
    let status = resp.status().as_u16();
    let content_type = resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = resp.text().await.map_err(|e| describe(&e, url))?;
    Ok(Answer { status, body, content_type })
}

/// reqwest's Display hides the cause ("error sending request"); walk the source chain
/// so "connection refused" reaches the report.
fn describe(e: &reqwest::Error, url: &str) -> String {
    let mut msg = if e.is_timeout() { "timed out".to_string() } else { e.to_string() };
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg = format!("{msg}: {t}");
        }
        src = s.source();
    }
    // never echo credentials, even if a URL carried them
    format!("{} — {msg}", strip_userinfo(url))
}

pub fn strip_userinfo(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => url.to_string(),
    }
}

pub fn join(base: &str, path: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'))
}
