//! Entry point: behaves like the grafana/grafana image's `/run.sh` followed
//! by `grafana server` (see README). Not Grafana.

use std::path::Path;
use std::process::ExitCode;

use grafana_double::config::{apply_file_vars, check_args, Config};
use grafana_double::logfmt::Logger;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = check_args(&args) {
        eprintln!("Error: ✗ {e}");
        return ExitCode::from(1);
    }
    let env: grafana_double::config::Env = std::env::vars().collect();
    run_sh_checks(&env);
    let env = match apply_file_vars(env) {
        Ok((env, report)) => {
            report.stdout.iter().for_each(|l| println!("{l}"));
            report.stderr.iter().for_each(|l| eprintln!("{l}"));
            env
        }
        Err((_, report)) => {
            report.stdout.iter().for_each(|l| println!("{l}"));
            report.stderr.iter().for_each(|l| eprintln!("{l}"));
            return ExitCode::from(1);
        }
    };
    let log = Logger::stdout();
    let cfg = match Config::from_env(&env).and_then(|c| c.check_files().map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            log.error("settings", "failed to parse settings", &[("error", &e)]);
            eprintln!("Error: ✗ {e}");
            return ExitCode::from(1);
        }
    };
    log.info(
        "settings",
        "Starting Grafana",
        &[("version", grafana_double::GRAFANA_VERSION), ("commit", grafana_double::COMMIT), ("note", "this is grafana-double, a test double, not Grafana")],
    );
    for var in Config::override_lines(&env) {
        log.info("settings", "Config overridden from Environment variable", &[("var", &var)]);
    }
    let show = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    log.info("settings", "Path Home", &[("path", &show(&cfg.home))]);
    log.info(
        "settings",
        "Path Data",
        &[("path", &cfg.data.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(memory: GF_PATHS_DATA unset)".into()))],
    );
    log.info("settings", "Path Logs", &[("path", &show(&cfg.logs))]);
    log.info("settings", "Path Plugins", &[("path", &show(&cfg.plugins))]);
    log.info("settings", "Path Provisioning", &[("path", &cfg.provisioning.display().to_string())]);
    log.info("settings", "App mode production", &[]);
    if cfg.data.is_none() {
        log.warn("settings", "grafana-double: GF_PATHS_DATA is unset, the database is kept in memory and lost on exit (not Grafana)", &[]);
    }
    let running = match grafana_double::start(cfg.clone(), env, log.clone()).await {
        Ok(r) => r,
        Err(grafana_double::StartError::Database(e)) => {
            log.error("sqlstore", "Server shutdown", &[("error", &e)]);
            eprintln!("Error: ✗ {e}");
            return ExitCode::from(1);
        }
        Err(grafana_double::StartError::Listen(e)) => {
            let err = format!("failed to open listener on address {}: listen tcp {}: {}", cfg.bind_addr(), cfg.bind_addr(), e);
            log.error("server", "Server shutdown", &[("error", &err)]);
            eprintln!("Error: ✗ {err}");
            return ExitCode::from(1);
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        fatal = running.fatal => {
            if let Ok(err) = fatal {
                log.error("server", "Server shutdown", &[("error", &err)]);
                eprintln!("Error: ✗ invalid service state: Failed, expected: Running, failure: {err}");
                return ExitCode::from(1);
            }
            // sender dropped without error: provisioning finished; keep serving
            wait_signal(&mut term, &log).await
        }
        _ = term.recv() => shutdown(&log, "terminated"),
        _ = tokio::signal::ctrl_c() => shutdown(&log, "interrupt"),
    }
}

/// The permission warnings `run.sh` prints before starting Grafana (it goes
/// on regardless), for the `GF_PATHS_*` variables that are set.
fn run_sh_checks(env: &grafana_double::config::Env) {
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    let mut warned = false;
    if let Some(c) = get("GF_PATHS_CONFIG") {
        if std::fs::File::open(&c).is_err() {
            println!("GF_PATHS_CONFIG='{c}' is not readable.");
            warned = true;
        }
    }
    if let Some(d) = get("GF_PATHS_DATA") {
        if !writable_dir(Path::new(&d)) {
            println!("GF_PATHS_DATA='{d}' is not writable.");
            warned = true;
        }
    }
    if let Some(h) = get("GF_PATHS_HOME") {
        if std::fs::read_dir(&h).is_err() {
            println!("GF_PATHS_HOME='{h}' is not readable.");
            warned = true;
        }
    }
    if warned {
        println!("You may have issues with file permissions, more information here: http://docs.grafana.org/installation/docker/#migrate-to-v51-or-later");
    }
}

/// `[ -w dir ]`, approximated by creating and removing a file in it.
fn writable_dir(d: &Path) -> bool {
    let probe = d.join(format!(".grafana-double-w-{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            true
        }
        Err(_) => false,
    }
}

async fn wait_signal(term: &mut tokio::signal::unix::Signal, log: &Logger) -> ExitCode {
    tokio::select! {
        _ = term.recv() => shutdown(log, "terminated"),
        _ = tokio::signal::ctrl_c() => shutdown(log, "interrupt"),
    }
}

fn shutdown(log: &Logger, sig: &str) -> ExitCode {
    log.info("server", "Shutdown started", &[("reason", &format!("System signal: {sig}"))]);
    ExitCode::SUCCESS
}
