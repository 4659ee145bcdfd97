//! [`SlackChat`]: the [`Chat`] port on Slack's Web API.
//!
//! `chat.postMessage` posts the approval as Block Kit with Approve/Reject buttons whose
//! value is the approval id; the message's channel and `ts` are kept (store table
//! `chat_messages`) so `chat.update` can show the decision, or a refusal's reason, later.
//! The Web API answers HTTP 200 with `{"ok": false, "error": …}` on failure; `ratelimited`
//! (HTTP 429) and server errors are transient.

use std::sync::Arc;

use async_trait::async_trait;
use certops_core::integrations::SecretResolver;
use certops_core::ports::{ApprovalCard, Chat, Config, Store, Table};
use certops_core::{check_no_secrets, redact, Error};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::card::{CardStatus, CardView};
use crate::config::SlackConfig;

/// Slack through its Web API.
pub struct SlackChat {
    cfg: SlackConfig,
    http: reqwest::Client,
    secrets: Arc<dyn SecretResolver>,
    store: Arc<dyn Store>,
    config: Arc<Config>,
    signing_secret: Mutex<Option<Zeroizing<String>>>,
}

impl std::fmt::Debug for SlackChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackChat")
            .field("channel", &self.cfg.channel)
            .field("api_url", &self.cfg.api_url)
            .finish()
    }
}

impl SlackChat {
    /// The adapter for `cfg`.
    pub fn new(
        cfg: SlackConfig,
        http: reqwest::Client,
        secrets: Arc<dyn SecretResolver>,
        store: Arc<dyn Store>,
        config: Arc<Config>,
    ) -> SlackChat {
        SlackChat {
            cfg,
            http,
            secrets,
            store,
            config,
            signing_secret: Mutex::new(None),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SlackConfig {
        &self.cfg
    }

    /// The signing secret, resolved once.
    pub async fn signing_secret(&self) -> Result<Zeroizing<String>, Error> {
        let mut cached = self.signing_secret.lock().await;
        if let Some(s) = cached.as_ref() {
            return Ok(s.clone());
        }
        let s = self.secrets.resolve(&self.cfg.signing_secret).await?;
        *cached = Some(s.clone());
        Ok(s)
    }

    async fn call(&self, method: &str, body: &Value) -> Result<Value, Error> {
        let token = self.secrets.resolve(&self.cfg.bot_token).await?;
        let url = format!("{}/{method}", self.cfg.api_url.trim_end_matches('/'));
        let resp = self
            .http
            .post(&url)
            .bearer_auth(token.as_str())
            .json(body)
            .send()
            .await
            .map_err(|e| Error::Transient(format!("Slack {method}: {}", e.without_url())))?;
        let status = resp.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(Error::Transient(format!("Slack {method}: HTTP {status}")));
        }
        let v: Value = resp
            .json()
            .await
            .map_err(|e| Error::Transient(format!("Slack {method}: unreadable answer: {e}")))?;
        if v["ok"] == json!(true) {
            return Ok(v);
        }
        let err = v["error"].as_str().unwrap_or("unknown_error");
        if err == "ratelimited" || err == "internal_error" || err == "fatal_error" {
            Err(Error::Transient(format!("Slack {method}: {err}")))
        } else {
            Err(Error::InvalidInput(format!("Slack {method}: {err}")))
        }
    }

    /// The card posted for `approval_id`, if this adapter posted one.
    pub async fn posted(&self, approval_id: &str) -> Result<Option<ApprovalCard>, Error> {
        let posted = crate::posted::load(self.store.as_ref(), "slack", approval_id).await?;
        Ok(posted.and_then(|p| p.card.ok()))
    }

    /// Replaces the posted message of `approval_id` with its `status` rendering.
    pub async fn update_card(&self, approval_id: &str, status: &CardStatus) -> Result<(), Error> {
        let Some(posted) = crate::posted::load(self.store.as_ref(), "slack", approval_id).await?
        else {
            return Ok(());
        };
        let (card, rec) = (posted.card?, posted.record);
        let (blocks, text) = CardView::new(&card, &self.config).slack_blocks(status);
        self.call(
            "chat.update",
            &json!({"channel": rec["channel"], "ts": rec["ts"], "text": text, "blocks": blocks}),
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Chat for SlackChat {
    async fn request_approval(&self, card: &ApprovalCard) -> Result<(), Error> {
        if card.approval_id.trim().is_empty() {
            return Err(Error::InvalidInput("an approval card needs an id".into()));
        }
        let key = format!("slack:{}", card.approval_id);
        if self.store.get(Table::ChatMessages, &key).await?.is_some() {
            return Ok(());
        }
        let (blocks, text) = CardView::new(card, &self.config).slack_blocks(&CardStatus::Pending);
        let body = json!({"channel": self.cfg.channel, "text": text, "blocks": blocks});
        check_no_secrets(&body, "slack message")?;
        let v = self.call("chat.postMessage", &body).await?;
        let (Some(channel), Some(ts)) = (v["channel"].as_str(), v["ts"].as_str()) else {
            return Err(Error::Transient(
                "Slack chat.postMessage: no channel/ts in the answer".into(),
            ));
        };
        let record = json!({"card": card, "channel": channel, "ts": ts});
        self.store
            .put_if_absent(Table::ChatMessages, &key, &record)
            .await?;
        crate::open_cards::add(self.store.as_ref(), &card.approval_id).await?;
        tracing::info!(approval_id = %card.approval_id, %channel, %ts, "approval card posted to Slack");
        Ok(())
    }

    async fn notify(&self, to: &str, text: &str) -> Result<(), Error> {
        let line = redact(&json!(format!("{to}: {text}")));
        let channel = self
            .cfg
            .oncall_channel
            .as_deref()
            .unwrap_or(&self.cfg.channel);
        self.call(
            "chat.postMessage",
            &json!({"channel": channel, "text": line}),
        )
        .await?;
        Ok(())
    }
}
