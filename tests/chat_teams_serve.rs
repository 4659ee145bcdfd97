//! `certops serve` mounts the Teams bot endpoint and the Slack interactivity endpoint when
//! `integrations.toml` configures them, and verifies the platform before anything else:
//! an activity without the Bot Framework's token, or an interaction without Slack's
//! signature, is refused; properly signed ones reach the decision path.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_tests::chat::bot_framework::BotFramework;
use certops_tests::chat::slack_api::{sign, SlackApi, BOT_TOKEN, CHANNEL, TEAM};
use certops_tests::process::{free_port, start_serve_with};
use std::os::unix::fs::PermissionsExt;

fn secret(dir: &std::path::Path, name: &str, value: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, value).expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    format!("file:{}", p.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_mounts_the_chat_routes_and_verifies_the_platform_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bot = BotFramework::start("serve-bot-secret").await;
    let slack = SlackApi::start().await;
    let config = dir.path().join("data/config");
    std::fs::create_dir_all(&config).expect("config dir");
    let runbooks = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../runbooks");
    for f in ["inventory.toml", "policy.toml", "cert-renewal.runbook.toml"] {
        std::fs::copy(runbooks.join(f), config.join(f)).expect("copy config");
    }
    let signing = "serve-signing-secret";
    std::fs::write(
        config.join("integrations.toml"),
        format!(
            "[teams]\napp_id = \"{app}\"\napp_password = \"{pw}\"\ntoken_url = \"{tok}\"\nservice_url = \"{svc}\"\n\
             conversation_id = \"19:cab-channel@thread.tacv2\"\nopenid_metadata_url = \"{meta}\"\n\n\
             [slack]\nbot_token = \"{bt}\"\nsigning_secret = \"{ss}\"\nchannel = \"{CHANNEL}\"\napi_url = \"{api}\"\nteam_id = \"{TEAM}\"\n",
            app = certops_tests::chat::bot_framework::APP_ID,
            pw = secret(dir.path(), "bot.secret", "serve-bot-secret"),
            tok = bot.token_url(),
            svc = bot.service_url(),
            meta = bot.metadata_url(),
            bt = secret(dir.path(), "slack-bot.secret", BOT_TOKEN),
            ss = secret(dir.path(), "slack-signing.secret", signing),
            api = slack.api_url(),
        ),
    )
    .expect("integrations");
    let port = free_port();
    let _serve = start_serve_with(&dir.path().join("data"), port, &[]);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");

    let invoke = serde_json::json!({"type": "invoke", "name": "adaptiveCard/action", "channelId": "msteams",
        "serviceUrl": bot.service_url(), "from": {"id": "29:x", "aadObjectId": "aad-x"},
        "value": {"action": {"type": "Action.Execute", "verb": "approve", "data": {"approvalId": "APR-000000000000"}}}});
    let unauth = http
        .post(format!("{base}/teams/messages"))
        .json(&invoke)
        .send()
        .await
        .expect("post");
    assert_eq!(unauth.status().as_u16(), 401);
    let token = bot.token(&bot.valid(&bot.service_url()));
    let ok = http
        .post(format!("{base}/teams/messages"))
        .bearer_auth(token)
        .json(&invoke)
        .send()
        .await
        .expect("post");
    assert_eq!(ok.status().as_u16(), 200);
    let reply: serde_json::Value = ok.json().await.expect("json");
    // Authenticated; the approval does not exist, which the invoke response says.
    assert_eq!(reply["statusCode"], 404, "{reply}");

    let body = SlackApi::interaction("U0X", "approve", "APR-000000000000", "1.2");
    let now = chrono::Utc::now().timestamp();
    let post = |sig: String| {
        http.post(format!("{base}/slack/interactions"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", now.to_string())
            .header("x-slack-signature", sig)
            .body(body.clone())
            .send()
    };
    assert_eq!(
        post(sign("forged", now, &body))
            .await
            .expect("post")
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        post(sign(signing, now, &body))
            .await
            .expect("post")
            .status()
            .as_u16(),
        200
    );
    assert!(
        slack.calls().is_empty() && bot.calls().is_empty(),
        "nothing to post or update"
    );
}
