//! `[teams]` and `[slack]` in `integrations.toml`, and building the [`Chat`] port from them.
//!
//! ```toml
//! [teams]
//! app_id = "00000000-0000-0000-0000-000000000000"      # the bot's Microsoft App ID
//! app_password = "arn:aws:secretsmanager:…:certops/teams-bot"  # or env:/file:
//! service_url = "https://smba.trafficmanager.net/emea/"
//! conversation_id = "19:…@thread.tacv2"                  # the change authority's channel
//!
//! [slack]
//! bot_token = "env:SLACK_BOT_TOKEN"
//! signing_secret = "file:/etc/certops/slack-signing.secret"
//! channel = "C0123456789"
//! ```
//!
//! [`Chat`]: certops_core::ports::Chat

use std::sync::Arc;

use certops_core::integrations::{SecretRef, SecretResolver};
use certops_core::ports::{Chat, Config, Store};
use certops_core::Error;
use serde::Deserialize;

use crate::slack::SlackChat;
use crate::teams::TeamsChat;

/// `[teams]`: the bot, where it posts, and how its callers are authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsConfig {
    /// The bot's Microsoft App ID: the `client_id` of its token and the `aud` of the
    /// tokens the Bot Connector sends it.
    pub app_id: String,
    /// The bot's client secret (a reference, never the value).
    pub app_password: SecretRef,
    /// The client-credentials token endpoint.
    #[serde(default = "default_token_url")]
    pub token_url: String,
    /// The scope the bot token is requested for.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// The Bot Connector service URL of the tenant's region (activities' `serviceUrl`).
    pub service_url: String,
    /// The conversation (channel or group chat) of the change authority.
    pub conversation_id: String,
    /// Where on-call notifications go; the approval conversation when absent.
    #[serde(default)]
    pub oncall_conversation_id: Option<String>,
    /// OpenID metadata of the tokens the Bot Connector sends.
    #[serde(default = "default_metadata_url")]
    pub openid_metadata_url: String,
    /// The issuer those tokens carry.
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// The channel id activities and key endorsements must name.
    #[serde(default = "default_channel")]
    pub channel: String,
    /// When set, activities from another Entra tenant (`channelData.tenant.id`) are refused.
    #[serde(default)]
    pub tenant_id: Option<String>,
}

fn default_token_url() -> String {
    "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token".into()
}
fn default_scope() -> String {
    "https://api.botframework.com/.default".into()
}
fn default_metadata_url() -> String {
    crate::teams_auth::BOT_FRAMEWORK_METADATA_URL.into()
}
fn default_issuer() -> String {
    crate::teams_auth::BOT_FRAMEWORK_ISSUER.into()
}
fn default_channel() -> String {
    "msteams".into()
}

/// `[slack]`: the app's bot token, signing secret and channel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The bot token (`xoxb-…`), by reference.
    pub bot_token: SecretRef,
    /// The app's signing secret, by reference.
    pub signing_secret: SecretRef,
    /// The channel id the approval messages go to.
    pub channel: String,
    /// Where on-call notifications go; `channel` when absent.
    #[serde(default)]
    pub oncall_channel: Option<String>,
    /// The Web API base URL.
    #[serde(default = "default_slack_api")]
    pub api_url: String,
    /// When set, interactions from another workspace (`team.id`) are refused.
    #[serde(default)]
    pub team_id: Option<String>,
}

fn default_slack_api() -> String {
    "https://slack.com/api".into()
}

/// The chat adapters `integrations.toml` asks for.
#[derive(Clone, Default)]
pub struct ChatAdapters {
    /// Teams, when `[teams]` is present.
    pub teams: Option<Arc<TeamsChat>>,
    /// Slack, when `[slack]` is present.
    pub slack: Option<Arc<SlackChat>>,
}

impl std::fmt::Debug for ChatAdapters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatAdapters")
            .field("teams", &self.teams.is_some())
            .field("slack", &self.slack.is_some())
            .finish()
    }
}

impl ChatAdapters {
    /// Reads `[teams]` and `[slack]` from `config.integrations`. Cards and their message
    /// references are kept in `store` (table `chat_messages`).
    pub fn from_config(
        config: &Arc<Config>,
        store: Arc<dyn Store>,
        secrets: Arc<dyn SecretResolver>,
    ) -> Result<ChatAdapters, Error> {
        let http = http_client()?;
        let teams = config
            .integrations
            .section::<TeamsConfig>("teams")?
            .map(|c| {
                Arc::new(TeamsChat::new(
                    c,
                    http.clone(),
                    secrets.clone(),
                    store.clone(),
                    config.clone(),
                ))
            });
        let slack = config
            .integrations
            .section::<SlackConfig>("slack")?
            .map(|c| {
                Arc::new(SlackChat::new(
                    c,
                    http.clone(),
                    secrets,
                    store,
                    config.clone(),
                ))
            });
        Ok(ChatAdapters { teams, slack })
    }

    /// Whether any chat platform is configured.
    pub fn any(&self) -> bool {
        self.teams.is_some() || self.slack.is_some()
    }

    /// The [`Chat`] port over the configured platforms (both, when both are configured);
    /// `None` when neither is, so the runtime keeps its embedded inbox.
    pub fn port(&self) -> Option<Arc<dyn Chat>> {
        match (&self.teams, &self.slack) {
            (None, None) => None,
            (Some(t), None) => Some(t.clone()),
            (None, Some(s)) => Some(s.clone()),
            (Some(_), Some(_)) => Some(Arc::new(self.clone())),
        }
    }
}

/// Both platforms: a card goes to each.
#[async_trait::async_trait]
impl Chat for ChatAdapters {
    async fn request_approval(
        &self,
        card: &certops_core::ports::ApprovalCard,
    ) -> Result<(), Error> {
        if let Some(t) = &self.teams {
            t.request_approval(card).await?;
        }
        if let Some(s) = &self.slack {
            s.request_approval(card).await?;
        }
        Ok(())
    }

    async fn notify(&self, to: &str, text: &str) -> Result<(), Error> {
        if let Some(t) = &self.teams {
            t.notify(to, text).await?;
        }
        if let Some(s) = &self.slack {
            s.notify(to, text).await?;
        }
        Ok(())
    }
}

/// The HTTP client both adapters use (rustls; no redirects, so a token never follows one).
pub fn http_client() -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .map_err(|e| Error::InvalidInput(format!("building the HTTP client: {e}")))
}

/// Builds the chat port from `integrations.toml` for the embedded runtime and Lambda:
/// `Some` when `[teams]` or `[slack]` is present.
pub fn chat_port(
    config: &Arc<Config>,
    store: Arc<dyn Store>,
    secrets: Arc<dyn SecretResolver>,
) -> Result<Option<Arc<dyn Chat>>, Error> {
    Ok(ChatAdapters::from_config(config, store, secrets)?.port())
}
