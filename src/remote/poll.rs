//! The one poll loop: every wait in stackproof asks a condition again until it holds or
//! a deadline derived from the stack's configuration passes. Nothing sleeps a fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a polled condition is asked again. Short: every answer is local (a tunnel
/// end or a container inspect) and cheap.
pub const POLL_INTERVAL: Duration = Duration::from_millis(150);

/// One try of a polled condition: done, or not yet (with what was seen, reported if the
/// deadline passes).
pub enum Attempt<T> {
    Done(T),
    Retry(String),
}

/// `Ok` is done, `Err` is "not yet, because …": closures that use `?` on their steps.
impl<T> From<Result<T, String>> for Attempt<T> {
    fn from(r: Result<T, String>) -> Self {
        match r {
            Ok(v) => Attempt::Done(v),
            Err(e) => Attempt::Retry(e),
        }
    }
}

/// Try `f` until it is done or `until` passes; at least one try always runs, and the
/// last pause is cut short at the deadline. Returns the last "not yet" reason on timeout.
pub async fn poll<T, A, F, Fut>(until: Instant, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = A>,
    A: Into<Attempt<T>>,
{
    loop {
        match f().await.into() {
            Attempt::Done(t) => return Ok(t),
            Attempt::Retry(why) => {
                let now = Instant::now();
                if now >= until {
                    return Err(why);
                }
                tokio::time::sleep_until(tokio::time::Instant::from_std((now + POLL_INTERVAL).min(until))).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test]
    async fn polls_until_done() {
        let n = Cell::new(0);
        let r = poll(Instant::now() + Duration::from_secs(5), || async {
            n.set(n.get() + 1);
            if n.get() == 3 {
                Attempt::Done(n.get())
            } else {
                Attempt::Retry(format!("try {}", n.get()))
            }
        })
        .await;
        assert_eq!(r, Ok(3));
    }

    #[tokio::test]
    async fn past_deadline_tries_once_and_returns_the_reason() {
        let n = Cell::new(0);
        let r: Result<(), String> = poll(Instant::now() - Duration::from_secs(1), || async {
            n.set(n.get() + 1);
            Err::<(), String>("not yet".into())
        })
        .await;
        assert_eq!(r, Err("not yet".into()));
        assert_eq!(n.get(), 1);
    }

    #[tokio::test]
    async fn the_last_pause_ends_at_the_deadline() {
        let start = Instant::now();
        let r: Result<(), String> = poll(start + Duration::from_millis(40), || async { Err::<(), String>("no".into()) }).await;
        assert!(r.is_err());
        assert!(start.elapsed() < POLL_INTERVAL, "{:?}", start.elapsed());
    }
}
