//! certops-chatops: approvals in Microsoft Teams and Slack, with the approver's identity
//! taken from what the platform signed, never from a body field.
//!
//! - [`teams::TeamsChat`] and [`slack::SlackChat`] implement the [`Chat`] port: the approval
//!   card (Adaptive Card 1.5 with `Action.Execute`, Block Kit buttons) is posted when
//!   `RequestApproval` starts and updated after the decision.
//! - [`teams_auth`] validates the Bot Connector's JWT on every activity; [`slack_signature`]
//!   checks Slack's `v0` request signature.
//! - [`inbound`] turns a verified Teams invoke or Slack interaction into a decision through
//!   approval-callback's own decision path (`certops_fn_approval_callback::handle`, passed
//!   in as an [`inbound::DecisionPath`]), and
//!   [`routes`] mounts `POST /teams/messages` and `POST /slack/interactions`.
//! - [`config`] reads `[teams]` and `[slack]` from `integrations.toml`.
//!
//! ```
//! use certops_chatops::slack_signature;
//! // Slack signs `v0:{timestamp}:{raw body}`; anything else, or outside ±300 s, is refused.
//! let body = b"payload=%7B%22type%22%3A%22block_actions%22%7D";
//! let sig = slack_signature::sign(b"signing-secret", 1_800_000_000, body);
//! assert!(slack_signature::verify(b"signing-secret", Some("1800000000"), Some(&sig), body, 1_800_000_100).is_ok());
//! let late = slack_signature::verify(b"signing-secret", Some("1800000000"), Some(&sig), body, 1_800_000_301);
//! assert_eq!(late.unwrap_err().status, 401);
//! ```
//!
//! [`Chat`]: certops_core::ports::Chat

pub mod card;
pub mod config;
pub mod inbound;
pub mod open_cards;
pub mod openid_keys;
mod posted;
pub mod routes;
pub mod slack;
pub mod slack_signature;
pub mod teams;
pub mod teams_auth;

/// Why an inbound request was refused before anything was done with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {reason}")]
pub struct InboundError {
    /// HTTP status: 401 (not authenticated), 403 (authenticated, not allowed here), 400, 503.
    pub status: u16,
    /// What was wrong (never a secret, never the token).
    pub reason: String,
}

impl InboundError {
    /// 401.
    pub fn unauthorized(reason: impl Into<String>) -> InboundError {
        InboundError {
            status: 401,
            reason: reason.into(),
        }
    }
    /// 403.
    pub fn forbidden(reason: impl Into<String>) -> InboundError {
        InboundError {
            status: 403,
            reason: reason.into(),
        }
    }
    /// 400.
    pub fn bad_request(reason: impl Into<String>) -> InboundError {
        InboundError {
            status: 400,
            reason: reason.into(),
        }
    }
    /// 503: the platform's keys could not be fetched.
    pub fn unavailable(reason: impl Into<String>) -> InboundError {
        InboundError {
            status: 503,
            reason: reason.into(),
        }
    }
}
