//! The bench world: a configuration directory (inventory with loopback-only
//! endpoints, an always-open policy, the shipped runbook), a seeded data
//! directory (a fallback bundle issued by the local CA), and the first event of
//! each function, in the shape AWS delivers it.

use std::fs;
use std::path::Path;

use certops_adapters::Embedded;
use certops_core::ports::{Clock, SystemClock};
use chrono::{TimeDelta, Utc};
use serde_json::{json, Value};
use std::sync::Arc;

/// The CI every renewal event is about.
pub const CI: &str = "api-gateway-staging";
/// Its certificate object.
pub const CERT_ID: &str = "api-internal-staging";
/// Its change authority (approves in `approval-callback`).
pub const APPROVER: &str = "paula@example.com";
/// The webhook secret the bench signs callbacks with.
pub const WEBHOOK_SECRET: &str = "coldstart-bench-webhook-secret";
/// The approval-callback signing key (separate from the ServiceNow webhook's).
pub const APPROVAL_SECRET: &str = "coldstart-bench-approval-secret";
/// The account and region of every ARN.
pub const ACCOUNT: &str = "123456789012";
/// Region.
pub const REGION: &str = "eu-west-1";

const RUNBOOK: &str = include_str!("../../../runbooks/cert-renewal.runbook.toml");

const POLICY: &str = r#"version = "coldstart-bench"
[renewal]
planned_threshold_days = 30
emergency_threshold_hours = 24
[windows.prod]
timezone = "UTC"
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
start = "00:00"
end = "23:59"
[windows.staging]
timezone = "UTC"
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
start = "00:00"
end = "23:59"
[windows.dev]
timezone = "UTC"
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
start = "00:00"
end = "23:59"
[approval]
ecab = ["erin@example.com"]
timeouts = { standard_minutes = 60, normal_minutes = 60, emergency_minutes = 30 }
[acme]
certificates_per_registered_domain_per_week = 50
safety_margin = 10
"#;

/// Errors while building the world.
pub type WorldError = Box<dyn std::error::Error + Send + Sync>;

/// Seeds `data_dir` (the fallback bundle) and writes the configuration into
/// `config_dir`. Endpoints point at `probe_port` on 127.0.0.1, so no probe
/// leaves the machine.
pub async fn build(data_dir: &Path, config_dir: &Path, probe_port: u16) -> Result<(), WorldError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let adapters = Embedded::open(data_dir, clock)?;
    let fallback = adapters
        .provision_fallback(
            "fallback/api-internal-staging",
            CERT_ID,
            &["api.staging.corp.example.net"],
        )
        .await?;
    drop(adapters);

    let mut inventory = format!(
        r#"# coldstart bench inventory: every endpoint on 127.0.0.1.
[[certificate]]
id = "{CERT_ID}"
ci = "{CI}"
common_name = "api.staging.corp.example.net"
sans = ["api.staging.corp.example.net"]
environment = "staging"
service_owner = "team-platform@example.com"
escalation = ["oncall-platform@example.com"]
change_authority = ["{APPROVER}"]
fallback_cert = "{fallback}"
issuer = {{ name = "corp-pki", method = "internal-pki" }}
targets = [{{ kind = "local", id = "lb-api-staging", reload = "hot-swap" }}]
endpoints = [{{ host = "127.0.0.1", port = {probe_port}, sni = "api.staging.corp.example.net" }}]
"#
    );
    // More objects so the scheduled scan fans out more than one batch entry.
    for i in 0..24 {
        inventory.push_str(&format!(
            r#"
[[certificate]]
id = "svc-{i:02}-dev"
ci = "svc-{i:02}-dev"
common_name = "svc-{i:02}.dev.example.net"
sans = ["svc-{i:02}.dev.example.net"]
environment = "dev"
service_owner = "team-dev@example.com"
escalation = ["oncall-dev@example.com"]
change_authority = ["dana@example.com"]
issuer = {{ name = "corp-pki", method = "internal-pki" }}
targets = [{{ kind = "local", id = "lb-svc-{i:02}", reload = "hot-swap" }}]
endpoints = [{{ host = "127.0.0.1", port = {probe_port}, sni = "svc-{i:02}.dev.example.net" }}]
"#
        ));
    }
    fs::create_dir_all(config_dir)?;
    fs::write(config_dir.join("inventory.toml"), inventory)?;
    fs::write(config_dir.join("policy.toml"), POLICY)?;
    fs::write(config_dir.join("cert-renewal.runbook.toml"), RUNBOOK)?;
    Ok(())
}

/// An EventBridge scheduled event (the scan schedule).
pub fn scheduled_event() -> Value {
    json!({
        "version": "0",
        "id": "5e7c2f1a-9b7d-4c6e-8f10-2a3b4c5d6e7f",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": REGION,
        "resources": [format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/certops-scan-schedule")],
        "detail": {}
    })
}

/// An SQS event with one scan finding for [`CI`], expiring in 5 days.
pub fn intake_event() -> Value {
    let expiry = (Utc::now() + TimeDelta::days(5)).format("%Y-%m-%dT%H:%M:%SZ");
    let finding = json!({
        "ci": CI,
        "observed_expiry": expiry.to_string(),
        "observed_fingerprint": "3b1f0c9a8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170615f4e3",
    });
    json!({"Records": [{
        "messageId": "0b7f5a0e-2d1c-4f5e-9a8b-7c6d5e4f3a2b",
        "receiptHandle": "AQEBcoldstartbenchreceipthandle==",
        "body": finding.to_string(),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": Utc::now().timestamp_millis().to_string(),
            "SenderId": "AIDACOLDSTARTBENCH",
            "ApproximateFirstReceiveTimestamp": Utc::now().timestamp_millis().to_string()
        },
        "messageAttributes": {},
        "md5OfBody": "00000000000000000000000000000000",
        "eventSource": "aws:sqs",
        "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:certops-intake"),
        "awsRegion": REGION
    }]})
}

/// The payload of a state-machine Task: `{"execution", "state"}` plus extras.
pub fn step_event(execution: &str, state: &Value, extra: &[(&str, Value)]) -> Value {
    let mut event = json!({"execution": execution, "state": state});
    for (k, v) in extra {
        event[*k] = v.clone();
    }
    event
}

/// An API Gateway (HTTP API, payload 2.0) request carrying a signed approval.
pub fn callback_event(approval_id: &str) -> Value {
    let body = json!({
        "approvalId": approval_id,
        "approver": APPROVER,
        "verdict": "approve",
        "comment": "coldstart bench"
    })
    .to_string();
    let ts = chrono::Utc::now().timestamp();
    let signature = certops_core::signature::sign_approval(
        APPROVAL_SECRET.as_bytes(),
        ts,
        approval_id,
        body.as_bytes(),
    );
    json!({
        "version": "2.0",
        "routeKey": "POST /approvals/callback",
        "rawPath": "/approvals/callback",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "x-certops-signature": signature,
            "x-certops-timestamp": ts.to_string(),
            "user-agent": "Teams/1.0"
        },
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "coldstart",
            "domainName": "coldstart.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "coldstart",
            "http": {
                "method": "POST",
                "path": "/approvals/callback",
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "Teams/1.0"
            },
            "requestId": "coldstart-request",
            "routeKey": "POST /approvals/callback",
            "stage": "$default",
            "time": Utc::now().format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": Utc::now().timestamp_millis()
        },
        "body": body,
        "isBase64Encoded": false
    })
}
