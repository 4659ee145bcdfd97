//! `POST /teams/messages` and `POST /slack/interactions` in `certops serve`: the Teams bot
//! endpoint and the Slack interactivity endpoint from `certops-chatops`, deciding through
//! approval-callback's handler like every other approval.

use std::sync::Arc;

use axum::Router;
use certops_chatops::inbound::{ChatApprovals, ChatDecision, DecisionPath};
use certops_embedded::Stack;

/// approval-callback's decision path, for chat decisions.
pub fn decision_path() -> DecisionPath {
    Arc::new(|deps, d: ChatDecision| {
        Box::pin(async move {
            let cb = certops_fn_approval_callback::Callback {
                approval_id: d.approval_id,
                approver: d.approver,
                verdict: d.verdict,
                comment: None,
            };
            certops_fn_approval_callback::handle(&deps, cb)
                .await
                .map(|decided| decided.status)
        })
    })
}

/// The chat routes over the stack's ports. They answer 404 for a platform that
/// `integrations.toml` does not configure.
pub fn router(stack: &Stack) -> Router {
    let secrets = Arc::new(certops_adapters::LocalSecrets);
    match ChatApprovals::new(stack.deps.clone(), secrets, decision_path()) {
        Ok(a) => {
            let a = Arc::new(a);
            // Cards whose approval expired or was decided elsewhere are updated within a
            // minute; the loop ends with the server's runtime.
            let sync = a.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
                loop {
                    every.tick().await;
                    if let Err(e) = sync.sync_cards().await {
                        tracing::warn!("updating chat cards failed: {e}");
                    }
                }
            });
            certops_chatops::routes::router(a)
        }
        Err(e) => {
            // The stack built the same adapters already, so this is unexpected; serve the
            // rest and leave the chat routes absent (404) rather than half-configured.
            tracing::error!("chat routes disabled: {e}");
            Router::new()
        }
    }
}
