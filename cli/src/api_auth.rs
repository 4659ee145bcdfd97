//! Authentication and authorisation of the local Step Functions API.
//!
//! Callers sign requests with AWS SigV4 exactly as against AWS (boto3, the AWS
//! CLI and `aws-sdk-sfn` do so already), with credentials certops generates in
//! `<data-dir>/api-credentials.json` (mode 0600) and prints with `certops
//! credentials`. Each principal has a small policy in the spirit of the SAM
//! template's IAM:
//!
//! - nobody may update or delete the governed state machine (`cert-renewal`)
//!   through the API, or create another under its name;
//! - only the `approval-callback` principal may complete (or heartbeat) the
//!   governed machine's waiting tasks — its approval tasks;
//! - `StartExecution` of the governed machine needs *signed trigger input*:
//!   `{"servicenow": {"timestamp", "signature", "body"}}`, the same signed
//!   message the ServiceNow webhook takes, which then goes through intake (so
//!   the name is the trigger's idempotency key and cannot be squatted).

use anyhow::{Context, Result};
use certops_asl::api::ApiError;
use certops_asl::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The file holding the API's principals.
pub fn credentials_path(dir: &Path) -> PathBuf {
    dir.join("api-credentials.json")
}

/// The principal an operator (AWS CLI, boto3, scripts) uses.
pub const OPERATOR: &str = "operator";

/// The principal allowed to complete approval tasks.
pub const APPROVAL_CALLBACK: &str = "approval-callback";

/// One API principal and its SigV4 credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    /// `operator` or `approval-callback`.
    pub name: String,
    /// The access key id clients send in the SigV4 credential scope.
    pub access_key_id: String,
    /// The secret access key (never logged, never printed except by `certops credentials`).
    pub secret_access_key: String,
}

/// Every principal of the local API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiCredentials {
    /// The principals.
    pub principals: Vec<Principal>,
}

fn random_token(len: usize, upper: bool) -> String {
    use rand::Rng as _;
    let alphabet: &[u8] = if upper {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

impl ApiCredentials {
    fn generate() -> ApiCredentials {
        let principal = |name: &str| Principal {
            name: name.to_string(),
            access_key_id: format!("CERTOPS{}", random_token(13, true)),
            secret_access_key: random_token(40, false),
        };
        ApiCredentials {
            principals: vec![principal(OPERATOR), principal(APPROVAL_CALLBACK)],
        }
    }

    /// Reads `<dir>/api-credentials.json`, creating it (0600) with fresh keys on first use.
    pub fn load_or_create(dir: &Path) -> Result<ApiCredentials> {
        let path = credentials_path(dir);
        if let Ok(text) = std::fs::read_to_string(&path) {
            return serde_json::from_str(&text)
                .with_context(|| format!("reading {}", path.display()));
        }
        std::fs::create_dir_all(dir)?;
        let creds = ApiCredentials::generate();
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        f.write_all(serde_json::to_string_pretty(&creds)?.as_bytes())?;
        Ok(creds)
    }

    /// The secret of an access key id.
    pub fn secret_for(&self, access_key_id: &str) -> Option<&str> {
        self.principals
            .iter()
            .find(|p| p.access_key_id == access_key_id)
            .map(|p| p.secret_access_key.as_str())
    }

    /// The principal name of an access key id.
    pub fn name_of(&self, access_key_id: &str) -> Option<&str> {
        self.principals
            .iter()
            .find(|p| p.access_key_id == access_key_id)
            .map(|p| p.name.as_str())
    }
}

/// What the policy says about one request.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Hand the request to the engine as it is.
    Allow,
    /// StartExecution of the governed machine with signed trigger input: run intake.
    SignedStart {
        /// The `x-certops-timestamp` value.
        timestamp: String,
        /// The `x-certops-signature` value.
        signature: String,
        /// The exact webhook body.
        body: String,
    },
}

fn denied(message: impl Into<String>) -> ApiError {
    ApiError {
        status: 400,
        code: "AccessDeniedException".into(),
        message: message.into(),
    }
}

/// Decides whether `principal` may perform `op` with `body` against `engine`,
/// where `governed` is the governed state machine's ARN.
pub fn authorize(
    principal: &str,
    op: &str,
    body: &[u8],
    engine: &Engine,
    governed: &str,
) -> Result<Decision, ApiError> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let names_governed = |field: &str| {
        v[field]
            .as_str()
            .is_some_and(|arn| arn == governed || arn.starts_with(&format!("{governed}:")))
    };
    let governed_name = governed.rsplit(':').next().unwrap_or_default();
    match op {
        "UpdateStateMachine" | "DeleteStateMachine" if names_governed("stateMachineArn") => Err(
            denied(format!(
                "User: {principal} is not authorized to perform: states:{op} on the governed state machine {governed}; \
                 change statemachines/cert-renewal.asl.json and restart instead"
            )),
        ),
        "CreateStateMachine" if v["name"].as_str() == Some(governed_name) => Err(denied(format!(
            "User: {principal} is not authorized to create a state machine named {governed_name}"
        ))),
        "StartExecution" if names_governed("stateMachineArn") => {
            let input: Value = v["input"]
                .as_str()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or(Value::Null);
            let signed = &input["servicenow"];
            match (
                signed["timestamp"].as_str(),
                signed["signature"].as_str(),
                signed["body"].as_str(),
            ) {
                (Some(t), Some(s), Some(b)) => Ok(Decision::SignedStart {
                    timestamp: t.to_string(),
                    signature: s.to_string(),
                    body: b.to_string(),
                }),
                _ => Err(denied(format!(
                    "StartExecution of the governed state machine needs signed trigger input \
                     {{\"servicenow\": {{\"timestamp\", \"signature\", \"body\"}}}} (the ServiceNow webhook's signed message); \
                     User: {principal} sent unsigned input"
                ))),
            }
        }
        "SendTaskSuccess" | "SendTaskFailure" | "SendTaskHeartbeat" => {
            let token = v["taskToken"].as_str().unwrap_or_default();
            let exec = engine.token_execution(token);
            let of_governed = exec.as_deref().is_some_and(|arn| {
                arn.split(':').nth(6) == Some(governed_name)
            });
            if of_governed && principal != APPROVAL_CALLBACK {
                Err(denied(format!(
                    "User: {principal} is not authorized to perform: states:{op} on an approval task of {governed}; \
                     only the approval callback may complete it"
                )))
            } else {
                Ok(Decision::Allow)
            }
        }
        _ => Ok(Decision::Allow),
    }
}

/// `certops credentials`: prints the operator's (or another principal's) keys as an
/// AWS CLI profile, so `aws --profile certops --endpoint-url …` works.
pub fn print(dir: &Path, principal: &str) -> Result<u8> {
    let creds = ApiCredentials::load_or_create(dir)?;
    let p = creds
        .principals
        .iter()
        .find(|p| p.name == principal)
        .with_context(|| format!("no principal named {principal}"))?;
    println!(
        "# certops local Step Functions API, principal {} ({})\n[certops]\naws_access_key_id = {}\naws_secret_access_key = {}\nregion = us-east-1",
        p.name,
        credentials_path(dir).display(),
        p.access_key_id,
        p.secret_access_key
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use certops_asl::engine::{BoxFuture, TaskInvoker, TaskRequest};
    use certops_asl::{EngineOptions, StatesError, TokioClock};
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    /// Accepts every task and keeps the task tokens it was given.
    struct KeepTokens(Arc<Mutex<Vec<String>>>);

    impl TaskInvoker for KeepTokens {
        fn invoke(&self, request: TaskRequest) -> BoxFuture<Result<Value, StatesError>> {
            if let (Some(t), Ok(mut all)) = (request.task_token, self.0.lock()) {
                all.push(t);
            }
            Box::pin(async { Ok(json!({})) })
        }
    }

    const WAIT: &str = r#"{"StartAt": "Approve", "States": {"Approve": {"Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": "f", "Payload": {"t.$": "$$.Task.Token"}}, "End": true}}}"#;

    async fn token_of(engine: &Engine, machine: &str, tokens: &Mutex<Vec<String>>) -> String {
        let before = tokens.lock().map(|t| t.len()).unwrap_or(0);
        engine
            .start_execution(machine, None, json!({}))
            .expect("start");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Some(t) = tokens.lock().ok().and_then(|t| t.get(before).cloned()) {
                return t;
            }
            tokio::task::yield_now().await;
        }
        panic!("no task token");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_approval_callback_completes_governed_tasks_and_the_machine_is_fixed() {
        let tokens = Arc::new(Mutex::new(Vec::new()));
        let engine = Engine::open(
            EngineOptions::default(),
            Arc::new(KeepTokens(tokens.clone())),
            Arc::new(TokioClock::system()),
        )
        .expect("engine");
        let role = "arn:aws:iam::123456789012:role/x";
        let governed = engine
            .create_state_machine("cert-renewal", WAIT, role)
            .expect("governed")
            .arn;
        let other = engine
            .create_state_machine("scratch", WAIT, role)
            .expect("other")
            .arn;
        let gov_token = token_of(&engine, &governed, &tokens).await;
        let other_token = token_of(&engine, &other, &tokens).await;
        let body = |t: &str| json!({"taskToken": t, "output": "{}"}).to_string();
        for op in ["SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat"] {
            let e = authorize(
                OPERATOR,
                op,
                body(&gov_token).as_bytes(),
                &engine,
                &governed,
            )
            .expect_err("operator on an approval task");
            assert_eq!(e.code, "AccessDeniedException");
            assert_eq!(
                authorize(
                    APPROVAL_CALLBACK,
                    op,
                    body(&gov_token).as_bytes(),
                    &engine,
                    &governed
                ),
                Ok(Decision::Allow)
            );
            assert_eq!(
                authorize(
                    OPERATOR,
                    op,
                    body(&other_token).as_bytes(),
                    &engine,
                    &governed
                ),
                Ok(Decision::Allow)
            );
        }
        let arn = json!({"stateMachineArn": governed, "definition": "{}"}).to_string();
        for op in ["UpdateStateMachine", "DeleteStateMachine"] {
            for who in [OPERATOR, APPROVAL_CALLBACK] {
                assert!(authorize(who, op, arn.as_bytes(), &engine, &governed).is_err());
            }
        }
        let start = json!({"stateMachineArn": governed, "input": "{\"trigger\":{}}"}).to_string();
        assert!(authorize(
            OPERATOR,
            "StartExecution",
            start.as_bytes(),
            &engine,
            &governed
        )
        .is_err());
        let signed = json!({"stateMachineArn": governed,
            "input": json!({"servicenow": {"timestamp": "1", "signature": "sha256=00", "body": "{}"}}).to_string()})
        .to_string();
        assert!(matches!(
            authorize(
                OPERATOR,
                "StartExecution",
                signed.as_bytes(),
                &engine,
                &governed
            ),
            Ok(Decision::SignedStart { .. })
        ));
    }
}
