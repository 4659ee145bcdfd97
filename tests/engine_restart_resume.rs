//! Durability: kill `certops serve` (SIGKILL) while an execution sleeps in a
//! Wait state and again while it waits for a callback; after each restart it
//! resumes, and a SendTaskSuccess for the token issued before the crash
//! completes it. History stays contiguous across the crashes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use aws_sdk_sfn::Client;
use certops_tests::process::{start_serve, Running};
use serde_json::{json, Value};
use std::time::Duration;

fn client(server: &Running) -> Client {
    certops_tests::process::sfn_client(&server.url())
}

async fn history_types(c: &Client, exec: &str) -> Vec<(i64, String, Option<String>)> {
    let h = c
        .get_execution_history()
        .execution_arn(exec)
        .max_results(1000)
        .send()
        .await
        .expect("history");
    h.events()
        .iter()
        .map(|e| {
            let token = e
                .task_scheduled_event_details()
                .and_then(|d| serde_json::from_str::<Value>(d.parameters()).ok())
                .and_then(|p| p["Payload"]["token"].as_str().map(str::to_string));
            (e.id(), e.r#type().as_str().to_string(), token)
        })
        .collect()
}

async fn status(c: &Client, exec: &str) -> String {
    c.describe_execution()
        .execution_arn(exec)
        .send()
        .await
        .expect("describe")
        .status()
        .as_str()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_resume_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = start_serve(dir.path());
    let c = client(&server);
    let def = json!({
        "StartAt": "Settle",
        "States": {
            "Settle": {"Type": "Wait", "Seconds": 2, "Next": "Approve"},
            "Approve": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": "noop", "Payload": {"token.$": "$$.Task.Token"}},
                "ResultPath": "$.approval",
                "Next": "Done"
            },
            "Done": {"Type": "Succeed"}
        }
    });
    let sm = c
        .create_state_machine()
        .name("resume")
        .definition(def.to_string())
        .role_arn("arn:aws:iam::123456789012:role/certops-local")
        .send()
        .await
        .expect("create");
    let exec = c
        .start_execution()
        .state_machine_arn(sm.state_machine_arn())
        .name("CHG0042")
        .input(r#"{"cert":"shop.example.com"}"#)
        .send()
        .await
        .expect("start")
        .execution_arn()
        .to_string();
    assert!(history_types(&c, &exec)
        .await
        .iter()
        .any(|(_, t, _)| t == "WaitStateEntered"));

    // Crash while it sleeps in the Wait state.
    server.kill();
    drop(c);
    let server2 = start_serve(dir.path());
    let c = client(&server2);
    assert_eq!(status(&c, &exec).await, "RUNNING");

    // The Wait ends on time after the restart and the task is scheduled.
    let (cr, er) = (&c, &exec);
    let token = certops_tests::eventually::eventually_async(
        "the Wait state resumed after the crash and scheduled the task",
        Duration::from_secs(6),
        || async move {
            history_types(cr, er)
                .await
                .into_iter()
                .find_map(|(_, _, t)| t)
        },
    )
    .await;

    // Crash again while it waits for the callback.
    drop(c);
    drop(server2);
    let server3 = start_serve(dir.path());
    let c = client(&server3);
    assert_eq!(status(&c, &exec).await, "RUNNING");
    c.send_task_success()
        .task_token(&token)
        .output(r#"{"approvedBy":"cab-alice"}"#)
        .send()
        .await
        .expect("the token issued before the crash is still valid");
    let (cr, er) = (&c, &exec);
    let final_status = certops_tests::eventually::eventually_async(
        "the execution ending after the callback",
        Duration::from_secs(6),
        || async move { Some(status(cr, er).await).filter(|s| s != "RUNNING") },
    )
    .await;
    assert_eq!(final_status, "SUCCEEDED");
    let d = c
        .describe_execution()
        .execution_arn(&exec)
        .send()
        .await
        .expect("describe");
    let out: Value = serde_json::from_str(d.output().expect("output")).expect("json");
    assert_eq!(out["approval"]["approvedBy"], "cab-alice");

    // One contiguous history across both crashes: no lost or repeated events.
    let h = history_types(&c, &exec).await;
    let ids: Vec<i64> = h.iter().map(|(i, _, _)| *i).collect();
    assert_eq!(ids, (1..=h.len() as i64).collect::<Vec<_>>());
    let types: Vec<&str> = h.iter().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "ExecutionStarted",
            "WaitStateEntered",
            "WaitStateExited",
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
    drop(server);
}
