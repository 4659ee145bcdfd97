//! The governed renewal workflow on the embedded default: the real definition
//! on the local engine, real TLS endpoints, the local CA, ticket book and chat
//! inbox. Each test reads like one rule of the product.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_core::ports::{Itsm, Store, Table};
use certops_core::workflow::WorkflowState;
use certops_core::{Trigger, Verdict};
use certops_fn_approval_callback::Callback;
use certops_tests::world::{succeeded, world, World};
use chrono::Duration as TimeDelta;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

async fn start_scan(w: &World) -> String {
    w.stack
        .trigger(Trigger::Scan(w.finding()))
        .await
        .expect("trigger")
        .execution
}

async fn card(w: &World, exec: &str) -> String {
    w.stack
        .wait_for_card(exec, Duration::from_secs(30))
        .await
        .expect("approval card")
}

/// A world in `dir` with a scan-triggered renewal waiting for its approval card.
async fn waiting_renewal(dir: &std::path::Path) -> (World, String) {
    let w = world(dir, None).await;
    let exec = start_scan(&w).await;
    card(&w, &exec).await;
    (w, exec)
}

fn decision(id: &str, who: &str, verdict: Verdict) -> Callback {
    Callback {
        approval_id: id.into(),
        approver: who.into(),
        verdict,
        comment: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_scenarios_all_end_as_expected_with_intact_audit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = certops_embedded::demo::run(dir.path(), &|_| {})
        .await
        .expect("demo");
    for s in &report.scenarios {
        assert!(s.ok, "{}: {:?}", s.name, s.problems);
    }
    assert_eq!(report.scenarios.len(), 6);
    // Every execution's audit chain verifies, and the trail names who approved.
    let db = certops_adapters::LocalDb::open(&dir.path().join("certops.db")).expect("db");
    let store = certops_adapters::SqliteStore::new(
        db,
        certops_adapters::audit_key(dir.path()).expect("audit key"),
    );
    let executions = store.audited_executions().await.expect("executions");
    assert!(executions.len() >= 6, "{executions:?}");
    for e in &executions {
        let records = store.audit(e).await.expect("audit");
        let head = store.audit_head(e).await.expect("head");
        let key = certops_adapters::audit_key(dir.path()).expect("audit key");
        certops_core::verify_anchored(e, &records, head.as_ref(), &key)
            .unwrap_or_else(|err| panic!("{e}: {err}"));
    }
    let first = report.scenarios[0].execution.clone().expect("execution");
    let trail = store.audit(&first).await.expect("trail");
    assert!(
        trail
            .iter()
            .any(|r| r.actor == "approver:olivia@example.com"),
        "approver missing from the audit trail"
    );
    assert!(trail
        .iter()
        .any(|r| r.kind == certops_core::AuditKind::Outcome));

    // Scenario 4 keeps serving the old certificate: verify waited and tried again on the
    // policy's [verify] schedule (the demo's: 3 attempts, 1 s apart) before the rollback.
    let stuck = report.scenarios[3].execution.clone().expect("execution");
    let verifies: Vec<(u64, String)> = store
        .audit(&stuck)
        .await
        .expect("trail")
        .iter()
        .filter(|r| r.actor == "step:verify")
        .map(|r| {
            (
                r.summary["attempt"].as_u64().unwrap_or_default(),
                r.summary["result"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        verifies.iter().map(|v| v.0).collect::<Vec<_>>(),
        [1, 2, 3],
        "{verifies:?}"
    );
    assert!(
        verifies[0].1.contains("verifying again in 1 s"),
        "{verifies:?}"
    );
    assert_eq!(verifies[2].1, "NotYetServed");
    assert!(store
        .audit(&stuck)
        .await
        .expect("trail")
        .iter()
        .any(|r| r.actor == "step:rollback"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_renewal_is_served_and_evidenced_in_the_ticket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = world(dir.path(), None).await;
    let exec = start_scan(&w).await;
    let id = card(&w, &exec).await;
    w.stack
        .decide(decision(&id, "cab-alice@example.com", Verdict::Approve))
        .await
        .expect("approve");
    let done = succeeded(&w.stack, &exec, WAIT).await;
    let state: WorkflowState = serde_json::from_value(done.output.expect("output")).expect("state");
    let served = state.verification.expect("verification");
    assert_ne!(served.fingerprint, w.initial_fingerprint);
    assert!(served
        .observations
        .iter()
        .all(|o| o.chain_valid && o.fingerprint == served.fingerprint));
    // The history has AWS's shape: the approval waited on a task token.
    let types: Vec<&str> = w
        .stack
        .engine
        .history(&exec)
        .expect("history")
        .iter()
        .map(|e| e.kind.as_str())
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    assert!(types.contains(&"TaskSubmitted"), "{types:?}");
    assert_eq!(types.last(), Some(&"ExecutionSucceeded"));
    let ticket = w
        .stack
        .adapters
        .tickets
        .get(&state.validation.expect("v").ticket)
        .await
        .expect("get")
        .expect("ticket");
    assert_eq!(ticket.state, certops_core::ports::TicketState::Closed);
    assert_eq!(ticket.approved_by.as_deref(), Some("cab-alice@example.com"));
    let evidence = ticket
        .attachments
        .iter()
        .find(|a| a.name == "evidence.json")
        .expect("evidence");
    assert_eq!(
        evidence.content["servedFingerprint"],
        serde_json::json!(served.fingerprint)
    );
    assert!(
        evidence.content["expiryBefore"].is_string() && evidence.content["expiryAfter"].is_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_trigger_yields_one_execution_and_one_ticket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = world(dir.path(), None).await;
    let a = w
        .stack
        .trigger(Trigger::Scan(w.finding()))
        .await
        .expect("first");
    let b = w
        .stack
        .trigger(Trigger::Scan(w.finding()))
        .await
        .expect("second");
    assert_eq!(a.execution, b.execution);
    assert!(!a.duplicate && b.duplicate);
    card(&w, &a.execution).await;
    assert_eq!(
        w.stack
            .engine
            .list_executions(None)
            .iter()
            .filter(|e| *e.meta.state_machine_arn == *w.stack.state_machine_arn)
            .count(),
        1
    );
    let tickets = w.stack.adapters.tickets.list().expect("tickets");
    assert_eq!(tickets.len(), 1, "{tickets:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_approval_and_outsiders_are_refused_and_the_request_stays_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = world(dir.path(), None).await;
    // A ticket opened by the service owner, who is also in the change authority.
    let inc = w
        .stack
        .adapters
        .tickets
        .open(certops_core::ports::NewTicket {
            kind: certops_core::ports::TicketKind::NormalChange,
            short_description: "renew shop".into(),
            description: "renew".into(),
            ci: "shop-web-prod".into(),
            priority: 3,
            correlation_id: "sn-chg-1".into(),
            standard_change: None,
        })
        .await
        .expect("ticket");
    let payload = serde_json::json!({"number": inc.number, "sys_id": "x1", "sys_class_name": "change_request", "category": "Certificate",
        "cmdb_ci": "shop-web-prod", "u_environment": "prod", "opened_by": "olivia@example.com", "priority": "3"});
    let exec = w
        .stack
        .trigger(certops_fn_intake::trigger_from_servicenow(&payload).expect("trigger"))
        .await
        .expect("start")
        .execution;
    let id = card(&w, &exec).await;
    let own = w
        .stack
        .decide(decision(&id, "olivia@example.com", Verdict::Approve))
        .await
        .expect_err("self-approval");
    assert_eq!(own.name(), "SelfApproval");
    let outsider = w
        .stack
        .decide(decision(&id, "mallory@example.com", Verdict::Approve))
        .await
        .expect_err("outsider");
    assert_eq!(outsider.name(), "NotInChangeAuthority");
    // Still waiting; a member of the change authority can approve, once.
    assert_eq!(
        w.stack
            .engine
            .describe_execution(&exec)
            .expect("describe")
            .status
            .as_str(),
        "RUNNING"
    );
    w.stack
        .decide(decision(&id, "cab-alice@example.com", Verdict::Approve))
        .await
        .expect("approve");
    let again = w
        .stack
        .decide(decision(&id, "cab-alice@example.com", Verdict::Approve))
        .await
        .expect_err("single use");
    assert_eq!(again.name(), "Conflict");
    let done = w.stack.wait(&exec, WAIT).await.expect("done");
    assert_eq!(done.status.as_str(), "SUCCEEDED", "{:?}", done.cause);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_after_its_time_out_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = world(dir.path(), None).await;
    let exec = start_scan(&w).await;
    let id = card(&w, &exec).await;
    w.clock.advance(TimeDelta::minutes(6)); // normal approvals expire after 5 minutes
    let late = w
        .stack
        .decide(decision(&id, "cab-alice@example.com", Verdict::Approve))
        .await
        .expect_err("late approval");
    assert_eq!(late.name(), "ApprovalExpired");
    let done = w.stack.wait(&exec, WAIT).await.expect("done");
    assert_eq!(done.error.as_deref(), Some("NotApproved"));
    assert_eq!(
        w.stack.adapters.endpoints.installed("lb-shop").as_deref(),
        Some("keystore:current/shop"),
        "nothing may be deployed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_changed_after_approval_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = world(dir.path(), None).await;
    let exec = start_scan(&w).await;
    let id = card(&w, &exec).await;
    // Someone adds a SAN to the inventory entry after the card went out.
    let mut drifted = w.stack.deps.clone();
    let edited = w.inventory_text.replace(
        "environment = \"prod\"",
        "sans = [\"shop.example.com\", \"admin.shop.example.com\"]\nenvironment = \"prod\"",
    );
    drifted.config = std::sync::Arc::new(certops_core::ports::Config {
        inventory: certops_core::Inventory::from_toml_str(&edited).expect("edited inventory"),
        policy: w.stack.deps.config.policy.clone(),
        runbook: w.stack.deps.config.runbook.clone(),
        default_oncall: "oncall@example.com".into(),
        integrations: certops_core::integrations::Integrations::none(),
    });
    let refused = certops_fn_approval_callback::handle(
        &drifted,
        decision(&id, "cab-alice@example.com", Verdict::Approve),
    )
    .await
    .expect_err("approval of a drifted plan");
    assert_eq!(refused.name(), "PlanDrift");
    // And an executing step recomputes the hash and refuses too.
    let state = certops_core::workflow::StepEvent {
        execution: exec.clone(),
        action: None,
        mode: None,
        task_token: None,
        state: serde_json::from_value(
            w.stack
                .engine
                .describe_execution(&exec)
                .expect("d")
                .meta
                .input,
        )
        .expect("state"),
    };
    let mut with_approval = state.clone();
    with_approval.state.validation = last_validation(&w, &exec);
    with_approval.state.approval = Some(certops_core::workflow::ApprovalOutcome {
        approval_id: id.clone(),
        approver: "cab-alice@example.com".into(),
        decided_at: chrono::Utc::now(),
        plan_hash: with_approval
            .state
            .validation
            .as_ref()
            .and_then(|v| v.plan_hash.clone())
            .expect("hash"),
        comment: None,
    });
    let step = certops_fn_renew::handle(&drifted, with_approval)
        .await
        .expect_err("renew under drift");
    assert_eq!(step.name(), "PlanDrift");
}

fn last_validation(w: &World, exec: &str) -> Option<certops_core::workflow::ValidationOutput> {
    w.stack
        .engine
        .history(exec)
        .ok()?
        .iter()
        .rev()
        .find_map(|e| {
            let details = e.details_value()?;
            let text = details.get("output")?.as_str()?;
            serde_json::from_str::<WorkflowState>(text).ok()?.validation
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_change_outside_its_window_is_blocked_naming_the_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let today = chrono::Utc::now().format("%a").to_string().to_lowercase();
    let other = if today == "mon" { "tue" } else { "mon" };
    let window =
        format!("timezone = \"UTC\"\ndays = [\"{other}\"]\nstart = \"00:00\"\nend = \"23:59\"");
    let w = world(dir.path(), Some(&window)).await;
    let exec = start_scan(&w).await;
    let done = w.stack.wait(&exec, WAIT).await.expect("done");
    assert_eq!(done.error.as_deref(), Some("Blocked"));
    let tickets = w.stack.adapters.tickets.list().expect("tickets");
    let note = tickets[0]
        .work_notes
        .iter()
        .map(|n| n.text.clone())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        note.contains(other) || note.to_lowercase().contains("window"),
        "the window is not named: {note}"
    );
    assert_eq!(
        w.stack.adapters.endpoints.installed("lb-shop").as_deref(),
        Some("keystore:current/shop")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_keys_never_appear_in_history_audit_tickets_queues_or_databases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = world(dir.path(), None).await;
    let exec = start_scan(&w).await;
    let id = card(&w, &exec).await;
    w.stack
        .decide(decision(&id, "cab-alice@example.com", Verdict::Approve))
        .await
        .expect("approve");
    let done = w.stack.wait(&exec, WAIT).await.expect("done");
    assert_eq!(done.status.as_str(), "SUCCEEDED");
    // Canaries: distinctive lines of every private key the run created or used.
    let mut canaries = Vec::new();
    for r in w.stack.deps.keystore.references().await.expect("refs") {
        let b = w.stack.deps.keystore.get_bundle(&r).await.expect("bundle");
        let body: String = b
            .key
            .expose()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        canaries.push(body[..40].to_string());
    }
    assert!(
        canaries.len() >= 3,
        "expected current, fallback and renewed keys: {canaries:?}"
    );
    let history =
        serde_json::to_string(&w.stack.engine.history(&exec).expect("history")).expect("json");
    let audit = serde_json::to_string(&w.stack.deps.store.audit(&exec).await.expect("audit"))
        .expect("json");
    let tickets =
        serde_json::to_string(&w.stack.adapters.tickets.list().expect("tickets")).expect("json");
    let cards = serde_json::to_string(&w.stack.adapters.chat.pending_cards().expect("cards"))
        .expect("json");
    let queue = format!("{}", w.stack.deps.queue.depth("intake").await.unwrap_or(0));
    let mut databases = String::new();
    for f in ["certops.db", "certops.db-wal", "state.db", "state.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(f)) {
            databases.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    for c in &canaries {
        for (name, text) in [
            ("history", &history),
            ("audit", &audit),
            ("tickets", &tickets),
            ("cards", &cards),
            ("queue", &queue),
            ("databases", &databases),
        ] {
            assert!(
                !text.contains(c.as_str()),
                "private key material found in {name}"
            );
        }
    }
    assert!(
        !history.contains("PRIVATE KEY")
            && !audit.contains("PRIVATE KEY")
            && !databases.contains("PRIVATE KEY")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verification_finds_a_tampered_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (w, exec) = waiting_renewal(dir.path()).await;
    let records = w.stack.deps.store.audit(&exec).await.expect("audit");
    certops_core::verify_chain(&records).expect("intact chain");
    assert!(w
        .stack
        .adapters
        .store
        .tamper_audit_summary(&exec, 1, serde_json::json!({"edited": true}))
        .expect("tamper"));
    let tampered = w.stack.deps.store.audit(&exec).await.expect("audit");
    let err = certops_core::verify_chain(&tampered).expect_err("break");
    assert_eq!(err.name(), "ChainBreak");
    // The CLI says so with a non-zero exit.
    drop(w);
    let out = std::process::Command::new(certops_tests::process::certops_bin())
        .args(["--data-dir"])
        .arg(dir.path())
        .args(["audit", "verify"])
        .output()
        .expect("run certops");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("BROKEN"));
}

/// `certops audit verify --json` over `dir`: (exit code, the one execution's verdict).
fn audit_verify(dir: &std::path::Path) -> (Option<i32>, serde_json::Value) {
    let out = std::process::Command::new(certops_tests::process::certops_bin())
        .args(["--data-dir"])
        .arg(dir)
        .args(["audit", "verify", "--json"])
        .output()
        .expect("run certops");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), doc)
}

/// `certops audit verify` exits 1 and names `why` for `exec`'s chain.
fn assert_audit_names(dir: &std::path::Path, exec: &str, why: &str) {
    let (code, doc) = audit_verify(dir);
    assert_eq!(code, Some(1), "{doc:#}");
    let verdict = doc["executions"]
        .as_array()
        .expect("executions")
        .iter()
        .find(|e| e["execution"] == exec)
        .expect("the execution is listed");
    assert!(
        verdict["break"].as_str().unwrap_or_default().contains(why),
        "{verdict:#}"
    );
}

/// Finding 4: what an edit of the database file without the audit key can do — drop the
/// tail, re-hash an edited chain, delete a whole chain with its head — is each named by
/// `audit verify`, and the tampered chain is not extended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_a_missing_tail_a_rehashed_chain_and_a_missing_chain() {
    // A missing tail.
    let dir = tempfile::tempdir().expect("tempdir");
    let (w, exec) = waiting_renewal(dir.path()).await;
    let records = w.stack.deps.store.audit(&exec).await.expect("audit");
    assert!(records.len() >= 2, "{records:?}");
    let last = records.len() as u64 - 1;
    assert_eq!(
        w.stack
            .adapters
            .store
            .tamper_truncate(&exec, last)
            .expect("truncate"),
        1
    );
    certops_core::verify_chain(&w.stack.deps.store.audit(&exec).await.expect("audit"))
        .expect("the shorter chain still links");
    let refused = w
        .stack
        .deps
        .store
        .append_audit(
            &exec,
            certops_core::AuditEntry {
                at: chrono::Utc::now(),
                kind: certops_core::AuditKind::Action,
                actor: "test".into(),
                summary: serde_json::json!({}),
                runbook_version: "1".into(),
            },
        )
        .await
        .expect_err("a truncated chain is not extended");
    assert_eq!(refused.name(), "ChainBreak", "{refused}");
    drop(w);
    assert_audit_names(
        dir.path(),
        &exec,
        &format!("missing tail: records {last}..{last}"),
    );

    // An edit, re-hashed to the end: the bare chain links, the anchored head does not.
    let dir = tempfile::tempdir().expect("tempdir");
    let (w, exec) = waiting_renewal(dir.path()).await;
    let mut records = w.stack.deps.store.audit(&exec).await.expect("audit");
    records[0].actor = "mallory".into();
    for i in 0..records.len() {
        if i > 0 {
            records[i].prev_hash = records[i - 1].hash.clone();
        }
        records[i].hash = records[i].compute_hash();
        assert!(w
            .stack
            .adapters
            .store
            .tamper_replace_record(&records[i])
            .expect("replace"));
    }
    certops_core::verify_chain(&w.stack.deps.store.audit(&exec).await.expect("audit"))
        .expect("the re-hashed chain links");
    drop(w);
    assert_audit_names(dir.path(), &exec, "re-hashed without the audit key");

    // A whole chain deleted with its head: the engine ran Validate, so the chain is missing.
    let dir = tempfile::tempdir().expect("tempdir");
    let (w, exec) = waiting_renewal(dir.path()).await;
    assert!(
        w.stack
            .adapters
            .store
            .tamper_truncate(&exec, 0)
            .expect("truncate")
            >= 2
    );
    assert!(w
        .stack
        .adapters
        .store
        .tamper_delete_head(&exec)
        .expect("delete head"));
    drop(w);
    assert_audit_names(dir.path(), &exec, "missing chain");
    // And an untouched data directory verifies.
    let dir = tempfile::tempdir().expect("tempdir");
    let (w, _) = waiting_renewal(dir.path()).await;
    drop(w);
    let (code, doc) = audit_verify(dir.path());
    assert_eq!(code, Some(0), "{doc:#}");
    assert_eq!(doc["broken"], 0);
}

fn key_canaries(dir: &std::path::Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            key_canaries(&path, out);
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                if let Some(pem) = v["key_pem"].as_str() {
                    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
                    out.push(body[..40.min(body.len())].to_string());
                }
            }
        }
    }
}

#[test]
fn private_keys_never_appear_in_the_logs_or_output_of_a_full_demo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(certops_tests::process::certops_bin())
        .args(["--log", "debug", "--data-dir"])
        .arg(dir.path())
        .arg("demo")
        .output()
        .expect("run certops demo");
    assert!(
        out.status.success(),
        "demo failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut canaries = Vec::new();
    key_canaries(&dir.path().join("demo/keystore"), &mut canaries);
    assert!(
        canaries.len() >= 10,
        "expected the CA, current, fallback and renewed keys: {}",
        canaries.len()
    );
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(logs.len() > 1000, "debug logging produced output to check");
    for c in &canaries {
        assert!(
            !logs.contains(c.as_str()),
            "private key material in the demo's output or logs"
        );
    }
    assert!(!logs.contains("PRIVATE KEY"));
}

/// A chat whose first `request_approval` fails, as a Teams or Slack outage would.
struct FlakyChat {
    inner: std::sync::Arc<dyn certops_core::ports::Chat>,
    failures: std::sync::atomic::AtomicU32,
    posted: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl certops_core::ports::Chat for FlakyChat {
    async fn request_approval(
        &self,
        card: &certops_core::ports::ApprovalCard,
    ) -> Result<(), certops_core::Error> {
        if self
            .failures
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok()
        {
            return Err(certops_core::Error::Transient("chat unavailable".into()));
        }
        self.posted
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.request_approval(card).await
    }
    async fn notify(&self, to: &str, text: &str) -> Result<(), certops_core::Error> {
        self.inner.notify(to, text).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_card_that_failed_to_post_is_posted_noted_and_audited_on_retry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = world(dir.path(), None).await;
    let mut deps = w.stack.deps.clone();
    let flaky = std::sync::Arc::new(FlakyChat {
        inner: deps.chat.clone(),
        failures: std::sync::atomic::AtomicU32::new(1),
        posted: std::sync::atomic::AtomicU32::new(0),
    });
    deps.chat = flaky.clone();
    let trigger = Trigger::Scan(w.finding());
    let mut state: WorkflowState = serde_json::from_value(serde_json::json!({
        "trigger": trigger,
        "idempotencyKey": trigger.idempotency_key(),
        "receivedAt": chrono::Utc::now(),
    }))
    .expect("state");
    let exec = "arn:aws:states:us-east-1:123456789012:execution:cert-renewal:flaky-chat";
    let event = |state: &WorkflowState, token: &str| certops_core::workflow::StepEvent {
        execution: exec.into(),
        action: None,
        mode: None,
        task_token: Some(token.into()),
        state: state.clone(),
    };
    let validation = certops_fn_validate::handle(&deps, event(&state, "unused"))
        .await
        .expect("validate");
    assert_eq!(validation.path.as_str(), "normal");
    let ticket = validation.ticket.clone();
    state.validation = Some(validation);
    let first = certops_fn_approval_request::handle(&deps, event(&state, "token-1")).await;
    assert_eq!(
        first.unwrap_err().name(),
        "Transient",
        "the card did not go out"
    );
    let requested = certops_fn_approval_request::handle(&deps, event(&state, "token-2"))
        .await
        .expect("the retried step posts the card");
    assert_eq!(flaky.posted.load(std::sync::atomic::Ordering::SeqCst), 1);
    let notes = deps
        .itsm
        .get(&ticket)
        .await
        .expect("ticket")
        .expect("exists")
        .work_notes;
    let noted = notes
        .iter()
        .filter(|n| n.text.contains(&requested.approval_id))
        .count();
    assert_eq!(noted, 1, "one ticket note of the request: {notes:#?}");
    let audited = deps
        .store
        .audit(exec)
        .await
        .expect("audit")
        .iter()
        .filter(|r| r.summary["requested"] == serde_json::json!(requested.approval_id))
        .count();
    assert_eq!(audited, 1, "one audit record of the request");
    // A third run (a Lambda-level retry after success) notes and audits nothing twice.
    certops_fn_approval_request::handle(&deps, event(&state, "token-3"))
        .await
        .expect("idempotent");
    let notes = deps
        .itsm
        .get(&ticket)
        .await
        .expect("ticket")
        .expect("exists")
        .work_notes;
    assert_eq!(
        notes
            .iter()
            .filter(|n| n.text.contains(&requested.approval_id))
            .count(),
        1
    );
    let audited = deps
        .store
        .audit(exec)
        .await
        .expect("audit")
        .iter()
        .filter(|r| r.summary["requested"] == serde_json::json!(requested.approval_id))
        .count();
    assert_eq!(audited, 1);
}

/// A workflow port whose first task completion fails as a Step Functions throttle would.
struct ThrottledOnce {
    inner: std::sync::Arc<dyn certops_core::ports::Workflow>,
    failures: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl certops_core::ports::Workflow for ThrottledOnce {
    async fn start(
        &self,
        name: &str,
        input: &serde_json::Value,
    ) -> Result<(String, bool), certops_core::Error> {
        self.inner.start(name, input).await
    }
    async fn send_success(
        &self,
        token: &str,
        output: &serde_json::Value,
    ) -> Result<(), certops_core::Error> {
        if self
            .failures
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok()
        {
            return Err(certops_core::Error::Transient(
                "ThrottlingException: Rate exceeded".into(),
            ));
        }
        self.inner.send_success(token, output).await
    }
    async fn send_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), certops_core::Error> {
        self.inner.send_failure(token, error, cause).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_whose_delivery_was_throttled_is_delivered_on_the_approvers_retry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = world(dir.path(), None).await;
    let exec = start_scan(&w).await;
    let id = card(&w, &exec).await;
    let mut deps = w.stack.deps.clone();
    deps.workflow = std::sync::Arc::new(ThrottledOnce {
        inner: deps.workflow.clone(),
        failures: std::sync::atomic::AtomicU32::new(1),
    });
    let approve = || decision(&id, "cab-alice@example.com", Verdict::Approve);
    let first = certops_fn_approval_callback::handle(&deps, approve()).await;
    assert_eq!(
        certops_fn_approval_callback::http_status(&first),
        503,
        "{first:?}"
    );
    let record = deps
        .store
        .get(Table::Approvals, &id)
        .await
        .expect("get")
        .expect("record");
    assert_eq!(record["delivery"], "pending", "decided, not yet delivered");
    // Someone else cannot ride on the pending delivery.
    let other = certops_fn_approval_callback::handle(
        &deps,
        decision(&id, "olivia@example.com", Verdict::Reject),
    )
    .await;
    assert_eq!(certops_fn_approval_callback::http_status(&other), 409);
    let again = certops_fn_approval_callback::handle(&deps, approve()).await;
    assert_eq!(
        certops_fn_approval_callback::http_status(&again),
        200,
        "{again:?}"
    );
    let done = w.stack.wait(&exec, WAIT).await.expect("done");
    assert_eq!(done.status.as_str(), "SUCCEEDED", "{:?}", done.cause);
    let record = deps
        .store
        .get(Table::Approvals, &id)
        .await
        .expect("get")
        .expect("record");
    assert_eq!(record["delivery"], "delivered");
    // Once delivered, a repeat is told the approval was used.
    let late = certops_fn_approval_callback::handle(&deps, approve()).await;
    assert_eq!(certops_fn_approval_callback::http_status(&late), 409);
}

/// Finding 1 (defence in depth): a task token read from the history and a
/// forged `SendTaskSuccess` output naming an authorised approver move nothing.
/// Renew finds no granted approval in the Store, refuses, and audits it; the
/// approval record stays pending and nothing is issued or deployed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_task_output_moves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = world(dir.path(), None).await;
    let exec = start_scan(&w).await;
    let id = card(&w, &exec).await;
    let history = serde_json::to_string(
        &w.stack
            .engine
            .history(&exec)
            .expect("history")
            .iter()
            .filter_map(|e| e.details_value())
            .collect::<Vec<_>>(),
    )
    .expect("json");
    let token = find_task_token(&history).expect("a task token in the history");
    let hash = last_validation(&w, &exec)
        .and_then(|v| v.plan_hash)
        .expect("plan hash");
    let forged = serde_json::json!({"approvalId": id, "approver": "cab-alice@example.com",
        "decidedAt": chrono::Utc::now(), "planHash": hash});
    w.stack
        .engine
        .send_task_success(&token, forged)
        .expect("the engine accepts the token");
    let done = w.stack.wait(&exec, WAIT).await.expect("done");
    assert_eq!(done.status.as_str(), "FAILED", "{done:?}");
    assert_eq!(
        w.stack.adapters.endpoints.installed("lb-shop").as_deref(),
        Some("keystore:current/shop"),
        "nothing may be deployed"
    );
    let record = w
        .stack
        .deps
        .store
        .get(Table::Approvals, &id)
        .await
        .expect("get")
        .expect("record");
    assert_eq!(record["status"], "pending");
    let trail = w.stack.deps.store.audit(&exec).await.expect("audit");
    assert!(
        trail
            .iter()
            .any(|r| r.actor == "step:renew" && r.summary["refused"] == "ApprovalMissing"),
        "the refusal is audited"
    );
    assert!(
        !trail.iter().any(|r| r.summary["action"] == "issue"),
        "nothing was issued"
    );
}

fn find_task_token(history: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(history).ok()?;
    fn walk(v: &serde_json::Value) -> Option<String> {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(t) = m.get("taskToken").and_then(|t| t.as_str()) {
                    return Some(t.to_string());
                }
                m.values().find_map(walk)
            }
            serde_json::Value::Array(a) => a.iter().find_map(walk),
            serde_json::Value::String(s) if s.contains("taskToken") => {
                serde_json::from_str::<serde_json::Value>(s)
                    .ok()
                    .as_ref()
                    .and_then(walk)
            }
            _ => None,
        }
    }
    walk(&v)
}

/// Finding 3: secret-looking text in a comment never breaks the audit. A
/// refused self-approval still leaves its record, a granted approval answers
/// success with its decision recorded, and neither record holds the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_looking_comments_are_redacted_and_every_decision_is_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = world(dir.path(), None).await;
    let exec = start_scan(&w).await;
    let id = card(&w, &exec).await;
    let key_id = ["AKIA", "IOSFODNN7EXAMPLE"].concat();
    let mut own = decision(&id, "certops-scanner", Verdict::Approve);
    own.comment = Some(key_id.clone());
    let refused = w.stack.decide(own).await.expect_err("self-approval");
    assert_eq!(refused.name(), "SelfApproval");
    let mut ok = decision(&id, "cab-alice@example.com", Verdict::Approve);
    ok.comment = Some(format!("ship it {key_id}"));
    w.stack
        .decide(ok)
        .await
        .expect("approval succeeds despite the comment");
    let done = w.stack.wait(&exec, WAIT).await.expect("done");
    assert_eq!(done.status.as_str(), "SUCCEEDED", "{:?}", done.cause);
    let trail = w.stack.deps.store.audit(&exec).await.expect("audit");
    let text = serde_json::to_string(&trail).expect("json");
    assert!(!text.contains(&key_id), "the secret reached the audit");
    assert!(trail.iter().any(|r| r.summary["refused"] == "SelfApproval"));
    assert!(trail.iter().any(
        |r| r.summary["decision"] == "approved" && r.actor == "approver:cab-alice@example.com"
    ));
    certops_core::verify_chain(&trail).expect("chain intact");
}

/// Finding 9: the approval expires before its task times out, so a late click
/// is answered `ApprovalExpired` and audited, even after the task itself has
/// timed out (never "task token not recognised" with no trace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_after_the_task_timed_out_gets_a_clear_answer_and_an_audit_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = world(dir.path(), None).await;
    let exec = start_scan(&w).await;
    let id = card(&w, &exec).await;
    let v = last_validation(&w, &exec).expect("validation");
    // The task waits longer than the approval lives.
    assert_eq!(
        v.approval_timeout_seconds,
        5 * 60 + certops_core::approval::TASK_TIMEOUT_GRACE_SECONDS
    );
    // Past the approval (5 min) and its task (10 min). The engine's timers run on
    // the wall clock, so the task's end is brought about directly: its token is gone.
    w.clock.advance(TimeDelta::minutes(11));
    w.stack
        .engine
        .stop_execution(
            &exec,
            Some("States.Timeout".into()),
            Some("task timed out".into()),
        )
        .expect("end the waiting task");
    assert_eq!(w.stack.engine.live_tokens(), 0);
    let late = w
        .stack
        .decide(decision(&id, "cab-alice@example.com", Verdict::Approve))
        .await
        .expect_err("late approval");
    assert_eq!(late.name(), "ApprovalExpired", "{late}");
    let trail = w.stack.deps.store.audit(&exec).await.expect("audit");
    assert!(
        trail
            .iter()
            .any(|r| r.actor == "approver:cab-alice@example.com"
                && r.summary["decision"] == "expired"),
        "the late click is audited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_after_the_approval_task_timed_out_is_answered_expired_and_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = world(dir.path(), None).await;
    let exec = start_scan(&w).await;
    let id = card(&w, &exec).await;
    let record = w
        .stack
        .deps
        .store
        .get(Table::Approvals, &id)
        .await
        .expect("store")
        .expect("approval record");
    // The approval expires before its task times out.
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(record["request"]["expires_at"].clone()).expect("expires_at");
    let requested: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(record["request"]["requested_at"].clone()).expect("requested_at");
    assert!(
        expires < requested + TimeDelta::minutes(5),
        "normal approvals time out after 5 minutes; the approval must expire first"
    );
    // The task times out (the engine's clock is real time, so its time-out is
    // delivered the way the engine delivers it: the token stops being waited on).
    let token = w
        .stack
        .deps
        .sealer
        .open(record["sealedToken"].as_str().expect("sealed token"))
        .expect("token");
    w.stack
        .engine
        .send_task_failure(
            &token,
            Some("States.Timeout".into()),
            Some("approval task timed out".into()),
        )
        .expect("time the task out");
    let done = w.stack.wait(&exec, WAIT).await.expect("done");
    assert_ne!(done.status, certops_asl::ExecutionStatus::Succeeded);
    // The late click: a clear answer, and a record of it.
    w.clock.advance(TimeDelta::minutes(6));
    let late = w
        .stack
        .decide(decision(&id, "cab-alice@example.com", Verdict::Approve))
        .await
        .expect_err("late approval");
    assert_eq!(late.name(), "ApprovalExpired", "{late}");
    let audit = w.stack.deps.store.audit(&exec).await.expect("audit");
    assert!(
        audit
            .iter()
            .any(|r| r.actor == "approver:cab-alice@example.com"
                && r.summary["decision"] == "expired"),
        "the late click is audited: {audit:?}"
    );
    assert_eq!(
        w.stack.adapters.endpoints.installed("lb-shop").as_deref(),
        Some("keystore:current/shop"),
        "nothing may be deployed"
    );
}

async fn lock_holder(w: &World) -> Option<serde_json::Value> {
    w.stack
        .deps
        .store
        .get(Table::Locks, "shop-web-prod")
        .await
        .expect("store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_execution_releases_the_certificate_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (w, exec) = waiting_renewal(dir.path()).await;
    let held = lock_holder(&w).await.expect("the renewal holds the lease");
    assert_eq!(held["execution"], serde_json::json!(exec));
    assert!(held["expires"].is_string(), "a lease has an expiry: {held}");
    w.stack
        .engine
        .stop_execution(&exec, Some("Operator".into()), Some("stopped".into()))
        .expect("stop");
    let world = &w;
    certops_tests::eventually::eventually_async(
        "StopExecution releasing the certificate's lock",
        Duration::from_secs(10),
        || async move { lock_holder(world).await.is_none().then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_taken_over_and_a_live_one_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = world(dir.path(), None).await;
    let now = chrono::Utc::now();
    // A live lease of another execution blocks the renewal…
    let live = serde_json::json!({"execution": "ghost-live", "since": now, "expires": now + TimeDelta::hours(1)});
    assert!(w
        .stack
        .deps
        .store
        .put_if_absent(Table::Locks, "shop-web-prod", &live)
        .await
        .expect("store"));
    let blocked =
        certops_core::lease::acquire(w.stack.deps.store.as_ref(), "shop-web-prod", "other", now)
            .await
            .expect_err("a live lease is not taken over");
    assert_eq!(blocked.name(), "Conflict");
    // …an expired one (its owner crashed and never released it) is taken over.
    let stale = serde_json::json!({"execution": "ghost", "since": now - TimeDelta::days(3), "expires": now - TimeDelta::days(1)});
    assert!(w
        .stack
        .deps
        .store
        .compare_and_swap(Table::Locks, "shop-web-prod", Some(&live), &stale)
        .await
        .expect("store"));
    let exec = start_scan(&w).await;
    card(&w, &exec).await;
    let held = lock_holder(&w).await.expect("lease");
    assert_eq!(held["execution"], serde_json::json!(exec));
}

/// The approval callback as API Gateway delivers it, through the same entry the Lambda
/// uses: a body that does not decode is answered 400 (not a Lambda error API Gateway would
/// turn into a 500), a forged signature 401, and the owner's signed approval, base64-encoded
/// as API Gateway sends binary bodies, is 200 and moves the execution on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_through_api_gateway_answers_http_for_every_outcome() {
    use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
    use base64::Engine as _;
    const SECRET: &[u8] = b"api-gateway-callback-secret";
    let dir = tempfile::tempdir().expect("tempdir");
    let w = world(dir.path(), None).await;
    let exec = start_scan(&w).await;
    let id = card(&w, &exec).await;
    let decision =
        serde_json::json!({"approver": "olivia@example.com", "verdict": "approve"}).to_string();
    let request = |body: String, base64: bool, key: &[u8]| {
        let mut req = ApiGatewayV2httpRequest::default();
        req.path_parameters.insert("id".into(), id.clone());
        let ts = chrono::Utc::now().timestamp();
        let sig = certops_core::signature::sign_approval(key, ts, &id, decision.as_bytes());
        req.headers.insert(
            certops_core::signature::TIMESTAMP_HEADER,
            ts.to_string().parse().expect("header"),
        );
        req.headers.insert(
            certops_core::signature::HEADER,
            sig.parse().expect("header"),
        );
        req.body = Some(body);
        req.is_base64_encoded = base64;
        req
    };
    let answer = |req: ApiGatewayV2httpRequest| {
        let deps = w.stack.deps.clone();
        async move {
            let out = certops_fn_approval_callback::handle_api_gateway(&deps, SECRET, &req).await;
            (out.status_code, format!("{:?}", out.body))
        }
    };
    let (status, body) = answer(request("%%% not base64".into(), true, SECRET)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not base64"), "{body}");
    let (status, _) = answer(request(decision.clone(), false, b"not-the-secret")).await;
    assert_eq!(status, 401);
    let encoded = base64::engine::general_purpose::STANDARD.encode(decision.as_bytes());
    let (status, body) = answer(request(encoded, true, SECRET)).await;
    assert_eq!(status, 200, "{body}");
    let info = w.stack.wait(&exec, WAIT).await.expect("ends");
    assert_eq!(
        info.status,
        certops_asl::ExecutionStatus::Succeeded,
        "{info:?}"
    );
}
