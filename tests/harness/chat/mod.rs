//! Emulators of the chat platforms certops talks to, built from the vendors' documentation
//! and started on 127.0.0.1 by the tests (stopped on drop):
//!
//! - [`bot_framework::BotFramework`]: the Bot Framework's side of Microsoft Teams — the
//!   OpenID metadata and JWKS (keys with `endorsements`, RSA keys generated at run time),
//!   the client-credentials token endpoint, the Bot Connector API that records the
//!   activities certops posts and updates, and a signer for the tokens the Bot Connector
//!   sends with each activity.
//! - [`slack_api::SlackApi`]: Slack's Web API (`chat.postMessage`, `chat.update`) with its
//!   `{"ok": false, "error": …}` failures, and a signer for interaction requests.

pub mod bot_framework;
pub mod slack_api;
pub mod wired_stack;

use std::net::SocketAddr;

/// A server running on a loopback port; aborted when dropped.
pub struct Served {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Serves `app` on a free loopback port.
    pub async fn start(app: axum::Router) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Served { addr, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}
