//! Data flow through a state: `InputPath`, `Parameters` (payload templates,
//! paths and intrinsics evaluated against the input, the context object and
//! variables), `ResultSelector`, `ResultPath`, `OutputPath` and `Assign`.

use super::{state_type, Env, Execution, ExecutionMeta, Flow, Frame, Phase, StatesError};
use crate::clock::iso_millis;
use crate::definition::{
    Dynamic, IoPath, NumberSource, ResultPath, State, StateMachine, Template, Transition,
};
use crate::history::EventType;
use crate::intrinsics::{IntrinsicContext, IntrinsicError};
use crate::path::{excerpt, Path, PathError, Roots};
use rand::RngCore;
use serde_json::{json, Map, Value};

/// What paths in a state's fields resolve against: the input (`$`), the
/// variables (`$name`) and the context object (`$$`).
pub(super) struct Scope<'a> {
    input: &'a Value,
    vars: &'a Map<String, Value>,
    meta: &'a ExecutionMeta,
    state_name: &'a str,
    entered_ms: i64,
    retry_count: u32,
    pub(super) token: Option<&'a str>,
    pub(super) map_item: Option<(usize, &'a Value)>,
}

impl Roots for Scope<'_> {
    fn input(&self) -> &Value {
        self.input
    }

    fn context(&self) -> Value {
        let mut ctx = json!({
            "Execution": {
                "Id": self.meta.execution_arn,
                "Input": self.meta.input,
                "Name": self.meta.name,
                "RoleArn": self.meta.role_arn,
                "StartTime": iso_millis(self.meta.start_ms),
                "RedriveCount": 0,
            },
            "State": {
                "EnteredTime": iso_millis(self.entered_ms),
                "Name": self.state_name,
                "RetryCount": self.retry_count,
            },
            "StateMachine": {
                "Id": self.meta.state_machine_arn,
                "Name": self.meta.state_machine_name,
            },
        });
        if let Some(t) = self.token {
            ctx["Task"] = json!({ "Token": t });
        }
        if let Some((i, v)) = self.map_item {
            ctx["Map"] = json!({ "Item": { "Index": i, "Value": v } });
        }
        ctx
    }

    fn variable(&self, name: &str) -> Option<&Value> {
        self.vars.get(name)
    }
}

struct IntrinsicScope<'a, 'b> {
    scope: &'a Scope<'b>,
    rng: &'a mut dyn RngCore,
}

impl IntrinsicContext for IntrinsicScope<'_, '_> {
    fn resolve(&self, path: &str) -> Result<Value, IntrinsicError> {
        let p = Path::parse(path).map_err(|e| IntrinsicError {
            message: e.to_string(),
            path_failure: true,
        })?;
        self.resolve_parsed(&p)
    }

    fn resolve_parsed(&self, path: &Path) -> Result<Value, IntrinsicError> {
        path.select(self.scope).map_err(|e| IntrinsicError {
            message: e.to_string(),
            path_failure: true,
        })
    }

    fn random_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }
}

pub(super) fn path_error(field: impl std::fmt::Display, e: PathError) -> StatesError {
    StatesError::runtime(format!(
        "An error occurred while evaluating the field '{field}': {e}"
    ))
}

/// A `"key.$"` template field's name as error messages quote it, formatted
/// only when an error needs it (not once per evaluation).
struct DollarKey<'a>(&'a str);

impl std::fmt::Display for DollarKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.$", self.0)
    }
}

pub(super) fn eval_dynamic(
    d: &Dynamic,
    field: &dyn std::fmt::Display,
    scope: &Scope,
    rng: &mut dyn RngCore,
) -> Result<Value, StatesError> {
    match d {
        Dynamic::Path(p) => p.select(scope).map_err(|e| path_error(field, e)),
        Dynamic::Intrinsic(expr) => {
            let mut ic = IntrinsicScope { scope, rng };
            expr.evaluate(&mut ic).map_err(|e| {
                if e.path_failure {
                    StatesError::runtime(format!("The field '{field}': {}", e.message))
                } else {
                    StatesError::new(
                        "States.IntrinsicFailure",
                        format!("The field '{field}': {}", e.message),
                    )
                }
            })
        }
    }
}

pub(super) fn eval_template(
    t: &Template,
    field: &str,
    scope: &Scope,
    rng: &mut dyn RngCore,
) -> Result<Value, StatesError> {
    match t {
        Template::Const(v) => Ok(v.clone()),
        Template::Dynamic(d) => eval_dynamic(d, &field, scope, rng),
        Template::Object {
            fields,
            skeleton: Some(skeleton),
        } => {
            let mut out = skeleton.clone();
            for ((k, sub), slot) in fields.iter().zip(out.values_mut()) {
                match sub {
                    // Already in place.
                    Template::Const(_) => {}
                    Template::Dynamic(d) => *slot = eval_dynamic(d, &DollarKey(k), scope, rng)?,
                    other => *slot = eval_template(other, k, scope, rng)?,
                }
            }
            Ok(Value::Object(out))
        }
        Template::Object {
            fields,
            skeleton: None,
        } => {
            let mut out = Map::with_capacity(fields.len());
            for (k, sub) in fields {
                let v = match sub {
                    Template::Dynamic(d) => eval_dynamic(d, &DollarKey(k), scope, rng)?,
                    other => eval_template(other, k, scope, rng)?,
                };
                out.insert(k.clone(), v);
            }
            Ok(Value::Object(out))
        }
        Template::Array(items) => items
            .iter()
            .map(|i| eval_template(i, field, scope, rng))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
    }
}

pub(super) fn apply_io(p: &IoPath, field: &str, v: &Value) -> Result<Value, StatesError> {
    match p {
        IoPath::Whole => Ok(v.clone()),
        IoPath::Null => Ok(json!({})),
        IoPath::At(path) => path
            .select(&crate::path::InputOnly(v))
            .map_err(|e| StatesError::runtime(format!("Invalid path '{path}' in {field}: {e}"))),
    }
}

/// The effective input without copying it when `InputPath` is `$`.
pub(super) fn effective<'a>(
    p: &IoPath,
    v: &'a Value,
) -> Result<std::borrow::Cow<'a, Value>, StatesError> {
    match p {
        IoPath::Whole => Ok(std::borrow::Cow::Borrowed(v)),
        other => apply_io(other, "InputPath", v).map(std::borrow::Cow::Owned),
    }
}

/// `OutputPath` over an owned value: `$` passes it through without a copy.
pub(super) fn output_of(p: &IoPath, v: Value) -> Result<Value, StatesError> {
    match p {
        IoPath::Whole => Ok(v),
        other => apply_io(other, "OutputPath", &v),
    }
}

pub(super) fn apply_result_path(
    rp: &ResultPath,
    raw: &Value,
    result: Value,
) -> Result<Value, StatesError> {
    match rp {
        ResultPath::Replace => Ok(result),
        ResultPath::Discard => Ok(raw.clone()),
        ResultPath::At(p) => p.set(raw.clone(), result).map_err(|e| {
            StatesError::new(
                "States.ResultPathMatchFailure",
                format!(
                    "Unable to apply ResultPath '{p}' to input '{}': {e}",
                    excerpt(raw)
                ),
            )
        }),
    }
}

pub(super) fn number_from(
    src: &NumberSource,
    field: &str,
    input: &Value,
) -> Result<u64, StatesError> {
    match src {
        NumberSource::Fixed(n) => Ok(*n),
        NumberSource::Path(p) => {
            let v = p
                .select(&crate::path::InputOnly(input))
                .map_err(|e| path_error(format_args!("{field}Path"), e))?;
            v.as_u64().ok_or_else(|| {
                StatesError::runtime(format!(
                    "The value of {field}Path '{p}' must be a non-negative integer, got {v}"
                ))
            })
        }
    }
}

impl Execution {
    pub(super) fn scope<'a>(&'a self, f: &'a Frame, st: &'a State, input: &'a Value) -> Scope<'a> {
        Scope {
            input,
            vars: &f.vars,
            meta: &self.meta,
            state_name: &st.name,
            entered_ms: f.entered_ms,
            retry_count: f.retry_count,
            token: None,
            map_item: None,
        }
    }

    pub(super) fn assign(
        &self,
        template: Option<&Template>,
        f: &mut Frame,
        st: &State,
        dollar: &Value,
        env: &mut Env,
    ) -> Result<(), StatesError> {
        let Some(t) = template else { return Ok(()) };
        let scope = self.scope(f, st, dollar);
        let v = eval_template(t, "Assign", &scope, env.rng)?;
        if let Value::Object(m) = v {
            for (k, val) in m {
                f.vars.insert(k, val);
            }
        }
        Ok(())
    }

    /// A Task/Parallel/Map produced its raw result: ResultSelector → Assign →
    /// ResultPath → OutputPath → exit. Returns whether the frame still exists.
    pub(super) fn complete_with_result(
        &mut self,
        def: &StateMachine,
        fid: u32,
        f: &mut Frame,
        mut result: Value,
        env: &mut Env,
    ) -> bool {
        let Some(st) = self.state_of(def, f) else {
            self.fail_frame(
                def,
                fid,
                f,
                StatesError::runtime("internal: state not found"),
                env,
            );
            return false;
        };
        let done = (|| -> Result<Value, StatesError> {
            // ResultSelector and Assign both read the raw result and the
            // variables as they were when the state was entered.
            let selected = match &st.result_selector {
                Some(t) => {
                    eval_template(t, "ResultSelector", &self.scope(f, st, &result), env.rng)?
                }
                None if st.assign.is_some() => result.clone(),
                None => std::mem::take(&mut result),
            };
            self.assign(st.assign.as_ref(), f, st, &result, env)?;
            let out = apply_result_path(&st.result_path, &f.input, selected)?;
            output_of(&st.output_path, out)
        })();
        match done {
            Ok(out) => {
                let text = self.emit_state(env, f, EventType::exited(state_type(st)), st, &out);
                match st.next {
                    Transition::Next(n) => {
                        f.state = n;
                        f.input = out;
                        f.carry = Some(text);
                        f.phase = Phase::Enter;
                        self.runnable.push_back(fid);
                        true
                    }
                    Transition::End => {
                        f.phase = Phase::Run;
                        self.finish_frame(def, fid, f, out, env);
                        false
                    }
                }
            }
            Err(e) => {
                f.phase = Phase::Run;
                match self.handle_error(def, st, fid, f, e, env) {
                    Flow::Continue => {
                        self.runnable.push_back(fid);
                        true
                    }
                    Flow::Stop => !matches!(f.phase, Phase::Run | Phase::Enter),
                }
            }
        }
    }
}
