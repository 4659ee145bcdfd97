//! Approvals in Microsoft Teams: the card goes to the change authority's conversation
//! through the Bot Connector, the Adaptive Card's Approve is an `adaptiveCard/action`
//! invoke whose bearer token the Bot Framework signed, and the approver is who that
//! verified activity says clicked. Every forged, misplaced or unauthorised click leaves
//! the execution waiting with nothing recorded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_tests::chat::bot_framework::{Key, TokenSpec};
use certops_tests::chat::wired_stack::{chat_world, ChatWorld};
use certops_tests::world::succeeded;
use std::time::Duration;

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

async fn pending(cw: &ChatWorld) -> (String, String) {
    let exec = cw.start_renewal().await;
    let id = cw.wait_for_cards(&exec).await;
    (exec, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_clicked_in_teams_completes_the_renewal_and_names_the_approver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cw = chat_world(dir.path()).await;
    let (exec, id) = pending(&cw).await;

    // The card: Adaptive Card 1.5, Action.Execute with an Action.Submit fallback, the facts
    // the approver judges, the approval id — and no task token.
    let posted = cw
        .bot
        .calls()
        .into_iter()
        .find(|c| c.method == "POST")
        .expect("card posted");
    let card = &posted.activity["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["version"], "1.5");
    let actions = card["content"]["actions"].as_array().expect("actions");
    assert_eq!(actions.len(), 2);
    assert_eq!(actions[0]["type"], "Action.Execute");
    assert_eq!(actions[0]["verb"], "approve");
    assert_eq!(actions[0]["fallback"]["type"], "Action.Submit");
    let text = card.to_string();
    for fact in [
        "Ticket",
        "Certificate",
        "Environment",
        "Targets",
        "Change window",
        "Path",
        "Expires",
        "Requested by",
        "Plan hash",
        "local:lb-shop",
        "prod",
    ] {
        assert!(text.contains(fact), "card lacks {fact}: {text}");
    }
    let record = cw.approval(&id).await;
    let sealed = record["sealedToken"].as_str().expect("sealed token");
    assert!(
        !text.contains(sealed) && !text.contains("taskToken"),
        "card carries a token"
    );
    let (tokens, _, _) = cw.bot.counts();
    assert_eq!(tokens, 1, "one bot token for the card");

    // cab-alice clicks Approve in Teams.
    let t0 = cw.now();
    let activity = cw.invoke("aad-alice-0001", "approve", &id);
    let token = cw.bot.token(&cw.bot.valid(&cw.bot.service_url()));
    let (status, reply) = cw.post_teams(Some(&bearer(&token)), &activity).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["statusCode"], 200);
    assert_eq!(reply["type"], "application/vnd.microsoft.card.adaptive");
    let refreshed = reply["value"].to_string();
    assert!(
        refreshed.contains("Approved by cab-alice@example.com"),
        "{refreshed}"
    );
    assert!(
        reply["value"]["actions"].is_null(),
        "decided card still has buttons"
    );
    // Everyone's copy of the card is replaced too.
    let updates: Vec<_> = cw
        .bot
        .calls()
        .into_iter()
        .filter(|c| c.method == "PUT")
        .collect();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].activity_id, posted.activity_id);
    assert!(updates[0]
        .activity
        .to_string()
        .contains("Approved by cab-alice@example.com"));

    // The execution completes; the ticket and the audit say who, where and when.
    cw.assert_approved_by_alice(
        &exec,
        &id,
        t0,
        ("teams", "Microsoft Teams", "aad-alice-0001"),
    )
    .await;

    // The same invoke again (a replay): no second SendTaskSuccess, nothing recorded, the
    // card shows the decision that stands.
    let before = cw.audit(&exec).await.len();
    let token = cw.bot.token(&cw.bot.valid(&cw.bot.service_url()));
    let (status, reply) = cw.post_teams(Some(&bearer(&token)), &activity).await;
    assert_eq!(status, 200);
    assert!(
        reply["value"]
            .to_string()
            .contains("Approved by cab-alice@example.com"),
        "{reply}"
    );
    cw.assert_replay_refused(&exec, before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_misplaced_and_unauthorised_teams_clicks_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cw = chat_world(dir.path()).await;
    let (exec, id) = pending(&cw).await;
    let svc = cw.bot.service_url();
    let activity = cw.invoke("aad-alice-0001", "approve", &id);
    let valid = cw.bot.valid(&svc);
    let with = |f: &dyn Fn(&mut TokenSpec)| {
        let mut s = valid.clone();
        f(&mut s);
        s
    };
    let cases: Vec<(&str, TokenSpec, u16)> = vec![
        (
            "wrong issuer",
            with(&|s| s.issuer = "https://sts.windows.net/evil/".into()),
            401,
        ),
        (
            "wrong audience",
            with(&|s| s.audience = "another-bot".into()),
            401,
        ),
        (
            "expired beyond the 5 min skew",
            with(&|s| {
                s.exp_in = -301 - 5;
                s.nbf_in = -3600
            }),
            401,
        ),
        (
            "nbf in the future beyond the skew",
            with(&|s| s.nbf_in = 301 + 5),
            401,
        ),
        ("unknown kid", with(&|s| s.key = Key::Unpublished), 401),
        ("alg none", with(&|s| s.alg = "none"), 401),
        (
            "HS256 signed with the public key",
            with(&|s| s.alg = "HS256"),
            401,
        ),
        (
            "serviceurl claim for another service",
            with(&|s| s.service_url = "https://smba.trafficmanager.net/evil/".into()),
            403,
        ),
        (
            "key not endorsed for msteams",
            with(&|s| s.key = Key::WebchatOnly),
            403,
        ),
    ];
    let audit_len = cw.audit(&exec).await.len();
    for (case, spec, want) in &cases {
        let token = cw.bot.token(spec);
        let (status, reply) = cw.post_teams(Some(&bearer(&token)), &activity).await;
        assert_eq!(status, *want, "{case}: {reply}");
        cw.assert_untouched(&exec, &id, Some(audit_len), case).await;
    }
    // Within the 5 minutes of skew either way a token still authenticates (here on an
    // approval id that does not exist, so nothing is decided).
    for (exp_in, nbf_in) in [(-240, -3600), (3600, 240)] {
        let t = cw.bot.token(&with(&|s| {
            s.exp_in = exp_in;
            s.nbf_in = nbf_in;
        }));
        let (status, reply) = cw
            .post_teams(
                Some(&bearer(&t)),
                &cw.invoke("aad-alice-0001", "approve", "APR-000000000000"),
            )
            .await;
        assert_eq!(
            (status, reply["statusCode"].as_u64()),
            (200, Some(404)),
            "skew {exp_in}/{nbf_in}: {reply}"
        );
    }
    // No token at all, and a valid token on an activity that claims another serviceUrl.
    let (status, _) = cw.post_teams(None, &activity).await;
    assert_eq!(status, 401, "no token");
    let mut moved = activity.clone();
    moved["serviceUrl"] = serde_json::json!("https://smba.trafficmanager.net/evil/");
    let (status, _) = cw
        .post_teams(Some(&bearer(&cw.bot.token(&valid))), &moved)
        .await;
    assert_eq!(status, 403, "serviceUrl mismatch");
    // A tampered token (claims edited after signing).
    let token = cw.bot.token(&valid);
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[1] = parts[1].chars().rev().collect();
    let (status, _) = cw
        .post_teams(Some(&bearer(&parts.join("."))), &activity)
        .await;
    assert_eq!(status, 401, "tampered token");
    cw.assert_untouched(&exec, &id, Some(audit_len), "no token / moved / tampered")
        .await;
    // The unknown kid refetched the keys, but boundedly: a burst of bogus kids does not
    // turn into a burst of fetches.
    let (_, _, jwks_before) = cw.bot.counts();
    for _ in 0..5 {
        let t = cw.bot.token(&with(&|s| s.key = Key::Unpublished));
        assert_eq!(cw.post_teams(Some(&bearer(&t)), &activity).await.0, 401);
    }
    assert_eq!(
        cw.bot.counts().2,
        jwks_before,
        "unknown kids refetched the JWKS every time"
    );

    // Properly authenticated, but not allowed: the requester of a change cannot approve it
    // (olivia opened the ticket as her Slack id), nor can someone outside the authority.
    // Both are answered on the card with the reason and audited; the task keeps waiting.
    let t = cw.bot.token(&valid);
    let (status, reply) = cw
        .post_teams(
            Some(&bearer(&t)),
            &cw.invoke("aad-mallory-0003", "approve", &id),
        )
        .await;
    assert_eq!(status, 200);
    let text = reply["value"].to_string();
    assert!(
        text.contains("Refused") && text.contains("mallory@example.com"),
        "{text}"
    );
    assert!(
        reply["value"]["actions"].is_array(),
        "buttons gone after a refusal"
    );
    cw.assert_untouched(&exec, &id, None, "outsider").await;
    let audit = cw.audit(&exec).await;
    assert!(audit
        .iter()
        .any(|r| r.summary["refused"] == "NotInChangeAuthority" && r.actor == "chat:teams"));
    // A Teams user missing from the directory is nobody.
    let (_, reply) = cw
        .post_teams(
            Some(&bearer(&cw.bot.token(&valid))),
            &cw.invoke("aad-unknown-9999", "approve", &id),
        )
        .await;
    assert!(
        reply["value"]
            .to_string()
            .contains("teams:aad-unknown-9999"),
        "{reply}"
    );
    cw.assert_untouched(&exec, &id, None, "unlisted user").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_requester_cannot_approve_in_teams_under_another_id_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cw = chat_world(dir.path()).await;
    // The ticket was opened by olivia under her Slack id; she clicks Approve in Teams.
    let exec = cw.start_renewal_requested_by("U0OLIVIA").await;
    let id = cw.wait_for_cards(&exec).await;
    let t = cw.bot.token(&cw.bot.valid(&cw.bot.service_url()));
    let (status, reply) = cw
        .post_teams(
            Some(&bearer(&t)),
            &cw.invoke("aad-olivia-0002", "approve", &id),
        )
        .await;
    assert_eq!(status, 200);
    assert!(reply["value"].to_string().contains("Refused"), "{reply}");
    cw.assert_untouched(&exec, &id, None, "self-approval").await;
    assert!(cw
        .audit(&exec)
        .await
        .iter()
        .any(|r| r.summary["refused"] == "SelfApproval"));
    // cab-alice may still approve — here from a client without Universal Actions, whose
    // Action.Submit fallback arrives as a message activity carrying the card's data.
    let t = cw.bot.token(&cw.bot.valid(&cw.bot.service_url()));
    let mut submit = cw.invoke("aad-alice-0001", "approve", &id);
    submit["type"] = serde_json::json!("message");
    submit["name"] = serde_json::Value::Null;
    submit["value"] = serde_json::json!({"approvalId": id, "verb": "approve"});
    let (status, _) = cw.post_teams(Some(&bearer(&t)), &submit).await;
    assert_eq!(status, 200);
    let put = cw
        .bot
        .calls()
        .into_iter()
        .find(|c| c.method == "PUT")
        .expect("card replaced");
    assert!(
        put.activity
            .to_string()
            .contains("Approved by cab-alice@example.com"),
        "{}",
        put.activity
    );
    succeeded(&cw.world.stack, &exec, Duration::from_secs(90)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_are_updated_when_decided_elsewhere_or_expired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cw = chat_world(dir.path()).await;
    let (exec, id) = pending(&cw).await;
    // Nothing to update while the request is open.
    assert_eq!(cw.approvals.sync_cards().await.expect("sync"), 0);
    assert!(cw.bot.calls().iter().all(|c| c.method != "PUT"));
    // Decided through `certops approve` (the embedded decision path), not in chat.
    cw.world
        .stack
        .decide(certops_fn_approval_callback::Callback {
            approval_id: id.clone(),
            approver: "cab-alice@example.com".into(),
            verdict: certops_core::Verdict::Approve,
            comment: None,
        })
        .await
        .expect("approve");
    assert_eq!(cw.approvals.sync_cards().await.expect("sync"), 1);
    let put = cw
        .bot
        .calls()
        .into_iter()
        .find(|c| c.method == "PUT")
        .expect("Teams card updated");
    assert!(
        put.activity
            .to_string()
            .contains("Approved by cab-alice@example.com"),
        "{}",
        put.activity
    );
    let slack_update = cw
        .slack
        .calls()
        .into_iter()
        .find(|c| c.method == "chat.update")
        .expect("Slack message updated");
    assert!(slack_update
        .body
        .to_string()
        .contains("Approved by cab-alice@example.com"));
    // Once closed, a card is not updated again.
    assert_eq!(cw.approvals.sync_cards().await.expect("sync"), 0);
    let done = cw
        .world
        .stack
        .wait(&exec, Duration::from_secs(90))
        .await
        .expect("done");
    assert_eq!(done.status.as_str(), "SUCCEEDED");

    // A second renewal whose request runs out (the policy gives 5 minutes).
    let dir2 = tempfile::tempdir().expect("tempdir");
    let cw2 = chat_world(dir2.path()).await;
    let (_exec2, id2) = pending(&cw2).await;
    cw2.world.clock.advance(chrono::Duration::minutes(6));
    assert_eq!(cw2.approvals.sync_cards().await.expect("sync"), 1);
    let put = cw2
        .bot
        .calls()
        .into_iter()
        .find(|c| c.method == "PUT")
        .expect("Teams card updated");
    let shown = put.activity.to_string();
    assert!(shown.contains("expired") && shown.contains(&id2), "{shown}");
    assert!(
        put.activity["attachments"][0]["content"]["actions"].is_null(),
        "expired card keeps buttons"
    );
}
