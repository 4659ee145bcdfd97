//! Task states: the invocation the engine carries out (Lambda ARN, `lambda:invoke`,
//! other integrations, `.waitForTaskToken`), its timeout and heartbeat timers,
//! the result or callback that completes it, and the history events of each step.

use super::data_flow::{apply_io, eval_template, number_from};
use super::{
    CallbackError, Env, Execution, ExecutionStatus, Flow, Frame, Invocation, Phase, StatesError,
    TaskWait, Timer, TimerKind,
};
use crate::definition::{Integration, State, StateKind, StateMachine, TaskSpec};
use crate::history::{payload_text, EventType};
use base64::Engine as _;
use rand::RngCore;
use serde_json::{json, Value};

/// AWS's default Task timeout when none is given.
const DEFAULT_TASK_TIMEOUT_SECS: u64 = 99_999_999;

fn resource_parts(resource: &str) -> (String, String) {
    if let Some(rest) = resource.strip_prefix("arn:aws:states:::") {
        match rest.split_once(':') {
            Some((t, r)) => (t.to_string(), r.to_string()),
            None => (rest.to_string(), String::new()),
        }
    } else {
        ("lambda".into(), resource.to_string())
    }
}

fn lambda_invoke_response(payload: Value, request_id: &str) -> Value {
    json!({
        "ExecutedVersion": "$LATEST",
        "Payload": payload,
        "SdkHttpMetadata": {
            "AllHttpHeaders": {
                "X-Amz-Executed-Version": ["$LATEST"],
                "x-amzn-RequestId": [request_id],
                "Content-Type": ["application/json"],
            },
            "HttpHeaders": {
                "X-Amz-Executed-Version": "$LATEST",
                "x-amzn-RequestId": request_id,
                "Content-Type": "application/json",
            },
            "HttpStatusCode": 200,
        },
        "SdkResponseMetadata": { "RequestId": request_id },
        "StatusCode": 200,
    })
}

fn uuid_from(rng: &mut dyn RngCore) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

impl Execution {
    pub(super) fn run_task(
        &mut self,
        def: &StateMachine,
        st: &State,
        fid: u32,
        f: &mut Frame,
        spec: &TaskSpec,
        env: &mut Env,
    ) -> Flow {
        let waits = matches!(
            spec.integration,
            Integration::LambdaInvokeWaitForToken
                | Integration::Other {
                    wait_for_token: true
                }
        );
        let token = waits.then(|| {
            let mut b = [0u8; 48];
            env.rng.fill_bytes(&mut b);
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
        });
        let prepared = (|| -> Result<(Value, u64, Option<u64>), StatesError> {
            let eff = apply_io(&st.input_path, "InputPath", &f.input)?;
            let params = match &st.parameters {
                Some(t) => {
                    let mut scope = self.scope(f, st, &eff);
                    scope.token = token.as_deref();
                    eval_template(t, "Parameters", &scope, env.rng)?
                }
                None => eff.clone(),
            };
            let timeout = spec
                .timeout
                .as_ref()
                .map(|s| number_from(s, "TimeoutSeconds", &eff))
                .transpose()?
                .unwrap_or(DEFAULT_TASK_TIMEOUT_SECS);
            let heartbeat = spec
                .heartbeat
                .as_ref()
                .map(|s| number_from(s, "HeartbeatSeconds", &eff))
                .transpose()?;
            if let Some(h) = heartbeat {
                if h >= timeout && spec.timeout.is_some() {
                    return Err(StatesError::runtime(format!(
                        "HeartbeatSeconds ({h}) must be smaller than TimeoutSeconds ({timeout})"
                    )));
                }
            }
            Ok((params, timeout, heartbeat))
        })();
        let (params, timeout, heartbeat) = match prepared {
            Ok(x) => x,
            Err(e) => return self.handle_error(def, st, fid, f, e, env),
        };
        let (function, payload) = match spec.integration {
            Integration::LambdaInvoke | Integration::LambdaInvokeWaitForToken => {
                let Some(name) = params.get("FunctionName").and_then(Value::as_str) else {
                    let e = StatesError::runtime(format!(
                        "The Parameters of state '{}' must hold a string 'FunctionName' for {}",
                        st.name, spec.resource
                    ));
                    return self.handle_error(def, st, fid, f, e, env);
                };
                (
                    Some(name.to_string()),
                    params.get("Payload").cloned().unwrap_or_else(|| json!({})),
                )
            }
            Integration::LambdaArn => (Some(spec.resource.clone()), params.clone()),
            Integration::Other { .. } => (None, params.clone()),
        };
        let seq = self.bump_seq();
        let timeout_at = if spec.timeout.is_some() {
            env.now_ms
                .saturating_add((timeout as i64).saturating_mul(1000))
        } else {
            i64::MAX
        };
        let heartbeat_ms = heartbeat.map(|h| h as i64 * 1000);
        if spec.integration == Integration::LambdaArn {
            let mut d = json!({"resource": spec.resource, "input": payload_text(&payload)});
            if spec.timeout.is_some() {
                d["timeoutInSeconds"] = json!(timeout);
            }
            self.emit(env, f, EventType::LambdaFunctionScheduled, Some(d));
            self.emit(env, f, EventType::LambdaFunctionStarted, None);
        } else {
            let (rt, r) = resource_parts(&spec.resource);
            let mut d = json!({
                "resourceType": rt,
                "resource": r,
                "region": self.meta.region,
                "parameters": payload_text(&params),
            });
            if spec.timeout.is_some() {
                d["timeoutInSeconds"] = json!(timeout);
            }
            if let Some(h) = heartbeat {
                d["heartbeatInSeconds"] = json!(h);
            }
            self.emit(env, f, EventType::TaskScheduled, Some(d));
            self.emit(
                env,
                f,
                EventType::TaskStarted,
                Some(json!({"resourceType": rt, "resource": r})),
            );
        }
        let inv = Invocation {
            frame: fid,
            seq,
            resource: spec.resource.clone(),
            function,
            payload,
            token: token.clone(),
            state_name: st.name.clone(),
        };
        env.effects.invocations.push(inv);
        if spec.timeout.is_some() {
            // Without TimeoutSeconds AWS waits 99999999 s; no timer is needed for that.
            env.effects.timers.push(Timer {
                at_ms: timeout_at,
                frame: fid,
                seq,
                kind: TimerKind::TaskTimeout,
            });
        }
        let heartbeat_at = heartbeat_ms.map(|h| env.now_ms + h);
        if let Some(at) = heartbeat_at {
            env.effects.timers.push(Timer {
                at_ms: at,
                frame: fid,
                seq,
                kind: TimerKind::Heartbeat,
            });
        }
        // One shared copy of the token for the task, the engine's index and the slot.
        let token: Option<std::sync::Arc<str>> = token.map(std::sync::Arc::from);
        if let Some(t) = &token {
            env.effects.tokens.push((t.clone(), fid, seq));
        }
        f.phase = Phase::Task(Box::new(TaskWait {
            seq,
            token,
            submitted: false,
            heartbeat_ms,
            heartbeat_at,
            timeout_at,
        }));
        Flow::Stop
    }

    /// Applies a task invocation's outcome. Stale outcomes are ignored.
    pub fn on_task_result(
        &mut self,
        def: &StateMachine,
        frame: u32,
        seq: u64,
        result: Result<Value, StatesError>,
        env: &mut Env,
    ) {
        let Some(mut f) = self.frames.remove(&frame) else {
            return;
        };
        let keep = match &mut f.phase {
            Phase::Task(tw) if tw.seq == seq => {
                let waits = tw.token.is_some();
                match result {
                    Ok(v) if waits => {
                        tw.submitted = true;
                        let rid = uuid_from(env.rng);
                        let out = lambda_invoke_response(v, &rid);
                        let (rt, r) = self.task_resource(def, &f);
                        self.emit(
                            env,
                            &mut f,
                            EventType::TaskSubmitted,
                            Some(json!({"resourceType": rt, "resource": r, "output": payload_text(&out)})),
                        );
                        true
                    }
                    Ok(v) => {
                        let is_arn = self.is_lambda_arn(def, &f);
                        let out = if is_arn {
                            v
                        } else if self.is_lambda_invoke(def, &f) {
                            let rid = uuid_from(env.rng);
                            lambda_invoke_response(v, &rid)
                        } else {
                            v
                        };
                        if is_arn {
                            self.emit(
                                env,
                                &mut f,
                                EventType::LambdaFunctionSucceeded,
                                Some(json!({"output": payload_text(&out)})),
                            );
                        } else {
                            let (rt, r) = self.task_resource(def, &f);
                            self.emit(
                                env,
                                &mut f,
                                EventType::TaskSucceeded,
                                Some(json!({"resourceType": rt, "resource": r, "output": payload_text(&out)})),
                            );
                        }
                        self.complete_with_result(def, frame, &mut f, out, env)
                    }
                    Err(e) => {
                        if self.is_lambda_arn(def, &f) {
                            self.emit(
                                env,
                                &mut f,
                                EventType::LambdaFunctionFailed,
                                Some(json!({"error": e.error, "cause": e.cause})),
                            );
                        } else {
                            let (rt, r) = self.task_resource(def, &f);
                            self.emit(
                                env,
                                &mut f,
                                EventType::TaskFailed,
                                Some(json!({"resourceType": rt, "resource": r, "error": e.error, "cause": e.cause})),
                            );
                        }
                        self.error_in_waiting_frame(def, frame, &mut f, e, env)
                    }
                }
            }
            _ => true,
        };
        if keep && self.status == ExecutionStatus::Running {
            self.frames.insert(frame, f);
        }
        self.run(def, env);
    }

    /// Applies `SendTaskSuccess` / `SendTaskFailure` for a waiting task.
    pub fn on_callback(
        &mut self,
        def: &StateMachine,
        frame: u32,
        seq: u64,
        result: Result<Value, StatesError>,
        env: &mut Env,
    ) -> Result<(), CallbackError> {
        let waiting = matches!(self.frames.get(&frame).map(|f| &f.phase), Some(Phase::Task(tw)) if tw.seq == seq && tw.token.is_some());
        if !waiting || self.status != ExecutionStatus::Running {
            return Err(CallbackError::NotWaiting);
        }
        let Some(mut f) = self.frames.remove(&frame) else {
            return Err(CallbackError::NotWaiting);
        };
        let (rt, r) = self.task_resource(def, &f);
        let keep = match result {
            Ok(v) => {
                self.emit(
                    env,
                    &mut f,
                    EventType::TaskSucceeded,
                    Some(json!({"resourceType": rt, "resource": r, "output": payload_text(&v)})),
                );
                self.complete_with_result(def, frame, &mut f, v, env)
            }
            Err(e) => {
                self.emit(
                    env,
                    &mut f,
                    EventType::TaskFailed,
                    Some(json!({"resourceType": rt, "resource": r, "error": e.error, "cause": e.cause})),
                );
                self.error_in_waiting_frame(def, frame, &mut f, e, env)
            }
        };
        if keep && self.status == ExecutionStatus::Running {
            self.frames.insert(frame, f);
        }
        self.run(def, env);
        Ok(())
    }

    /// Applies `SendTaskHeartbeat`: pushes the heartbeat deadline out.
    pub fn on_heartbeat(
        &mut self,
        frame: u32,
        seq: u64,
        env: &mut Env,
    ) -> Result<(), CallbackError> {
        match self.frames.get_mut(&frame).map(|f| &mut f.phase) {
            Some(Phase::Task(tw)) if tw.seq == seq && self.status == ExecutionStatus::Running => {
                if let Some(h) = tw.heartbeat_ms {
                    let at = env.now_ms + h;
                    tw.heartbeat_at = Some(at);
                    env.effects.timers.push(Timer {
                        at_ms: at,
                        frame,
                        seq,
                        kind: TimerKind::Heartbeat,
                    });
                }
                Ok(())
            }
            _ => Err(CallbackError::NotWaiting),
        }
    }

    pub(super) fn task_timed_out(
        &mut self,
        def: &StateMachine,
        fid: u32,
        f: &mut Frame,
        e: StatesError,
        env: &mut Env,
    ) -> bool {
        if self.is_lambda_arn(def, f) {
            self.emit(
                env,
                f,
                EventType::LambdaFunctionTimedOut,
                Some(json!({"error": e.error, "cause": e.cause})),
            );
        } else {
            let (rt, r) = self.task_resource(def, f);
            self.emit(
                env,
                f,
                EventType::TaskTimedOut,
                Some(
                    json!({"resourceType": rt, "resource": r, "error": e.error, "cause": e.cause}),
                ),
            );
        }
        self.error_in_waiting_frame(def, fid, f, e, env)
    }

    fn task_spec<'d>(&self, def: &'d StateMachine, f: &Frame) -> Option<&'d TaskSpec> {
        match &self.state_of(def, f)?.kind {
            StateKind::Task(t) => Some(t),
            _ => None,
        }
    }

    fn is_lambda_arn(&self, def: &StateMachine, f: &Frame) -> bool {
        self.task_spec(def, f)
            .is_some_and(|t| t.integration == Integration::LambdaArn)
    }

    fn is_lambda_invoke(&self, def: &StateMachine, f: &Frame) -> bool {
        self.task_spec(def, f).is_some_and(|t| {
            matches!(
                t.integration,
                Integration::LambdaInvoke | Integration::LambdaInvokeWaitForToken
            )
        })
    }

    fn task_resource(&self, def: &StateMachine, f: &Frame) -> (String, String) {
        self.task_spec(def, f)
            .map(|t| resource_parts(&t.resource))
            .unwrap_or_default()
    }
}
