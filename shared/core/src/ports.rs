//! Ports: the traits behind which everything that touches the outside world
//! sits. Step handlers receive a [`Deps`] of ports and never know whether they
//! run on AWS (DynamoDB, SQS, ServiceNow, Teams, ACME, ACM, CloudFront …) or on
//! the embedded default (SQLite, local ticket book, local CA, in-process TLS
//! endpoints and cache). The core defines them; adapters implement them.
//!
//! Private keys cross a port only inside [`SecretPem`], which never prints,
//! serializes or logs its content; everything else refers to keys by keystore
//! reference.

use crate::inventory::{Cdn, Endpoint, Target};
use crate::{AuditEntry, AuditRecord, Error, Inventory, Policy, Runbook};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// PEM text of a private key. Its `Debug` and `Display` print `[REDACTED]`,
/// and it implements neither `Serialize` nor `Clone`, so it cannot leak into
/// state machine data, logs, tickets or audit records by accident.
pub struct SecretPem(String);

impl SecretPem {
    /// Wraps key material.
    pub fn new(pem: String) -> Self {
        SecretPem(pem)
    }

    /// The key material, for the one place that must use it (a TLS endpoint, a target upload).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretPem([REDACTED])")
    }
}

impl fmt::Display for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl Drop for SecretPem {
    fn drop(&mut self) {
        // Overwrite the key bytes before the allocation is released.
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// The time, passed in so handlers and tests control it.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The [`Store`]'s logical tables: each holds one kind of record, named here once. Their
/// names ([`Table::name`]) are what the adapters persist (SQLite's `kv.tbl`, DynamoDB's
/// `pk` prefix), so they never change once published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Table {
    /// Idempotency keys of triggers → the execution they started (intake).
    Triggers,
    /// One active renewal per certificate: the lease of the execution holding it
    /// ([`crate::lease`]).
    Locks,
    /// Approval records, by approval id: the request, its status and the decision
    /// (approval-request writes, approval-callback decides).
    Approvals,
    /// Last-known-good deployment snapshots per execution and target (deploy, rollback).
    Deployments,
    /// Issuances counted per registered domain this week (renew, validate).
    Issuances,
    /// The ACME ledger: certificates issued per domain and account ([`crate::acme_ledger`]).
    AcmeLedger,
    /// The CA's renewal window (ARI) per certificate ([`crate::renewal_info`]).
    RenewalInfo,
    /// What the expiry scan last saw per endpoint (scan).
    Observations,
    /// Chat cards posted per approval, for updates and refreshes (chatops).
    ChatMessages,
    /// Runs of the scheduled scan, as the console lists them.
    ScanRuns,
}

impl Table {
    /// Every table.
    pub const ALL: &'static [Table] = &[
        Table::Triggers,
        Table::Locks,
        Table::Approvals,
        Table::Deployments,
        Table::Issuances,
        Table::AcmeLedger,
        Table::RenewalInfo,
        Table::Observations,
        Table::ChatMessages,
        Table::ScanRuns,
    ];

    /// The persisted name.
    pub const fn name(self) -> &'static str {
        match self {
            Table::Triggers => "triggers",
            Table::Locks => "locks",
            Table::Approvals => "approvals",
            Table::Deployments => "deployments",
            Table::Issuances => "issuances",
            Table::AcmeLedger => "acme-ledger",
            Table::RenewalInfo => "renewal-info",
            Table::Observations => "observations",
            Table::ChatMessages => "chat_messages",
            Table::ScanRuns => "console_scan_runs",
        }
    }

    /// The table a persisted name names.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.iter().copied().find(|t| t.name() == name)
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Durable state with conditional writes (DynamoDB / SQLite) and the audit chain. Records
/// are JSON values in a logical [`Table`]; [`StoreExt`] reads them as typed records.
#[async_trait]
pub trait Store: Send + Sync {
    /// Writes `value` under `key` only if nothing is there. `Ok(true)` when written.
    async fn put_if_absent(&self, table: Table, key: &str, value: &Value) -> Result<bool, Error>;
    /// Reads a value.
    async fn get(&self, table: Table, key: &str) -> Result<Option<Value>, Error>;
    /// Writes `new` only if the current value equals `expected` (`None`: absent).
    /// `Ok(true)` when written.
    async fn compare_and_swap(
        &self,
        table: Table,
        key: &str,
        expected: Option<&Value>,
        new: &Value,
    ) -> Result<bool, Error>;
    /// Deletes `key` only if its value equals `expected`. `Ok(true)` when deleted.
    async fn delete_if(&self, table: Table, key: &str, expected: &Value) -> Result<bool, Error>;
    /// Appends one record to the execution's hash chain (append-only; concurrent
    /// appends are serialized so the chain never forks).
    async fn append_audit(&self, execution: &str, entry: AuditEntry) -> Result<AuditRecord, Error>;
    /// The execution's audit records in order.
    async fn audit(&self, execution: &str) -> Result<Vec<AuditRecord>, Error>;
    /// Every execution that has audit records.
    async fn audited_executions(&self) -> Result<Vec<String>, Error>;
    /// The anchored head of `execution`'s chain (stored apart from the records and moved in
    /// the same transaction as each append; see [`crate::audit::ChainHead`]); `None` before
    /// its first append.
    async fn audit_head(&self, execution: &str) -> Result<Option<crate::audit::ChainHead>, Error>;
}

/// Typed records over any [`Store`]: a record that does not deserialize into its type is
/// [`Error::Corrupt`] (written by something else), never a panic or a silent default.
#[async_trait]
pub trait StoreExt: Store {
    /// Reads the record under `key` as a `T`.
    async fn get_as<T: serde::de::DeserializeOwned>(
        &self,
        table: Table,
        key: &str,
    ) -> Result<Option<T>, Error> {
        match self.get(table, key).await? {
            None => Ok(None),
            Some(v) => serde_json::from_value(v).map(Some).map_err(|e| {
                Error::Corrupt(format!(
                    "{table}/{key} is not a {}: {e}",
                    std::any::type_name::<T>()
                ))
            }),
        }
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

/// A received queue message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Message id.
    pub id: String,
    /// Receipt handle for delete.
    pub receipt: String,
    /// Body.
    pub body: Value,
    /// How many times it has been received.
    pub receive_count: u32,
}

/// Queues (SQS / in-process persisted): intake and hand-offs, with a dead-letter queue.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends a message; returns its id.
    async fn send(&self, queue: &str, body: &Value) -> Result<String, Error>;
    /// Receives up to `max` messages, hiding them for `visibility`.
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Message>, Error>;
    /// Deletes a received message.
    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), Error>;
    /// Messages currently in the queue (visible or not).
    async fn depth(&self, queue: &str) -> Result<usize, Error>;
}

/// What kind of ITSM record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TicketKind {
    /// An incident (e.g. a certificate already expired).
    Incident,
    /// A standard (pre-approved) change.
    StandardChange,
    /// A normal change (change authority approval).
    NormalChange,
    /// An emergency change (ECAB approval).
    EmergencyChange,
}

/// ITSM record state, in ServiceNow's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TicketState {
    /// Just opened.
    New,
    /// Being assessed / awaiting approval.
    Assess,
    /// Approved, scheduled.
    Scheduled,
    /// Being implemented.
    Implement,
    /// Partly fixed; humans are on it (e.g. CDN purge failed).
    Mitigating,
    /// Done successfully.
    Closed,
    /// Resolved (incidents).
    Resolved,
    /// Cancelled (blocked, rejected, rolled back).
    Canceled,
}

/// A work note.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkNote {
    /// When.
    pub at: DateTime<Utc>,
    /// Who wrote it.
    pub author: String,
    /// Text.
    pub text: String,
}

/// An attachment (evidence).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// File name.
    pub name: String,
    /// Content (JSON evidence).
    pub content: Value,
}

/// An ITSM record as certops sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    /// Number (INC0010001, CHG0030001).
    pub number: String,
    /// Kind.
    pub kind: TicketKind,
    /// One-line summary.
    pub short_description: String,
    /// Longer description (endpoint, expiry, remediation steps).
    pub description: String,
    /// The CI.
    pub ci: String,
    /// Priority (1 highest).
    pub priority: u8,
    /// State.
    pub state: TicketState,
    /// Correlation id (the trigger's idempotency key): one ticket per trigger.
    pub correlation_id: String,
    /// Work notes, oldest first.
    pub work_notes: Vec<WorkNote>,
    /// Attachments.
    pub attachments: Vec<Attachment>,
    /// Approver identity, once approved.
    pub approved_by: Option<String>,
    /// Approval time.
    pub approved_at: Option<DateTime<Utc>>,
}

/// A new ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTicket {
    /// Kind.
    pub kind: TicketKind,
    /// One-line summary.
    pub short_description: String,
    /// Description.
    pub description: String,
    /// CI.
    pub ci: String,
    /// Priority.
    pub priority: u8,
    /// Correlation id (idempotency).
    pub correlation_id: String,
    /// The policy's standard change a [`TicketKind::StandardChange`] is opened under (its
    /// name, e.g. the ServiceNow standard change template's name); `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard_change: Option<String>,
}

/// An update to a ticket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TicketUpdate {
    /// New state.
    pub state: Option<TicketState>,
    /// A work note to add.
    pub work_note: Option<String>,
    /// Evidence to attach.
    pub attachment: Option<Attachment>,
    /// Approver to record.
    pub approved_by: Option<String>,
    /// Approval time to record.
    pub approved_at: Option<DateTime<Utc>>,
}

/// ITSM (ServiceNow Table API + Change API / local ticket book).
#[async_trait]
pub trait Itsm: Send + Sync {
    /// Opens a ticket, or returns the existing one with the same correlation id.
    async fn open(&self, ticket: NewTicket) -> Result<Ticket, Error>;
    /// Reads a ticket.
    async fn get(&self, number: &str) -> Result<Option<Ticket>, Error>;
    /// Updates a ticket; `author` signs the work note.
    async fn update(
        &self,
        number: &str,
        author: &str,
        update: TicketUpdate,
    ) -> Result<Ticket, Error>;
    /// The record as the ITSM itself holds it, in ServiceNow Table API shape (`number`,
    /// `sys_id`, `sys_class_name`, `category`, `cmdb_ci`, `u_environment`, `priority`,
    /// `opened_by`, plain string values). Intake validates this, not a webhook's body:
    /// the webhook is a notification, the record is the truth. `Ok(None)`: no such record.
    async fn read_record(&self, number: &str) -> Result<Option<Value>, Error>;
}

/// An approval card (Teams Adaptive Card / Slack blocks / local inbox).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalCard {
    /// The approval id the callback names (never the task token).
    pub approval_id: String,
    /// Ticket number.
    pub ticket: String,
    /// Normal or emergency.
    pub path: String,
    /// Certificate object id and CN.
    pub cert: String,
    /// One-line plan summary.
    pub summary: String,
    /// The plan hash being approved.
    pub plan_hash: String,
    /// Who may approve.
    pub approvers: Vec<String>,
    /// Who requested.
    pub requested_by: String,
    /// Expiry of the request.
    pub expires_at: DateTime<Utc>,
}

/// Chat (Teams / Slack / local): approval cards and on-call notifications.
#[async_trait]
pub trait Chat: Send + Sync {
    /// Posts an approval card.
    async fn request_approval(&self, card: &ApprovalCard) -> Result<(), Error>;
    /// Notifies a person or rota.
    async fn notify(&self, to: &str, text: &str) -> Result<(), Error>;
}

/// A certificate signing request for the issuer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssueRequest {
    /// Certificate object id.
    pub cert_id: String,
    /// Issuer from the inventory.
    pub issuer: crate::inventory::Issuer,
    /// CSR in PEM.
    pub csr_pem: String,
    /// Common name.
    pub common_name: String,
    /// SANs.
    pub sans: Vec<String>,
    /// The ARI identifier of the certificate this one replaces (RFC 9773 §5: an ACME order's
    /// `replaces`), when known. Other issuers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

/// A CA's suggested renewal window for one certificate (ACME Renewal Information, RFC 9773).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewalWindow {
    /// The certificate's ARI identifier.
    pub certificate_id: String,
    /// Renew no earlier than this.
    pub start: DateTime<Utc>,
    /// Renew before this.
    pub end: DateTime<Utc>,
    /// Ask again no earlier than this (the CA's `Retry-After`).
    pub next_check: DateTime<Utc>,
    /// Why the window is what it is, if the CA says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation_url: Option<String>,
}

impl RenewalWindow {
    /// Whether a renewal at `now` is inside or past the window (due).
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        now >= self.start
    }
}

/// Issuers (ACME / internal PKI / Private CA / local CA).
#[async_trait]
pub trait Issuer: Send + Sync {
    /// Issues a certificate; returns the chain PEM (leaf first). Rate limits
    /// come back as [`Error::RateLimited`], outages as [`Error::IssuerDown`].
    async fn issue(&self, request: &IssueRequest) -> Result<String, Error>;
    /// PEM of the trust anchors a verifier needs for this issuer (internal PKI).
    async fn trust_anchors_pem(&self) -> Result<Option<String>, Error>;
    /// PEM of the trust anchors of the one inventory issuer `issuer` (what its certificates
    /// must chain to); `None`: the public web roots. Defaults to [`Issuer::trust_anchors_pem`];
    /// a router over several issuers answers for the one named.
    async fn trust_anchors_for(
        &self,
        issuer: &crate::inventory::Issuer,
    ) -> Result<Option<String>, Error> {
        let _ = issuer;
        self.trust_anchors_pem().await
    }
    /// The renewal window inventory issuer `issuer` suggests for the certificate with ARI
    /// identifier `certificate_id` (ACME Renewal Information). `None`: the issuer has none
    /// (not ACME, or a CA without ARI); the planned threshold alone decides what is due.
    async fn renewal_window(
        &self,
        issuer: &crate::inventory::Issuer,
        certificate_id: &str,
    ) -> Result<Option<RenewalWindow>, Error> {
        let _ = (issuer, certificate_id);
        Ok(None)
    }
}

/// A certificate and its key, stored together under one reference.
pub struct Bundle {
    /// Chain PEM, leaf first.
    pub chain_pem: String,
    /// The private key.
    pub key: SecretPem,
}

/// Private keys and certificate bundles (Secrets Manager / local 0600 keystore).
#[async_trait]
pub trait Keystore: Send + Sync {
    /// Stores a bundle under `name`; returns its reference (`keystore:…` or an ARN).
    async fn put_bundle(&self, name: &str, bundle: Bundle) -> Result<String, Error>;
    /// Loads a bundle by reference.
    async fn get_bundle(&self, reference: &str) -> Result<Bundle, Error>;
    /// Whether a reference exists.
    async fn exists(&self, reference: &str) -> Result<bool, Error>;
    /// Every reference (for validation's fallback check).
    async fn references(&self) -> Result<Vec<String>, Error>;
}

/// Deploy targets and their reload (ACM, ELBv2, HAProxy, nginx, REST / in-process TLS endpoint).
#[async_trait]
pub trait DeployTarget: Send + Sync {
    /// The bundle reference currently deployed on the target, if known (last-known-good).
    async fn current(&self, target: &Target) -> Result<Option<String>, Error>;
    /// Installs a bundle on the target. Failures are [`Error::DeployFailed`].
    async fn deploy(&self, target: &Target, bundle_ref: &str) -> Result<(), Error>;
    /// Makes the target serve what was installed.
    async fn reload(&self, target: &Target) -> Result<(), Error>;
    /// The key algorithm (ACM's names: `EC_prime256v1`, `RSA_2048`, …) the certificate on
    /// `target` holds, for a target whose renewal must keep it (an ACM certificate
    /// re-imported in place). `None`: the target takes any key type. Validation reads it so
    /// a renewal that could not be deployed is refused at plan time, with the reason.
    async fn key_algorithm(&self, _target: &Target) -> Result<Option<String>, Error> {
        Ok(None)
    }
    /// What the last `deploy`/`reload` on `target` reported (command output, the server's
    /// answers), already redacted, for the audit record. `None` when there is nothing to add.
    async fn evidence(&self, _target: &Target) -> Option<Value> {
        None
    }
    /// [`DeployTarget::deploy`] then [`DeployTarget::reload`], returning the result and the
    /// evidence of this call alone, so two executions touching the same target id never see
    /// each other's evidence. Adapters that keep evidence override this; the default reads
    /// [`DeployTarget::evidence`] after the calls.
    async fn deploy_and_reload(
        &self,
        target: &Target,
        bundle_ref: &str,
    ) -> (Result<(), Error>, Option<Value>) {
        let result = async {
            self.deploy(target, bundle_ref).await?;
            self.reload(target).await
        }
        .await;
        (result, self.evidence(target).await)
    }
}

/// CDNs (CloudFront, Varnish, REST / in-process cache).
#[async_trait]
pub trait CdnPurger: Send + Sync {
    /// Purges the paths; returns an invalidation id. Failures are [`Error::PurgeFailed`].
    async fn purge(&self, cdn: &Cdn) -> Result<String, Error>;
}

/// What a TLS handshake from outside saw on one address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The address connected to.
    pub address: String,
    /// SHA-256 fingerprint of the served leaf, hex.
    pub fingerprint: String,
    /// Leaf notAfter.
    pub not_after: DateTime<Utc>,
    /// Whether the chain verified to the trust store and the name matched.
    pub chain_valid: bool,
    /// Classification (`ok`, `expired`, `untrusted`, …).
    pub status: String,
    /// The served leaf's ACME Renewal Information identifier (RFC 9773), if it has an AKI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ari_id: Option<String>,
}

/// The outside-in prober (rustls handshake + x509-parser).
#[async_trait]
pub trait Prober: Send + Sync {
    /// Handshakes with every address of `endpoint`; trusts `extra_roots_pem` in addition to the defaults.
    async fn probe(
        &self,
        endpoint: &Endpoint,
        extra_roots_pem: Option<&str>,
    ) -> Result<Vec<Observation>, Error>;
}

/// The workflow engine (Step Functions / local engine): start, callbacks.
#[async_trait]
pub trait Workflow: Send + Sync {
    /// Starts an execution named `name` (the trigger's idempotency key). Returns
    /// its id and whether it already existed.
    async fn start(&self, name: &str, input: &Value) -> Result<(String, bool), Error>;
    /// Completes a waiting task.
    async fn send_success(&self, task_token: &str, output: &Value) -> Result<(), Error>;
    /// Fails a waiting task with a routable error name.
    async fn send_failure(&self, task_token: &str, error: &str, cause: &str) -> Result<(), Error>;
}

/// Seals and opens task tokens so they are never stored in clear.
pub trait TokenSealer: Send + Sync {
    /// Encrypts a token for storage.
    fn seal(&self, token: &str) -> Result<String, Error>;
    /// Decrypts a sealed token.
    fn open(&self, sealed: &str) -> Result<String, Error>;
}

/// The configuration every handler reads: the inventory, policy and runbook.
pub struct Config {
    /// Certificate objects.
    pub inventory: Inventory,
    /// Policy.
    pub policy: Policy,
    /// The runbook that runs.
    pub runbook: Runbook,
    /// Where on-call notifications go when no escalation is listed ([`DEFAULT_ONCALL`]
    /// unless configured).
    pub default_oncall: String,
    /// Which real adapters back the ports (`integrations.toml`; empty: the embedded ones).
    pub integrations: crate::integrations::Integrations,
}

/// Where on-call notifications go when neither the certificate object's escalation nor the
/// deployment (`CERTOPS_DEFAULT_ONCALL`) names anyone.
pub const DEFAULT_ONCALL: &str = "oncall-certops@example.com";

/// Everything a step handler may touch.
#[derive(Clone)]
pub struct Deps {
    /// Configuration.
    pub config: Arc<Config>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Durable state and audit.
    pub store: Arc<dyn Store>,
    /// Queues.
    pub queue: Arc<dyn Queue>,
    /// ITSM.
    pub itsm: Arc<dyn Itsm>,
    /// Chat.
    pub chat: Arc<dyn Chat>,
    /// Issuer.
    pub issuer: Arc<dyn Issuer>,
    /// Keystore.
    pub keystore: Arc<dyn Keystore>,
    /// Deploy targets.
    pub targets: Arc<dyn DeployTarget>,
    /// CDN.
    pub cdn: Arc<dyn CdnPurger>,
    /// Prober.
    pub prober: Arc<dyn Prober>,
    /// Workflow engine.
    pub workflow: Arc<dyn Workflow>,
    /// Token sealing.
    pub sealer: Arc<dyn TokenSealer>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_the_persisted_ones_and_round_trip() {
        let names: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(
            names,
            [
                "triggers",
                "locks",
                "approvals",
                "deployments",
                "issuances",
                "acme-ledger",
                "renewal-info",
                "observations",
                "chat_messages",
                "console_scan_runs"
            ]
        );
        for &t in Table::ALL {
            assert_eq!(Table::from_name(t.name()), Some(t));
        }
        assert_eq!(Table::from_name("kv"), None);
    }

    #[test]
    fn secret_pem_never_prints_its_content() {
        let s = SecretPem::new(format!(
            "-----BEGIN {k}-----\nabc\n-----END {k}-----",
            k = ["PRIVATE", "KEY"].join(" ")
        ));
        assert_eq!(format!("{s}"), "[REDACTED]");
        assert_eq!(format!("{s:?}"), "SecretPem([REDACTED])");
        assert!(s.expose().contains("abc"));
    }
}
