//! Lambda entry point of `approval-callback`: the Teams/Slack card action
//! through API Gateway, its body signed with the webhook secret
//! (`x-certops-signature: sha256=<hex>`), JSON
//! `{"approvalId", "approver", "verdict": "approve"|"reject", "comment"?}`.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use certops_core::Error;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // The Teams/Slack signing key: CERTOPS_WEBHOOK_SECRET_ARN on AWS (fetched on
    // the first callback), CERTOPS_WEBHOOK_SECRET locally.
    let secret = Arc::new(certops_lambda::EnvSecret::from_env(
        "CERTOPS_WEBHOOK_SECRET",
    ));
    certops_lambda::run(move |deps, req: ApiGatewayV2httpRequest| {
        let secret = secret.clone();
        async move {
            if !secret.is_configured() {
                return Err(Error::InvalidInput(
                    "neither CERTOPS_WEBHOOK_SECRET_ARN nor CERTOPS_WEBHOOK_SECRET is set; \
                     refusing unsigned callbacks"
                        .into(),
                ));
            }
            let secret = secret.get().await?;
            // Every outcome is an HTTP answer (401/403/409/503/...), never a Lambda error.
            Ok(certops_fn_approval_callback::handle_http(&deps, &secret, req).await)
        }
    })
    .await
}
