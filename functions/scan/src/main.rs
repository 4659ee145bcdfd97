//! Lambda entry point of `scan`: the EventBridge schedule fans the inventory
//! out as SQS batches; SQS batch events probe them and report partial batch
//! failures per message. A completed schedule prints the `certops`/`ScanCompleted`
//! metric (Embedded Metric Format) the dead-man's-switch alarm watches.

use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    certops_lambda::run(|deps, event: Value| async move {
        let event = certops_fn_scan::ScanEvent::from_value(event)?;
        let (answer, metric) = certops_fn_scan::handle_event(&deps, event).await?;
        if let Some(metric) = metric {
            // The dead-man's switch counts these; stdout is what CloudWatch reads EMF from.
            println!("{metric}");
        }
        Ok::<_, certops_core::Error>(answer)
    })
    .await
}
