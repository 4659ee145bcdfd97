//! Lambda entry point of `intake`: API Gateway (HTTP API) events carry signed
//! ServiceNow webhooks; SQS events carry expiry-scan findings. Both end as
//! exactly one workflow execution per trigger.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::sqs::SqsEvent;
use serde_json::Value;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // The ServiceNow signing key: CERTOPS_WEBHOOK_SECRET_ARN on AWS (fetched on
    // the first webhook), CERTOPS_WEBHOOK_SECRET locally.
    let secret = Arc::new(certops_lambda::EnvSecret::from_env(
        "CERTOPS_WEBHOOK_SECRET",
    ));
    certops_lambda::run(move |deps, event: Value| {
        let secret = secret.clone();
        async move {
            if event.get("Records").is_some() {
                let sqs: SqsEvent = serde_json::from_value(event)
                    .map_err(|e| certops_core::Error::InvalidInput(format!("SQS event: {e}")))?;
                let out = certops_fn_intake::handle_sqs(&deps, sqs).await;
                return serde_json::to_value(out)
                    .map_err(|e| certops_core::Error::InvalidInput(e.to_string()));
            }
            if !secret.is_configured() {
                return Err(certops_core::Error::InvalidInput(
                    "neither CERTOPS_WEBHOOK_SECRET_ARN nor CERTOPS_WEBHOOK_SECRET is set; \
                     refusing unsigned intake"
                        .into(),
                ));
            }
            let secret = secret.get().await?;
            let req: ApiGatewayV2httpRequest = serde_json::from_value(event).map_err(|e| {
                certops_core::Error::InvalidInput(format!("API Gateway event: {e}"))
            })?;
            let out = certops_fn_intake::handle_webhook(&deps, &secret, req).await;
            serde_json::to_value(out).map_err(|e| certops_core::Error::InvalidInput(e.to_string()))
        }
    })
    .await
}
