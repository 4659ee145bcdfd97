//! Lambda entry point of `intake`: API Gateway (HTTP API) events carry signed
//! ServiceNow webhooks; SQS events carry expiry-scan findings. Both end as
//! exactly one workflow execution per trigger.

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
            let event = certops_fn_intake::IntakeEvent::from_value(event)?;
            let key = match (&event, secret.is_configured()) {
                (certops_fn_intake::IntakeEvent::Webhook(_), true) => Some(secret.get().await?),
                _ => None,
            };
            certops_fn_intake::handle_event(&deps, key.as_deref().map(Vec::as_slice), event).await
        }
    })
    .await
}
