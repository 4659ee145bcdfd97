//! The `Workflow` contract (shared/core/src/ports.rs): `start` is idempotent by name (the
//! same name and input give the same execution and `true`, while it runs and after it
//! ended; another input under the name is a `Conflict`); `send_success` and `send_failure`
//! complete the waiting task; a token that is unknown or already answered is a `Conflict`
//! whose message does not carry the token.
//!
//! The state machine under test is [`callback_definition`]: one callback task whose result
//! lands in `$.decision`. Each backend supplies the task resource and parameters it can
//! run, with the task token somewhere under a key named `token`.

use std::future::Future;

use certops_core::ports::Workflow;
use serde_json::{json, Value};

/// How an execution ended (or `RUNNING`).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `SUCCEEDED`, `FAILED`, … (Step Functions' names).
    pub status: String,
    /// The output on success.
    pub output: Option<Value>,
    /// The error name on failure.
    pub error: Option<String>,
}

/// How a test looks into executions, from outside the port.
pub trait WorkflowProbe: Sync {
    /// The task token of the execution's waiting task (waits until it is issued).
    fn task_token(&self, execution: &str) -> impl Future<Output = String> + Send;
    /// Waits until the execution has ended and says how.
    fn outcome(&self, execution: &str) -> impl Future<Output = Outcome> + Send;
}

/// One callback task (`resource`, `parameters`) whose result goes to `$.decision`.
pub fn callback_definition(resource: &str, parameters: Value) -> String {
    json!({
        "Comment": "certops workflow contract: one callback",
        "StartAt": "AwaitApproval",
        "States": {
            "AwaitApproval": {
                "Type": "Task",
                "Resource": resource,
                "Parameters": parameters,
                "ResultPath": "$.decision",
                "TimeoutSeconds": 300,
                "End": true
            }
        }
    })
    .to_string()
}

/// The first string under a key named `token`, anywhere in `value` (task parameters).
pub fn find_token(value: &Value) -> Option<String> {
    match value {
        Value::Object(m) => m
            .get("token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| m.values().find_map(find_token)),
        Value::Array(a) => a.iter().find_map(find_token),
        // Parameters are sometimes carried as JSON text (an SQS MessageBody).
        Value::String(s) => serde_json::from_str::<Value>(s)
            .ok()
            .filter(|v| v.is_object())
            .and_then(|v| find_token(&v)),
        _ => None,
    }
}

fn assert_conflict(what: &str, err: certops_core::Error, token: &str) {
    assert_eq!(err.name(), "Conflict", "{what}: {err}");
    assert!(
        !err.to_string().contains(token),
        "{what} quotes the token: {err}"
    );
}

/// Runs the workflow contract. `names` prefixes the execution names (unique per run).
/// `second` starts the execution that `send_failure` ends; it may be `workflow` itself, or
/// the same adapter over a second, identical state machine (moto's Step Functions fails
/// to start a second execution of a state machine that already has one).
pub async fn workflow_contract(
    workflow: &dyn Workflow,
    second: &dyn Workflow,
    probe: &impl WorkflowProbe,
    names: &str,
) {
    // Start is idempotent by name and input.
    let approve = format!("{names}-approve");
    let input = json!({"trigger": format!("scan:{names}:2026-12-01"), "cert": "shop-www"});
    let (arn, existed) = workflow.start(&approve, &input).await.expect("start");
    assert!(!existed, "a new name starts a new execution");
    assert!(arn.ends_with(&format!(":{approve}")), "{arn}");
    let (again, existed) = workflow.start(&approve, &input).await.expect("start again");
    assert_eq!(
        (again.as_str(), existed),
        (arn.as_str(), true),
        "same name and input while running: the existing execution"
    );
    let err = workflow
        .start(&approve, &json!({"trigger": "another"}))
        .await
        .expect_err("same name, other input");
    assert_eq!(err.name(), "Conflict", "{err}");

    // send_success completes the task with its output.
    let token = probe.task_token(&arn).await;
    workflow
        .send_success(
            &token,
            &json!({"approved": true, "approver": "dana@example.com"}),
        )
        .await
        .expect("send_success");
    let done = probe.outcome(&arn).await;
    assert_eq!(done.status, "SUCCEEDED", "{done:?}");
    let output = done.output.expect("output");
    assert_eq!(
        output["decision"]["approver"], "dana@example.com",
        "{output}"
    );
    assert_eq!(output["cert"], "shop-www", "{output}");

    // An answered token is spent; the ended execution still answers its name.
    let err = workflow
        .send_success(&token, &json!({}))
        .await
        .expect_err("a spent token");
    assert_conflict("send_success with a spent token", err, &token);
    assert_eq!(
        workflow
            .start(&approve, &input)
            .await
            .expect("start after the end"),
        (arn.clone(), true),
        "same name and input after the end: still the existing execution"
    );

    // send_failure fails the task with a routable error name.
    let reject = format!("{names}-reject");
    let (arn, existed) = second.start(&reject, &input).await.expect("start");
    assert!(!existed);
    let token = probe.task_token(&arn).await;
    second
        .send_failure(&token, "ApprovalRejected", "not in this change window")
        .await
        .expect("send_failure");
    let done = probe.outcome(&arn).await;
    assert_eq!(done.status, "FAILED", "{done:?}");
    assert_eq!(done.error.as_deref(), Some("ApprovalRejected"), "{done:?}");
    let err = workflow
        .send_failure(&token, "ApprovalRejected", "again")
        .await
        .expect_err("a spent token");
    assert_conflict("send_failure with a spent token", err, &token);

    // Tokens that were never issued.
    let bogus = format!("{names}-never-issued-token");
    let err = workflow
        .send_success(&bogus, &json!({}))
        .await
        .expect_err("an unknown token");
    assert_conflict("send_success with an unknown token", err, &bogus);
    let err = workflow
        .send_failure(&bogus, "ApprovalRejected", "x")
        .await
        .expect_err("an unknown token");
    assert_conflict("send_failure with an unknown token", err, &bogus);
}
