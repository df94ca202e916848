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

/// Noted interrupts (`start_noting`): set once the first SIGINT/SIGTERM arrived.
static NOTED: std::sync::OnceLock<tokio::sync::watch::Receiver<bool>> = std::sync::OnceLock::new();

/// From now on, SIGINT and SIGTERM no longer stop the process: they are noted, and the
/// caller finishes what it does (`seen`, `noted`). For a deploy once it holds the lock:
/// a step that changes the host runs to its end, then the deploy rolls back. Call within
/// the runtime; a second call does nothing.
pub fn start_noting() {
    NOTED.get_or_init(|| {
        use tokio::signal::unix::{signal, SignalKind};
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                if !*tx.borrow() {
                    eprintln!("interrupted: finishing the current step; then the deploy stops, puts the last verified release back if the host changed, and exits 130");
                }
                let _ = tx.send(true);
            }
        });
        rx
    });
}

/// Has an interrupt been noted?
pub fn seen() -> bool {
    NOTED.get().is_some_and(|rx| *rx.borrow())
}

/// Completes once an interrupt has been noted (never, when nothing notes them).
pub async fn noted() {
    match NOTED.get() {
        Some(rx) => {
            let mut rx = rx.clone();
            let _ = rx.wait_for(|v| *v).await;
        }
        None => std::future::pending().await,
    }
}

/// Run `fut` (one that changes nothing on the host), dropping it at a noted interrupt.
pub async fn cancel_on_noted<T>(fut: impl std::future::Future<Output = crate::Result<T>>) -> crate::Result<T> {
    if seen() {
        return Err(crate::Error::Interrupted);
    }
    tokio::select! {
        r = fut => r,
        _ = noted() => Err(crate::Error::Interrupted),
    }
}

/// TEST ONLY: `STACKPROOF_TEST_PAUSE_AT=<point>` makes a deploy stop at that point (`sync`:
/// after the upload, before the swap; `containers`: after a container was removed,
/// before it is created again; `checks`: as the checks begin), print
/// `stackproof-test: paused at <point>` on stderr and wait for an interrupt, so an
/// end-to-end test can interrupt it exactly there without sleeping. Not a user setting.
pub const TEST_PAUSE_ENV: &str = "STACKPROOF_TEST_PAUSE_AT";

pub async fn test_pause(point: &str) {
    if NOTED.get().is_none() || seen() || std::env::var(TEST_PAUSE_ENV).ok().as_deref() != Some(point) {
        return;
    }
    eprintln!("stackproof-test: paused at {point}");
    noted().await;
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

    #[tokio::test]
    async fn a_noted_interrupt_cancels_what_changes_nothing() {
        assert!(!seen());
        // Nothing noted yet: the future runs to its end.
        assert_eq!(cancel_on_noted(async { Ok(1) }).await.unwrap(), 1);
        start_noting();
        let slow = cancel_on_noted(async {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            Ok(())
        });
        let pid = std::process::id().to_string();
        let kill = async {
            // SIGINT to ourselves: noted, not fatal.
            let st = tokio::process::Command::new("kill").args(["-INT", &pid]).status().await.unwrap();
            assert!(st.success());
            std::future::pending::<()>().await
        };
        let r = tokio::select! { r = slow => r, _ = kill => unreachable!() };
        assert!(matches!(r, Err(crate::Error::Interrupted)));
        assert!(seen());
        assert!(matches!(cancel_on_noted(async { Ok(()) }).await, Err(crate::Error::Interrupted)));
        // The pause returns at once once an interrupt was noted.
        test_pause("checks").await;
    }
}
