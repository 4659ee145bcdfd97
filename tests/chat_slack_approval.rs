//! Approvals in Slack: the Block Kit message goes to the approval channel through
//! `chat.postMessage`, a button click arrives as a `block_actions` interaction whose `v0`
//! signature covers the timestamp and the exact body, and the approver is the signed
//! payload's `user.id`. After the decision `chat.update` shows who and when. Every forged,
//! stale, tampered or unauthorised click leaves the execution waiting with nothing recorded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_core::ports::Clock;
use certops_tests::chat::slack_api::{sign, SlackApi};
use certops_tests::chat::wired_stack::{chat_world, ChatWorld, SIGNING_SECRET};
use certops_tests::world::succeeded;
use std::time::Duration;

async fn pending(cw: &ChatWorld) -> (String, String, String) {
    let exec = cw.start_renewal().await;
    let id = cw.wait_for_cards(&exec).await;
    let ts = cw
        .slack
        .calls()
        .into_iter()
        .find(|c| c.method == "chat.postMessage")
        .expect("posted")
        .ts;
    (exec, id, ts)
}

/// Posts `body` signed at `offset` seconds from the (pinned) wall clock.
async fn click(cw: &ChatWorld, body: &str, offset: i64) -> u16 {
    let ts = cw.wall.now().timestamp() + offset;
    let sig = sign(SIGNING_SECRET, ts, body);
    cw.post_slack(body, Some(&ts.to_string()), Some(&sig)).await
}

/// Waits until chat.update has been called `n` times.
async fn updates(cw: &ChatWorld, n: usize) -> Vec<serde_json::Value> {
    certops_tests::eventually::eventually_async(
        &format!("chat.update called {n} times"),
        Duration::from_secs(10),
        || async move {
            let u: Vec<_> = cw
                .slack
                .calls()
                .into_iter()
                .filter(|c| c.method == "chat.update")
                .map(|c| c.body)
                .collect();
            (u.len() >= n).then_some(u)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_clicked_in_slack_completes_the_renewal_and_names_the_approver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cw = chat_world(dir.path()).await;
    let (exec, id, ts) = pending(&cw).await;

    let posted = cw
        .slack
        .calls()
        .into_iter()
        .find(|c| c.method == "chat.postMessage")
        .expect("posted");
    let blocks = posted.body["blocks"].as_array().expect("blocks");
    let buttons = blocks
        .iter()
        .find(|b| b["type"] == "actions")
        .expect("actions block");
    assert_eq!(buttons["elements"][0]["action_id"], "approve");
    assert_eq!(buttons["elements"][0]["value"], id.as_str());
    assert_eq!(buttons["elements"][1]["action_id"], "reject");
    let text = posted.body.to_string();
    for fact in [
        "Ticket",
        "Environment",
        "Targets",
        "Change window",
        "Path",
        "Expires",
        "Requested by",
        "Plan hash",
    ] {
        assert!(text.contains(fact), "message lacks {fact}");
    }
    let sealed = cw.approval(&id).await["sealedToken"]
        .as_str()
        .expect("sealed")
        .to_string();
    assert!(!text.contains(&sealed), "message carries the token");

    let t0 = cw.now();
    let body = SlackApi::interaction("U0ALICE", "approve", &id, &ts);
    assert_eq!(click(&cw, &body, 0).await, 200);
    let u = updates(&cw, 1).await;
    assert_eq!(u[0]["ts"], ts.as_str());
    let shown = u[0].to_string();
    assert!(
        shown.contains("Approved by cab-alice@example.com"),
        "{shown}"
    );
    assert!(
        !u[0]["blocks"]
            .as_array()
            .expect("blocks")
            .iter()
            .any(|b| b["type"] == "actions"),
        "buttons left on a decided message"
    );

    cw.assert_approved_by_alice(&exec, &id, t0, ("slack", "Slack", "U0ALICE"))
        .await;

    // Replayed interaction (fresh signature, same click): one SendTaskSuccess, nothing new.
    let before = cw.audit(&exec).await.len();
    assert_eq!(click(&cw, &body, 1).await, 200);
    updates(&cw, 2).await;
    cw.assert_replay_refused(&exec, before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_tampered_and_unauthorised_slack_clicks_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cw = chat_world(dir.path()).await;
    let (exec, id, ts) = pending(&cw).await;
    let body = SlackApi::interaction("U0ALICE", "approve", &id, &ts);
    let audit_len = cw.audit(&exec).await.len();
    let now = cw.wall.now().timestamp();

    // Outside the ±300 s window (301 s either way) — refused before anything is read.
    for offset in [301, -301] {
        assert_eq!(click(&cw, &body, offset).await, 401, "offset {offset}");
        cw.assert_untouched(&exec, &id, Some(audit_len), &format!("offset {offset}"))
            .await;
    }
    // A signature over another body, with another secret, malformed, or absent.
    let tampered = body.replace("U0ALICE", "U0MALLORY");
    let sig = sign(SIGNING_SECRET, now, &body);
    for (case, b, t, s) in [
        (
            "tampered body",
            tampered.as_str(),
            Some(now.to_string()),
            Some(sig.clone()),
        ),
        (
            "wrong secret",
            body.as_str(),
            Some(now.to_string()),
            Some(sign("not-the-secret", now, &body)),
        ),
        (
            "timestamp not the signed one",
            body.as_str(),
            Some((now + 1).to_string()),
            Some(sig.clone()),
        ),
        ("no signature", body.as_str(), Some(now.to_string()), None),
        ("no timestamp", body.as_str(), None, Some(sig.clone())),
        (
            "v1 scheme",
            body.as_str(),
            Some(now.to_string()),
            Some(sig.replace("v0=", "v1=")),
        ),
    ] {
        assert_eq!(
            cw.post_slack(b, t.as_deref(), s.as_deref()).await,
            401,
            "{case}"
        );
        cw.assert_untouched(&exec, &id, Some(audit_len), case).await;
    }
    assert!(
        cw.slack.calls().iter().all(|c| c.method != "chat.update"),
        "a refused request updated the message"
    );

    // Signed, but by someone outside the change authority (mallory) or unlisted.
    assert_eq!(
        click(
            &cw,
            &SlackApi::interaction("U0MALLORY", "approve", &id, &ts),
            -299
        )
        .await,
        200
    );
    let u = updates(&cw, 1).await;
    assert!(u[0].to_string().contains("Refused"), "{}", u[0]);
    assert!(
        u[0]["blocks"]
            .as_array()
            .expect("blocks")
            .iter()
            .any(|b| b["type"] == "actions"),
        "buttons removed after a refusal"
    );
    cw.assert_untouched(&exec, &id, None, "outsider").await;
    assert!(cw
        .audit(&exec)
        .await
        .iter()
        .any(|r| r.actor == "chat:slack" && r.summary["refused"] == "NotInChangeAuthority"));
    assert_eq!(
        click(
            &cw,
            &SlackApi::interaction("U0NOBODY", "approve", &id, &ts),
            299
        )
        .await,
        200
    );
    updates(&cw, 2).await;
    cw.assert_untouched(&exec, &id, None, "unlisted").await;
    // From another workspace: refused outright.
    let other = body.replace("T0CERTOPS", "T0EVIL");
    assert_eq!(click(&cw, &other, 0).await, 403);
    cw.assert_untouched(&exec, &id, None, "other workspace")
        .await;

    // ±299 s is inside the window: cab-alice's click then decides.
    assert_eq!(click(&cw, &body, 299).await, 200);
    succeeded(&cw.world.stack, &exec, Duration::from_secs(90)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_requester_cannot_approve_in_slack_and_a_rejection_ends_the_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cw = chat_world(dir.path()).await;
    let exec = cw.start_renewal_requested_by("olivia@example.com").await;
    let id = cw.wait_for_cards(&exec).await;
    let ts = cw
        .slack
        .calls()
        .into_iter()
        .find(|c| c.method == "chat.postMessage")
        .expect("posted")
        .ts;
    // olivia, as her Slack id, approving her own change.
    assert_eq!(
        click(
            &cw,
            &SlackApi::interaction("U0OLIVIA", "approve", &id, &ts),
            -299
        )
        .await,
        200
    );
    updates(&cw, 1).await;
    cw.assert_untouched(&exec, &id, None, "self-approval").await;
    assert!(cw
        .audit(&exec)
        .await
        .iter()
        .any(|r| r.summary["refused"] == "SelfApproval"));
    // cab-alice rejects: the execution ends not approved, and the message says so.
    assert_eq!(
        click(
            &cw,
            &SlackApi::interaction("U0ALICE", "reject", &id, &ts),
            0
        )
        .await,
        200
    );
    let u = updates(&cw, 2).await;
    assert!(
        u[1].to_string()
            .contains("Rejected by cab-alice@example.com"),
        "{}",
        u[1]
    );
    let done = cw
        .world
        .stack
        .wait(&exec, Duration::from_secs(90))
        .await
        .expect("done");
    assert_eq!(done.status.as_str(), "FAILED");
    assert_eq!(cw.task_successes(&exec), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_function_decides_a_signed_base64_interaction_and_refuses_a_forged_one() {
    use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
    use base64::Engine;
    let dir = tempfile::tempdir().expect("tempdir");
    let cw = chat_world(dir.path()).await;
    let (exec, id, ts) = pending(&cw).await;
    let body = SlackApi::interaction("U0ALICE", "approve", &id, &ts);
    let now = cw.wall.now().timestamp();
    // As API Gateway (payload 2.0) delivers a form post: base64-encoded.
    let request = |sig: &str| {
        let mut req = ApiGatewayV2httpRequest {
            raw_path: Some("/slack/interactions".into()),
            body: Some(base64::engine::general_purpose::STANDARD.encode(&body)),
            is_base64_encoded: true,
            ..Default::default()
        };
        req.headers.insert(
            "x-slack-request-timestamp",
            now.to_string().parse().expect("header"),
        );
        req.headers
            .insert("x-slack-signature", sig.parse().expect("header"));
        req
    };
    let forged =
        certops_fn_chat_approval::handle(&cw.approvals, request(&sign("guess", now, &body))).await;
    assert_eq!(forged.status_code, 401);
    cw.assert_untouched(&exec, &id, None, "forged via the HTTP API")
        .await;
    let ok =
        certops_fn_chat_approval::handle(&cw.approvals, request(&sign(SIGNING_SECRET, now, &body)))
            .await;
    assert_eq!(ok.status_code, 200);
    succeeded(&cw.world.stack, &exec, Duration::from_secs(90)).await;
    assert_eq!(
        cw.ticket(&id).await.approved_by.as_deref(),
        Some("cab-alice@example.com")
    );
}

/// An invocation of the chat-approval Lambda function: `event` handled on a runtime of its
/// own that is dropped as soon as the function answers, as Lambda freezes the sandbox after
/// the response; a task the handler left running is gone with it. Returns the answer and
/// how long it took.
fn invoke_lambda(
    approvals: std::sync::Arc<certops_chatops::inbound::ChatApprovals>,
    event: serde_json::Value,
) -> (serde_json::Value, Duration) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let started = std::time::Instant::now();
        let answer = rt
            .block_on(certops_fn_chat_approval::handle_event(&approvals, event))
            .expect("handled");
        let took = started.elapsed();
        drop(rt);
        (answer, took)
    })
    .join()
    .expect("invocation thread")
}

/// The chat-approval function as a fresh Lambda sandbox builds it.
fn lambda_sandbox(cw: &ChatWorld) -> std::sync::Arc<certops_chatops::inbound::ChatApprovals> {
    lambda_sandbox_with(cw, cw.world.stack.deps.clone())
}

fn lambda_sandbox_with(
    cw: &ChatWorld,
    deps: certops_core::ports::Deps,
) -> std::sync::Arc<certops_chatops::inbound::ChatApprovals> {
    std::sync::Arc::new(
        certops_fn_chat_approval::lambda_approvals(
            deps,
            std::sync::Arc::new(certops_adapters::LocalSecrets),
        )
        .expect("chat routes")
        .with_wall_clock(cw.wall.clone()),
    )
}

/// An ITSM whose writes take `delay` (a slow ServiceNow) over the world's ticket book.
struct SlowItsm {
    inner: std::sync::Arc<dyn certops_core::ports::Itsm>,
    delay: Duration,
}

#[async_trait::async_trait]
impl certops_core::ports::Itsm for SlowItsm {
    async fn open(
        &self,
        ticket: certops_core::ports::NewTicket,
    ) -> Result<certops_core::ports::Ticket, certops_core::Error> {
        self.inner.open(ticket).await
    }
    async fn get(
        &self,
        number: &str,
    ) -> Result<Option<certops_core::ports::Ticket>, certops_core::Error> {
        self.inner.get(number).await
    }
    async fn update(
        &self,
        number: &str,
        author: &str,
        update: certops_core::ports::TicketUpdate,
    ) -> Result<certops_core::ports::Ticket, certops_core::Error> {
        // The fault's definition: this write is slow.
        tokio::time::sleep(self.delay).await;
        self.inner.update(number, author, update).await
    }
    async fn read_record(
        &self,
        number: &str,
    ) -> Result<Option<serde_json::Value>, certops_core::Error> {
        self.inner.read_record(number).await
    }
}

/// The event the SAM template's card-refresh schedule sends (its `Input`).
fn scheduled_event() -> serde_json::Value {
    serde_json::json!({"version": "0", "id": "5f2b7c1e-0000-4000-8000-000000000001",
        "detail-type": "Scheduled Event", "source": "aws.scheduler", "account": "123456789012",
        "time": "2026-12-07T10:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:scheduler:us-east-1:123456789012:schedule/default/certops-chat-card-refresh"],
        "detail": {}})
}

/// On Lambda nothing runs after the response, so the function records the decision before
/// it answers Slack: within the 3 s budget even while Slack's Web API takes 6 s per
/// `chat.update` and the ITSM 6 s per write, with the approval spent by the time the
/// answer leaves. What did not fit (the message update, the ticket note) is kept and done
/// by the next card refresh, not lost with the frozen sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lambda_a_click_is_decided_before_the_answer_and_the_rest_is_left_to_the_refresh() {
    use base64::Engine;
    let dir = tempfile::tempdir().expect("tempdir");
    let cw = chat_world(dir.path()).await;
    let (exec, id, ts) = pending(&cw).await;
    cw.slack.slow_updates(Duration::from_secs(6));
    let body = SlackApi::interaction("U0ALICE", "approve", &id, &ts);
    let now = cw.wall.now().timestamp();
    let request = serde_json::json!({
        "version": "2.0", "routeKey": "POST /slack/interactions", "rawPath": "/slack/interactions",
        "rawQueryString": "", "isBase64Encoded": true,
        "headers": {"content-type": "application/x-www-form-urlencoded",
                    "x-slack-request-timestamp": now.to_string(),
                    "x-slack-signature": sign(SIGNING_SECRET, now, &body)},
        "body": base64::engine::general_purpose::STANDARD.encode(&body),
        "requestContext": {"http": {"method": "POST", "path": "/slack/interactions"}},
    });
    let mut slow = cw.world.stack.deps.clone();
    slow.itsm = std::sync::Arc::new(SlowItsm {
        inner: slow.itsm.clone(),
        delay: Duration::from_secs(6),
    });
    let (answer, took) = invoke_lambda(lambda_sandbox_with(&cw, slow), request);
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    // Decided before the answer, not in a task the frozen sandbox would have lost.
    assert_eq!(cw.approval(&id).await["status"], "approved");
    let done = cw
        .world
        .stack
        .wait(&exec, Duration::from_secs(90))
        .await
        .expect("done");
    assert_eq!(done.status.as_str(), "SUCCEEDED", "{:?}", done.error);
    assert_eq!(cw.task_successes(&exec), 1);
    eprintln!("Lambda answered Slack in {took:?} with chat.update and the ITSM taking 6 s");
    let noted = |t: certops_core::ports::Ticket| {
        t.work_notes
            .into_iter()
            .filter(|n| n.text.contains("in Slack by cab-alice@example.com"))
            .count()
    };
    assert_eq!(
        noted(cw.ticket(&id).await),
        0,
        "the note did not fit in the budget"
    );

    // The next scheduled invocation (a fresh sandbox) shows the decision on the message.
    cw.slack.slow_updates(Duration::ZERO);
    let (refreshed, _) = invoke_lambda(lambda_sandbox(&cw), scheduled_event());
    assert_eq!(refreshed["cardsUpdated"], 1, "{refreshed}");
    let u = updates(&cw, 1).await;
    let shown = u.last().expect("an update").to_string();
    assert!(shown.contains("cab-alice@example.com"), "{shown}");
    // The ticket names the Slack approver, once.
    assert_eq!(noted(cw.ticket(&id).await), 1);
    // Nothing left for a second refresh.
    let (again, _) = invoke_lambda(lambda_sandbox(&cw), scheduled_event());
    assert_eq!(again["cardsUpdated"], 0, "{again}");
}

/// On AWS the card of an approval that expired is closed by the scheduled invocation of
/// the chat-approval function, the same refresh `certops serve` runs every minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lambda_the_schedule_closes_the_card_of_an_expired_approval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cw = chat_world(dir.path()).await;
    let (_exec, id, ts) = pending(&cw).await;
    let (early, _) = invoke_lambda(lambda_sandbox(&cw), scheduled_event());
    assert_eq!(early["cardsUpdated"], 0, "nothing to refresh yet: {early}");
    cw.world.clock.advance(chrono::Duration::minutes(6)); // normal approvals expire after 5 minutes
    let (refreshed, _) = invoke_lambda(lambda_sandbox(&cw), scheduled_event());
    assert_eq!(refreshed["cardsUpdated"], 1, "{refreshed}");
    let u = updates(&cw, 1).await;
    assert_eq!(u[0]["ts"], ts.as_str());
    let shown = u[0].to_string();
    assert!(shown.contains("expired"), "{shown}");
    assert!(
        !u[0]["blocks"]
            .as_array()
            .expect("blocks")
            .iter()
            .any(|b| b["type"] == "actions"),
        "buttons left on an expired approval's message"
    );
    let (again, _) = invoke_lambda(lambda_sandbox(&cw), scheduled_event());
    assert_eq!(again["cardsUpdated"], 0, "{again}");
    assert!(cw.approval(&id).await["status"] == "pending");
}
