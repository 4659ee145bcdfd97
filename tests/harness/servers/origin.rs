//! A tiny HTTP origin for Varnish to cache: every response carries a fresh generation
//! number, so a test can tell a cached answer (same number) from a fetch after a purge (a
//! new one).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running origin, stopped on drop.
pub struct Origin {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// How many responses it has sent.
    pub served: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Origin {
    /// Starts the origin (inside a tokio runtime).
    pub async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let port = listener.local_addr().expect("addr").port();
        let served = Arc::new(AtomicU64::new(0));
        let counter = served.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    // One request per connection: read the head, answer, close.
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let generation = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    let body = format!("generation {generation}\n");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncache-control: max-age=3600\r\nx-generation: {generation}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Origin { port, served, task }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
