//! The embedded world the step handlers' unit tests run against: the embedded adapters
//! over a temporary data directory (`certops_adapters::Embedded::open`, as the workspace's
//! integration harness builds them), one certificate object served by a real TLS endpoint
//! on 127.0.0.1, its fallback certificate from the local CA, and a local engine whose one
//! `.waitForTaskToken` task hands its token to the test.
//!
//! Every handler crate's tests include this one file (`#[path]`): a shared test-support
//! crate would have to be a workspace member, and the handler crates' tests need exactly
//! the same world. Keys and certificates are generated at run time; none is committed.
#![allow(dead_code)]

use certops_adapters::{Embedded, EngineWorkflow};
use certops_asl::{BoxFuture, Engine, EngineOptions, StatesError, TaskInvoker, TaskRequest};
use certops_core::ports::{
    Bundle, Clock, Config, Deps, Itsm as _, Keystore as _, NewTicket, SecretPem, TicketKind,
};
use certops_core::workflow::{StepEvent, WorkflowState};
use certops_core::{Inventory, Policy, Runbook, ScanFinding, Trigger};
use chrono::{DateTime, Duration as TimeDelta, Timelike, Utc};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The certificate object's id and CI.
pub const CERT_ID: &str = "shop-web";
/// Its common name (and only SAN).
pub const CN: &str = "shop.example.com";
/// Its one deploy target.
pub const TARGET: &str = "lb-shop";
/// Its CDN distribution.
pub const CDN: &str = "shop-cdn";
/// Who may approve a normal change of it.
pub const APPROVER: &str = "olivia@example.com";
/// The on-call its escalation names first.
pub const ONCALL: &str = "oncall-shop@example.com";

/// The runbook the project ships.
const RUNBOOK: &str = certops_adapters::config_files::RUNBOOK;

/// Which approval path the certificate object's environment leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Env {
    /// `dev`: a standard change covers it (pre-approved, fallback too).
    Dev,
    /// `prod`: a normal change its change authority approves.
    Prod,
}

/// A clock the test moves by hand (adapters and handlers read the same one).
pub struct TestClock(Mutex<DateTime<Utc>>);

impl TestClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: TimeDelta) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Hands every task token the engine issues to the test.
struct TokenSink(mpsc::UnboundedSender<String>);

impl TaskInvoker for TokenSink {
    fn invoke(&self, request: TaskRequest) -> BoxFuture<Result<Value, StatesError>> {
        if let Some(token) = request.task_token {
            let _ = self.0.send(token);
        }
        Box::pin(async { Ok(json!({})) })
    }
}

/// One task that waits for its token, like the definition's `RequestApproval`.
const AWAIT_DEFINITION: &str = r#"{"StartAt": "AwaitApproval", "States": {"AwaitApproval": {
    "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
    "Parameters": {"FunctionName": "approval-request", "Payload": {"token.$": "$$.Task.Token"}},
    "ResultPath": "$.decision", "End": true}}}"#;

/// The world.
pub struct World {
    /// The embedded adapters (for inspection and fault injection).
    pub adapters: Embedded,
    /// What the handlers get.
    pub deps: Deps,
    /// The clock in `deps` and in the adapters.
    pub clock: Arc<TestClock>,
    /// The local engine behind `deps.workflow`.
    pub engine: Engine,
    /// The fingerprint the endpoint serves before any change.
    pub initial_fingerprint: String,
    /// The served certificate's notAfter (7 days away).
    pub expiry: DateTime<Utc>,
    /// The certificate object's environment as the inventory names it.
    pub environment: &'static str,
    tokens: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
    _dir: tempfile::TempDir,
}

/// A self-signed-CA certificate for `CN` expiring at `expiry`, as PEM chain and key.
fn foreign_cert(expiry: DateTime<Utc>) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("leaf key");
    let mut p = rcgen::CertificateParams::new(vec![CN.to_string()]).expect("leaf params");
    p.not_after = time::OffsetDateTime::from_unix_timestamp(expiry.timestamp()).expect("time");
    let cert = p.signed_by(&key, &issuer).expect("sign");
    let fingerprint = certops_core::canonical::sha256_hex(cert.der());
    (cert.pem(), key.serialize_pem(), fingerprint)
}

impl World {
    /// Builds the world with the certificate object in `env`.
    pub async fn new(env: Env) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        // The windows close for the day's last minute: keep the domain clock out of it.
        let mut start = Utc::now();
        if start.hour() == 23 && start.minute() == 59 {
            start -= TimeDelta::minutes(2);
        }
        let clock = Arc::new(TestClock(Mutex::new(start)));
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let adapters = Embedded::open(dir.path(), dyn_clock.clone()).expect("adapters");

        // Served today: a certificate from an unrelated CA, expiring in 7 days.
        let expiry =
            DateTime::from_timestamp((start + TimeDelta::days(7)).timestamp(), 0).expect("expiry");
        let (chain_pem, key_pem, initial_fingerprint) = foreign_cert(expiry);
        let current = adapters
            .keystore
            .put_bundle(
                "current/shop",
                Bundle {
                    chain_pem,
                    key: SecretPem::new(key_pem),
                },
            )
            .await
            .expect("current bundle");
        let fallback = adapters
            .provision_fallback("fallback/shop", CERT_ID, &[CN])
            .await
            .expect("fallback");
        let addr = adapters
            .endpoints
            .start(TARGET, &current)
            .await
            .expect("endpoint");

        let environment = match env {
            Env::Dev => certops_core::Environment::Dev,
            Env::Prod => certops_core::Environment::Prod,
        };
        let inventory = certops_adapters::fixtures::LocalCertificate::new(CERT_ID, CN, addr.port())
            .environment(environment)
            .owner(APPROVER)
            .oncall(ONCALL)
            .target(TARGET)
            .fallback(&fallback)
            .cdn(CDN)
            .toml();
        let config = Config {
            inventory: Inventory::from_toml_str(&inventory).expect("inventory"),
            // Windows always open; `dev` is covered by a standard change.
            policy: Policy::from_toml_str(
                &certops_adapters::fixtures::OpenPolicy::new("unit-1")
                    .windows(&["prod", "dev"])
                    .timeouts(60, 5, 5)
                    .fast_verify_attempts(2)
                    .nonprod_standard_change()
                    .toml(),
            )
            .expect("policy"),
            runbook: Runbook::from_toml_str(RUNBOOK).expect("runbook"),
            default_oncall: "oncall@example.com".into(),
            integrations: certops_core::integrations::Integrations::none(),
        };

        let (tx, rx) = mpsc::unbounded_channel();
        let engine = Engine::open(
            EngineOptions::default(),
            Arc::new(TokenSink(tx)),
            Arc::new(certops_asl::TokioClock::system()),
        )
        .expect("engine");
        let machine = engine
            .create_state_machine("approval", AWAIT_DEFINITION, certops_asl::DEFAULT_ROLE_ARN)
            .expect("state machine");
        let deps = Deps {
            config: Arc::new(config),
            clock: dyn_clock,
            store: adapters.store.clone(),
            queue: adapters.queue.clone(),
            itsm: adapters.tickets.clone(),
            chat: adapters.chat.clone(),
            issuer: adapters.ca.clone(),
            keystore: adapters.keystore.clone(),
            targets: adapters.endpoints.clone(),
            cdn: adapters.cdn.clone(),
            prober: Arc::new(
                certops_adapters::TlsProber::new(std::time::Duration::from_secs(3))
                    .expect("prober"),
            ),
            workflow: Arc::new(EngineWorkflow::new(engine.clone(), machine.arn)),
            sealer: adapters.sealer.clone(),
        };
        World {
            adapters,
            deps,
            clock,
            engine,
            initial_fingerprint,
            expiry,
            environment: environment.as_str(),
            tokens: tokio::sync::Mutex::new(rx),
            _dir: dir,
        }
    }

    /// A step event for `trigger` in execution `execution`, with no step run yet.
    pub fn event_for(&self, execution: &str, trigger: Trigger) -> StepEvent {
        let state: WorkflowState = serde_json::from_value(json!({
            "trigger": trigger,
            "idempotencyKey": format!("key-{execution}"),
            "receivedAt": self.clock.now(),
        }))
        .expect("workflow state");
        StepEvent {
            execution: execution.to_string(),
            action: None,
            mode: None,
            task_token: None,
            state,
        }
    }

    /// [`World::scan_event`] run through the real validate step: its report stored where
    /// the definition puts it, as every later step receives it.
    pub async fn validated(&self, execution: &str) -> StepEvent {
        let mut event = self.scan_event(execution);
        event.state.validation = Some(
            certops_fn_validate::handle(&self.deps, event.clone())
                .await
                .expect("validate"),
        );
        event
    }

    /// A step event for the scan finding of the endpoint as it is today.
    pub fn scan_event(&self, execution: &str) -> StepEvent {
        self.event_for(
            execution,
            Trigger::Scan(ScanFinding {
                ci: CERT_ID.into(),
                observed_expiry: self.expiry,
                observed_fingerprint: Some(self.initial_fingerprint.clone()),
            }),
        )
    }

    /// Opens an incident in the ticket book and returns the ticket trigger naming it
    /// (raised by `requested_by` against `ci`, stating the world's environment).
    pub async fn incident(&self, ci: &str, requested_by: &str) -> Trigger {
        let t = self
            .adapters
            .tickets
            .open(NewTicket {
                kind: TicketKind::Incident,
                short_description: format!("Certificate for {ci} expires soon"),
                description: "raised by a unit test".into(),
                ci: ci.into(),
                priority: 2,
                correlation_id: format!("unit:{ci}:{requested_by}"),
                standard_change: None,
            })
            .await
            .expect("incident");
        serde_json::from_value(json!({"source": "ticket", "number": t.number, "sys_id": "sys-1",
            "type": "incident", "category": "Certificate", "ci": ci, "environment": self.environment,
            "requested_by": requested_by, "priority": "2 - High"}))
        .expect("ticket trigger")
    }

    /// Starts an execution of the one-task machine and returns its ARN and the token of
    /// its waiting task.
    pub async fn waiting_task(&self, name: &str) -> (String, String) {
        let (arn, _) = self
            .deps
            .workflow
            .start(name, &json!({}))
            .await
            .expect("start");
        let token = self.tokens.lock().await.recv().await.expect("task token");
        (arn, token)
    }

    /// The stored approval record `id`.
    pub async fn approval(&self, id: &str) -> serde_json::Value {
        self.deps
            .store
            .get(certops_core::ports::Table::Approvals, id)
            .await
            .expect("store")
            .expect("approval record")
    }

    /// The execution's audit trail, oldest first.
    pub async fn audit(&self, execution: &str) -> Vec<certops_core::AuditRecord> {
        self.deps.store.audit(execution).await.expect("audit")
    }

    /// The ticket's work notes, oldest first.
    pub async fn work_notes(&self, number: &str) -> Vec<String> {
        self.deps
            .itsm
            .get(number)
            .await
            .expect("ticket")
            .expect("ticket exists")
            .work_notes
            .into_iter()
            .map(|n| n.text)
            .collect()
    }
}
