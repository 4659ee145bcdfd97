//! `intake`: the front door. Turns a signed ServiceNow webhook (API Gateway
//! HTTP API) or an expiry-scan finding (SQS) into exactly one workflow
//! execution: the trigger's idempotency key is the execution name, so the
//! same trigger twice yields one execution and one ticket. Unsigned, badly
//! signed or stale webhooks (see [`certops_core::signature`]) are refused before
//! anything is parsed; a ticket whose category is not "Certificate" is refused
//! with a clear answer instead of being started and then blocked; the same
//! key with a materially different trigger is a 409 and an audited conflict.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use certops_core::ports::{Deps, Table};
use certops_core::workflow::WorkflowState;
use certops_core::{Error, ScanFinding, TicketTrigger, TicketType, Trigger};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use certops_core::signature::{
    sign_webhook, verify_webhook, HEADER as SIGNATURE_HEADER, TIMESTAMP_HEADER,
};

/// The ticket category certops acts on; any other category is refused at intake.
pub const CERTIFICATE_CATEGORY: &str = "Certificate";

/// The result of an intake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    /// The execution id.
    pub execution: String,
    /// The trigger's idempotency key (execution name).
    pub idempotency_key: String,
    /// True when this trigger had already started that execution.
    pub duplicate: bool,
}

fn field<'a>(p: &'a Value, k: &str) -> Option<&'a str> {
    match p.get(k)? {
        Value::String(s) => Some(s.as_str()),
        Value::Object(o) => o
            .get("display_value")
            .or_else(|| o.get("value"))
            .and_then(Value::as_str),
        _ => None,
    }
}

/// Maps a ServiceNow record (Table API JSON, incident or change_request) to a trigger.
pub fn trigger_from_servicenow(p: &Value) -> Result<Trigger, Error> {
    let need = |k: &str| {
        field(p, k)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| Error::InvalidInput(format!("ServiceNow payload lacks '{k}'")))
    };
    let number = need("number")?;
    let class = field(p, "sys_class_name").unwrap_or(if number.starts_with("CHG") {
        "change_request"
    } else {
        "incident"
    });
    let ticket_type = match class {
        "incident" => TicketType::Incident,
        "change_request" => TicketType::Change,
        other => {
            return Err(Error::InvalidInput(format!(
                "unsupported ServiceNow record class '{other}'"
            )))
        }
    };
    Ok(Trigger::Ticket(TicketTrigger {
        number: number.to_string(),
        sys_id: need("sys_id")?.to_string(),
        ticket_type,
        category: field(p, "category").unwrap_or_default().to_string(),
        ci: need("cmdb_ci")?.to_string(),
        environment: field(p, "u_environment")
            .or_else(|| field(p, "environment"))
            .map(str::to_string),
        requested_by: field(p, "opened_by")
            .or_else(|| field(p, "caller_id"))
            .or_else(|| field(p, "requested_by"))
            .unwrap_or("unknown")
            .to_string(),
        priority: field(p, "priority").unwrap_or("4").to_string(),
    }))
}

/// The webhook is a notification, the record is the truth: when ServiceNow is configured
/// (`[servicenow]` in integrations.toml), the record the posted body names is read back
/// through the Table API and that is what intake validates (CI, environment, priority,
/// opener, category). `Ok(None)`: no ServiceNow configured, the posted record stands.
pub async fn record_of_truth(deps: &Deps, posted: &Value) -> Result<Option<Value>, Error> {
    if !deps.config.integrations.has("servicenow") {
        return Ok(None);
    }
    let number = field(posted, "number")
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| Error::InvalidInput("ServiceNow payload lacks 'number'".into()))?;
    let record = deps
        .itsm
        .read_record(number)
        .await?
        .ok_or_else(|| Error::NotFound(format!("ServiceNow has no record {number}")))?;
    if let (Some(claimed), Some(actual)) = (field(posted, "sys_id"), field(&record, "sys_id")) {
        if claimed != actual {
            return Err(Error::InvalidInput(format!(
                "the webhook names {number} with sys_id {claimed}, but ServiceNow's record has {actual}"
            )));
        }
    }
    Ok(Some(record))
}

/// Starts (or finds) the execution for a trigger.
pub async fn start(deps: &Deps, trigger: Trigger) -> Result<Started, Error> {
    let key = trigger.idempotency_key();
    let state = WorkflowState {
        trigger,
        idempotency_key: key.clone(),
        received_at: deps.clock.now(),
        validation: None,
        approval: None,
        fallback_approval: None,
        renewal: None,
        deployment: None,
        purge: None,
        verification: None,
        rollback: None,
        approval_error: None,
        renew_error: None,
        deploy_error: None,
        purge_error: None,
        verify_error: None,
        rollback_error: None,
        failure: None,
        records: None,
    };
    // The receipt time is not part of the execution's identity: a duplicate
    // trigger carries the same key and reuses the first receipt.
    let input = serde_json::to_value(&state).map_err(|e| Error::InvalidInput(e.to_string()))?;
    let first = json!({"input": input});
    deps.store
        .put_if_absent(Table::Triggers, &key, &first)
        .await?;
    let stored = deps
        .store
        .get(Table::Triggers, &key)
        .await?
        .unwrap_or(first);
    let (execution, duplicate) = deps.workflow.start(&key, &stored["input"]).await?;
    // The same key must mean the same trigger: a redelivery is a duplicate, a
    // different payload under the same key is a conflict, never silently dropped.
    if stored["input"]["trigger"] != input["trigger"] {
        let summary = json!({
            "refused": "Conflict",
            "idempotencyKey": key,
            "stored": certops_core::redact(&stored["input"]["trigger"]),
            "received": certops_core::redact(&input["trigger"]),
        });
        certops_core::workflow::record_audit(
            deps,
            &execution,
            certops_core::AuditKind::Trigger,
            "step:intake",
            summary,
        )
        .await?;
        return Err(Error::Conflict(format!(
            "idempotency key {key} already names execution {execution} for a different trigger; refusing to drop or merge this one"
        )));
    }
    Ok(Started {
        execution,
        idempotency_key: key,
        duplicate,
    })
}

fn response(status: i64, body: Value) -> ApiGatewayV2httpResponse {
    let mut r = ApiGatewayV2httpResponse {
        status_code: status,
        body: Some(Body::Text(body.to_string())),
        ..Default::default()
    };
    if let Ok(v) = "application/json".parse() {
        r.headers.insert("content-type", v);
    }
    r
}

/// The largest webhook body accepted, bytes. A ServiceNow record notification is a few
/// KiB; anything near this is not one, and is refused before its signature is computed.
pub const MAX_WEBHOOK_BODY: usize = 64 * 1024;

/// Whether a `content-type` header names JSON (`application/json`, any parameters).
fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Handles a ServiceNow webhook delivered through API Gateway. In order, each refusal
/// starting nothing: a body over [`MAX_WEBHOOK_BODY`] is 413 `PayloadTooLarge`; a
/// `content-type` other than `application/json` is 415 `UnsupportedMediaType`; the
/// `x-certops-timestamp` and `x-certops-signature` headers must sign `"{timestamp}.{body}"`
/// with the ServiceNow webhook secret, within 300 s of now, else 401; a body that is not
/// UTF-8 or not JSON is 400 `InvalidInput`.
pub async fn handle_webhook(
    deps: &Deps,
    secret: &[u8],
    req: ApiGatewayV2httpRequest,
) -> ApiGatewayV2httpResponse {
    let raw = match (&req.body, req.is_base64_encoded) {
        (Some(b), true) => match base64_decode(b) {
            Some(v) => v,
            None => {
                return response(
                    400,
                    json!({"error": "InvalidInput", "message": "body is not base64"}),
                )
            }
        },
        (Some(b), false) => b.clone().into_bytes(),
        (None, _) => Vec::new(),
    };
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    if raw.len() > MAX_WEBHOOK_BODY {
        return response(
            413,
            json!({"error": "PayloadTooLarge", "message": format!(
                "body is {} bytes; a webhook body is at most {MAX_WEBHOOK_BODY}", raw.len()
            )}),
        );
    }
    if !is_json(header("content-type")) {
        return response(
            415,
            json!({"error": "UnsupportedMediaType", "message": format!(
                "content-type must be application/json, not {:?}",
                header("content-type").unwrap_or("(none)")
            )}),
        );
    }
    let now = deps.clock.now().timestamp();
    if let Err(e) = verify_webhook(
        secret,
        &raw,
        header(TIMESTAMP_HEADER),
        header(SIGNATURE_HEADER),
        now,
    ) {
        // A bad signature is the caller's (401); an unusable secret is ours (500).
        return response(
            i64::from(e.http_status()),
            json!({"error": e.name(), "message": e.to_string()}),
        );
    }
    let Ok(text) = std::str::from_utf8(&raw) else {
        return response(
            400,
            json!({"error": "InvalidInput", "message": "body is not UTF-8"}),
        );
    };
    let payload: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return response(
                400,
                json!({"error": "InvalidInput", "message": format!("body is not JSON: {e}")}),
            )
        }
    };
    let posted = payload.get("record").unwrap_or(&payload);
    let truth = match record_of_truth(deps, posted).await {
        Ok(r) => r,
        Err(e) => {
            // Unreachable 503, gone 404, certops' credentials refused 502.
            return response(
                i64::from(e.http_status()),
                json!({"error": e.name(), "message": e.to_string()}),
            );
        }
    };
    let record = truth.as_ref().unwrap_or(posted);
    let trigger = match trigger_from_servicenow(record) {
        Ok(t) => t,
        Err(e) => return response(400, json!({"error": e.name(), "message": e.to_string()})),
    };
    if let Trigger::Ticket(t) = &trigger {
        if !t.category.trim().eq_ignore_ascii_case(CERTIFICATE_CATEGORY) {
            return response(
                422,
                json!({"error": "NotCertificate", "message": format!(
                    "ticket {} has category '{}', not '{CERTIFICATE_CATEGORY}'; certops only acts on certificate tickets, nothing was started",
                    t.number, t.category
                )}),
            );
        }
    }
    match start(deps, trigger).await {
        Ok(s) => response(
            if s.duplicate { 200 } else { 202 },
            serde_json::to_value(&s).unwrap_or_default(),
        ),
        Err(e) => response(
            if e.is_retryable() { 503 } else { 409 },
            json!({"error": e.name(), "message": e.to_string()}),
        ),
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// Handles a batch of scan findings from the intake queue; failed messages are
/// reported individually so SQS redelivers only those (and dead-letters them after its limit).
pub async fn handle_sqs(deps: &Deps, event: SqsEvent) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for m in event.records {
        let id = m.message_id.clone().unwrap_or_default();
        let parsed: Result<ScanFinding, Error> = m
            .body
            .as_deref()
            .ok_or_else(|| Error::InvalidInput("empty message".into()))
            .and_then(|b| {
                serde_json::from_str(b)
                    .map_err(|e| Error::InvalidInput(format!("not a scan finding: {e}")))
            });
        let ok = match parsed {
            Ok(f) => start(deps, Trigger::Scan(f)).await.is_ok(),
            Err(e) => {
                tracing::warn!(message = %id, error = %e, "unreadable scan finding");
                false
            }
        };
        if !ok {
            failures.push(BatchItemFailure {
                item_identifier: id,
            });
        }
    }
    SqsBatchResponse {
        batch_item_failures: failures,
    }
}

/// The two events intake's Lambda receives: SQS batches of scan findings, and ServiceNow
/// webhooks through API Gateway (HTTP API). SQS events carry `Records`; anything else is
/// read as an API Gateway request.
#[derive(Debug)]
pub enum IntakeEvent {
    /// A batch from the intake queue.
    Queue(SqsEvent),
    /// A webhook through the HTTP API.
    Webhook(Box<ApiGatewayV2httpRequest>),
}

impl IntakeEvent {
    /// Tells the event types apart and parses the one it is; [`Error::InvalidInput`] naming
    /// the type when it does not parse.
    pub fn from_value(event: Value) -> Result<IntakeEvent, Error> {
        if event.get("Records").is_some() {
            serde_json::from_value(event)
                .map(IntakeEvent::Queue)
                .map_err(|e| Error::InvalidInput(format!("SQS event: {e}")))
        } else {
            serde_json::from_value(event)
                .map(|r| IntakeEvent::Webhook(Box::new(r)))
                .map_err(|e| Error::InvalidInput(format!("API Gateway event: {e}")))
        }
    }
}

/// The Lambda's one entry point: a queue batch is handled with partial batch failures; a
/// webhook needs the ServiceNow signing key (`secret`), and without one nothing is started.
pub async fn handle_event(
    deps: &Deps,
    secret: Option<&[u8]>,
    event: IntakeEvent,
) -> Result<Value, Error> {
    let answer = match event {
        IntakeEvent::Queue(sqs) => serde_json::to_value(handle_sqs(deps, sqs).await),
        IntakeEvent::Webhook(req) => {
            let Some(secret) = secret else {
                return Err(Error::Misconfigured(
                    "neither CERTOPS_WEBHOOK_SECRET_ARN nor CERTOPS_WEBHOOK_SECRET is set; \
                     refusing unsigned intake"
                        .into(),
                ));
            };
            serde_json::to_value(handle_webhook(deps, secret, *req).await)
        }
    };
    answer.map_err(|e| Error::InvalidInput(e.to_string()))
}

#[cfg(test)]
#[path = "../../validate/src/test_world.rs"]
mod test_world;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqs_batches_and_webhooks_are_told_apart_by_their_shape() {
        let sqs = json!({"Records": [{"messageId": "m-1", "body": "{}"}]});
        assert!(
            matches!(IntakeEvent::from_value(sqs), Ok(IntakeEvent::Queue(e)) if e.records.len() == 1)
        );
        let http = json!({"version": "2.0", "routeKey": "POST /webhooks/servicenow",
            "rawPath": "/webhooks/servicenow", "headers": {"content-type": "application/json"},
            "body": "{}", "isBase64Encoded": false,
            "requestContext": {"http": {"method": "POST"}}});
        assert!(
            matches!(IntakeEvent::from_value(http), Ok(IntakeEvent::Webhook(r)) if r.body.as_deref() == Some("{}"))
        );
        let bad = IntakeEvent::from_value(json!({"Records": "not a list"})).unwrap_err();
        assert_eq!(bad.name(), "InvalidInput");
        assert!(bad.to_string().contains("SQS event"), "{bad}");
    }

    #[test]
    fn only_json_content_types_are_json() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
        ] {
            assert!(is_json(Some(ok)), "{ok}");
        }
        for no in [
            "text/plain",
            "application/jsonp",
            "application/x-www-form-urlencoded",
            "",
        ] {
            assert!(!is_json(Some(no)), "{no}");
        }
        assert!(!is_json(None));
    }

    #[test]
    fn servicenow_records_map_to_triggers() {
        let p = serde_json::json!({"number": "INC0010042", "sys_id": "abc", "sys_class_name": "incident",
            "category": "Certificate", "cmdb_ci": {"display_value": "shop-web-prod"}, "u_environment": "Production",
            "opened_by": {"display_value": "sam@example.com"}, "priority": "1"});
        let Trigger::Ticket(t) = trigger_from_servicenow(&p).unwrap() else {
            panic!("ticket trigger")
        };
        assert_eq!(
            (t.number.as_str(), t.ci.as_str(), t.requested_by.as_str()),
            ("INC0010042", "shop-web-prod", "sam@example.com")
        );
        assert!(trigger_from_servicenow(&serde_json::json!({"number": "INC1"})).is_err());
    }

    mod embedded {
        //! The entry points against the embedded adapters: the world's local engine
        //! starts the executions, the Store keeps the triggers.

        use super::super::*;
        use crate::test_world::{Env, World, CERT_ID};

        fn finding(w: &World) -> ScanFinding {
            ScanFinding {
                ci: CERT_ID.into(),
                observed_expiry: w.expiry,
                observed_fingerprint: Some(w.initial_fingerprint.clone()),
            }
        }

        fn batch(bodies: &[(&str, &str)]) -> SqsEvent {
            serde_json::from_value(json!({"Records": bodies.iter().map(|(id, body)|
                json!({"messageId": id, "body": body})).collect::<Vec<_>>()}))
            .unwrap()
        }

        #[tokio::test]
        async fn a_queued_finding_starts_one_execution_and_a_bad_message_alone_fails() {
            let w = World::new(Env::Dev).await;
            let body = serde_json::to_string(&finding(&w)).unwrap();
            let out = handle_sqs(&w.deps, batch(&[("m-1", &body), ("m-2", "not a finding")])).await;
            let failed: Vec<&str> = out
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.as_str())
                .collect();
            assert_eq!(failed, ["m-2"]);
            // Redelivered: the same execution, not a second one.
            let out = handle_sqs(&w.deps, batch(&[("m-1", &body)])).await;
            assert!(out.batch_item_failures.is_empty());
            assert_eq!(w.engine.list_executions(None).len(), 1);
            let again = start(&w.deps, Trigger::Scan(finding(&w))).await.unwrap();
            assert!(again.duplicate);
            assert!(
                again.execution.ends_with(&again.idempotency_key),
                "{}",
                again.execution
            );
        }

        #[tokio::test]
        async fn a_key_that_names_another_trigger_is_a_conflict_on_the_trail() {
            let w = World::new(Env::Dev).await;
            let trigger = Trigger::Scan(finding(&w));
            let key = trigger.idempotency_key();
            let mut other = finding(&w);
            other.observed_fingerprint = Some("00".repeat(32));
            let first = json!({"input": {"trigger": Trigger::Scan(other), "idempotencyKey": key}});
            assert!(w
                .deps
                .store
                .put_if_absent(Table::Triggers, &key, &first)
                .await
                .unwrap());
            let err = start(&w.deps, trigger).await.unwrap_err();
            assert_eq!(err.name(), "Conflict");
            assert!(err.to_string().contains(&key), "{err}");
            let execution = w.engine.list_executions(None)[0].meta.execution_arn.clone();
            let last = w.audit(&execution).await.pop().unwrap();
            assert_eq!(last.summary["refused"], "Conflict");
        }

        #[tokio::test]
        async fn an_unusable_signing_key_is_our_fault_not_the_callers() {
            let w = World::new(Env::Dev).await;
            let mut req = ApiGatewayV2httpRequest {
                body: Some("{}".into()),
                ..Default::default()
            };
            let ts = w.deps.clock.now().timestamp().to_string();
            for (name, value) in [
                ("content-type", "application/json"),
                (TIMESTAMP_HEADER, ts.as_str()),
                (SIGNATURE_HEADER, "sha256=00"),
            ] {
                req.headers.insert(name, value.parse().unwrap());
            }
            let resp = handle_webhook(&w.deps, b"", req.clone()).await;
            assert_eq!(resp.status_code, 500, "{:?}", resp.body);
            let resp = handle_webhook(&w.deps, b"the real key", req).await;
            assert_eq!(resp.status_code, 401, "{:?}", resp.body);
            assert!(w.engine.list_executions(None).is_empty());
        }

        #[tokio::test]
        async fn a_webhook_without_a_signing_key_starts_nothing() {
            let w = World::new(Env::Dev).await;
            let event = IntakeEvent::from_value(json!({"version": "2.0", "routeKey": "POST /webhooks/servicenow",
                "rawPath": "/webhooks/servicenow", "headers": {"content-type": "application/json"},
                "body": "{}", "isBase64Encoded": false, "requestContext": {"http": {"method": "POST"}}}))
            .unwrap();
            let err = handle_event(&w.deps, None, event).await.unwrap_err();
            assert_eq!(err.name(), "Misconfigured");
            assert!(
                err.to_string().contains("refusing unsigned intake"),
                "{err}"
            );
            assert!(w.engine.list_executions(None).is_empty());
        }
    }
}
