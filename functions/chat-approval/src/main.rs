//! Lambda entry point of `chat-approval`: the HTTP API's `/teams/messages` and
//! `/slack/interactions` routes. `[teams]`/`[slack]` come from `integrations.toml` in
//! `CERTOPS_CONFIG_DIR`; their secrets are Secrets Manager ARNs, read once per sandbox.
//! The OpenID keys stay cached for the sandbox's life.

use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use certops_chatops::inbound::ChatApprovals;
use tokio::sync::OnceCell;

static APPROVALS: OnceCell<Arc<ChatApprovals>> = OnceCell::const_new();

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    certops_lambda::run(|deps, req: ApiGatewayV2httpRequest| async move {
        let approvals = APPROVALS
            .get_or_try_init(|| async {
                ChatApprovals::new(
                    deps.clone(),
                    Arc::new(certops_lambda::LambdaSecrets::default()),
                    certops_fn_chat_approval::decision_path(),
                )
                .map(Arc::new)
            })
            .await?;
        Ok::<_, certops_core::Error>(certops_fn_chat_approval::handle(approvals, req).await)
    })
    .await
}
