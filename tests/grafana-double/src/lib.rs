//! grafana-double: a test double that behaves like Grafana 12.0.2 in the
//! respects stackproof relies on. It is NOT Grafana; see README.md.

pub mod api;
pub mod config;
pub mod db;
pub mod interval;
pub mod logfmt;
pub mod prom;
pub mod provisioning;
pub mod state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use config::{Config, Env};
use db::Db;
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
    pub db: Db,
    /// Last database health verdict and when it was taken (cached 5 s).
    pub health: Mutex<Option<(Instant, bool)>>,
}

impl AppState {
    /// Writes the database file; a failure is logged (and returned) the way
    /// Grafana logs a failed SQL write.
    pub fn persist(&self, store: &Store) -> Result<(), String> {
        self.db.save(store).inspect_err(|e| {
            self.log.error("sqlstore", "failed to write to the database", &[("error", e)]);
        })
    }

    /// Grafana's `databaseHealthy` (pkg/api/health.go): one probe, its result
    /// (good or bad) cached for 5 seconds.
    pub fn database_healthy(&self) -> bool {
        let mut cache = self.health.lock().unwrap();
        if let Some((at, ok)) = *cache {
            if at.elapsed() < Duration::from_secs(5) {
                return ok;
            }
        }
        let ok = match self.db.check() {
            Ok(()) => true,
            Err(e) => {
                self.log.error("sqlstore", "database health check failed", &[("error", &e)]);
                false
            }
        };
        *cache = Some((Instant::now(), ok));
        ok
    }
}

/// Why [`start`] failed: both are fatal at startup, as in Grafana.
#[derive(Debug)]
pub enum StartError {
    /// The data dir or database file cannot be created, read or written.
    Database(String),
    /// The HTTP listener cannot be opened.
    Listen(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Database(e) => write!(f, "{e}"),
            StartError::Listen(e) => write!(f, "{e}"),
        }
    }
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

/// Opens the database (creating it and the admin user on a first start,
/// after the startup delay that stands in for migrations), binds, serves,
/// and starts provisioning in the background after the configured delay
/// (Grafana 12.0.2 provisions in its Run step, after the HTTP server is up).
pub async fn start(cfg: Config, env: Env, log: Logger) -> Result<Running, StartError> {
    let db = Db::new(cfg.data.as_deref());
    let opened = db.open().map_err(StartError::Database)?;
    let mut store = opened.store;
    let dbtype = if db.path.is_some() { "sqlite3" } else { "memory (grafana-double: GF_PATHS_DATA unset)" };
    log.info("sqlstore", "Connecting to DB", &[("dbtype", dbtype)]);
    if opened.created {
        log.info("migrator", "Starting DB migrations", &[]);
        if !cfg.startup_delay.is_zero() {
            log.info(
                "migrator",
                "grafana-double: waiting before listening, standing in for first-start migrations (not Grafana)",
                &[("delay", &format!("{:?}", cfg.startup_delay))],
            );
            tokio::time::sleep(cfg.startup_delay).await;
        }
        log.info("migrator", "migrations completed", &[("performed", "1"), ("skipped", "0")]);
    } else {
        log.info("migrator", "migrations completed", &[("performed", "0"), ("skipped", "1")]);
    }
    if cfg.disable_initial_admin_creation {
        log.info("sqlstore", "Skipping creation of initial admin user", &[]);
    } else if store.ensure_admin(&cfg.admin_user, &cfg.admin_password, &cfg.admin_email) {
        log.info("sqlstore", "Created default admin", &[("user", &cfg.admin_user)]);
        db.save(&store).map_err(|e| StartError::Database(format!("failed to create default admin user: {e}")))?;
    }
    let listener = tokio::net::TcpListener::bind(cfg.bind_addr()).await.map_err(StartError::Listen)?;
    let addr = listener.local_addr().map_err(StartError::Listen)?;
    let client = reqwest::Client::builder().timeout(cfg.datasource_timeout).build().map_err(|e| StartError::Listen(std::io::Error::other(e)))?;
    let state = Arc::new(AppState { cfg, env, store: RwLock::new(store), log, client, dash: Mutex::new(DashState::default()), db, health: Mutex::new(None) });
    let app = api::router(state.clone());
    state.log.info("http.server", "HTTP Server Listen", &[("address", &addr.to_string()), ("protocol", "http"), ("subUrl", ""), ("socket", "")]);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
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
        let _ = st.persist(&store);
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
        let _ = st.persist(&store);
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
    let _ = st.persist(&store);
}
