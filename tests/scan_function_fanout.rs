//! The scan function over a real fleet: the schedule fans sixty certificate objects out to
//! the `scan` queue in batches, each batch probes real TLS endpoints on 127.0.0.1, stores
//! what it saw, and sends exactly one finding per expiring, expired or wrongly served
//! object to `intake`. A batch whose endpoint refuses connections — or whose body is not a
//! batch — is the only one reported failed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use certops_core::ports::{Message, Table};
use certops_core::ScanFinding;
use certops_fn_scan::{
    handle_batch, handle_schedule, observation_key, run_scan, ObservationRecord, ScanBatch, BATCH,
    INTAKE_QUEUE, SCAN_QUEUE,
};
use certops_tests::scan_world::{scan_world, Kind, ScanWorld, OBJECTS};
use serde_json::json;

const VISIBILITY: Duration = Duration::from_secs(600);

fn schedule_event() -> EventBridgeEvent<serde_json::Value> {
    serde_json::from_value(json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-12-03T09:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/certops-expiry-scan"],
        "detail": {}
    }))
    .expect("schedule event")
}

fn sqs_message(id: &str, body: Option<&str>) -> SqsMessage {
    SqsMessage {
        message_id: Some(id.to_string()),
        receipt_handle: Some(format!("receipt-{id}")),
        body: body.map(str::to_string),
        event_source: Some("aws:sqs".into()),
        ..SqsMessage::default()
    }
}

fn sqs_event(messages: &[Message]) -> SqsEvent {
    SqsEvent {
        records: messages
            .iter()
            .map(|m| sqs_message(&m.id, Some(&m.body.to_string())))
            .collect(),
    }
}

/// Every finding on the intake queue, by CI (panics on a duplicate or unreadable one).
fn findings(world: &ScanWorld) -> BTreeMap<String, ScanFinding> {
    let mut by_ci = BTreeMap::new();
    for body in world
        .adapters
        .queue
        .peek(INTAKE_QUEUE)
        .expect("peek intake")
    {
        let finding: ScanFinding = serde_json::from_value(body).expect("a scan finding");
        let ci = finding.ci.clone();
        assert!(
            by_ci.insert(ci.clone(), finding).is_none(),
            "two findings for {ci}"
        );
    }
    by_ci
}

/// The CIs that must be reported: expiring, expired, unexpected leaf, split nodes.
fn expected_cis(world: &ScanWorld) -> BTreeSet<String> {
    world
        .objects
        .iter()
        .filter(|o| !matches!(o.kind, Kind::Healthy | Kind::Refusing))
        .map(|o| o.ci.clone())
        .collect()
}

async fn fanned_out(world: &ScanWorld) -> Vec<Message> {
    let summary = handle_schedule(&world.deps, schedule_event())
        .await
        .expect("schedule");
    assert_eq!(summary.objects, OBJECTS);
    assert_eq!(summary.batches, OBJECTS.div_ceil(BATCH));
    let messages = world
        .deps
        .queue
        .receive(SCAN_QUEUE, 100, VISIBILITY)
        .await
        .expect("receive");
    assert_eq!(messages.len(), summary.batches);
    messages
}

fn batch_of(message: &Message) -> ScanBatch {
    serde_json::from_value(message.body.clone()).expect("a scan batch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_fans_the_inventory_out_in_batches_of_at_most_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let world = scan_world(dir.path()).await;

    let messages = fanned_out(&world).await;
    let batches: Vec<ScanBatch> = messages.iter().map(batch_of).collect();
    let sizes: Vec<usize> = batches.iter().map(|b| b.cert_ids.len()).collect();
    assert_eq!(sizes, [BATCH, BATCH, OBJECTS - 2 * BATCH]);
    let ids: Vec<&str> = batches
        .iter()
        .flat_map(|b| b.cert_ids.iter().map(String::as_str))
        .collect();
    let inventory: Vec<&str> = world.objects.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, inventory, "every object once, in inventory order");
    assert!(batches
        .iter()
        .all(|b| b.scan == "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa"));
    // The schedule only fans out: nothing probed, nothing found, nothing started.
    assert_eq!(world.deps.queue.depth(INTAKE_QUEUE).await.unwrap(), 0);
    assert!(world.engine.list_executions(None).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_store_observations_send_one_finding_per_problem_and_fail_only_the_refusing_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let world = scan_world(dir.path()).await;
    let messages = fanned_out(&world).await;
    let refusing = &world.of_kind(Kind::Refusing)[0].id;
    let failing: Vec<&Message> = messages
        .iter()
        .filter(|m| batch_of(m).cert_ids.contains(refusing))
        .collect();
    assert_eq!(failing.len(), 1);

    let response = handle_batch(&world.deps, sqs_event(&messages)).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, [failing[0].id.as_str()], "only the refusing batch");

    // Exactly one finding per expiring, expired or wrongly served object — including
    // those sharing the failed batch with the refusing endpoint.
    let found = findings(&world);
    assert_eq!(
        found.keys().cloned().collect::<BTreeSet<_>>(),
        expected_cis(&world)
    );
    let expiring = world.node("expiring");
    for o in world.of_kind(Kind::Expiring) {
        let f = &found[&o.ci];
        assert_eq!(f.observed_expiry, expiring.not_after);
        assert_eq!(
            f.observed_fingerprint.as_deref(),
            Some(expiring.fingerprint.as_str())
        );
    }
    let expired = &found[&world.of_kind(Kind::Expired)[0].ci];
    assert_eq!(expired.observed_expiry, world.node("expired").not_after);
    assert!(expired.observed_expiry < world.deps.clock.now());
    // The unexpected leaf is reported as served, not as the inventory expects it.
    let other = world.node("healthy-b");
    let unexpected = &found[&world.of_kind(Kind::UnexpectedLeaf)[0].ci];
    assert_eq!(
        unexpected.observed_fingerprint.as_deref(),
        Some(other.fingerprint.as_str())
    );
    // Split nodes report the leaf that expires first.
    let split = &found[&world.of_kind(Kind::SplitNodes)[0].ci];
    assert_eq!(split.observed_expiry, other.not_after);
    assert_eq!(
        split.observed_fingerprint.as_deref(),
        Some(other.fingerprint.as_str())
    );

    // Every endpoint of every object has its observation, stamped with the domain clock.
    let now = world.deps.clock.now();
    for o in &world.objects {
        for node in &o.nodes {
            let endpoint = world
                .deps
                .config
                .inventory
                .get(&o.id)
                .expect("object")
                .endpoints
                .iter()
                .find(|e| e.port == world.node(node).port)
                .expect("endpoint")
                .clone();
            let stored = world
                .deps
                .store
                .get(Table::Observations, &observation_key(&o.id, &endpoint))
                .await
                .expect("store")
                .unwrap_or_else(|| panic!("no observation for {} on {node}", o.id));
            let record: ObservationRecord = serde_json::from_value(stored).expect("record");
            assert_eq!(
                (record.cert_id.as_str(), record.ci.as_str()),
                (o.id.as_str(), o.ci.as_str())
            );
            assert!(record.observed_at <= now);
            if o.kind == Kind::Refusing {
                assert!(record.observations.is_empty());
                let error = record.error.expect("the refusal is recorded");
                assert_eq!(error.name, "Transient", "{}", error.message);
                continue;
            }
            assert_eq!(record.error, None, "{}", o.id);
            assert!(!record.observations.is_empty());
            for seen in &record.observations {
                assert_eq!(seen.fingerprint, world.node(node).fingerprint);
                assert_eq!(seen.not_after, world.node(node).not_after);
                assert_eq!(
                    seen.chain_valid,
                    *node != "expired",
                    "{}: {}",
                    o.id,
                    seen.status
                );
            }
        }
    }
    // The scan never starts a workflow itself; intake does.
    assert!(world.engine.list_executions(None).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_fails_alone_and_unknown_ids_are_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let world = scan_world(dir.path()).await;
    let healthy = &world.of_kind(Kind::Healthy)[0].id;
    let expiring = world.of_kind(Kind::Expiring)[0];
    let good = json!({"cert_ids": [healthy, "no-such-cert", expiring.id], "scan": "t"}).to_string();
    let event = SqsEvent {
        records: vec![
            sqs_message("m-good", Some(&good)),
            sqs_message("m-not-json", Some("{\"cert_ids\": [")),
            sqs_message("m-wrong-shape", Some(r#"{"cert_ids": "svc-00"}"#)),
            sqs_message("m-empty", None),
            sqs_message("m-no-objects", Some(r#"{"cert_ids": []}"#)),
        ],
    };
    let response = handle_batch(&world.deps, event).await;
    let failed: BTreeSet<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        BTreeSet::from(["m-not-json", "m-wrong-shape", "m-empty"])
    );
    let found = findings(&world);
    assert_eq!(found.keys().collect::<Vec<_>>(), [&expiring.ci]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_scan_drains_the_scan_queue_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let world = scan_world(dir.path()).await;

    let summary = run_scan(&world.deps).await.expect("scan");
    assert_eq!(summary.objects, OBJECTS);
    assert_eq!(summary.batches, OBJECTS.div_ceil(BATCH));
    assert_eq!(summary.messages, summary.batches);
    assert_eq!(summary.failed_messages, 1, "the refusing endpoint's batch");
    let expected = expected_cis(&world);
    assert_eq!(summary.findings, expected.len());
    // One observation per endpoint: the split object has two.
    assert_eq!(summary.observations, OBJECTS + 1);
    assert_eq!(
        findings(&world).keys().cloned().collect::<BTreeSet<_>>(),
        expected
    );
    // The succeeded batches are deleted; the failed one waits, hidden, for redelivery.
    assert_eq!(world.deps.queue.depth(SCAN_QUEUE).await.unwrap(), 1);
    assert!(world
        .deps
        .queue
        .receive(SCAN_QUEUE, 10, VISIBILITY)
        .await
        .unwrap()
        .is_empty());
    assert!(world.engine.list_executions(None).is_empty());

    // Once its visibility timeout has passed, the next run picks the failed batch up again
    // alongside its own fan-out, and still ends.
    world.clock.advance(chrono::Duration::minutes(16));
    let again = run_scan(&world.deps).await.expect("second scan");
    assert_eq!(again.messages, again.batches + 1);
    assert_eq!(again.failed_messages, 2);
    assert_eq!(world.deps.queue.depth(SCAN_QUEUE).await.unwrap(), 2);
}
