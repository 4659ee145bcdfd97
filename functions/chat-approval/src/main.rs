//! Lambda entry point of `chat-approval`: the HTTP API's `/teams/messages` and
//! `/slack/interactions` routes, and the card-refresh schedule. `[teams]`/`[slack]` come
//! from `integrations.toml` in `CERTOPS_CONFIG_DIR`; their secrets are Secrets Manager
//! ARNs, read once per sandbox. The OpenID keys stay cached for the sandbox's life.

use std::sync::Arc;

use certops_chatops::inbound::ChatApprovals;
use serde_json::Value;
use tokio::sync::OnceCell;

static APPROVALS: OnceCell<Arc<ChatApprovals>> = OnceCell::const_new();

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    certops_lambda::run(|deps, event: Value| async move {
        let approvals = APPROVALS
            .get_or_try_init(|| async {
                certops_fn_chat_approval::lambda_approvals(
                    deps.clone(),
                    certops_lambda::secret_resolver().await,
                )
                .map(Arc::new)
            })
            .await?;
        certops_fn_chat_approval::handle_event(approvals, event).await
    })
    .await
}
