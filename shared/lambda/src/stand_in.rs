//! What the AWS backend puts behind a port that has no real adapter configured: an
//! adapter that refuses every call, naming the port and what to configure. On AWS an
//! embedded stand-in (a ticket book, a chat inbox or a certificate authority in the
//! sandbox's `/tmp`) would let a renewal issue from a sandbox-local CA and push the result
//! to a real ACM certificate or load balancer; so while any of the ITSM, chat and issuer
//! ports is a stand-in, [`RefusingStart`] also refuses to start a renewal at all.
//!
//! `CERTOPS_ALLOW_STAND_INS=1` keeps the embedded adapters instead (emulator tests only;
//! the SAM template never sets it and `infra/checks` fails a template that does).

use async_trait::async_trait;
use certops_core::ports::{
    ApprovalCard, Chat, IssueRequest, Issuer, Itsm, NewTicket, Ticket, TicketUpdate, Workflow,
};
use certops_core::Error;
use serde_json::Value;
use std::sync::Arc;

/// The variable that keeps embedded stand-ins on the AWS backend (emulator tests only).
pub const ALLOW_STAND_INS_ENV: &str = "CERTOPS_ALLOW_STAND_INS";

/// A port without a real adapter: every call is refused with what to configure.
#[derive(Debug, Clone)]
pub struct NotConfigured {
    /// The port (`ITSM`, `chat`, `issuer`).
    pub port: &'static str,
    /// The `integrations.toml` table(s) that would configure it.
    pub tables: &'static str,
}

impl NotConfigured {
    fn refuse(&self) -> Error {
        Error::Misconfigured(format!(
            "the {} port has no adapter on the AWS backend: configure {} in the \
             configuration's integrations (README, \"Deploy to AWS\"); an embedded stand-in \
             is never used against a real account",
            self.port, self.tables
        ))
    }
}

#[async_trait]
impl Itsm for NotConfigured {
    async fn open(&self, _ticket: NewTicket) -> Result<Ticket, Error> {
        Err(self.refuse())
    }
    async fn get(&self, _number: &str) -> Result<Option<Ticket>, Error> {
        Err(self.refuse())
    }
    async fn update(
        &self,
        _number: &str,
        _author: &str,
        _update: TicketUpdate,
    ) -> Result<Ticket, Error> {
        Err(self.refuse())
    }
    async fn read_record(&self, _number: &str) -> Result<Option<serde_json::Value>, Error> {
        Err(self.refuse())
    }
}

#[async_trait]
impl Chat for NotConfigured {
    async fn request_approval(&self, _card: &ApprovalCard) -> Result<(), Error> {
        Err(self.refuse())
    }
    async fn notify(&self, _to: &str, _text: &str) -> Result<(), Error> {
        Err(self.refuse())
    }
}

#[async_trait]
impl Issuer for NotConfigured {
    async fn issue(&self, _request: &IssueRequest) -> Result<String, Error> {
        Err(self.refuse())
    }
    async fn trust_anchors_pem(&self) -> Result<Option<String>, Error> {
        // Verification of public endpoints needs no extra anchors; nothing is issued here.
        Ok(None)
    }
}

/// The workflow port while some port is a stand-in: starting a renewal is refused (the
/// error names every stand-in); completing tasks of executions already running is passed
/// through, so nothing waiting is stranded.
pub struct RefusingStart {
    /// The real workflow port.
    pub inner: Arc<dyn Workflow>,
    /// The ports without a real adapter.
    pub stand_ins: Vec<&'static str>,
}

#[async_trait]
impl Workflow for RefusingStart {
    async fn start(&self, name: &str, _input: &Value) -> Result<(String, bool), Error> {
        tracing::error!(trigger = %name, stand_ins = ?self.stand_ins, "renewal refused: ports not configured");
        Err(Error::Misconfigured(format!(
            "refusing to start renewal {name}: on the AWS backend the {} port(s) have no \
             real adapter configured (README, \"Deploy to AWS\")",
            self.stand_ins.join(", ")
        )))
    }
    async fn send_success(&self, task_token: &str, output: &Value) -> Result<(), Error> {
        self.inner.send_success(task_token, output).await
    }
    async fn send_failure(&self, task_token: &str, error: &str, cause: &str) -> Result<(), Error> {
        self.inner.send_failure(task_token, error, cause).await
    }
}
