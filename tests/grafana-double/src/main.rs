//! Entry point: behaves like the grafana/grafana image's `/run.sh` followed
//! by `grafana server` (see README). Not Grafana.

use std::process::ExitCode;

use grafana_double::config::{apply_file_vars, Config};
use grafana_double::logfmt::Logger;

#[tokio::main]
async fn main() -> ExitCode {
    let env: grafana_double::config::Env = std::env::vars().collect();
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
    let cfg = match Config::from_env(&env) {
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
    log.info("settings", "Path Provisioning", &[("path", &cfg.provisioning.display().to_string())]);
    let running = match grafana_double::start(cfg.clone(), env, log.clone()).await {
        Ok(r) => r,
        Err(e) => {
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
