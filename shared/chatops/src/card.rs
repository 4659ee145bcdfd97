//! What an approval card shows, and its two renderings: an Adaptive Card 1.5 for Teams
//! (`Action.Execute` Approve/Reject, each with an `Action.Submit` fallback for clients
//! without Universal Actions) and Block Kit blocks for Slack (buttons whose value is the
//! approval id).
//!
//! A card carries the approval id and what the approver needs to judge the change —
//! never a task token, never a secret.

use certops_core::ports::{ApprovalCard, Config};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// The MIME type of an Adaptive Card attachment / invoke response.
pub const ADAPTIVE_CARD: &str = "application/vnd.microsoft.card.adaptive";

/// Everything a card shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardView {
    /// The approval id the buttons carry.
    pub approval_id: String,
    /// The ITSM ticket.
    pub ticket: String,
    /// Certificate object id and CN.
    pub cert: String,
    /// The certificate's environment.
    pub environment: String,
    /// The targets, `kind:id`.
    pub targets: Vec<String>,
    /// The environment's change window, described.
    pub change_window: String,
    /// `normal`, `emergency`, or either with `(fallback)`.
    pub path: String,
    /// When the request expires.
    pub expires_at: DateTime<Utc>,
    /// Who asked for the change.
    pub requested_by: String,
    /// The first 12 hex digits of the plan hash.
    pub plan_hash_prefix: String,
    /// The plan, in one line.
    pub summary: String,
}

/// Where the card stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardStatus {
    /// Waiting for a decision; the buttons are live.
    Pending,
    /// Someone's click was refused (the buttons stay live for an authorised approver).
    Refused {
        /// Why, in words.
        reason: String,
    },
    /// Decided.
    Decided {
        /// `approved` or `rejected`.
        verdict: String,
        /// The approver's directory identity.
        by: String,
        /// When.
        at: DateTime<Utc>,
        /// Where (`Microsoft Teams`, `Slack`, or `elsewhere`).
        platform: String,
    },
    /// Closed without a decision here (expired, or refused for good).
    Closed {
        /// Why.
        reason: String,
    },
}

impl CardView {
    /// The view of `card`, with environment, targets and window from the configuration.
    pub fn new(card: &ApprovalCard, config: &Config) -> CardView {
        let cert_id = card.cert.split(" (").next().unwrap_or_default();
        let cert = config.inventory.get(cert_id);
        let environment = cert
            .map(|c| c.environment.as_str().to_string())
            .unwrap_or_else(|| "unknown".into());
        let targets = cert
            .map(|c| {
                c.targets
                    .iter()
                    .map(|t| {
                        let kind = serde_json::to_value(t.kind)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default();
                        format!("{kind}:{}", t.id)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let change_window = cert
            .and_then(|c| config.policy.windows.get(&c.environment))
            .map(|w| w.describe())
            .unwrap_or_else(|| "none (emergency changes only)".into());
        let path = if card.summary.starts_with("Install the fallback") {
            format!("{} (fallback)", card.path)
        } else {
            card.path.clone()
        };
        CardView {
            approval_id: card.approval_id.clone(),
            ticket: card.ticket.clone(),
            cert: card.cert.clone(),
            environment,
            targets,
            change_window,
            path,
            expires_at: card.expires_at,
            requested_by: card.requested_by.clone(),
            plan_hash_prefix: card.plan_hash.chars().take(12).collect(),
            summary: card.summary.clone(),
        }
    }

    fn facts(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Ticket", self.ticket.clone()),
            ("Certificate", self.cert.clone()),
            ("Environment", self.environment.clone()),
            ("Targets", self.targets.join(", ")),
            ("Change window", self.change_window.clone()),
            ("Path", self.path.clone()),
            ("Expires", self.expires_at.to_rfc3339()),
            ("Requested by", self.requested_by.clone()),
            ("Plan hash", format!("{}…", self.plan_hash_prefix)),
        ]
    }

    fn status_line(status: &CardStatus) -> Option<String> {
        match status {
            CardStatus::Pending => None,
            CardStatus::Refused { reason } => Some(format!("Refused: {reason}")),
            CardStatus::Decided {
                verdict,
                by,
                at,
                platform,
            } => Some(format!(
                "{} by {by} at {} ({platform})",
                capitalise(verdict),
                at.to_rfc3339()
            )),
            CardStatus::Closed { reason } => Some(format!("Closed: {reason}")),
        }
    }

    /// The Adaptive Card (schema 1.5). Live buttons while pending or after a refusal.
    pub fn adaptive_card(&self, status: &CardStatus) -> Value {
        let mut body = vec![
            json!({"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true,
                   "text": format!("Certificate change approval {}", self.approval_id)}),
            json!({"type": "TextBlock", "wrap": true, "text": self.summary}),
            json!({"type": "FactSet", "facts": self.facts().into_iter()
                .map(|(t, v)| json!({"title": t, "value": v})).collect::<Vec<_>>()}),
        ];
        if let Some(line) = Self::status_line(status) {
            let color = match status {
                CardStatus::Decided { verdict, .. } if verdict == "approved" => "Good",
                CardStatus::Refused { .. } => "Warning",
                _ => "Attention",
            };
            body.push(json!({"type": "TextBlock", "wrap": true, "weight": "Bolder", "color": color, "text": line}));
        }
        let mut card = json!({
            "type": "AdaptiveCard",
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": "1.5",
            "body": body,
        });
        if matches!(status, CardStatus::Pending | CardStatus::Refused { .. }) {
            card["actions"] = json!([
                self.execute_action("approve", "Approve", "positive"),
                self.execute_action("reject", "Reject", "destructive"),
            ]);
        }
        card
    }

    fn execute_action(&self, verb: &str, title: &str, style: &str) -> Value {
        let data = json!({"approvalId": self.approval_id, "verb": verb});
        json!({
            "type": "Action.Execute",
            "title": title,
            "verb": verb,
            "style": style,
            "data": data,
            "fallback": {"type": "Action.Submit", "title": title, "data": data},
        })
    }

    /// Slack blocks and the notification text. Buttons while pending or after a refusal.
    pub fn slack_blocks(&self, status: &CardStatus) -> (Value, String) {
        let text = format!(
            "Certificate change approval {} for {} ({})",
            self.approval_id, self.cert, self.ticket
        );
        let fields: Vec<Value> = self
            .facts()
            .into_iter()
            .map(|(t, v)| json!({"type": "mrkdwn", "text": truncate(&format!("*{t}*\n{v}"), 2000)}))
            .collect();
        let mut blocks = vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&format!("Approval {}", self.approval_id), 150)}}),
            json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&self.summary, 3000)}}),
            // A section holds at most 10 fields.
            json!({"type": "section", "fields": fields.into_iter().take(10).collect::<Vec<_>>()}),
        ];
        if let Some(line) = Self::status_line(status) {
            blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(&line, 3000)}]}));
        }
        if matches!(status, CardStatus::Pending | CardStatus::Refused { .. }) {
            blocks.push(
                json!({"type": "actions", "block_id": "certops-decision", "elements": [
                    {"type": "button", "action_id": "approve", "style": "primary",
                     "text": {"type": "plain_text", "text": "Approve"}, "value": self.approval_id},
                    {"type": "button", "action_id": "reject", "style": "danger",
                     "text": {"type": "plain_text", "text": "Reject"}, "value": self.approval_id},
                ]}),
            );
        }
        (Value::Array(blocks), text)
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}
