//! Approvals in Slack: the Block Kit message goes to the approval channel through
//! `chat.postMessage`, a button click arrives as a `block_actions` interaction whose `v0`
//! signature covers the timestamp and the exact body, and the approver is the signed
//! payload's `user.id`. After the decision `chat.update` shows who and when. Every forged,
//! stale, tampered or unauthorised click leaves the execution waiting with nothing recorded.

use certops_core::ports::Clock;
use certops_tests::chat::slack_api::{sign, SlackApi};
use certops_tests::chat::wired_stack::{chat_world, ChatWorld, SIGNING_SECRET};
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

/// Polls until chat.update has been called `n` times.
async fn updates(cw: &ChatWorld, n: usize) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let u: Vec<_> = cw
            .slack
            .calls()
            .into_iter()
            .filter(|c| c.method == "chat.update")
            .map(|c| c.body)
            .collect();
        if u.len() >= n {
            return u;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "chat.update not called {n} times: {u:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

    let done = cw
        .world
        .stack
        .wait(&exec, Duration::from_secs(90))
        .await
        .expect("done");
    assert_eq!(
        done.status.as_str(),
        "SUCCEEDED",
        "{:?} {:?}",
        done.error,
        done.cause
    );
    let ticket = cw.ticket(&id).await;
    assert_eq!(ticket.approved_by.as_deref(), Some("cab-alice@example.com"));
    let at = ticket.approved_at.expect("approved_at");
    assert!(at >= t0 && at <= cw.now());
    assert!(ticket.work_notes.iter().any(|n| n
        .text
        .contains("approved in Slack by cab-alice@example.com")
        && n.text.contains("U0ALICE")));
    let audit = cw.audit(&exec).await;
    assert!(audit
        .iter()
        .any(|r| r.actor == "chat:slack" && r.summary["attempt"]["platformUser"] == "U0ALICE"));
    certops_core::verify_chain(&audit).expect("chain");

    // Replayed interaction (fresh signature, same click): one SendTaskSuccess, nothing new.
    let before = cw.audit(&exec).await.len();
    assert_eq!(click(&cw, &body, 1).await, 200);
    updates(&cw, 2).await;
    assert_eq!(
        cw.task_successes(&exec),
        1,
        "replay completed the task twice"
    );
    // The replay is refused as a reuse, and the refusal is audited; no second decision.
    let added: Vec<_> = cw.audit(&exec).await.into_iter().skip(before).collect();
    assert!(
        added.iter().any(|r| r.summary.get("refused").is_some()),
        "the replay's refusal is audited: {added:?}"
    );
    assert!(
        added.iter().all(|r| r.summary.get("decision").is_none()),
        "a replay records no second decision: {added:?}"
    );
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
    let done = cw
        .world
        .stack
        .wait(&exec, Duration::from_secs(90))
        .await
        .expect("done");
    assert_eq!(
        done.status.as_str(),
        "SUCCEEDED",
        "{:?} {:?}",
        done.error,
        done.cause
    );
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
    let done = cw
        .world
        .stack
        .wait(&exec, Duration::from_secs(90))
        .await
        .expect("done");
    assert_eq!(
        done.status.as_str(),
        "SUCCEEDED",
        "{:?} {:?}",
        done.error,
        done.cause
    );
    assert_eq!(
        cw.ticket(&id).await.approved_by.as_deref(),
        Some("cab-alice@example.com")
    );
}
