//! Lambda entry point of `scan`: the EventBridge schedule fans the inventory
//! out as SQS batches; SQS batch events probe them and report partial batch
//! failures per message. A completed schedule prints the `certops`/`ScanCompleted`
//! metric (Embedded Metric Format) the dead-man's-switch alarm watches.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::SqsEvent;
use certops_core::Error;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    certops_lambda::run(|deps, event: Value| async move {
        if event.get("Records").is_some() {
            let sqs: SqsEvent = serde_json::from_value(event)
                .map_err(|e| Error::InvalidInput(format!("SQS event: {e}")))?;
            let out = certops_fn_scan::handle_batch(&deps, sqs).await;
            return serde_json::to_value(out).map_err(|e| Error::InvalidInput(e.to_string()));
        }
        let scheduled: EventBridgeEvent<Value> = serde_json::from_value(event)
            .map_err(|e| Error::InvalidInput(format!("EventBridge event: {e}")))?;
        let out = certops_fn_scan::handle_schedule(&deps, scheduled).await?;
        // The dead-man's switch counts these; stdout is what CloudWatch reads EMF from.
        println!(
            "{}",
            certops_fn_scan::scan_completed_metric(&out, deps.clock.now())
        );
        serde_json::to_value(out).map_err(|e| Error::InvalidInput(e.to_string()))
    })
    .await
}
