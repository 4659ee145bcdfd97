//! The Store and Queue contract suites against the embedded adapters (SQLite, as
//! `Embedded::open` builds them) and against the AWS adapters (DynamoDB, SQS) on a moto
//! server this test starts. Both backends pass the same suite; a few AWS-only behaviours
//! (the table layout and TTL attributes, error mapping, the poison-message path through a
//! redrive policy) are checked on moto afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_adapters::Embedded;
use certops_aws::dynamo::aws_sdk_dynamodb::types::AttributeValue;
use certops_aws::dynamo::{aws_sdk_dynamodb, DynamoStore, Tables, TtlPolicy, HEAD, HEAD_SEQ};
use certops_aws::sqs::aws_sdk_sqs::types::QueueAttributeName;
use certops_aws::sqs::{aws_sdk_sqs, SqsQueue};
use certops_core::ports::{Clock, Queue, Store, Table};
use certops_core::{verify_anchored, verify_chain};
use certops_tests::contract::queue::{self as queue_contract, QueueBackend, DLQ, QUEUE};
use certops_tests::contract::store::{self as store_contract, entry};
use certops_tests::moto::{create_contract_tables, Moto};
use certops_tests::world::TestClock;
use chrono::{Duration as TimeDelta, TimeZone, Utc};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::TempDir;

// ---------------------------------------------------------------- embedded

/// The embedded adapters over a fresh data directory, on a clock the test moves.
struct EmbeddedBackend {
    _dir: TempDir,
    clock: Arc<TestClock>,
    adapters: Embedded,
}

impl EmbeddedBackend {
    fn open() -> EmbeddedBackend {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = TestClock::now_real();
        let adapters = Embedded::open(&dir.path().join("data"), clock.clone()).expect("embedded");
        EmbeddedBackend {
            _dir: dir,
            clock,
            adapters,
        }
    }
}

impl QueueBackend for EmbeddedBackend {
    fn queue(&self) -> &dyn Queue {
        &*self.adapters.queue
    }

    fn max_receives(&self) -> u32 {
        self.adapters.queue.max_receives()
    }

    async fn pass(&self, by: Duration) {
        self.clock
            .advance(TimeDelta::from_std(by).expect("short duration"));
    }

    /// The port only sends JSON, so a foreign writer is simulated: a second connection
    /// (Python's sqlite3) inserts the row into the same database file.
    async fn send_raw(&self, queue: &str, body: &str) -> String {
        let path = self.adapters.db.path().expect("file database");
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import sqlite3, sys, uuid\n\
                 i = str(uuid.uuid4())\n\
                 c = sqlite3.connect(sys.argv[1], timeout=5)\n\
                 c.execute('INSERT INTO queue_messages (id, queue, body, visible_at_ms) VALUES (?, ?, ?, 0)', (i, sys.argv[2], sys.argv[3]))\n\
                 c.commit()\n\
                 print(i)",
            ])
            .arg(path)
            .args([queue, body])
            .output()
            .expect("python3 is needed to write a raw row into the embedded queue");
        assert!(
            out.status.success(),
            "raw insert failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_contract_on_the_embedded_store() {
    let dirs = Mutex::new(Vec::new());
    store_contract::run_all(|_case| {
        let backend = EmbeddedBackend::open();
        let store: Arc<dyn Store> = backend.adapters.store.clone();
        dirs.lock().expect("dirs").push(backend);
        async move { store }
    })
    .await;
}

#[tokio::test]
async fn queue_contract_on_the_embedded_queue() {
    queue_contract::run_all(|_case| async { EmbeddedBackend::open() }).await;
}

// ---------------------------------------------------------------- DynamoDB on moto

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_contract_on_dynamodb() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    store_contract::run_all(|case| {
        let (sdk, client) = (sdk.clone(), client.clone());
        async move {
            let tables = create_contract_tables(&client, &case.replace('_', "-")).await;
            Arc::new(DynamoStore::new(&sdk, tables, audit_key())) as Arc<dyn Store>
        }
    })
    .await;
}

async fn raw_item(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    pk: &str,
) -> HashMap<String, AttributeValue> {
    client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.to_string()))
        .send()
        .await
        .expect("get item")
        .item()
        .cloned()
        .unwrap_or_else(|| panic!("no item {pk} in {table}"))
}

fn ttl_of(item: &HashMap<String, AttributeValue>) -> Option<i64> {
    item.get("ttl")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

#[tokio::test]
async fn dynamodb_layout_ttl_and_chain_head() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let tables = create_contract_tables(&client, "layout").await;
    let clock = TestClock::now_real();
    let now = clock.now().timestamp();
    let store = DynamoStore::new(&sdk, tables.clone(), audit_key())
        .with_clock(clock.clone())
        .with_ttl(
            Table::Observations,
            TtlPolicy::Retention(Duration::from_secs(3600)),
        );

    // Approvals: their own table, ttl from the request's expires_at plus the grace.
    let expires = Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).unwrap();
    let approval = json!({"status": "pending", "request": {"expires_at": expires}});
    assert!(store
        .put_if_absent(Table::Approvals, "ap-1", &approval)
        .await
        .unwrap());
    let item = raw_item(&client, &tables.approvals, "approvals#ap-1").await;
    assert_eq!(
        ttl_of(&item),
        Some(expires.timestamp() + certops_aws::dynamo::DEFAULT_APPROVAL_GRACE.as_secs() as i64)
    );
    let text = item["value"].as_s().unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(text).unwrap(),
        approval
    );
    // A swap to a value without an expiry drops the ttl.
    assert!(store
        .compare_and_swap(
            Table::Approvals,
            "ap-1",
            Some(&approval),
            &json!({"status": "used"})
        )
        .await
        .unwrap());
    let item = raw_item(&client, &tables.approvals, "approvals#ap-1").await;
    assert_eq!(ttl_of(&item), None);

    // Triggers and locks: retention from the write, on the clock; other tables: kept
    // unless configured.
    store
        .put_if_absent(Table::Triggers, "t-1", &json!({"input": {}}))
        .await
        .unwrap();
    store
        .put_if_absent(Table::Locks, "shop", &json!({"execution": "e"}))
        .await
        .unwrap();
    store
        .put_if_absent(Table::Deployments, "shop", &json!({"ref": "r"}))
        .await
        .unwrap();
    store
        .put_if_absent(Table::Observations, "o", &json!({"ok": true}))
        .await
        .unwrap();
    let ttl = |t: &str, k: &str| {
        let (client, table) = (client.clone(), tables.state.clone());
        let pk = format!("{t}#{k}");
        async move { ttl_of(&raw_item(&client, &table, &pk).await) }
    };
    let day = 24 * 3600;
    assert_eq!(ttl("triggers", "t-1").await, Some(now + 92 * day));
    assert_eq!(ttl("locks", "shop").await, Some(now + 7 * day));
    assert_eq!(ttl("deployments", "shop").await, None);
    assert_eq!(ttl("observations", "o").await, Some(now + 3600));
    assert!(raw_item(&client, &tables.approvals, "approvals#ap-1")
        .await
        .contains_key("value"));

    // Audit: one item per record keyed (execution, seq); the head sits in the audit table
    // (retained with the records), in the execution's partition before every record, and
    // lets a reader detect truncation.
    for i in 0..3 {
        store
            .append_audit("exec-h", entry(i, json!({"i": i})))
            .await
            .unwrap();
    }
    let records = store.audit("exec-h").await.unwrap();
    assert_eq!(verify_chain(&records), Ok(()));
    let anchored = store.audit_head("exec-h").await.unwrap().expect("head");
    assert_eq!(anchored.length, 3);
    assert_eq!(
        verify_anchored("exec-h", &records, Some(&anchored), &audit_key()),
        Ok(())
    );
    let truncated = verify_anchored("exec-h", &records[..2], Some(&anchored), &audit_key());
    assert!(
        matches!(&truncated, Err(certops_core::Error::ChainBreak { seq: 2, reason }) if reason.contains("missing tail")),
        "truncation shows: {truncated:?}"
    );
    assert!(
        !anchored.is_authentic(&certops_core::AuditKey::new(vec![9u8; 32]).unwrap()),
        "the head's MAC needs the key"
    );
    let raw = client
        .get_item()
        .table_name(&tables.audit)
        .key("execution", AttributeValue::S("exec-h".into()))
        .key("seq", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    let raw = raw.item().expect("record item");
    assert_eq!(raw["hash"].as_s().unwrap(), &records[1].hash);
    assert!(raw.contains_key("record"));
    let head = client
        .get_item()
        .table_name(&tables.audit)
        .key("execution", AttributeValue::S("exec-h".into()))
        .key("seq", AttributeValue::N(HEAD_SEQ.to_string()))
        .send()
        .await
        .unwrap();
    let head: serde_json::Value =
        serde_json::from_str(head.item().expect("head item")[HEAD].as_s().unwrap()).unwrap();
    assert_eq!(head["length"], 3);
    assert_eq!(head["head"], records[2].hash.as_str());
    assert_eq!(head["execution"], "exec-h");
    assert_eq!(head["mac"].as_str().map(str::len), Some(64));
    let in_state = client
        .scan()
        .table_name(&tables.state)
        .send()
        .await
        .unwrap();
    assert!(
        in_state
            .items()
            .iter()
            .all(|i| !i["pk"].as_s().unwrap().contains("exec-h")),
        "no chain head in the state table, which is deleted with the stack"
    );
    assert_eq!(store.audit_head("exec-none").await.unwrap(), None);

    // Someone with write access to the table but not the key: edits record 1 and re-hashes
    // the rest. The head no longer matches, verification names it, and the store refuses to
    // extend the tampered chain.
    let mut forged = records.clone();
    forged[1].summary = json!({"i": 99});
    for i in 1..forged.len() {
        forged[i].prev_hash = forged[i - 1].hash.clone();
        forged[i].hash = forged[i].compute_hash();
    }
    for r in &forged[1..] {
        client
            .put_item()
            .table_name(&tables.audit)
            .item("execution", AttributeValue::S("exec-h".into()))
            .item("seq", AttributeValue::N(r.seq.to_string()))
            .item(
                "record",
                AttributeValue::S(serde_json::to_string(r).unwrap()),
            )
            .item("hash", AttributeValue::S(r.hash.clone()))
            .send()
            .await
            .unwrap();
    }
    let stored = store.audit("exec-h").await.unwrap();
    assert_eq!(verify_chain(&stored), Ok(()), "the bare chain links");
    let verdict = verify_anchored("exec-h", &stored, Some(&anchored), &audit_key());
    assert!(
        matches!(&verdict, Err(certops_core::Error::ChainBreak { reason, .. }) if reason.contains("re-hashed")),
        "{verdict:?}"
    );
    let refused = store
        .append_audit("exec-h", entry(9, json!({"i": 9})))
        .await
        .unwrap_err();
    assert_eq!(refused.name(), "ChainBreak", "{refused}");
}

fn audit_key() -> certops_core::AuditKey {
    certops_core::AuditKey::new(b"a test audit key of at least 32 bytes".to_vec()).unwrap()
}

/// Turns the first successful `TransactWriteItems` answer into an HTTP 500 after DynamoDB
/// (moto) committed it, as a connection lost on the way back would; records each attempt's
/// `ClientRequestToken`.
#[derive(Debug, Default)]
struct LoseFirstAppendAnswer {
    tokens: Mutex<Vec<Option<String>>>,
    lost: std::sync::atomic::AtomicBool,
}

impl aws_sdk_dynamodb::config::Intercept for LoseFirstAppendAnswer {
    fn name(&self) -> &'static str {
        "LoseFirstAppendAnswer"
    }

    fn read_before_transmit(
        &self,
        ctx: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _rc: &aws_sdk_dynamodb::config::RuntimeComponents,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let req = ctx.request();
        if req
            .headers()
            .get("x-amz-target")
            .is_some_and(|t| t.ends_with("TransactWriteItems"))
        {
            let body: serde_json::Value =
                serde_json::from_slice(req.body().bytes().unwrap_or_default()).unwrap_or_default();
            self.tokens
                .lock()
                .unwrap()
                .push(body["ClientRequestToken"].as_str().map(str::to_string));
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        ctx: &mut aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextMut<'_>,
        _rc: &aws_sdk_dynamodb::config::RuntimeComponents,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let is_append = !self.tokens.lock().unwrap().is_empty();
        let resp = ctx.response_mut();
        if is_append
            && resp.status().as_u16() == 200
            && !self.lost.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            *resp.status_mut() = 500u16.try_into().expect("status");
        }
        Ok(())
    }
}

#[tokio::test]
async fn an_append_whose_answer_is_lost_is_not_appended_twice() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let plain = aws_sdk_dynamodb::Client::new(&sdk);
    let tables = create_contract_tables(&plain, "lost").await;
    let store = DynamoStore::new(&sdk, tables.clone(), audit_key());
    store
        .append_audit("exec-lost", entry(0, json!({"i": 0})))
        .await
        .unwrap();
    let lose = Arc::new(LoseFirstAppendAnswer::default());
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(aws_sdk_dynamodb::config::SharedInterceptor::new(
            ArcIntercept(lose.clone()),
        ))
        .build();
    let lossy = DynamoStore::from_client(
        aws_sdk_dynamodb::Client::from_conf(conf),
        tables,
        audit_key(),
    );
    let record = lossy
        .append_audit("exec-lost", entry(1, json!({"i": 1})))
        .await
        .expect("the append succeeds once");
    assert!(
        lose.lost.load(std::sync::atomic::Ordering::SeqCst),
        "an answer was lost"
    );
    let tokens = lose.tokens.lock().unwrap().clone();
    assert!(tokens.len() >= 2, "the SDK retried: {tokens:?}");
    assert!(
        tokens[0].is_some(),
        "the transaction carries a ClientRequestToken"
    );
    assert!(
        tokens.iter().all(|t| t == &tokens[0]),
        "every try of one record carries one token: {tokens:?}"
    );
    let records = store.audit("exec-lost").await.unwrap();
    assert_eq!(records.len(), 2, "one record per append: {records:#?}");
    assert_eq!(records[1], record);
    assert_eq!(verify_chain(&records), Ok(()));
    let head = store.audit_head("exec-lost").await.unwrap().expect("head");
    assert_eq!((head.length, head.head), (2, record.hash));
}

/// Shares one interceptor between the client and the test.
#[derive(Debug)]
struct ArcIntercept(Arc<LoseFirstAppendAnswer>);

impl aws_sdk_dynamodb::config::Intercept for ArcIntercept {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn read_before_transmit(
        &self,
        ctx: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        rc: &aws_sdk_dynamodb::config::RuntimeComponents,
        cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        self.0.read_before_transmit(ctx, rc, cfg)
    }
    fn modify_before_deserialization(
        &self,
        ctx: &mut aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextMut<'_>,
        rc: &aws_sdk_dynamodb::config::RuntimeComponents,
        cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        self.0.modify_before_deserialization(ctx, rc, cfg)
    }
}

#[tokio::test]
async fn dynamodb_errors_map_to_routable_variants() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    // A table that does not exist is a configuration problem: not retryable.
    let missing = DynamoStore::new(
        &sdk,
        Tables {
            state: "no-such-state".into(),
            approvals: "no-such-approvals".into(),
            audit: "no-such-audit".into(),
        },
        audit_key(),
    );
    let err = missing.get(Table::Locks, "k").await.unwrap_err();
    assert_eq!(err.name(), "InvalidInput", "{err}");
    assert!(err.to_string().contains("no-such-state"), "{err}");
    // Nothing listening: transient, so Step Functions retries.
    let port = certops_tests::process::free_port();
    let down = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .credentials_provider(aws_sdk_sfn::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    let store = DynamoStore::new(&down, missing.tables().clone(), audit_key());
    let err = store
        .put_if_absent(Table::Locks, "k", &json!({"secret-ish": "value-text"}))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "Transient", "{err}");
    assert!(err.is_retryable());
    assert!(
        !err.to_string().contains("value-text"),
        "no value in errors: {err}"
    );
    let queue = SqsQueue::new(
        &down,
        [("intake".to_string(), format!("http://127.0.0.1:{port}/q"))],
    );
    let err = queue.depth("intake").await.unwrap_err();
    assert_eq!(err.name(), "Transient", "{err}");
}

// ---------------------------------------------------------------- SQS on moto

/// A queue pair on moto: `intake` with a redrive policy to `intake-dlq`.
struct SqsBackend {
    client: aws_sdk_sqs::Client,
    queue: SqsQueue,
    urls: HashMap<String, String>,
    max_receives: u32,
}

impl SqsBackend {
    async fn create(sdk: &aws_config::SdkConfig, name: &str, max_receives: u32) -> SqsBackend {
        let client = aws_sdk_sqs::Client::new(sdk);
        let dlq_url = client
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .expect("create dlq")
            .queue_url()
            .expect("dlq url")
            .to_string();
        let dlq_arn = client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("dlq attributes")
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("dlq arn");
        let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives});
        let url = client
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .send()
            .await
            .expect("create queue")
            .queue_url()
            .expect("queue url")
            .to_string();
        let urls = HashMap::from([(QUEUE.to_string(), url), (DLQ.to_string(), dlq_url)]);
        SqsBackend {
            queue: SqsQueue::new(sdk, urls.clone()),
            client,
            urls,
            max_receives,
        }
    }
}

impl QueueBackend for SqsBackend {
    fn queue(&self) -> &dyn Queue {
        &self.queue
    }

    fn max_receives(&self) -> u32 {
        self.max_receives
    }

    async fn pass(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }

    async fn send_raw(&self, queue: &str, body: &str) -> String {
        self.client
            .send_message()
            .queue_url(&self.urls[queue])
            .message_body(body)
            .send()
            .await
            .expect("raw send")
            .message_id()
            .expect("message id")
            .to_string()
    }
}

/// The receives SQS's redrive policy allows: the embedded queue's, so both backends
/// dead-letter after the same count.
fn embedded_max_receives() -> u32 {
    EmbeddedBackend::open().adapters.queue.max_receives()
}

#[tokio::test]
async fn queue_contract_on_sqs() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let max = embedded_max_receives();
    queue_contract::run_all(|case| {
        let sdk = sdk.clone();
        async move { SqsBackend::create(&sdk, &case.replace('_', "-"), max).await }
    })
    .await;
}

#[tokio::test]
async fn sqs_poison_body_is_named_released_around_and_dead_lettered() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let b = SqsBackend::create(&sdk, "poison", 2).await;
    let q = b.queue();
    // Unknown logical names are refused, naming the queue and the configured ones.
    let err = q.send("nope", &json!(1)).await.unwrap_err();
    assert_eq!(err.name(), "InvalidInput");
    assert!(
        err.to_string().contains("\"nope\"") && err.to_string().contains("intake"),
        "{err}"
    );
    let good = q.send(QUEUE, &json!({"good": true})).await.unwrap();
    let bad = b.send_raw(QUEUE, "<not json>").await;
    let err = q
        .receive(QUEUE, 10, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "InvalidInput", "{err}");
    assert!(err.to_string().contains(&bad), "names the message: {err}");
    assert!(
        !err.to_string().contains("<not json>"),
        "never echoes the body: {err}"
    );
    // The good message of that batch was released at once; the poison one stays hidden.
    let got = q.receive(QUEUE, 10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        got.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        [good.as_str()]
    );
    q.delete(QUEUE, &got[0].receipt).await.unwrap();
    // Received again (its second receive), then moved by the redrive policy.
    b.pass(queue_contract::PAST_VISIBILITY).await;
    let err = q
        .receive(QUEUE, 10, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&bad), "{err}");
    b.pass(queue_contract::PAST_VISIBILITY).await;
    assert!(q
        .receive(QUEUE, 10, Duration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(q.depth(QUEUE).await.unwrap(), 0);
    assert_eq!(q.depth(DLQ).await.unwrap(), 1);
    let dead = b
        .client
        .receive_message()
        .queue_url(&b.urls[DLQ])
        .send()
        .await
        .unwrap();
    assert_eq!(dead.messages()[0].body(), Some("<not json>"));
    assert_eq!(dead.messages()[0].message_id(), Some(bad.as_str()));
}
