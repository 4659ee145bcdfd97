//! Lambda entry point of `approval-callback`: the Teams/Slack card action
//! through API Gateway, JSON `{"approvalId", "approver", "verdict":
//! "approve"|"reject", "comment"?}`, signed with the approval-callback secret
//! (separate from the ServiceNow webhook's): `x-certops-timestamp: <unix s>` and
//! `x-certops-signature: sha256=<hex HMAC-SHA256(key, "{ts}.{approvalId}.{body}")>`.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use certops_core::Error;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // The Teams/Slack relay's signing key: CERTOPS_APPROVAL_SECRET_ARN (or, as
    // deployed before, CERTOPS_WEBHOOK_SECRET_ARN pointing at the approval-callback
    // secret) on AWS, CERTOPS_APPROVAL_SECRET locally.
    let secret = certops_lambda::EnvSecret::from_env("CERTOPS_APPROVAL_SECRET");
    // Only the deployed ARN is accepted under the old name: locally
    // CERTOPS_WEBHOOK_SECRET is the ServiceNow key, which must not sign approvals.
    let legacy_arn = std::env::var("CERTOPS_WEBHOOK_SECRET_ARN").is_ok_and(|v| !v.is_empty());
    let secret = Arc::new(if secret.is_configured() || !legacy_arn {
        secret
    } else {
        certops_lambda::EnvSecret::from_env("CERTOPS_WEBHOOK_SECRET")
    });
    certops_lambda::run(move |deps, req: ApiGatewayV2httpRequest| {
        let secret = secret.clone();
        async move {
            if !secret.is_configured() {
                return Err(Error::Misconfigured(
                    "CERTOPS_APPROVAL_SECRET(_ARN) is not set; refusing unsigned callbacks".into(),
                ));
            }
            let secret = secret.get().await?;
            Ok::<_, Error>(
                certops_fn_approval_callback::handle_api_gateway(&deps, &secret, &req).await,
            )
        }
    })
    .await
}
