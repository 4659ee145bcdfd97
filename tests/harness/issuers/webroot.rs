//! A webroot served over HTTP on loopback: `GET /.well-known/acme-challenge/<token>` returns
//! the file the HTTP-01 solver wrote into the directory, as a termination point serving its
//! web root would. Counts the requests it answered; stops when dropped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

/// The running webroot server.
pub struct Webroot {
    /// The directory it serves.
    pub dir: tempfile::TempDir,
    /// Its port.
    pub port: u16,
    served: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Served {
    root: PathBuf,
    served: Arc<AtomicUsize>,
}

async fn challenge(State(s): State<Served>, Path(token): Path<String>) -> (StatusCode, String) {
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return (StatusCode::BAD_REQUEST, String::new());
    }
    let path = s.root.join(".well-known/acme-challenge").join(token);
    match tokio::fs::read_to_string(path).await {
        Ok(body) => {
            s.served.fetch_add(1, Ordering::SeqCst);
            (StatusCode::OK, body)
        }
        Err(_) => (StatusCode::NOT_FOUND, String::new()),
    }
}

impl Webroot {
    /// Serves a fresh temporary directory on `127.0.0.1:<port>`.
    pub async fn start(port: u16) -> Webroot {
        let dir = tempfile::tempdir().expect("webroot dir");
        let served = Arc::new(AtomicUsize::new(0));
        let state = Served {
            root: dir.path().to_path_buf(),
            served: served.clone(),
        };
        let app = Router::new()
            .route("/.well-known/acme-challenge/{token}", get(challenge))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind webroot");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Webroot {
            dir,
            port,
            served,
            task,
        }
    }

    /// How many challenge files it served.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// The files left under `.well-known/acme-challenge` (the solver must clean up).
    pub fn leftover_tokens(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.path().join(".well-known/acme-challenge"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Webroot {
    fn drop(&mut self) {
        self.task.abort();
    }
}
