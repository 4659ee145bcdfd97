//! The one way a test waits for something: poll a condition until it holds or a deadline
//! passes, then fail naming what never happened. A test never sleeps in place of a wait;
//! the poll interval is only how often the condition is asked.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is asked again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Asks `check` every [`POLL_INTERVAL`] until it yields a value or `within` passes
/// (`None`: the caller says what that means).
pub fn poll<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// [`poll`], failing the test with `what` when nothing came within `within`.
pub fn eventually<T>(what: &str, within: Duration, check: impl FnMut() -> Option<T>) -> T {
    poll(within, check).unwrap_or_else(|| panic!("{what}: not within {within:?}"))
}

/// [`poll`] for asynchronous conditions (the runtime keeps running between asks).
pub async fn poll_async<T, F>(within: Duration, mut check: impl FnMut() -> F) -> Option<T>
where
    F: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// [`poll_async`], failing the test with `what` when nothing came within `within`.
pub async fn eventually_async<T, F>(what: &str, within: Duration, check: impl FnMut() -> F) -> T
where
    F: Future<Output = Option<T>>,
{
    poll_async(within, check)
        .await
        .unwrap_or_else(|| panic!("{what}: not within {within:?}"))
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
pub fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}
