//! [`Deps`] for fuzzing the HTTP handlers: a fixed clock, an in-memory store,
//! a workflow that records starts, the example inventory, policy and runbook,
//! and every other port refusing with `Transient` (the handlers under test
//! never reach them; if one does, the handler answers 503 instead of the
//! target touching the network or disk).

use async_trait::async_trait;
use certops_core::integrations::Integrations;
use certops_core::inventory::{Cdn, Endpoint, Target};
use certops_core::ports::{ApprovalCard, Bundle, CdnPurger, Chat, Clock, Config, DeployTarget, Deps, IssueRequest, Issuer, Itsm, Keystore, Message, NewTicket, Observation, Prober, Queue, Store, Table, Ticket, TicketUpdate, TokenSealer, Workflow};
use certops_core::{
    AuditEntry, AuditKey, AuditRecord, ChainHead, Error, Inventory, Policy, Runbook,
};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The clock every fuzzed request is judged against (unix seconds).
pub const NOW: i64 = 1_765_095_300; // 2025-12-07T08:15:00Z

fn refused<T>() -> Result<T, Error> {
    Err(Error::Transient("not available while fuzzing".into()))
}

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(NOW, 0).single().unwrap_or_default()
    }
}

/// An approval that was already decided and delivered: every callback for it is a
/// refused, audited reuse (409), whatever the request carries.
pub const SPENT_APPROVAL: &str = "APR-SPENT0000001";

/// Tables and audit chains in memory.
#[derive(Default)]
struct MemoryStore {
    tables: Mutex<HashMap<(String, String), Value>>,
    audit: Mutex<HashMap<String, Vec<AuditRecord>>>,
}

impl MemoryStore {
    fn tables(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Value>> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn put_if_absent(&self, table: Table, key: &str, value: &Value) -> Result<bool, Error> {
        let mut t = self.tables();
        let k = (table.name().to_string(), key.to_string());
        if t.contains_key(&k) {
            return Ok(false);
        }
        t.insert(k, value.clone());
        Ok(true)
    }
    async fn get(&self, table: Table, key: &str) -> Result<Option<Value>, Error> {
        Ok(self
            .tables()
            .get(&(table.name().to_string(), key.to_string()))
            .cloned())
    }
    async fn compare_and_swap(
        &self,
        table: Table,
        key: &str,
        expected: Option<&Value>,
        new: &Value,
    ) -> Result<bool, Error> {
        let mut t = self.tables();
        let k = (table.name().to_string(), key.to_string());
        if t.get(&k) != expected {
            return Ok(false);
        }
        t.insert(k, new.clone());
        Ok(true)
    }
    async fn delete_if(&self, table: Table, key: &str, expected: &Value) -> Result<bool, Error> {
        let mut t = self.tables();
        let k = (table.name().to_string(), key.to_string());
        if t.get(&k) != Some(expected) {
            return Ok(false);
        }
        t.remove(&k);
        Ok(true)
    }
    async fn append_audit(&self, execution: &str, entry: AuditEntry) -> Result<AuditRecord, Error> {
        let mut audit = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        let chain = audit.entry(execution.to_string()).or_default();
        let record = AuditRecord::next(chain.last(), execution, entry)?;
        chain.push(record.clone());
        Ok(record)
    }
    async fn audit(&self, execution: &str) -> Result<Vec<AuditRecord>, Error> {
        let audit = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        Ok(audit.get(execution).cloned().unwrap_or_default())
    }
    async fn audited_executions(&self) -> Result<Vec<String>, Error> {
        let audit = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        Ok(audit.keys().cloned().collect())
    }
    async fn audit_head(&self, execution: &str) -> Result<Option<ChainHead>, Error> {
        // The head of the last record, anchored with a fixed stand-in key.
        let key = AuditKey::new(vec![0x42; 32])?;
        let audit = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        Ok(audit
            .get(execution)
            .and_then(|chain| chain.last())
            .map(|last| ChainHead::after(last, &key)))
    }
}

/// Records the names it was asked to start; the same name twice is a duplicate.
#[derive(Default)]
struct RecordingWorkflow {
    started: Mutex<Vec<String>>,
}

#[async_trait]
impl Workflow for RecordingWorkflow {
    async fn start(&self, name: &str, _input: &Value) -> Result<(String, bool), Error> {
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        let duplicate = started.iter().any(|n| n == name);
        if !duplicate {
            started.push(name.to_string());
        }
        Ok((format!("arn:aws:states:fuzz:execution:{name}"), duplicate))
    }
    async fn send_success(&self, _: &str, _: &Value) -> Result<(), Error> {
        refused()
    }
    async fn send_failure(&self, _: &str, _: &str, _: &str) -> Result<(), Error> {
        refused()
    }
}

/// Every port the handlers under test do not use.
struct Refusing;

#[async_trait]
impl Queue for Refusing {
    async fn send(&self, _: &str, _: &Value) -> Result<String, Error> {
        refused()
    }
    async fn receive(&self, _: &str, _: usize, _: Duration) -> Result<Vec<Message>, Error> {
        refused()
    }
    async fn delete(&self, _: &str, _: &str) -> Result<(), Error> {
        refused()
    }
    async fn depth(&self, _: &str) -> Result<usize, Error> {
        refused()
    }
}

#[async_trait]
impl Itsm for Refusing {
    async fn open(&self, _: NewTicket) -> Result<Ticket, Error> {
        refused()
    }
    async fn get(&self, _: &str) -> Result<Option<Ticket>, Error> {
        refused()
    }
    async fn update(&self, _: &str, _: &str, _: TicketUpdate) -> Result<Ticket, Error> {
        refused()
    }
    async fn read_record(&self, _: &str) -> Result<Option<Value>, Error> {
        refused()
    }
}

#[async_trait]
impl Chat for Refusing {
    async fn request_approval(&self, _: &ApprovalCard) -> Result<(), Error> {
        refused()
    }
    async fn notify(&self, _: &str, _: &str) -> Result<(), Error> {
        refused()
    }
}

#[async_trait]
impl Issuer for Refusing {
    async fn issue(&self, _: &IssueRequest) -> Result<String, Error> {
        refused()
    }
    async fn trust_anchors_pem(&self) -> Result<Option<String>, Error> {
        refused()
    }
}

#[async_trait]
impl Keystore for Refusing {
    async fn put_bundle(&self, _: &str, _: Bundle) -> Result<String, Error> {
        refused()
    }
    async fn get_bundle(&self, _: &str) -> Result<Bundle, Error> {
        refused()
    }
    async fn exists(&self, _: &str) -> Result<bool, Error> {
        refused()
    }
    async fn references(&self) -> Result<Vec<String>, Error> {
        refused()
    }
}

#[async_trait]
impl DeployTarget for Refusing {
    async fn current(&self, _: &Target) -> Result<Option<String>, Error> {
        refused()
    }
    async fn deploy(&self, _: &Target, _: &str) -> Result<(), Error> {
        refused()
    }
    async fn reload(&self, _: &Target) -> Result<(), Error> {
        refused()
    }
}

#[async_trait]
impl CdnPurger for Refusing {
    async fn purge(&self, _: &Cdn) -> Result<String, Error> {
        refused()
    }
}

#[async_trait]
impl Prober for Refusing {
    async fn probe(&self, _: &Endpoint, _: Option<&str>) -> Result<Vec<Observation>, Error> {
        refused()
    }
}

impl TokenSealer for Refusing {
    fn seal(&self, _: &str) -> Result<String, Error> {
        refused()
    }
    fn open(&self, _: &str) -> Result<String, Error> {
        refused()
    }
}

/// The example inventory, policy and runbook shipped in `runbooks/`, parsed once.
fn config() -> Arc<Config> {
    static CONFIG: OnceLock<Arc<Config>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let parse = || -> Result<Config, Error> {
                Ok(Config {
                    inventory: Inventory::from_toml_str(include_str!(
                        "../../runbooks/inventory.toml"
                    ))?,
                    policy: Policy::from_toml_str(include_str!("../../runbooks/policy.toml"))?,
                    runbook: Runbook::from_toml_str(include_str!(
                        "../../runbooks/cert-renewal.runbook.toml"
                    ))?,
                    default_oncall: "oncall-certops@example.com".into(),
                    integrations: Integrations::none(),
                })
            };
            Arc::new(parse().expect("the example configuration in runbooks/ parses"))
        })
        .clone()
}

/// Fresh ports for one fuzzed request: nothing carries over between inputs. The
/// store holds [`SPENT_APPROVAL`].
pub fn deps() -> Deps {
    let refusing = Arc::new(Refusing);
    let store = MemoryStore::default();
    store.tables().insert(
        ("approvals".into(), SPENT_APPROVAL.into()),
        serde_json::json!({
            "execution": "arn:aws:states:fuzz:execution:ticket-inc-spent",
            "status": "approved",
            "delivery": "delivered",
            "decision": {"approver": "carol@example.com", "verdict": "approve"},
        }),
    );
    Deps {
        config: config(),
        clock: Arc::new(FixedClock),
        store: Arc::new(store),
        queue: refusing.clone(),
        itsm: refusing.clone(),
        chat: refusing.clone(),
        issuer: refusing.clone(),
        keystore: refusing.clone(),
        targets: refusing.clone(),
        cdn: refusing.clone(),
        prober: refusing.clone(),
        workflow: Arc::new(RecordingWorkflow::default()),
        sealer: refusing,
    }
}

/// Runs a handler's future to completion on a single-threaded runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread tokio runtime")
        .block_on(f)
}
