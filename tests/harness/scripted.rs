//! A [`TaskInvoker`] that plays scripted outcomes per Task state name, as the
//! conformance fixtures describe them (see `tests/fixtures/asl/README.md`).

use certops_asl::{BoxFuture, Engine, StatesError, TaskInvoker, TaskRequest};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Plays each Task state's scripted outcomes in order (the last one repeats).
#[derive(Default)]
pub struct ScriptedInvoker {
    scripts: HashMap<String, Vec<Value>>,
    calls: Mutex<HashMap<String, usize>>,
    engine: OnceLock<Engine>,
}

impl ScriptedInvoker {
    /// Builds from a fixture's `tasks` object.
    pub fn new(tasks: Option<&Value>) -> Arc<Self> {
        let mut scripts = HashMap::new();
        if let Some(Value::Object(m)) = tasks {
            for (k, v) in m {
                let list = match v {
                    Value::Array(a) => a.clone(),
                    other => vec![other.clone()],
                };
                scripts.insert(k.clone(), list);
            }
        }
        Arc::new(ScriptedInvoker {
            scripts,
            calls: Mutex::new(HashMap::new()),
            engine: OnceLock::new(),
        })
    }

    /// Gives the invoker the engine, for callbacks.
    pub fn attach(&self, engine: Engine) {
        let _ = self.engine.set(engine);
    }

    /// How many times each state was invoked.
    pub fn calls(&self) -> HashMap<String, usize> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

fn lambda_cause(error: &str, message: &str) -> String {
    json!({"errorMessage": message, "errorType": error, "trace": []}).to_string()
}

impl TaskInvoker for ScriptedInvoker {
    fn invoke(&self, req: TaskRequest) -> BoxFuture<Result<Value, StatesError>> {
        let n = {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            let c = calls.entry(req.state_name.clone()).or_insert(0);
            *c += 1;
            *c
        };
        let outcome = self
            .scripts
            .get(&req.state_name)
            .and_then(|list| list.get(n - 1).or_else(|| list.last()))
            .cloned();
        let engine = self.engine.get().cloned();
        Box::pin(async move {
            let Some(o) = outcome else {
                return Err(StatesError::new(
                    "States.TaskFailed",
                    format!("no script for state '{}'", req.state_name),
                ));
            };
            if let Some(secs) = o.get("sleep").and_then(Value::as_f64) {
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            }
            if let Some(cb) = o.get("callback") {
                let token = req.task_token.clone().unwrap_or_default();
                let after = o.get("after").and_then(Value::as_f64).unwrap_or(0.0);
                let hb = o.get("heartbeat_every").and_then(Value::as_f64);
                let cb = cb.clone();
                if let Some(engine) = engine {
                    tokio::spawn(async move {
                        if let Some(h) = hb.filter(|h| *h > 0.0) {
                            let mut waited = 0.0;
                            let until = if cb == "none" { f64::MAX } else { after };
                            while waited + h < until {
                                tokio::time::sleep(Duration::from_secs_f64(h)).await;
                                waited += h;
                                if engine.send_task_heartbeat(&token).is_err() {
                                    return;
                                }
                            }
                            tokio::time::sleep(Duration::from_secs_f64((after - waited).max(0.0)))
                                .await;
                        } else if cb != "none" {
                            tokio::time::sleep(Duration::from_secs_f64(after)).await;
                        }
                        if cb == "none" {
                            return;
                        }
                        if let Some(out) = cb.get("output") {
                            let _ = engine.send_task_success(&token, out.clone());
                        } else {
                            let e = cb.get("error").and_then(Value::as_str).map(str::to_string);
                            let c = cb.get("cause").and_then(Value::as_str).map(str::to_string);
                            let _ = engine.send_task_failure(&token, e, c);
                        }
                    });
                }
                return Ok(json!({}));
            }
            if o.get("echo").and_then(Value::as_bool) == Some(true) {
                return Ok(req.payload);
            }
            if let Some(e) = o.get("error").and_then(Value::as_str) {
                let cause = o.get("cause").and_then(Value::as_str).unwrap_or_default();
                return Err(StatesError::new(e, lambda_cause(e, cause)));
            }
            Ok(o.get("output").cloned().unwrap_or(Value::Null))
        })
    }
}
