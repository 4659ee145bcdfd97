//! From a verified platform request to a decision: the Teams bot endpoint and the Slack
//! interactivity endpoint, independent of the HTTP framework (axum in `certops serve`,
//! API Gateway on Lambda).
//!
//! The approver is who the platform says clicked — the authenticated activity's
//! `from.aadObjectId`, the signed interaction's `user.id` — mapped through the policy's
//! approver directory; a user the directory does not list acts as `teams:<id>` /
//! `slack:<id>`, which no change authority contains. The decision then goes through
//! approval-callback's own path (`certops_fn_approval_callback::handle`, injected as a
//! [`DecisionPath`] because the Lambda wiring that selects these adapters sits below that
//! crate): separation of duties, change authority, expiry, plan hash and single use are
//! checked there, once.
//! Who, where and when go to the audit trail and the ticket.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use certops_core::integrations::SecretResolver;
use certops_core::ports::{ApprovalCard, Clock, Deps, SystemClock, Table, TicketUpdate};
use certops_core::workflow::record_audit;
use certops_core::{AuditKind, ChatPlatform, Error, Verdict};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::card::{CardStatus, ADAPTIVE_CARD};
use crate::config::ChatAdapters;
use crate::openid_keys::OpenIdKeys;
use crate::slack::SlackChat;
use crate::teams::TeamsChat;
use crate::teams_auth::BotAuthenticator;
use crate::{slack_signature, InboundError};

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Content type of `body`.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: body.to_string(),
        }
    }

    fn refused(e: &InboundError) -> Reply {
        Reply::json(e.status, &json!({"error": e.reason}))
    }
}

/// A decision as the platform established it: the approval, the approver's directory
/// identity (or `teams:<id>`/`slack:<id>` for an unlisted user), and the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatDecision {
    /// The approval id from the card.
    pub approval_id: String,
    /// Who decided.
    pub approver: String,
    /// Approve or reject.
    pub verdict: Verdict,
}

/// Future returned by a [`DecisionPath`].
pub type DecisionFuture = Pin<Box<dyn Future<Output = Result<String, Error>> + Send>>;

/// approval-callback's decision path: applies a [`ChatDecision`] with every check and
/// returns the approval's new status (`approved`, `rejected`), or the refusal.
pub type DecisionPath = Arc<dyn Fn(Deps, ChatDecision) -> DecisionFuture + Send + Sync>;

/// How a Slack interaction is acknowledged (Slack wants its answer within 3 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlackAck {
    /// Answer within the budget and let the decision finish in a task that outlives the
    /// answer: for a long-running server (`certops serve`).
    #[default]
    Detached,
    /// Record the decision (approval-callback's checks, the conditional write, the task's
    /// completion, the audit) before answering, then do what fits of the rest (the ticket
    /// note, the card updates) within the budget and leave what does not to
    /// [`ChatApprovals::sync_cards`]. For Lambda, which freezes the sandbox once the
    /// response is returned: nothing is left running after the answer.
    Inline,
}

/// Where a chat decision's ticket note waits until written (see [`SlackAck::Inline`]): in
/// the chat messages table, which is all the chat role may write.
fn pending_note_key(approval_id: &str) -> String {
    format!("note:{approval_id}")
}

/// The inbound side of both platforms over one set of ports.
pub struct ChatApprovals {
    deps: Deps,
    decide: DecisionPath,
    teams: Option<(Arc<TeamsChat>, BotAuthenticator)>,
    slack: Option<Arc<SlackChat>>,
    wall_clock: Arc<dyn Clock>,
    ack_within: Duration,
    slack_ack: SlackAck,
}

impl std::fmt::Debug for ChatApprovals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatApprovals")
            .field("teams", &self.teams.is_some())
            .field("slack", &self.slack.is_some())
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Activity {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    channel_id: String,
    #[serde(default)]
    service_url: String,
    #[serde(default)]
    from: Option<Account>,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    channel_data: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Account {
    #[serde(default)]
    id: String,
    #[serde(default)]
    aad_object_id: Option<String>,
}

/// What became of a click.
struct Outcome {
    status: CardStatus,
    card: Option<ApprovalCard>,
    /// Whether everyone's copy of the card should change (a decision, not one user's refusal).
    for_everyone: bool,
}

impl ChatApprovals {
    /// The endpoints for the platforms `deps.config.integrations` configures.
    /// Decisions go through `decide`.
    pub fn new(
        deps: Deps,
        secrets: Arc<dyn SecretResolver>,
        decide: DecisionPath,
    ) -> Result<ChatApprovals, Error> {
        let adapters = ChatAdapters::from_config(&deps.config, deps.store.clone(), secrets)?;
        Ok(Self::with_adapters(deps, adapters, decide))
    }

    /// The endpoints over adapters already built.
    pub fn with_adapters(
        deps: Deps,
        adapters: ChatAdapters,
        decide: DecisionPath,
    ) -> ChatApprovals {
        let teams = adapters.teams.map(|t| {
            let cfg = t.config();
            let keys = OpenIdKeys::new(
                &cfg.openid_metadata_url,
                crate::config::http_client().unwrap_or_default(),
                Duration::from_secs(24 * 3600),
                Duration::from_secs(60),
            );
            let auth = BotAuthenticator::new(keys, &cfg.app_id, &cfg.issuer, &cfg.channel);
            (t, auth)
        });
        ChatApprovals {
            deps,
            decide,
            teams,
            slack: adapters.slack,
            wall_clock: Arc::new(SystemClock),
            ack_within: Duration::from_millis(2500),
            slack_ack: SlackAck::Detached,
        }
    }

    /// Acknowledges Slack interactions as `ack` says ([`SlackAck::Inline`] on Lambda).
    pub fn with_slack_ack(mut self, ack: SlackAck) -> ChatApprovals {
        self.slack_ack = ack;
        self
    }

    /// Uses `clock` for Slack's ±300 s timestamp window (tests pin it).
    pub fn with_wall_clock(mut self, clock: Arc<dyn Clock>) -> ChatApprovals {
        self.wall_clock = clock;
        self
    }

    /// `POST /teams/messages`: one Bot Framework activity.
    pub async fn teams_activity(&self, authorization: Option<&str>, body: &[u8]) -> Reply {
        let Some((chat, auth)) = &self.teams else {
            return Reply::refused(&InboundError {
                status: 404,
                reason: "Teams is not configured ([teams] in integrations.toml)".into(),
            });
        };
        let activity: Activity = match serde_json::from_slice(body) {
            Ok(a) => a,
            Err(_) => return Reply::refused(&InboundError::bad_request("body is not an activity")),
        };
        if let Err(e) = auth
            .verify(authorization, &activity.service_url, &activity.channel_id)
            .await
        {
            tracing::warn!(status = e.status, "Teams activity refused: {}", e.reason);
            return Reply::refused(&e);
        }
        if let Some(tenant) = &chat.config().tenant_id {
            let from_tenant = activity
                .channel_data
                .as_ref()
                .and_then(|d| d["tenant"]["id"].as_str());
            if from_tenant != Some(tenant.as_str()) {
                tracing::warn!("Teams activity from another tenant refused");
                return Reply::refused(&InboundError::forbidden("activity is from another tenant"));
            }
        }
        let invoke =
            activity.kind == "invoke" && activity.name.as_deref() == Some("adaptiveCard/action");
        let value = activity.value.clone().unwrap_or(Value::Null);
        // Action.Execute arrives as an invoke; its Action.Submit fallback as a message.
        let (verb, data) = if invoke {
            (value["action"]["verb"].as_str(), &value["action"]["data"])
        } else if activity.kind == "message" && value["approvalId"].is_string() {
            (value["verb"].as_str(), &value)
        } else {
            return Reply::json(200, &json!({}));
        };
        let Some(approval_id) = data["approvalId"].as_str() else {
            return invoke_error(400, "the action carries no approval id");
        };
        let from = activity.from.as_ref();
        let user = from
            .and_then(|f| f.aad_object_id.as_deref())
            .filter(|s| !s.trim().is_empty())
            .or_else(|| from.map(|f| f.id.as_str()))
            .unwrap_or_default();
        let outcome = self
            .decide(
                ChatPlatform::Teams,
                user,
                approval_id,
                verb.unwrap_or_default(),
                None,
            )
            .await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => return invoke_error(e.status, &e.reason),
        };
        // Decisions were shown everywhere already; a refusal answered to an Action.Submit
        // fallback (no invoke response to carry it) goes on the card itself.
        if !outcome.for_everyone && !invoke {
            if let Err(e) = chat.update_card(approval_id, &outcome.status).await {
                tracing::warn!(%approval_id, "updating the Teams card failed: {e}");
            }
        }
        if !invoke {
            return Reply::json(200, &json!({}));
        }
        let card = match &outcome.card {
            Some(c) => chat.card_for(c, &outcome.status),
            None => return invoke_error(404, "no such approval card"),
        };
        Reply::json(
            200,
            &json!({"statusCode": 200, "type": ADAPTIVE_CARD, "value": card}),
        )
    }

    /// `POST /slack/interactions`: one signed `block_actions` interaction.
    pub async fn slack_interaction(
        self: &Arc<Self>,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Reply {
        let Some(chat) = &self.slack else {
            return Reply::refused(&InboundError {
                status: 404,
                reason: "Slack is not configured ([slack] in integrations.toml)".into(),
            });
        };
        let secret = match chat.signing_secret().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("Slack signing secret unavailable: {e}");
                return Reply::refused(&InboundError::unavailable("signing secret unavailable"));
            }
        };
        let now = self.wall_clock.now().timestamp();
        if let Err(e) = slack_signature::verify(secret.as_bytes(), timestamp, signature, body, now)
        {
            tracing::warn!(status = e.status, "Slack interaction refused: {}", e.reason);
            return Reply::refused(&e);
        }
        let payload: Option<Value> = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
            .ok()
            .and_then(|form| form.into_iter().find(|(k, _)| k == "payload"))
            .and_then(|(_, p)| serde_json::from_str(&p).ok());
        let Some(payload) = payload else {
            return Reply::refused(&InboundError::bad_request("no JSON payload field"));
        };
        if let Some(team) = &chat.config().team_id {
            if payload["team"]["id"].as_str() != Some(team.as_str()) {
                return Reply::refused(&InboundError::forbidden(
                    "interaction is from another workspace",
                ));
            }
        }
        if payload["type"] != "block_actions" {
            return Reply::json(200, &json!({}));
        }
        let action = &payload["actions"][0];
        let (Some(verb), Some(approval_id), Some(user)) = (
            action["action_id"].as_str(),
            action["value"].as_str(),
            payload["user"]["id"].as_str(),
        ) else {
            return Reply::refused(&InboundError::bad_request("not an approval action"));
        };
        let (verb, approval_id, user) =
            (verb.to_string(), approval_id.to_string(), user.to_string());
        let deadline = tokio::time::Instant::now() + self.ack_within;
        let this = self.clone();
        let chat = chat.clone();
        let follow_up_by = (self.slack_ack == SlackAck::Inline).then_some(deadline);
        let work = async move {
            match this
                .decide(
                    ChatPlatform::Slack,
                    &user,
                    &approval_id,
                    &verb,
                    follow_up_by,
                )
                .await
            {
                Ok(o) if !o.for_everyone => {
                    let shown = chat.update_card(&approval_id, &o.status);
                    let shown = match follow_up_by {
                        Some(by) => tokio::time::timeout_at(by, shown)
                            .await
                            .unwrap_or_else(|_| {
                                Err(Error::Transient("out of the acknowledgement budget".into()))
                            }),
                        None => shown.await,
                    };
                    if let Err(e) = shown {
                        tracing::warn!(%approval_id, "chat.update failed: {e}");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(%approval_id, "Slack decision not taken: {}", e.reason),
            }
        };
        match self.slack_ack {
            // Slack wants an answer within 3 s; the decision finishes even if it takes longer.
            SlackAck::Detached => {
                let _ = tokio::time::timeout_at(deadline, tokio::spawn(work)).await;
            }
            // The decision is recorded before the answer, whatever it takes; only the
            // follow-ups are bounded by the budget.
            SlackAck::Inline => work.await,
        }
        Reply {
            status: 200,
            content_type: "text/plain",
            body: String::new(),
        }
    }

    async fn decide(
        &self,
        platform: ChatPlatform,
        user: &str,
        approval_id: &str,
        verb: &str,
        follow_up_by: Option<tokio::time::Instant>,
    ) -> Result<Outcome, InboundError> {
        let verdict = match verb {
            "approve" => Verdict::Approve,
            "reject" => Verdict::Reject,
            _ => {
                return Err(InboundError::bad_request(
                    "the action is neither approve nor reject",
                ))
            }
        };
        if user.trim().is_empty() {
            return Err(InboundError::bad_request("the activity names no user"));
        }
        let (platform_name, prefix) = match platform {
            ChatPlatform::Teams => ("Microsoft Teams", "teams"),
            ChatPlatform::Slack => ("Slack", "slack"),
        };
        let deps = &self.deps;
        let record = deps
            .store
            .get(Table::Approvals, approval_id)
            .await
            .map_err(|e| InboundError::unavailable(e.to_string()))?
            .ok_or_else(|| InboundError {
                status: 404,
                reason: format!("no approval {approval_id}"),
            })?;
        let execution = record["execution"].as_str().unwrap_or_default().to_string();
        let ticket = record["ticket"].as_str().unwrap_or_default().to_string();
        let card = self.posted_card(approval_id).await;
        let identity = deps
            .config
            .policy
            .identity_for(platform, user)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{prefix}:{user}"));
        let decision = ChatDecision {
            approval_id: approval_id.to_string(),
            approver: identity.clone(),
            verdict,
        };
        let now = deps.clock.now();
        let attempt = json!({"platform": prefix, "platformUser": user, "identity": identity, "approvalId": approval_id, "verdict": verdict, "at": now});
        let result = (self.decide)(deps.clone(), decision).await;
        let mut ticket_note = None;
        let outcome = match result {
            Ok(status) => {
                let at = now;
                let _ = record_audit(
                    deps,
                    &execution,
                    AuditKind::Approval,
                    &format!("chat:{prefix}"),
                    json!({"decided": status, "attempt": attempt}),
                )
                .await
                .map_err(|e| tracing::error!("audit of a chat decision failed: {e}"));
                let note = format!(
                    "Approval {approval_id} {} in {platform_name} by {identity} ({platform_name} user {user}) at {}.",
                    status,
                    at.to_rfc3339()
                );
                if !ticket.is_empty() {
                    ticket_note = Some(
                        json!({"ticket": ticket, "author": format!("chat:{prefix}"), "note": note}),
                    );
                }
                Outcome {
                    status: CardStatus::Decided {
                        verdict: status,
                        by: identity,
                        at,
                        platform: platform_name.into(),
                    },
                    card,
                    for_everyone: true,
                }
            }
            Err(e @ (Error::SelfApproval { .. } | Error::NotInChangeAuthority { .. })) => {
                // approval-callback has audited the refusal; add where it came from.
                let _ = record_audit(
                    deps,
                    &execution,
                    AuditKind::Approval,
                    &format!("chat:{prefix}"),
                    json!({"refused": e.name(), "reason": e.to_string(), "attempt": attempt}),
                )
                .await
                .map_err(|e| tracing::error!("audit of a chat refusal failed: {e}"));
                Outcome {
                    status: CardStatus::Refused {
                        reason: e.to_string(),
                    },
                    card,
                    for_everyone: false,
                }
            }
            Err(Error::Conflict(_)) => {
                // Already decided (a replay, a second click, or decided elsewhere): show
                // what stands, record nothing, complete nothing.
                let stored = deps
                    .store
                    .get(Table::Approvals, approval_id)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(record);
                Outcome {
                    status: stored_status(&stored),
                    card,
                    for_everyone: false,
                }
            }
            Err(e @ (Error::ApprovalExpired { .. } | Error::PlanDrift { .. })) => Outcome {
                status: CardStatus::Closed {
                    reason: e.to_string(),
                },
                card,
                for_everyone: true,
            },
            Err(e) => {
                tracing::warn!(%approval_id, "chat decision failed: {e}");
                Outcome {
                    status: CardStatus::Refused {
                        reason: format!("not recorded: {e}"),
                    },
                    card,
                    for_everyone: false,
                }
            }
        };
        if let (Some(note), Some(_)) = (&ticket_note, follow_up_by) {
            // Kept until written, so the card refresh writes it if the budget runs out.
            if let Err(e) = deps
                .store
                .put_if_absent(Table::ChatMessages, &pending_note_key(approval_id), note)
                .await
            {
                tracing::warn!(%approval_id, "keeping the ticket note for later failed: {e}");
            }
        }
        let follow_up = async {
            if let Some(note) = &ticket_note {
                self.write_note(approval_id, note).await;
            }
            if outcome.for_everyone {
                self.update_everywhere(approval_id, &outcome.status).await;
                if let Err(e) = crate::open_cards::remove(deps.store.as_ref(), approval_id).await {
                    tracing::warn!(%approval_id, "closing the card in the index failed: {e}");
                }
            }
        };
        match follow_up_by {
            None => follow_up.await,
            Some(by) => {
                if tokio::time::timeout_at(by, follow_up).await.is_err() {
                    tracing::info!(%approval_id, "decision recorded; the ticket note and card updates left to the card refresh");
                }
            }
        }
        Ok(outcome)
    }

    /// Writes a chat decision's ticket note (`{"ticket", "author", "note"}`) and drops it
    /// from the pending notes. The ITSM adapters do not write a note of the same author
    /// and text twice, so a note whose removal was cut short is not duplicated later.
    async fn write_note(&self, approval_id: &str, note: &Value) {
        let (Some(ticket), Some(author), Some(text)) = (
            note["ticket"].as_str(),
            note["author"].as_str(),
            note["note"].as_str(),
        ) else {
            return;
        };
        let written = self
            .deps
            .itsm
            .update(
                ticket,
                author,
                TicketUpdate {
                    work_note: Some(text.to_string()),
                    ..TicketUpdate::default()
                },
            )
            .await;
        match written {
            Ok(_) => {
                let mut written = note.clone();
                written["written"] = json!(true);
                let key = pending_note_key(approval_id);
                let store = self.deps.store.as_ref();
                let marked = match store.get(Table::ChatMessages, &key).await {
                    Ok(Some(current)) => store
                        .compare_and_swap(Table::ChatMessages, &key, Some(&current), &written)
                        .await
                        .map(|_| ()),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                };
                if let Err(e) = marked {
                    tracing::warn!(%approval_id, "marking a ticket note written failed: {e}");
                }
            }
            Err(e) => tracing::warn!(%ticket, "work note for the chat decision failed: {e}"),
        }
    }

    /// Updates every open card whose approval is no longer pending (decided elsewhere,
    /// spent) or has expired, and closes it in the index, and writes the ticket notes of
    /// decisions that did not fit in Slack's acknowledgement budget. Returns how many cards
    /// were updated. `certops serve` runs this every minute, and so does the card-refresh
    /// schedule of the SAM template (the chat-approval function); it is idempotent.
    pub async fn sync_cards(&self) -> Result<usize, Error> {
        let store = self.deps.store.as_ref();
        let now = self.deps.clock.now();
        let mut updated = 0;
        for id in crate::open_cards::list(store).await? {
            // A decision's ticket note that did not fit in Slack's acknowledgement budget.
            if let Some(note) = store
                .get(Table::ChatMessages, &pending_note_key(&id))
                .await?
            {
                if note["written"] != json!(true) {
                    self.write_note(&id, &note).await;
                }
            }
            let Some(record) = store.get(Table::Approvals, &id).await? else {
                crate::open_cards::remove(store, &id).await?;
                continue;
            };
            let expires =
                serde_json::from_value::<certops_core::ApprovalRequest>(record["request"].clone())
                    .ok()
                    .map(|r| r.expires_at);
            let status = if record["status"] != "pending" {
                stored_status(&record)
            } else if expires.map(|e| now > e).unwrap_or(false) {
                CardStatus::Closed {
                    reason: format!(
                        "the request expired at {} without a decision",
                        expires.map(|e| e.to_rfc3339()).unwrap_or_default()
                    ),
                }
            } else {
                continue;
            };
            self.update_everywhere(&id, &status).await;
            crate::open_cards::remove(store, &id).await?;
            updated += 1;
        }
        Ok(updated)
    }

    async fn update_everywhere(&self, approval_id: &str, status: &CardStatus) {
        if let Some((t, _)) = &self.teams {
            if let Err(e) = t.update_card(approval_id, status).await {
                tracing::warn!(%approval_id, "updating the Teams card failed: {e}");
            }
        }
        if let Some(s) = &self.slack {
            if let Err(e) = s.update_card(approval_id, status).await {
                tracing::warn!(%approval_id, "updating the Slack message failed: {e}");
            }
        }
    }

    async fn posted_card(&self, approval_id: &str) -> Option<ApprovalCard> {
        if let Some((t, _)) = &self.teams {
            if let Ok(Some(c)) = t.posted(approval_id).await {
                return Some(c);
            }
        }
        if let Some(s) = &self.slack {
            if let Ok(Some(c)) = s.posted(approval_id).await {
                return Some(c);
            }
        }
        None
    }
}

/// The card state an already-spent approval record shows.
fn stored_status(record: &Value) -> CardStatus {
    let status = record["status"].as_str().unwrap_or("decided").to_string();
    let d = &record["decision"];
    match (
        status.as_str(),
        d["approver"].as_str(),
        d["decidedAt"].as_str(),
    ) {
        ("approved" | "rejected", Some(by), Some(at)) => CardStatus::Decided {
            verdict: status.clone(),
            by: by.to_string(),
            at: chrono::DateTime::parse_from_rfc3339(at)
                .map(|t| t.with_timezone(&chrono::Utc))
                .unwrap_or_default(),
            platform: "already decided".into(),
        },
        _ => CardStatus::Closed {
            reason: format!("the approval is {status}"),
        },
    }
}

fn invoke_error(status: u16, message: &str) -> Reply {
    Reply::json(
        200,
        &json!({"statusCode": status, "type": "application/vnd.microsoft.error",
                "value": {"code": if status == 404 { "NotFound" } else { "BadRequest" }, "message": message}}),
    )
}
