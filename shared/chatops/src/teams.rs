//! [`TeamsChat`]: the [`Chat`] port on Microsoft Teams through the Bot Framework.
//!
//! The approval card is sent proactively to the change authority's conversation
//! (`POST {serviceUrl}/v3/conversations/{id}/activities`) with a bot token from the
//! client-credentials endpoint, cached until shortly before it expires. The posted
//! activity's id is kept (store table `chat_messages`) so the card can be replaced
//! (`PUT …/activities/{activityId}`) once the approval is decided.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use certops_core::integrations::SecretResolver;
use certops_core::ports::{ApprovalCard, Chat, Config, Store, Table};
use certops_core::{check_no_secrets, redact, Error};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::card::{CardStatus, CardView, ADAPTIVE_CARD};
use crate::config::TeamsConfig;

/// Teams through the Bot Framework's Connector API.
pub struct TeamsChat {
    cfg: TeamsConfig,
    http: reqwest::Client,
    secrets: Arc<dyn SecretResolver>,
    store: Arc<dyn Store>,
    config: Arc<Config>,
    token: Mutex<Option<(Zeroizing<String>, Instant)>>,
}

impl std::fmt::Debug for TeamsChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamsChat")
            .field("app_id", &self.cfg.app_id)
            .field("service_url", &self.cfg.service_url)
            .finish()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ResourceResponse {
    #[serde(default)]
    id: Option<String>,
}

fn transient_or_invalid(status: reqwest::StatusCode, what: &str, body: &str) -> Error {
    let body: String = body.chars().take(300).collect();
    if status.as_u16() == 429 || status.is_server_error() {
        Error::Transient(format!("{what}: HTTP {status}: {body}"))
    } else {
        Error::InvalidInput(format!("{what}: HTTP {status}: {body}"))
    }
}

impl TeamsChat {
    /// The adapter for `cfg`.
    pub fn new(
        cfg: TeamsConfig,
        http: reqwest::Client,
        secrets: Arc<dyn SecretResolver>,
        store: Arc<dyn Store>,
        config: Arc<Config>,
    ) -> TeamsChat {
        TeamsChat {
            cfg,
            http,
            secrets,
            store,
            config,
            token: Mutex::new(None),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TeamsConfig {
        &self.cfg
    }

    /// A bot token, from the cache or the client-credentials endpoint.
    async fn bot_token(&self) -> Result<Zeroizing<String>, Error> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let secret = self.secrets.resolve(&self.cfg.app_password).await?;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.cfg.app_id.as_str()),
            ("client_secret", secret.as_str()),
            ("scope", self.cfg.scope.as_str()),
        ];
        let resp = self
            .http
            .post(&self.cfg.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| Error::Transient(format!("bot token endpoint: {}", e.without_url())))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(transient_or_invalid(status, "bot token endpoint", &body));
        }
        let t: TokenResponse = resp
            .json()
            .await
            .map_err(|e| Error::Transient(format!("bot token endpoint: unreadable answer: {e}")))?;
        // Renew five minutes before the token runs out (and never cache for under a minute).
        let life = t.expires_in.unwrap_or(3600).saturating_sub(300).max(60);
        let token = Zeroizing::new(t.access_token);
        *cached = Some((token.clone(), Instant::now() + Duration::from_secs(life)));
        Ok(token)
    }

    fn activities_url(&self, service_url: &str, conversation: &str) -> Result<reqwest::Url, Error> {
        let mut url = reqwest::Url::parse(service_url)
            .map_err(|e| Error::InvalidInput(format!("[teams] service_url: {e}")))?;
        url.path_segments_mut()
            .map_err(|_| Error::InvalidInput("[teams] service_url cannot be a base".into()))?
            .pop_if_empty()
            .extend(["v3", "conversations", conversation, "activities"]);
        Ok(url)
    }

    /// Sends `activity` (POST, or PUT over `activity_id`); returns the activity id.
    async fn send(
        &self,
        service_url: &str,
        conversation: &str,
        activity_id: Option<&str>,
        activity: &Value,
    ) -> Result<Option<String>, Error> {
        let mut url = self.activities_url(service_url, conversation)?;
        if let Some(id) = activity_id {
            url.path_segments_mut()
                .map_err(|_| Error::InvalidInput("bad activity URL".into()))?
                .push(id);
        }
        for attempt in 0..2 {
            let token = self.bot_token().await?;
            let req = match activity_id {
                Some(_) => self.http.put(url.clone()),
                None => self.http.post(url.clone()),
            };
            let resp = req
                .bearer_auth(token.as_str())
                .json(activity)
                .send()
                .await
                .map_err(|e| Error::Transient(format!("Bot Connector: {}", e.without_url())))?;
            let status = resp.status();
            if status.as_u16() == 401 && attempt == 0 {
                // The token may have been revoked early: fetch a new one, once.
                *self.token.lock().await = None;
                continue;
            }
            if !status.is_success() {
                let body = resp.text().await.unwrap_or_default();
                return Err(transient_or_invalid(status, "Bot Connector", &body));
            }
            let r: ResourceResponse = resp.json().await.unwrap_or(ResourceResponse { id: None });
            return Ok(r.id);
        }
        Err(Error::Transient(
            "Bot Connector refused a fresh bot token".into(),
        ))
    }

    fn message(view: &CardView, status: &CardStatus) -> Value {
        json!({
            "type": "message",
            "summary": format!("Certificate change approval {}", view.approval_id),
            "attachments": [{"contentType": ADAPTIVE_CARD, "content": view.adaptive_card(status)}],
        })
    }

    /// The card as it looks in `status`, for an invoke response.
    pub fn card_for(&self, card: &ApprovalCard, status: &CardStatus) -> Value {
        CardView::new(card, &self.config).adaptive_card(status)
    }

    /// The card posted for `approval_id`, if this adapter posted one.
    pub async fn posted(&self, approval_id: &str) -> Result<Option<ApprovalCard>, Error> {
        let posted = crate::posted::load(self.store.as_ref(), "teams", approval_id).await?;
        Ok(posted.and_then(|p| p.card.ok()))
    }

    /// Replaces the posted card of `approval_id` with its `status` rendering, for everyone
    /// in the conversation.
    pub async fn update_card(&self, approval_id: &str, status: &CardStatus) -> Result<(), Error> {
        let Some(posted) = crate::posted::load(self.store.as_ref(), "teams", approval_id).await?
        else {
            return Ok(());
        };
        let (card, rec) = (posted.card?, posted.record);
        let (Some(service_url), Some(conv), Some(activity)) = (
            rec["serviceUrl"].as_str(),
            rec["conversationId"].as_str(),
            rec["activityId"].as_str(),
        ) else {
            return Err(Error::InvalidInput(
                "stored card reference is incomplete".into(),
            ));
        };
        let view = CardView::new(&card, &self.config);
        let mut msg = Self::message(&view, status);
        msg["id"] = json!(activity);
        self.send(service_url, conv, Some(activity), &msg).await?;
        Ok(())
    }
}

#[async_trait]
impl Chat for TeamsChat {
    async fn request_approval(&self, card: &ApprovalCard) -> Result<(), Error> {
        if card.approval_id.trim().is_empty() {
            return Err(Error::InvalidInput("an approval card needs an id".into()));
        }
        let key = format!("teams:{}", card.approval_id);
        if self.store.get(Table::ChatMessages, &key).await?.is_some() {
            // A retried step: the card is out already.
            return Ok(());
        }
        let view = CardView::new(card, &self.config);
        let msg = Self::message(&view, &CardStatus::Pending);
        check_no_secrets(&msg, "teams card")?;
        let id = self
            .send(&self.cfg.service_url, &self.cfg.conversation_id, None, &msg)
            .await?
            .ok_or_else(|| Error::Transient("Bot Connector returned no activity id".into()))?;
        let record = json!({
            "card": card,
            "serviceUrl": self.cfg.service_url,
            "conversationId": self.cfg.conversation_id,
            "activityId": id,
        });
        self.store
            .put_if_absent(Table::ChatMessages, &key, &record)
            .await?;
        crate::open_cards::add(self.store.as_ref(), &card.approval_id).await?;
        tracing::info!(approval_id = %card.approval_id, activity = %id, "approval card posted to Teams");
        Ok(())
    }

    async fn notify(&self, to: &str, text: &str) -> Result<(), Error> {
        let line = redact(&json!(format!("{to}: {text}")));
        let conv = self
            .cfg
            .oncall_conversation_id
            .as_deref()
            .unwrap_or(&self.cfg.conversation_id);
        let msg = json!({"type": "message", "text": line});
        self.send(&self.cfg.service_url, conv, None, &msg).await?;
        Ok(())
    }
}
