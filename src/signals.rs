//! Ctrl-C and SIGTERM as one future, so every command can clean up (release the lock,
//! restart the exporter) before it exits.

use std::sync::atomic::{AtomicUsize, Ordering};

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

/// Sections that handle an interrupt themselves and must not be cancelled from outside
/// (the drill restarts the host exporter before it returns `Interrupted`).
static GUARDED: AtomicUsize = AtomicUsize::new(0);

/// While the returned guard lives, `is_guarded()` is true.
pub struct Guard(());

pub fn guard() -> Guard {
    GUARDED.fetch_add(1, Ordering::SeqCst);
    Guard(())
}

impl Drop for Guard {
    fn drop(&mut self) {
        GUARDED.fetch_sub(1, Ordering::SeqCst);
    }
}

pub fn is_guarded() -> bool {
    GUARDED.load(Ordering::SeqCst) > 0
}

/// Run `fut`, stopping it at the first interrupt — unless a guarded section is running,
/// in which case `fut` is awaited to the end (it sees the signal itself, cleans up and
/// returns its own `Interrupted`).
pub async fn until_interrupted<T>(fut: impl std::future::Future<Output = crate::Result<T>>) -> crate::Result<T> {
    tokio::pin!(fut);
    tokio::select! {
        r = &mut fut => r,
        _ = interrupted() => {
            if is_guarded() {
                fut.await
            } else {
                Err(crate::Error::Interrupted)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_counts_nest() {
        assert!(!is_guarded());
        let a = guard();
        let b = guard();
        drop(a);
        assert!(is_guarded());
        drop(b);
        assert!(!is_guarded());
    }
}
