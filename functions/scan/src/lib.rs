//! `scan`: the scheduled expiry scan. An EventBridge schedule invokes
//! [`handle_schedule`], which splits the inventory into batches of at most
//! [`BATCH`] certificate objects and sends one message per batch to the
//! [`SCAN_QUEUE`] — the fan-out that keeps every invocation far from the Lambda
//! time limit however large the inventory grows. SQS then invokes
//! [`handle_batch`] per batch: every endpoint of every object is probed from
//! outside, each result is stored in the [`Table::Observations`], and a
//! [`ScanFinding`] goes to the [`INTAKE_QUEUE`] for every object that is
//! expiring, expired or served wrongly (see [`assess`]). The scan never starts
//! workflows itself; intake does, one execution per finding's idempotency key.
//!
//! The embedded runtime runs the same path in-process with [`run_scan`].
//!
//! ```
//! use certops_fn_scan::{batches, BATCH};
//!
//! let ids: Vec<String> = (0..60).map(|i| format!("cert-{i}")).collect();
//! let sizes: Vec<usize> = batches(&ids).map(|b| b.cert_ids.len()).collect();
//! assert_eq!(sizes, [BATCH, BATCH, 60 - 2 * BATCH]);
//! ```
//!
//! # Delivery
//!
//! Findings are sent at least once: a batch message whose probing, storing or sending
//! failed is reported as a partial batch failure and redelivered by SQS (then
//! dead-lettered after the queue's limit), and the redelivery sends again the findings the
//! first attempt already sent. Intake is idempotent by the finding's idempotency key (CI,
//! observed expiry and fingerprint), so a repeat yields no second execution.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use certops_core::ports::{Deps, Observation, RenewalWindow, Table};
use certops_core::{
    renewal_info, CertObject, Endpoint, Error, Fingerprint, RenewalMethod, ScanFinding,
};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The most certificate objects one batch message carries.
pub const BATCH: usize = 25;
/// The queue the schedule fans batches out to.
pub const SCAN_QUEUE: &str = "scan";
/// The queue findings go to (consumed by the intake function).
pub const INTAKE_QUEUE: &str = "intake";
/// How many certificate objects of one batch are probed at once.
pub const PROBE_CONCURRENCY: usize = 8;
/// How long [`run_scan`] hides a received batch; a failed batch reappears after it.
pub const VISIBILITY: Duration = Duration::from_secs(15 * 60);
/// How many times an observation write is retried when a concurrent scan wrote first.
const STORE_ATTEMPTS: usize = 3;

/// One batch message on the [`SCAN_QUEUE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanBatch {
    /// The certificate objects (inventory ids) to probe.
    pub cert_ids: Vec<String>,
    /// The scan run this batch belongs to (the schedule event's id), for logs.
    #[serde(default)]
    pub scan: String,
}

/// What [`handle_schedule`] fanned out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSummary {
    /// Certificate objects in the inventory.
    pub objects: usize,
    /// Batch messages sent to the [`SCAN_QUEUE`] (`ceil(objects / BATCH)`).
    pub batches: usize,
}

/// What [`run_scan`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanSummary {
    /// Certificate objects in the inventory.
    pub objects: usize,
    /// Batch messages the schedule sent.
    pub batches: usize,
    /// Batch messages handled (this run's, plus any redelivered from earlier runs).
    pub messages: usize,
    /// Batch messages that failed and were left on the queue for redelivery.
    pub failed_messages: usize,
    /// Endpoint observations stored (one per endpoint of each probed object, failures included).
    pub observations: usize,
    /// Findings sent to the [`INTAKE_QUEUE`].
    pub findings: usize,
}

/// What the [`Table::Observations`] holds under [`observation_key`]: the latest probe of one
/// endpoint of one certificate object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservationRecord {
    /// The certificate object.
    pub cert_id: String,
    /// Its CI.
    pub ci: String,
    /// The endpoint probed.
    pub endpoint: Endpoint,
    /// When (the domain clock).
    pub observed_at: DateTime<Utc>,
    /// One observation per address that answered; empty when the probe failed.
    pub observations: Vec<Observation>,
    /// Why the endpoint could not be probed, if it could not.
    pub error: Option<ProbeError>,
}

/// A failed probe, by stable error name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeError {
    /// The stable error name (`Transient` for refused, timed out or unresolvable endpoints).
    pub name: String,
    /// The human message.
    pub message: String,
}

/// Why an object deserves a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Concern {
    /// The earliest leaf seen expires within the policy's planned threshold.
    Expiring,
    /// The earliest leaf seen has expired.
    Expired,
    /// A served leaf is not the inventory's `expected_fingerprint`.
    UnexpectedFingerprint,
    /// Different addresses or endpoints of the object serve different leaves.
    InconsistentLeaves,
    /// The ACME CA's suggested renewal window (ARI) for the served leaf has opened.
    RenewalWindow,
}

impl Concern {
    /// The name used in logs and stored records.
    pub fn as_str(self) -> &'static str {
        match self {
            Concern::Expiring => "expiring",
            Concern::Expired => "expired",
            Concern::UnexpectedFingerprint => "unexpected-fingerprint",
            Concern::InconsistentLeaves => "inconsistent-leaves",
            Concern::RenewalWindow => "renewal-window",
        }
    }
}

/// The judgement of one object's observations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// What is wrong; empty when nothing is.
    pub concerns: BTreeSet<Concern>,
    /// The finding to send when there is a concern.
    pub finding: Option<ScanFinding>,
}

/// The store key of one endpoint's observation: `<cert_id>#<host>:<port>/<sni>`.
pub fn observation_key(cert_id: &str, endpoint: &Endpoint) -> String {
    format!(
        "{cert_id}#{}:{}/{}",
        endpoint.host, endpoint.port, endpoint.sni
    )
}

/// Splits certificate object ids into batch messages of at most [`BATCH`] ids, in order.
pub fn batches(cert_ids: &[String]) -> impl Iterator<Item = ScanBatch> + '_ {
    cert_ids.chunks(BATCH).map(|chunk| ScanBatch {
        cert_ids: chunk.to_vec(),
        scan: String::new(),
    })
}

/// Judges what was observed of `cert` at `now` against the planned threshold (days) and the
/// CA's renewal window (ARI) for the served leaf, if known.
///
/// The finding carries the earliest `notAfter` seen and the fingerprint of the leaf that
/// carries it, so a renewal is planned for the certificate that expires first. Nothing
/// observed yields no finding: there is no expiry to report.
pub fn assess(
    cert: &CertObject,
    observations: &[Observation],
    threshold_days: u32,
    now: DateTime<Utc>,
    window: Option<&RenewalWindow>,
) -> Assessment {
    let mut concerns = BTreeSet::new();
    let Some(earliest) = observations.iter().min_by_key(|o| o.not_after) else {
        return Assessment {
            concerns,
            finding: None,
        };
    };
    let left = earliest.not_after - now;
    if left <= TimeDelta::zero() {
        concerns.insert(Concern::Expired);
    } else if left <= TimeDelta::days(i64::from(threshold_days)) {
        concerns.insert(Concern::Expiring);
    }
    // The served leaves, normalised by `Fingerprint`. A malformed fingerprint (the prober
    // never reports one) stays apart under its own text: a leaf of its own, matching nothing.
    let served: BTreeSet<Result<Fingerprint, &str>> = observations
        .iter()
        .map(|o| Fingerprint::parse(&o.fingerprint).map_err(|_| o.fingerprint.as_str()))
        .collect();
    if let Some(expected) = cert.expected_fingerprint.as_deref() {
        // A malformed expectation matches no served leaf.
        let expected = Fingerprint::parse(expected).ok();
        let is_expected = |fp: &Result<Fingerprint, &str>| match (fp, &expected) {
            (Ok(served), Some(expected)) => served == expected,
            _ => false,
        };
        if !served.iter().all(is_expected) {
            concerns.insert(Concern::UnexpectedFingerprint);
        }
    }
    if served.len() > 1 {
        concerns.insert(Concern::InconsistentLeaves);
    }
    if window.is_some_and(|w| {
        w.is_due(now) && earliest.ari_id.as_deref() == Some(w.certificate_id.as_str())
    }) {
        concerns.insert(Concern::RenewalWindow);
    }
    let finding = (!concerns.is_empty()).then(|| ScanFinding {
        ci: cert.ci.clone(),
        observed_expiry: earliest.not_after,
        observed_fingerprint: Some(earliest.fingerprint.clone()),
    });
    Assessment { concerns, finding }
}

/// The EventBridge-scheduled entry: fans the inventory out to the [`SCAN_QUEUE`] in batches
/// of at most [`BATCH`] certificate objects.
///
/// A failed send fails the invocation (EventBridge retries it); batches sent before the
/// failure are scanned anyway, which is harmless because findings are idempotent.
pub async fn handle_schedule(
    deps: &Deps,
    event: EventBridgeEvent<Value>,
) -> Result<ScheduleSummary, Error> {
    let scan = event
        .id
        .clone()
        .unwrap_or_else(|| deps.clock.now().to_rfc3339());
    let ids: Vec<String> = deps
        .config
        .inventory
        .certificates
        .iter()
        .map(|c| c.id.clone())
        .collect();
    let mut sent = 0;
    for mut batch in batches(&ids) {
        batch.scan.clone_from(&scan);
        let body = serde_json::to_value(&batch)
            .map_err(|e| Error::InvalidInput(format!("scan batch: {e}")))?;
        deps.queue.send(SCAN_QUEUE, &body).await?;
        sent += 1;
    }
    tracing::info!(%scan, objects = ids.len(), batches = sent, "expiry scan fanned out");
    Ok(ScheduleSummary {
        objects: ids.len(),
        batches: sent,
    })
}

/// Counts of one handled SQS event.
#[derive(Debug, Default)]
struct Handled {
    response: SqsBatchResponse,
    observations: usize,
    findings: usize,
}

/// Counts of one handled batch message.
#[derive(Debug, Default)]
struct BatchCounts {
    observations: usize,
    findings: usize,
}

/// Handles batch messages from the [`SCAN_QUEUE`]: probes, stores observations, sends
/// findings.
///
/// A message is reported in `batch_item_failures` (so SQS redelivers only it) when its body
/// is not a [`ScanBatch`], or when probing an endpoint (refused, timed out, no TLS), storing an
/// observation or sending a finding failed for any of its objects. The message's other
/// objects are still scanned and their findings sent. Unknown certificate ids are logged and
/// skipped: the inventory changed since the fan-out, and retrying cannot help.
pub async fn handle_batch(deps: &Deps, event: SqsEvent) -> SqsBatchResponse {
    handle(deps, event).await.response
}

async fn handle(deps: &Deps, event: SqsEvent) -> Handled {
    let mut out = Handled::default();
    for message in event.records {
        let id = message.message_id.clone().unwrap_or_default();
        match handle_message(deps, &message).await {
            Ok(counts) => {
                out.observations += counts.observations;
                out.findings += counts.findings;
            }
            Err((counts, e)) => {
                out.observations += counts.observations;
                out.findings += counts.findings;
                tracing::warn!(message = %id, error = %e, "scan batch failed; left for redelivery");
                out.response.batch_item_failures.push(BatchItemFailure {
                    item_identifier: id,
                });
            }
        }
    }
    out
}

async fn handle_message(
    deps: &Deps,
    message: &SqsMessage,
) -> Result<BatchCounts, (BatchCounts, Error)> {
    let none = BatchCounts::default;
    let body = message.body.as_deref().ok_or_else(|| {
        (
            none(),
            Error::InvalidInput("empty scan batch message".into()),
        )
    })?;
    let batch: ScanBatch = serde_json::from_str(body).map_err(|e| {
        (
            none(),
            Error::InvalidInput(format!("not a scan batch: {e}")),
        )
    })?;
    let roots = deps
        .issuer
        .trust_anchors_pem()
        .await
        .map_err(|e| (none(), e))?;
    let now = deps.clock.now();
    let mut certs = Vec::with_capacity(batch.cert_ids.len());
    for id in &batch.cert_ids {
        match deps.config.inventory.get(id) {
            Some(cert) => certs.push(cert),
            None => tracing::warn!(scan = %batch.scan, cert_id = %id,
                "certificate object not in the inventory; skipped"),
        }
    }
    // Bounded concurrency in fixed-size waves; join_all holds plain futures,
    // so the handler's future stays Send for the Lambda runtime.
    let mut results: Vec<ObjectScan> = Vec::with_capacity(certs.len());
    for wave in certs.chunks(PROBE_CONCURRENCY) {
        let futures: Vec<_> = wave
            .iter()
            .map(|cert| scan_object(deps, cert, roots.as_deref(), now))
            .collect();
        results.extend(futures::future::join_all(futures).await);
    }
    let mut counts = BatchCounts::default();
    let mut first_error = None;
    let mut failed = 0;
    for r in results {
        counts.observations += r.observations;
        counts.findings += usize::from(r.finding_sent);
        if let Some(e) = r.error {
            failed += 1;
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        None => Ok(counts),
        Some(e) if failed == 1 => Err((counts, e)),
        Some(e) => Err((
            counts,
            Error::Transient(format!("{failed} objects failed; first: {e}")),
        )),
    }
}

/// The outcome of scanning one object.
struct ObjectScan {
    observations: usize,
    finding_sent: bool,
    error: Option<Error>,
}

/// Probes every endpoint of `cert`, stores each result, and sends a finding when
/// [`assess`] finds a concern in what could be observed. An endpoint that could not be
/// probed makes the object fail (so its message is retried) without hiding what the other
/// endpoints showed.
async fn scan_object(
    deps: &Deps,
    cert: &CertObject,
    roots: Option<&str>,
    now: DateTime<Utc>,
) -> ObjectScan {
    let mut seen = Vec::new();
    let mut stored = 0;
    let mut error = None;
    for endpoint in &cert.endpoints {
        let probed = match deps.prober.probe(endpoint, roots).await {
            Ok(obs) if obs.is_empty() => Err(Error::VerificationFailed(format!(
                "{}:{} answered on no address",
                endpoint.host, endpoint.port
            ))),
            other => other,
        };
        if let Err(e) = &probed {
            tracing::warn!(cert_id = %cert.id, host = %endpoint.host, port = endpoint.port,
                error = %e, "endpoint could not be probed");
        }
        let record = ObservationRecord {
            cert_id: cert.id.clone(),
            ci: cert.ci.clone(),
            endpoint: endpoint.clone(),
            observed_at: deps.clock.now(),
            observations: probed.as_ref().cloned().unwrap_or_default(),
            error: probed.as_ref().err().map(|e| ProbeError {
                name: e.name().to_string(),
                message: e.to_string(),
            }),
        };
        let written = match serde_json::to_value(&record) {
            Ok(value) => {
                upsert(
                    deps,
                    Table::Observations,
                    &observation_key(&cert.id, endpoint),
                    &value,
                )
                .await
            }
            Err(e) => Err(Error::InvalidInput(format!("observation record: {e}"))),
        };
        match written {
            Ok(()) => stored += 1,
            Err(e) => {
                error.get_or_insert(e);
            }
        }
        match probed {
            Ok(obs) => seen.extend(obs),
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    let window = renewal_window(deps, cert, &seen, now).await;
    let assessment = assess(
        cert,
        &seen,
        deps.config.policy.renewal.planned_threshold_days,
        now,
        window.as_ref(),
    );
    let mut finding_sent = false;
    if let Some(finding) = assessment.finding {
        let concerns: Vec<&str> = assessment.concerns.iter().map(|c| c.as_str()).collect();
        let sent = match serde_json::to_value(&finding) {
            Ok(body) => deps.queue.send(INTAKE_QUEUE, &body).await,
            Err(e) => Err(Error::InvalidInput(format!("scan finding: {e}"))),
        };
        match sent {
            Ok(message) => {
                finding_sent = true;
                tracing::info!(cert_id = %cert.id, ci = %finding.ci, concerns = ?concerns,
                    expiry = %finding.observed_expiry, %message, "finding sent to intake");
            }
            Err(e) => {
                tracing::warn!(cert_id = %cert.id, error = %e, "finding could not be sent");
                error.get_or_insert(e);
            }
        }
    }
    ObjectScan {
        observations: stored,
        finding_sent,
        error,
    }
}

/// The CA's renewal window for the leaf `cert` serves (ACME certificate objects only): the
/// stored record while it is current (same certificate, before the CA's `Retry-After`), else
/// fetched from the issuer and stored. A failed fetch is logged and the stored record for the
/// same certificate, if any, is used: the planned threshold still applies either way.
async fn renewal_window(
    deps: &Deps,
    cert: &CertObject,
    seen: &[Observation],
    now: DateTime<Utc>,
) -> Option<RenewalWindow> {
    if cert.issuer.method != RenewalMethod::Acme {
        return None;
    }
    let served = seen.iter().min_by_key(|o| o.not_after)?.ari_id.clone()?;
    let stored = match renewal_info::load(deps.store.as_ref(), &cert.id).await {
        Ok(stored) => stored,
        Err(e) => {
            tracing::warn!(cert_id = %cert.id, error = %e, "renewal information record unreadable");
            None
        }
    };
    if !renewal_info::needs_refresh(stored.as_ref(), &served, now) {
        return stored;
    }
    match deps.issuer.renewal_window(&cert.issuer, &served).await {
        Ok(Some(window)) => {
            let written = match serde_json::to_value(&window) {
                Ok(v) => upsert(deps, Table::RenewalInfo, &cert.id, &v).await,
                Err(e) => Err(Error::InvalidInput(e.to_string())),
            };
            if let Err(e) = written {
                tracing::warn!(cert_id = %cert.id, error = %e, "renewal window not stored");
            }
            tracing::info!(cert_id = %cert.id, start = %window.start, end = %window.end,
                next_check = %window.next_check, "renewal information fetched");
            Some(window)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(cert_id = %cert.id, error = %e, "renewal information unavailable");
            stored.filter(|w| w.certificate_id == served)
        }
    }
}

/// Writes `value` under `key` of `table`, replacing whatever is there (a conditional write
/// on the value read, retried a few times if a concurrent scan wrote in between).
async fn upsert(deps: &Deps, table: Table, key: &str, value: &Value) -> Result<(), Error> {
    for _ in 0..STORE_ATTEMPTS {
        let current = deps.store.get(table, key).await?;
        if deps
            .store
            .compare_and_swap(table, key, current.as_ref(), value)
            .await?
        {
            return Ok(());
        }
    }
    Err(Error::Conflict(format!(
        "{table} record {key} kept changing under concurrent writes"
    )))
}

/// Runs a whole scan in-process, as the schedule and SQS would on AWS: [`handle_schedule`],
/// then receives from the [`SCAN_QUEUE`], hands the messages to [`handle_batch`] and deletes
/// the ones that succeeded, until no message is left to receive.
///
/// Failed messages stay on the queue, hidden for [`VISIBILITY`], and are redelivered (then
/// dead-lettered) like on SQS; each message is handled at most once per run, so a run always
/// ends. Messages left by earlier runs are handled too. Errors only when the schedule or the
/// queue itself fails.
pub async fn run_scan(deps: &Deps) -> Result<ScanSummary, Error> {
    let now = deps.clock.now();
    let event = EventBridgeEvent {
        id: Some(format!("embedded-{}", now.format("%Y%m%dT%H%M%S%.3fZ"))),
        detail_type: "Scheduled Event".into(),
        source: "certops.embedded".into(),
        time: Some(now),
        detail: json!({}),
        ..EventBridgeEvent::default()
    };
    let schedule = handle_schedule(deps, event).await?;
    let mut summary = ScanSummary {
        objects: schedule.objects,
        batches: schedule.batches,
        ..ScanSummary::default()
    };
    let mut handled: HashSet<String> = HashSet::new();
    loop {
        let received = deps.queue.receive(SCAN_QUEUE, 10, VISIBILITY).await?;
        let fresh: Vec<_> = received
            .into_iter()
            .filter(|m| !handled.contains(&m.id))
            .collect();
        if fresh.is_empty() {
            break;
        }
        let event = SqsEvent {
            records: fresh
                .iter()
                .map(|m| SqsMessage {
                    message_id: Some(m.id.clone()),
                    receipt_handle: Some(m.receipt.clone()),
                    body: Some(m.body.to_string()),
                    ..SqsMessage::default()
                })
                .collect(),
        };
        let out = handle(deps, event).await;
        summary.messages += fresh.len();
        summary.observations += out.observations;
        summary.findings += out.findings;
        let failed: HashSet<&str> = out
            .response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        summary.failed_messages += failed.len();
        for m in &fresh {
            handled.insert(m.id.clone());
            if failed.contains(m.id.as_str()) {
                continue;
            }
            if let Err(e) = deps.queue.delete(SCAN_QUEUE, &m.receipt).await {
                // Redelivered later and scanned again: harmless, findings are idempotent.
                tracing::warn!(message = %m.id, error = %e, "scan batch not deleted");
            }
        }
    }
    tracing::info!(
        objects = summary.objects,
        messages = summary.messages,
        failed = summary.failed_messages,
        findings = summary.findings,
        "expiry scan done"
    );
    Ok(summary)
}

/// The CloudWatch namespace of [`scan_completed_metric`].
pub const METRIC_NAMESPACE: &str = "certops";
/// The metric a completed scheduled scan emits; the template's dead-man's-switch alarm fires
/// when none arrives for 26 hours.
pub const SCAN_COMPLETED_METRIC: &str = "ScanCompleted";

/// A CloudWatch Embedded Metric Format record saying a scheduled scan fanned out: one JSON
/// line on stdout becomes the `certops`/`ScanCompleted` data point (dimension
/// `Function=scan`), with the inventory and batch counts as properties for Logs Insights.
pub fn scan_completed_metric(summary: &ScheduleSummary, at: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({
        "_aws": {
            "Timestamp": at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": METRIC_NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": [{"Name": SCAN_COMPLETED_METRIC, "Unit": "Count"}],
            }],
        },
        "Function": "scan",
        SCAN_COMPLETED_METRIC: 1,
        "objects": summary.objects,
        "batches": summary.batches,
    })
}

/// The two events the scan Lambda receives: the EventBridge schedule, and SQS batches of
/// certificate objects to probe. SQS events carry `Records`.
#[derive(Debug)]
pub enum ScanEvent {
    /// A batch from the scan queue.
    Batch(SqsEvent),
    /// The scheduled expiry scan.
    Schedule(Box<EventBridgeEvent<Value>>),
}

impl ScanEvent {
    /// Tells the event types apart and parses the one it is; [`Error::InvalidInput`] naming
    /// the type when it does not parse.
    pub fn from_value(event: Value) -> Result<ScanEvent, Error> {
        if event.get("Records").is_some() {
            serde_json::from_value(event)
                .map(ScanEvent::Batch)
                .map_err(|e| Error::InvalidInput(format!("SQS event: {e}")))
        } else {
            serde_json::from_value(event)
                .map(|e| ScanEvent::Schedule(Box::new(e)))
                .map_err(|e| Error::InvalidInput(format!("EventBridge event: {e}")))
        }
    }
}

/// The Lambda's one entry point: the answer, and for a completed schedule the
/// `certops`/`ScanCompleted` metric line (Embedded Metric Format) the dead-man's-switch
/// alarm counts, to print on stdout.
pub async fn handle_event(deps: &Deps, event: ScanEvent) -> Result<(Value, Option<Value>), Error> {
    let to_value =
        |v: Result<Value, serde_json::Error>| v.map_err(|e| Error::InvalidInput(e.to_string()));
    match event {
        ScanEvent::Batch(sqs) => Ok((
            to_value(serde_json::to_value(handle_batch(deps, sqs).await))?,
            None,
        )),
        ScanEvent::Schedule(scheduled) => {
            let out = handle_schedule(deps, *scheduled).await?;
            let metric = scan_completed_metric(&out, deps.clock.now());
            Ok((to_value(serde_json::to_value(out))?, Some(metric)))
        }
    }
}

#[cfg(test)]
#[path = "../../validate/src/test_world.rs"]
mod test_world;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqs_batches_and_the_schedule_are_told_apart_by_their_shape() {
        let sqs = json!({"Records": [{"messageId": "m-1", "body": "{}"}]});
        assert!(
            matches!(ScanEvent::from_value(sqs), Ok(ScanEvent::Batch(e)) if e.records.len() == 1)
        );
        let scheduled = json!({"version": "0", "id": "e-1", "detail-type": "Scheduled Event",
            "source": "aws.scheduler", "account": "123456789012",
            "time": "2026-12-07T00:00:00Z", "region": "eu-west-1", "resources": [], "detail": {}});
        assert!(
            matches!(ScanEvent::from_value(scheduled), Ok(ScanEvent::Schedule(e)) if e.detail_type == "Scheduled Event")
        );
        let bad = ScanEvent::from_value(json!({"Records": 7})).unwrap_err();
        assert!(bad.to_string().contains("SQS event"), "{bad}");
        let bad = ScanEvent::from_value(json!(["not an event"])).unwrap_err();
        assert!(bad.to_string().contains("EventBridge event"), "{bad}");
    }
    use certops_core::Inventory;
    use chrono::TimeZone;

    const INVENTORY: &str = r#"
[[certificate]]
id = "shop"
ci = "shop-web-prod"
common_name = "shop.example.com"
environment = "prod"
issuer = { name = "corp-pki", method = "internal-pki" }
targets = [{ kind = "local", id = "lb", reload = "hot-swap" }]
endpoints = [{ host = "127.0.0.1", port = 8443, sni = "shop.example.com" }]
"#;

    fn cert(expected: Option<&str>) -> CertObject {
        let mut c = Inventory::from_toml_str(INVENTORY).unwrap().certificates[0].clone();
        c.expected_fingerprint = expected.map(str::to_string);
        c
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap()
    }

    fn obs(fp: &str, days: i64) -> Observation {
        Observation {
            endpoint: cert(None).endpoints[0].clone(),
            address: "127.0.0.1:8443".into(),
            fingerprint: fp.into(),
            not_after: now() + TimeDelta::days(days),
            chain_valid: true,
            status: "ok".into(),
            ari_id: None,
        }
    }

    fn concerns(a: &Assessment) -> Vec<Concern> {
        a.concerns.iter().copied().collect()
    }

    #[test]
    fn healthy_certificate_yields_no_finding() {
        // The inventory spells it OpenSSL's way, the prober in plain lower-case hex.
        let expected = ["AB"; 32].join(":");
        let served = "ab".repeat(32);
        let a = assess(&cert(Some(&expected)), &[obs(&served, 80)], 30, now(), None);
        assert!(a.concerns.is_empty());
        assert_eq!(a.finding, None);
    }

    #[test]
    fn the_inventorys_sha256_prefix_names_the_served_leaf() {
        let served = "5f".repeat(32);
        let expected = format!("sha256:{}", served.to_ascii_uppercase());
        let a = assess(&cert(Some(&expected)), &[obs(&served, 80)], 30, now(), None);
        assert!(a.concerns.is_empty());
    }

    #[test]
    fn threshold_is_inclusive_like_validation() {
        let a = assess(&cert(None), &[obs("aa", 30)], 30, now(), None);
        assert_eq!(concerns(&a), [Concern::Expiring]);
        let a = assess(&cert(None), &[obs("aa", 31)], 30, now(), None);
        assert!(a.finding.is_none());
    }

    #[test]
    fn expired_is_its_own_concern() {
        let a = assess(&cert(None), &[obs("aa", -1)], 30, now(), None);
        assert_eq!(concerns(&a), [Concern::Expired]);
        assert_eq!(
            a.finding.unwrap().observed_expiry,
            now() - TimeDelta::days(1)
        );
    }

    #[test]
    fn unexpected_fingerprint_is_reported_even_far_from_expiry() {
        let a = assess(&cert(Some("sha256:00")), &[obs("ff", 80)], 30, now(), None);
        assert_eq!(concerns(&a), [Concern::UnexpectedFingerprint]);
        let f = a.finding.unwrap();
        assert_eq!(f.ci, "shop-web-prod");
        assert_eq!(f.observed_fingerprint.as_deref(), Some("ff"));
    }

    #[test]
    fn nodes_serving_different_leaves_report_the_earliest() {
        let a = assess(
            &cert(None),
            &[obs("aa", 80), obs("bb", 70)],
            30,
            now(),
            None,
        );
        assert_eq!(concerns(&a), [Concern::InconsistentLeaves]);
        let f = a.finding.unwrap();
        assert_eq!(f.observed_fingerprint.as_deref(), Some("bb"));
        assert_eq!(f.observed_expiry, now() + TimeDelta::days(70));
    }

    #[test]
    fn nothing_observed_is_no_finding() {
        assert_eq!(assess(&cert(None), &[], 30, now(), None).finding, None);
    }

    #[test]
    fn batches_are_at_most_batch_long_and_keep_order() {
        let ids: Vec<String> = (0..=BATCH).map(|i| i.to_string()).collect();
        let all: Vec<ScanBatch> = batches(&ids).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].cert_ids, [BATCH.to_string()]);
        assert_eq!(batches(&[]).count(), 0);
    }

    #[test]
    fn observation_keys_name_object_and_endpoint() {
        let c = cert(None);
        assert_eq!(
            observation_key(&c.id, &c.endpoints[0]),
            "shop#127.0.0.1:8443/shop.example.com"
        );
    }

    #[test]
    fn the_scan_completed_record_is_embedded_metric_format() {
        let at = DateTime::parse_from_rfc3339("2026-12-03T06:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let summary = ScheduleSummary {
            objects: 60,
            batches: 3,
        };
        let v = scan_completed_metric(&summary, at);
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(v["_aws"]["Timestamp"], at.timestamp_millis());
        assert_eq!(directive["Namespace"], METRIC_NAMESPACE);
        assert_eq!(directive["Metrics"][0]["Name"], SCAN_COMPLETED_METRIC);
        // Every dimension and metric the directive names is a member of the record.
        for name in directive["Dimensions"][0].as_array().unwrap() {
            assert_eq!(v[name.as_str().unwrap()], "scan");
        }
        assert_eq!(v[SCAN_COMPLETED_METRIC], 1);
        assert_eq!(
            (v["objects"].clone(), v["batches"].clone()),
            (60.into(), 3.into())
        );
    }

    mod embedded {
        //! The entry points against the embedded adapters: the world's endpoint probed
        //! over TLS, the batches and findings on the local queue.

        use super::super::*;
        use crate::test_world::{Env, World, CERT_ID};

        #[tokio::test]
        async fn a_scan_probes_the_inventory_and_sends_the_expiring_certificate_to_intake() {
            let w = World::new(Env::Dev).await;
            let summary = run_scan(&w.deps).await.unwrap();
            assert_eq!(
                (summary.objects, summary.batches, summary.messages),
                (1, 1, 1)
            );
            assert_eq!((summary.failed_messages, summary.findings), (0, 1));
            assert!(summary.observations >= 1);
            assert_eq!(
                w.deps.queue.depth(SCAN_QUEUE).await.unwrap(),
                0,
                "handled batches are deleted"
            );
            let sent = w
                .deps
                .queue
                .receive(INTAKE_QUEUE, 10, VISIBILITY)
                .await
                .unwrap();
            assert_eq!(sent.len(), 1);
            let finding: ScanFinding = serde_json::from_value(sent[0].body.clone()).unwrap();
            assert_eq!(finding.ci, CERT_ID);
            assert_eq!(finding.observed_expiry, w.expiry);
            assert_eq!(
                finding.observed_fingerprint.as_deref(),
                Some(w.initial_fingerprint.as_str())
            );
        }

        #[tokio::test]
        async fn a_batch_that_is_not_a_scan_batch_alone_is_redelivered() {
            let w = World::new(Env::Dev).await;
            let good = serde_json::to_value(ScanBatch {
                cert_ids: vec![CERT_ID.into()],
                scan: "s-1".into(),
            })
            .unwrap();
            let event = serde_json::from_value(json!({"Records": [
                {"messageId": "m-1", "body": good.to_string()},
                {"messageId": "m-2", "body": "[]"}]}))
            .unwrap();
            let (answer, metric) = handle_event(&w.deps, ScanEvent::Batch(event))
                .await
                .unwrap();
            assert_eq!(
                answer["batchItemFailures"],
                json!([{"itemIdentifier": "m-2"}])
            );
            assert!(metric.is_none());
            assert_eq!(w.deps.queue.depth(INTAKE_QUEUE).await.unwrap(), 1);
        }
    }
}
