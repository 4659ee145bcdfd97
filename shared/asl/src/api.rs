//! The Step Functions AWS JSON 1.0 protocol over the local [`Engine`]:
//! `X-Amz-Target: AWSStepFunctions.<Op>` with a JSON body in, a JSON body
//! (or an AWS-shaped error) out. Transport-free: the CLI's HTTP server hands
//! each request to [`handle`], so the real `aws-sdk-sfn` client and boto3
//! work against it with only `endpoint_url` set.

use crate::engine::{Engine, EngineError, ExecutionInfo, MachineInfo};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// The prefix every operation's `X-Amz-Target` carries.
pub const TARGET_PREFIX: &str = "AWSStepFunctions.";

/// An error in AWS's shape: HTTP 400 with `{"__type": …, "message": …}`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// The AWS error code (`StateMachineDoesNotExist`, `ValidationException`, …).
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    fn new(code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            code: code.to_string(),
            message: message.into(),
        }
    }

    fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationException", message)
    }

    /// The JSON body AWS sends for this error.
    pub fn body(&self) -> Value {
        json!({
            "__type": format!("com.amazonaws.swf.service.v2.model#{}", self.code),
            "message": self.message,
        })
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = if matches!(e, EngineError::Store(_)) {
            500
        } else {
            400
        };
        ApiError {
            status,
            code: e.code().to_string(),
            message: e.to_string(),
        }
    }
}

fn secs(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

struct Req(Map<String, Value>);

impl Req {
    fn str(&self, k: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::validation(format!("'{k}' must be a string"))),
        }
    }

    fn req_str(&self, k: &str) -> Result<&str, ApiError> {
        self.str(k)?
            .ok_or_else(|| ApiError::validation(format!("1 validation error detected: Value null at '{k}' failed to satisfy constraint: Member must not be null")))
    }

    fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| ApiError::validation(format!("'{k}' must be an integer"))),
        }
    }

    fn bool(&self, k: &str) -> Result<bool, ApiError> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(ApiError::validation(format!("'{k}' must be a boolean"))),
        }
    }
}

fn page<T>(
    items: Vec<T>,
    req: &Req,
    default_max: usize,
    cap: usize,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let max = match req.int("maxResults")? {
        None | Some(0) => default_max,
        Some(n) if n < 0 => return Err(ApiError::validation("maxResults must not be negative")),
        Some(n) => (n as usize).min(cap),
    };
    let start = match req.str("nextToken")? {
        None => 0,
        Some(t) => base64::engine::general_purpose::STANDARD
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.strip_prefix("offset:")
                    .and_then(|n| n.parse::<usize>().ok())
            })
            .ok_or_else(|| {
                ApiError::new("InvalidToken", "Invalid Token: the nextToken is not valid")
            })?,
    };
    let total = items.len();
    let out: Vec<T> = items.into_iter().skip(start).take(max).collect();
    let next = (start + out.len() < total).then(|| {
        base64::engine::general_purpose::STANDARD.encode(format!("offset:{}", start + out.len()))
    });
    Ok((out, next))
}

fn machine_json(m: &MachineInfo) -> Value {
    json!({
        "stateMachineArn": m.arn,
        "name": m.name,
        "status": "ACTIVE",
        "definition": m.definition,
        "roleArn": m.role_arn,
        "type": "STANDARD",
        "creationDate": secs(m.created_ms),
        "revisionId": m.revision.to_string(),
        "loggingConfiguration": {"level": "OFF", "includeExecutionData": false},
        "tracingConfiguration": {"enabled": false},
    })
}

fn execution_json(e: &ExecutionInfo, full: bool) -> Value {
    let mut v = json!({
        "executionArn": e.meta.execution_arn,
        "stateMachineArn": e.meta.state_machine_arn,
        "name": e.meta.name,
        "status": e.status.as_str(),
        "startDate": secs(e.meta.start_ms),
    });
    if let Some(s) = e.stop_ms {
        v["stopDate"] = secs(s);
    }
    if full {
        v["input"] = json!(e.meta.input.to_string());
        v["inputDetails"] = json!({"included": true});
        if let Some(o) = &e.output {
            v["output"] = json!(o.to_string());
            v["outputDetails"] = json!({"included": true});
        }
        if let Some(er) = &e.error {
            v["error"] = json!(er);
        }
        if let Some(c) = &e.cause {
            v["cause"] = json!(c);
        }
        v["redriveCount"] = json!(0);
        v["redriveStatus"] = json!("NOT_REDRIVABLE");
    }
    v
}

fn parse_json_field(text: Option<&str>, what: &str, code: &str) -> Result<Value, ApiError> {
    match text {
        None => Ok(json!({})),
        // AWS's quota on `input` / `output`: 256 KiB of UTF-8.
        Some(t) if t.len() > crate::machine::MAX_PAYLOAD_BYTES => Err(ApiError::validation(format!(
            "1 validation error detected: Value at '{what}' failed to satisfy constraint: Member must have length less than or equal to {} (it has {} bytes)",
            crate::machine::MAX_PAYLOAD_BYTES,
            t.len()
        ))),
        Some(t) => serde_json::from_str(t)
            .map_err(|e| ApiError::new(code, format!("{what} is not valid JSON: {e}"))),
    }
}

/// Handles one request: `target` is the `X-Amz-Target` header, `body` the raw body.
pub fn handle(engine: &Engine, target: &str, body: &[u8]) -> Result<Value, ApiError> {
    let op = target.strip_prefix(TARGET_PREFIX).ok_or_else(|| {
        ApiError::new(
            "UnknownOperationException",
            format!("unknown X-Amz-Target '{target}'"),
        )
    })?;
    let parsed: Value = if body.iter().all(|b| b.is_ascii_whitespace()) {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::new(
                "SerializationException",
                format!("the request body is not valid JSON: {e}"),
            )
        })?
    };
    let Value::Object(map) = parsed else {
        return Err(ApiError::new(
            "SerializationException",
            "the request body must be a JSON object",
        ));
    };
    let r = Req(map);
    match op {
        "CreateStateMachine" => {
            let name = r.req_str("name")?;
            let definition = r.req_str("definition")?;
            let role = r.str("roleArn")?.unwrap_or(crate::DEFAULT_ROLE_ARN);
            if let Some(t) = r.str("type")? {
                if t != "STANDARD" {
                    return Err(ApiError::validation(format!(
                        "type '{t}' is not supported by the local engine; use STANDARD"
                    )));
                }
            }
            let m = engine.create_state_machine(name, definition, role)?;
            Ok(json!({"stateMachineArn": m.arn, "creationDate": secs(m.created_ms)}))
        }
        "DescribeStateMachine" => Ok(machine_json(
            &engine.describe_state_machine(r.req_str("stateMachineArn")?)?,
        )),
        "ListStateMachines" => {
            let all = engine.list_state_machines();
            let (items, next) = page(all, &r, 100, 1000)?;
            let list: Vec<Value> = items
                .iter()
                .map(|m| json!({"stateMachineArn": m.arn, "name": m.name, "type": "STANDARD", "creationDate": secs(m.created_ms)}))
                .collect();
            let mut out = json!({"stateMachines": list});
            if let Some(n) = next {
                out["nextToken"] = json!(n);
            }
            Ok(out)
        }
        "UpdateStateMachine" => {
            let arn = r.req_str("stateMachineArn")?;
            let def = r.str("definition")?;
            let role = r.str("roleArn")?;
            if def.is_none() && role.is_none() {
                return Err(ApiError::new(
                    "MissingRequiredParameter",
                    "UpdateStateMachine needs at least one of definition, roleArn",
                ));
            }
            let m = engine.update_state_machine(arn, def, role)?;
            Ok(json!({"updateDate": secs(m.updated_ms), "revisionId": m.revision.to_string()}))
        }
        "DeleteStateMachine" => {
            engine.delete_state_machine(r.req_str("stateMachineArn")?)?;
            Ok(json!({}))
        }
        "StartExecution" | "StartSyncExecution" => {
            let arn = r.req_str("stateMachineArn")?;
            let input = parse_json_field(r.str("input")?, "input", "InvalidExecutionInput")?;
            let e = engine.start_execution(arn, r.str("name")?, input)?;
            Ok(json!({"executionArn": e.meta.execution_arn, "startDate": secs(e.meta.start_ms)}))
        }
        "DescribeExecution" => Ok(execution_json(
            &engine.describe_execution(r.req_str("executionArn")?)?,
            true,
        )),
        "ListExecutions" => {
            let sm = r.req_str("stateMachineArn")?;
            engine.describe_state_machine(sm)?;
            let filter = r.str("statusFilter")?;
            let all: Vec<ExecutionInfo> = engine
                .list_executions(Some(sm))
                .into_iter()
                .filter(|e| filter.is_none_or(|f| e.status.as_str() == f))
                .collect();
            let (items, next) = page(all, &r, 100, 1000)?;
            let mut out = json!({"executions": items.iter().map(|e| execution_json(e, false)).collect::<Vec<_>>()});
            if let Some(n) = next {
                out["nextToken"] = json!(n);
            }
            Ok(out)
        }
        "GetExecutionHistory" => {
            let arn = r.req_str("executionArn")?;
            let mut events = engine.history(arn)?;
            if r.bool("reverseOrder")? {
                events.reverse();
            }
            let include_data = !matches!(r.0.get("includeExecutionData"), Some(Value::Bool(false)));
            let (items, next) = page(events, &r, 100, 1000)?;
            let list: Vec<Value> = items
                .iter()
                .map(|e| {
                    let mut j = e.to_aws_json();
                    if !include_data {
                        strip_data(&mut j);
                    }
                    j
                })
                .collect();
            let mut out = json!({"events": list});
            if let Some(n) = next {
                out["nextToken"] = json!(n);
            }
            Ok(out)
        }
        "StopExecution" => {
            let arn = r.req_str("executionArn")?;
            let e = engine.stop_execution(
                arn,
                r.str("error")?.map(str::to_string),
                r.str("cause")?.map(str::to_string),
            )?;
            Ok(json!({"stopDate": secs(e.stop_ms.unwrap_or(e.meta.start_ms))}))
        }
        "SendTaskSuccess" => {
            let token = r.req_str("taskToken")?;
            let output = parse_json_field(Some(r.req_str("output")?), "output", "InvalidOutput")?;
            engine.send_task_success(token, output)?;
            Ok(json!({}))
        }
        "SendTaskFailure" => {
            let token = r.req_str("taskToken")?;
            engine.send_task_failure(
                token,
                r.str("error")?.map(str::to_string),
                r.str("cause")?.map(str::to_string),
            )?;
            Ok(json!({}))
        }
        "SendTaskHeartbeat" => {
            engine.send_task_heartbeat(r.req_str("taskToken")?)?;
            Ok(json!({}))
        }
        "ValidateStateMachineDefinition" => {
            let definition = r.req_str("definition")?;
            Ok(match Engine::validate(definition, &HashMap::new()) {
                Ok(_) => json!({"result": "OK", "diagnostics": [], "truncated": false}),
                Err(e) => json!({
                    "result": "FAIL",
                    "diagnostics": [{
                        "severity": "ERROR",
                        "code": "SCHEMA_VALIDATION_FAILED",
                        "message": e.message,
                        "location": e.location,
                    }],
                    "truncated": false,
                }),
            })
        }
        other => Err(ApiError::new(
            "UnknownOperationException",
            format!("operation '{other}' is not supported by the local Step Functions endpoint"),
        )),
    }
}

fn strip_data(event: &mut Value) {
    if let Value::Object(m) = event {
        for (k, v) in m.iter_mut() {
            if k.ends_with("EventDetails") {
                if let Value::Object(d) = v {
                    for f in ["input", "output", "parameters"] {
                        d.remove(f);
                    }
                }
            }
        }
    }
}
