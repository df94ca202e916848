//! grafana-double: a test double that behaves like Grafana 12.0.2 in the
//! respects stackproof relies on. It is NOT Grafana; see README.md.

pub mod api;
pub mod config;
pub mod interval;
pub mod logfmt;
pub mod prom;
pub mod provisioning;
pub mod state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use config::{Config, Env};
use logfmt::Logger;
use provisioning::dashboards::{self, Provider, Usage};
use state::Store;

pub const GRAFANA_VERSION: &str = "12.0.2";
/// Not Grafana's commit: a marker that this is the double.
pub const COMMIT: &str = "grafana-double";

pub struct AppState {
    pub cfg: Config,
    pub env: Env,
    pub store: RwLock<Store>,
    pub log: Logger,
    pub client: reqwest::Client,
    pub dash: Mutex<DashState>,
}

#[derive(Default)]
pub struct DashState {
    pub providers: Vec<Provider>,
    pub usage: HashMap<String, Vec<Usage>>,
}

/// A started server: its address and a channel that yields a fatal
/// provisioning error (the process must then exit non-zero, as Grafana does).
pub struct Running {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub fatal: tokio::sync::oneshot::Receiver<String>,
}

/// Binds, serves, and starts provisioning in the background after the
/// configured delay (Grafana 12.0.2 provisions in its Run step, after the
/// HTTP server is up).
pub async fn start(cfg: Config, env: Env, log: Logger) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(cfg.bind_addr()).await?;
    let addr = listener.local_addr()?;
    let client = reqwest::Client::builder().timeout(cfg.datasource_timeout).build().map_err(std::io::Error::other)?;
    let state = Arc::new(AppState { cfg, env, store: RwLock::new(Store::default()), log, client, dash: Mutex::new(DashState::default()) });
    let app = api::router(state.clone());
    state.log.info("http.server", "HTTP Server Listen", &[("address", &addr.to_string()), ("protocol", "http"), ("subUrl", ""), ("socket", "")]);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    let st = state.clone();
    tokio::spawn(async move {
        if let Err(e) = provision(st).await {
            let _ = tx.send(e);
        }
    });
    Ok(Running { addr, state, fatal: rx })
}

async fn provision(st: Arc<AppState>) -> Result<(), String> {
    tokio::time::sleep(st.cfg.provision_delay).await;
    {
        let mut store = st.store.write().unwrap();
        if let Err(e) = provisioning::datasources::provision(&st.cfg.provisioning, &st.env, &mut store, &st.log) {
            let err = format!("Datasource provisioning error: {e}");
            st.log.error("provisioning", "Failed to provision data sources", &[("error", &err)]);
            return Err(err);
        }
    }
    let providers = match dashboards::read_providers(&st.cfg.provisioning, &st.env, &st.log) {
        Ok(p) => p,
        Err(e) => {
            st.log.error("provisioning", "Failed to provision dashboard", &[("error", &e)]);
            return Err(e);
        }
    };
    st.log.info(dashboards::LOGGER, "starting to provision dashboards", &[]);
    let mut completed = true;
    {
        let mut dash = st.dash.lock().unwrap();
        dash.providers = providers.clone();
        let mut store = st.store.write().unwrap();
        for p in &providers {
            match dashboards::provider_pass(p, &mut store, &st.log) {
                Ok(u) => {
                    dash.usage.insert(p.name.clone(), u);
                }
                Err(()) => {
                    // The first pass stops at a provider whose path cannot be
                    // read; later providers are picked up by their own polling.
                    st.log.warn("provisioning.dashboard", "Failed to provision config", &[("name", &p.name), ("error", "failed to search for dashboards")]);
                    completed = false;
                    break;
                }
            }
        }
        if completed {
            dashboards::validate_duplicates(&dash.usage, &mut store, &st.log);
            st.log.info(dashboards::LOGGER, "finished to provision dashboards", &[]);
        }
    }
    for p in providers {
        let st = st.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(p.interval);
            tick.tick().await; // the first tick completes immediately
            loop {
                tick.tick().await;
                reload_provider(&st, &p);
            }
        });
    }
    Ok(())
}

/// One polling pass of one provider, followed by the duplicate validator.
pub fn reload_provider(st: &AppState, p: &Provider) {
    let mut dash = st.dash.lock().unwrap();
    let mut store = st.store.write().unwrap();
    if let Ok(u) = dashboards::provider_pass(p, &mut store, &st.log) {
        dash.usage.insert(p.name.clone(), u);
    }
    dashboards::validate_duplicates(&dash.usage, &mut store, &st.log);
}
