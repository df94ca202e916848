//! Ctrl-C and SIGTERM as one future, so every command can clean up (release the lock,
//! restart the exporter) before it exits.

/// Completes when SIGINT or SIGTERM arrives.
pub async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
