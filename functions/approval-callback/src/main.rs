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
            let body = req.body.unwrap_or_default();
            let sig = req
                .headers
                .get("x-certops-signature")
                .and_then(|v| v.to_str().ok());
            if !secret.is_configured() {
                return Err(Error::InvalidInput(
                    "neither CERTOPS_WEBHOOK_SECRET_ARN nor CERTOPS_WEBHOOK_SECRET is set; \
                     refusing unsigned callbacks"
                        .into(),
                ));
            }
            let secret = secret.get().await?;
            certops_core::signature::verify(&secret, body.as_bytes(), sig)?;
            let cb: certops_fn_approval_callback::Callback = serde_json::from_str(&body)
                .map_err(|e| Error::InvalidInput(format!("callback body: {e}")))?;
            certops_fn_approval_callback::handle(&deps, cb).await
        }
    })
    .await
}
