//! The local Step Functions API driven by the real `aws-sdk-sfn` client with
//! only `endpoint_url` set: state machine CRUD, idempotent StartExecution,
//! callbacks, history paging, stop, validation, AWS error names, and a
//! malformed request that gets a clear 400 while the server keeps serving.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use aws_sdk_sfn::error::ProvideErrorMetadata;
use aws_sdk_sfn::Client;
use certops_tests::eventually::eventually_async;
use certops_tests::process::{start_serve, Running};
use serde_json::{json, Value};
use std::time::Duration;

const ROLE: &str = "arn:aws:iam::123456789012:role/certops-local";

async fn client(server: &Running) -> Client {
    certops_tests::process::sfn_client(&server.url())
}

fn callback_definition() -> String {
    json!({
        "StartAt": "Approve",
        "States": {
            "Approve": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": "noop", "Payload": {"token.$": "$$.Task.Token", "cert.$": "$.cert"}},
                "TimeoutSeconds": 300,
                "Catch": [{"ErrorEquals": ["ApprovalRejected"], "ResultPath": "$.rejection", "Next": "Rejected"}],
                "Next": "Done"
            },
            "Rejected": {"Type": "Fail", "Error": "NotApproved", "Cause": "the change authority rejected it"},
            "Done": {"Type": "Succeed"}
        }
    })
    .to_string()
}

/// Reads the task token the way an operator would on AWS: from the TaskScheduled event's parameters.
async fn token_of(c: &Client, exec: &str) -> String {
    eventually_async(
        &format!("a TaskScheduled event with a token for {exec}"),
        Duration::from_secs(10),
        || async move {
            let h = c
                .get_execution_history()
                .execution_arn(exec)
                .send()
                .await
                .expect("history");
            h.events()
                .iter()
                .filter_map(|e| e.task_scheduled_event_details())
                .map(|d| serde_json::from_str::<Value>(d.parameters()).expect("parameters json"))
                .find_map(|p| p["Payload"]["token"].as_str().map(str::to_string))
        },
    )
    .await
}

async fn wait_status(
    c: &Client,
    exec: &str,
    want: &str,
) -> aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput {
    eventually_async(
        &format!("{exec} reaching {want}"),
        Duration::from_secs(10),
        || async move {
            let d = c
                .describe_execution()
                .execution_arn(exec)
                .send()
                .await
                .expect("describe");
            (d.status().as_str() == want).then_some(d)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_drives_state_machines_and_callbacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_serve(dir.path());
    let c = client(&server).await;

    // Create, describe, list, and the idempotent re-create.
    let def = callback_definition();
    let created = c
        .create_state_machine()
        .name("renewal")
        .definition(&def)
        .role_arn(ROLE)
        .send()
        .await
        .expect("create");
    let arn = created.state_machine_arn().to_string();
    assert_eq!(
        arn,
        "arn:aws:states:us-east-1:123456789012:stateMachine:renewal"
    );
    let again = c
        .create_state_machine()
        .name("renewal")
        .definition(&def)
        .role_arn(ROLE)
        .send()
        .await
        .expect("same create");
    assert_eq!(again.state_machine_arn(), arn);
    let conflict = c
        .create_state_machine()
        .name("renewal")
        .definition(json!({"StartAt": "X", "States": {"X": {"Type": "Succeed"}}}).to_string())
        .role_arn(ROLE)
        .send()
        .await
        .expect_err("different definition under the same name");
    assert_eq!(conflict.code(), Some("StateMachineAlreadyExists"));
    let d = c
        .describe_state_machine()
        .state_machine_arn(&arn)
        .send()
        .await
        .expect("describe sm");
    assert_eq!(d.name(), "renewal");
    assert_eq!(d.definition(), def);
    // serve also registers the renewal workflow itself.
    let list = c.list_state_machines().send().await.expect("list");
    let mut names: Vec<&str> = list.state_machines().iter().map(|m| m.name()).collect();
    names.sort();
    assert_eq!(names, ["cert-renewal", "renewal"]);

    // Start: idempotent by name while running with the same input.
    let input = json!({"cert": "shop.example.com"}).to_string();
    let s1 = c
        .start_execution()
        .state_machine_arn(&arn)
        .name("CHG0001")
        .input(&input)
        .send()
        .await
        .expect("start");
    let s2 = c
        .start_execution()
        .state_machine_arn(&arn)
        .name("CHG0001")
        .input(&input)
        .send()
        .await
        .expect("same start");
    assert_eq!(s1.execution_arn(), s2.execution_arn());
    let other_input = c
        .start_execution()
        .state_machine_arn(&arn)
        .name("CHG0001")
        .input(json!({"cert": "other"}).to_string())
        .send()
        .await
        .expect_err("same name, different input");
    assert_eq!(other_input.code(), Some("ExecutionAlreadyExists"));

    // Callback success completes it; the token is single-use.
    let exec = s1.execution_arn().to_string();
    let token = token_of(&c, &exec).await;
    c.send_task_heartbeat()
        .task_token(&token)
        .send()
        .await
        .expect("heartbeat");
    c.send_task_success()
        .task_token(&token)
        .output(r#"{"approvedBy":"cab-alice"}"#)
        .send()
        .await
        .expect("success");
    let done = wait_status(&c, &exec, "SUCCEEDED").await;
    assert!(done.stop_date().is_some());
    let reused = c
        .send_task_success()
        .task_token(&token)
        .output("{}")
        .send()
        .await
        .expect_err("token reuse");
    assert!(
        matches!(reused.code(), Some("TaskTimedOut") | Some("InvalidToken")),
        "{:?}",
        reused.code()
    );
    let closed = c
        .start_execution()
        .state_machine_arn(&arn)
        .name("CHG0001")
        .input(&input)
        .send()
        .await
        .expect_err("closed name");
    assert_eq!(closed.code(), Some("ExecutionAlreadyExists"));

    // History: AWS types, paging with nextToken, reverse order.
    let full = c
        .get_execution_history()
        .execution_arn(&exec)
        .send()
        .await
        .expect("history");
    let types: Vec<String> = full
        .events()
        .iter()
        .map(|e| e.r#type().as_str().to_string())
        .collect();
    assert_eq!(
        types,
        [
            "ExecutionStarted",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskStarted",
            "TaskSubmitted",
            "TaskSucceeded",
            "TaskStateExited",
            "SucceedStateEntered",
            "SucceedStateExited",
            "ExecutionSucceeded"
        ]
    );
    let mut paged = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = c
            .get_execution_history()
            .execution_arn(&exec)
            .max_results(3)
            .set_next_token(next.clone())
            .send()
            .await
            .expect("page");
        paged.extend(page.events().iter().map(|e| e.id()));
        next = page.next_token().map(str::to_string);
        if next.is_none() {
            break;
        }
    }
    assert_eq!(paged, (1..=10).collect::<Vec<i64>>());
    let rev = c
        .get_execution_history()
        .execution_arn(&exec)
        .reverse_order(true)
        .max_results(1)
        .send()
        .await
        .expect("rev");
    assert_eq!(rev.events()[0].r#type().as_str(), "ExecutionSucceeded");

    // Callback failure routes through Catch to a Fail state.
    let s3 = c
        .start_execution()
        .state_machine_arn(&arn)
        .name("CHG0002")
        .input(&input)
        .send()
        .await
        .expect("start 2");
    let t3 = token_of(&c, s3.execution_arn()).await;
    c.send_task_failure()
        .task_token(&t3)
        .error("ApprovalRejected")
        .cause("outside window")
        .send()
        .await
        .expect("failure");
    let failed = wait_status(&c, s3.execution_arn(), "FAILED").await;
    assert_eq!(failed.error(), Some("NotApproved"));

    // Stop a waiting execution.
    let s4 = c
        .start_execution()
        .state_machine_arn(&arn)
        .name("CHG0003")
        .input(&input)
        .send()
        .await
        .expect("start 3");
    token_of(&c, s4.execution_arn()).await;
    c.stop_execution()
        .execution_arn(s4.execution_arn())
        .error("Operator")
        .cause("manual stop")
        .send()
        .await
        .expect("stop");
    let aborted = wait_status(&c, s4.execution_arn(), "ABORTED").await;
    assert_eq!(aborted.error(), Some("Operator"));
    let listed = c
        .list_executions()
        .state_machine_arn(&arn)
        .send()
        .await
        .expect("list executions");
    assert_eq!(listed.executions().len(), 3);
    let only_failed = c
        .list_executions()
        .state_machine_arn(&arn)
        .status_filter(aws_sdk_sfn::types::ExecutionStatus::Failed)
        .send()
        .await
        .expect("filtered");
    assert_eq!(only_failed.executions().len(), 1);

    // Validation and AWS error names.
    let v = c
        .validate_state_machine_definition()
        .definition(
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}})
                .to_string(),
        )
        .send()
        .await
        .expect("validate");
    assert_eq!(v.result().as_str(), "FAIL");
    assert!(v.diagnostics()[0].message().contains("Nowhere"));
    let bad = c
        .create_state_machine()
        .name("broken")
        .definition(r#"{"StartAt": "A", "States": {"A": {"Type": "Task", "End": true}}}"#)
        .role_arn(ROLE)
        .send()
        .await
        .expect_err("invalid definition");
    assert_eq!(bad.code(), Some("InvalidDefinition"));
    let missing = c
        .describe_execution()
        .execution_arn("arn:aws:states:us-east-1:123456789012:execution:renewal:nope")
        .send()
        .await
        .expect_err("missing execution");
    assert_eq!(missing.code(), Some("ExecutionDoesNotExist"));
    let no_sm = c
        .start_execution()
        .state_machine_arn("arn:aws:states:us-east-1:123456789012:stateMachine:nope")
        .send()
        .await
        .expect_err("missing sm");
    assert_eq!(no_sm.code(), Some("StateMachineDoesNotExist"));
    let bad_token = c
        .send_task_success()
        .task_token("not-a-token")
        .output("{}")
        .send()
        .await
        .expect_err("bad token");
    assert_eq!(bad_token.code(), Some("InvalidToken"));
    let bad_output = c
        .send_task_success()
        .task_token("x")
        .output("{not json")
        .send()
        .await
        .expect_err("bad output");
    assert_eq!(bad_output.code(), Some("InvalidOutput"));

    // A malformed body: refused unsigned; signed, a clear 400, and the server keeps serving.
    let raw = reqwest_free_post(server.port, "AWSStepFunctions.StartExecution", b"{oops").await;
    assert!(raw.starts_with("HTTP/1.1 403"), "{raw}");
    let (akid, secret) = certops_tests::process::operator_credentials(server.port);
    let (status, raw) = certops_tests::process::sigv4_post(
        server.port,
        &akid,
        &secret,
        chrono::Utc::now(),
        "AWSStepFunctions.StartExecution",
        "{oops",
    );
    assert_eq!(status, 400, "{raw}");
    assert!(raw.contains("SerializationException"), "{raw}");
    c.list_state_machines().send().await.expect("still serving");

    // Update and delete.
    c.update_state_machine()
        .state_machine_arn(&arn)
        .definition(json!({"StartAt": "X", "States": {"X": {"Type": "Succeed"}}}).to_string())
        .send()
        .await
        .expect("update");
    c.delete_state_machine()
        .state_machine_arn(&arn)
        .send()
        .await
        .expect("delete");
    let gone = c
        .describe_state_machine()
        .state_machine_arn(&arn)
        .send()
        .await
        .expect_err("deleted");
    assert_eq!(gone.code(), Some("StateMachineDoesNotExist"));
}

/// A raw HTTP/1.1 POST (so the test controls the exact bytes).
async fn reqwest_free_post(port: u16, target: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: {target}\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(body).await.expect("write body");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}
