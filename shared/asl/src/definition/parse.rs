//! Parsing and validation, from JSON to [`StateMachine`]: each state's fields
//! are checked against what its type allows, every `Next` is resolved to an
//! index, every path and payload template compiled, and every state checked to
//! be reachable. A refusal is a [`DefinitionError`] naming the state and field.

use super::{
    compile_template, dynamic, Branch, Catcher, DefinitionError, Integration, IoPath, MapSpec,
    NumberSource, ResultPath, Retrier, State, StateKind, StateMachine, StringSource, TaskSpec,
    Template, Transition, WaitSpec,
};
use crate::choice::{ChoiceRule, Rule};
use crate::path::Path;
use chrono::DateTime;
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::fmt;

impl StateMachine {
    /// Parses and validates a definition (JSON text, substitutions already applied).
    pub fn parse(text: &str) -> Result<StateMachine, DefinitionError> {
        let value: Value = serde_json::from_str(text).map_err(|e| DefinitionError {
            location: "/".into(),
            message: format!("the definition is not valid JSON: {e}"),
        })?;
        Self::from_value(&value)
    }

    /// Parses and validates a definition given as JSON.
    pub fn from_value(value: &Value) -> Result<StateMachine, DefinitionError> {
        let obj = value.as_object().ok_or_else(|| DefinitionError {
            location: "/".into(),
            message: "the definition must be a JSON object".into(),
        })?;
        check_fields(
            obj,
            "",
            "the state machine",
            &[
                "StartAt",
                "States",
                "Comment",
                "Version",
                "TimeoutSeconds",
                "QueryLanguage",
            ],
        )?;
        if let Some(q) = obj.get("QueryLanguage") {
            if q != "JSONPath" {
                return Err(DefinitionError {
                    location: "/QueryLanguage".into(),
                    message: format!("QueryLanguage {q} is not supported; only \"JSONPath\" is"),
                });
            }
        }
        let timeout_seconds = match obj.get("TimeoutSeconds") {
            None => None,
            Some(v) => Some(positive_int(
                v,
                "/TimeoutSeconds",
                "the state machine",
                "TimeoutSeconds",
            )?),
        };
        let comment = obj
            .get("Comment")
            .and_then(Value::as_str)
            .map(str::to_string);
        let root = parse_branch(obj, "")?;
        Ok(StateMachine {
            root,
            timeout_seconds,
            comment,
        })
    }
}

fn err(location: impl Into<String>, message: impl Into<String>) -> DefinitionError {
    DefinitionError {
        location: location.into(),
        message: message.into(),
    }
}

fn check_fields(
    obj: &Map<String, Value>,
    loc: &str,
    what: &str,
    allowed: &[&str],
) -> Result<(), DefinitionError> {
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(err(
                format!("{loc}/{k}"),
                format!("{what}: field '{k}' is not supported here"),
            ));
        }
    }
    Ok(())
}

fn positive_int(v: &Value, loc: &str, state: &str, field: &str) -> Result<u64, DefinitionError> {
    v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
        err(
            loc,
            format!("{state}: field '{field}' must be a positive integer"),
        )
    })
}

fn non_negative_int(
    v: &Value,
    loc: &str,
    state: &str,
    field: &str,
) -> Result<u64, DefinitionError> {
    v.as_u64().ok_or_else(|| {
        err(
            loc,
            format!("{state}: field '{field}' must be a non-negative integer"),
        )
    })
}

fn parse_branch(obj: &Map<String, Value>, loc: &str) -> Result<Branch, DefinitionError> {
    let where_ = if loc.is_empty() {
        "the state machine".to_string()
    } else {
        format!("branch {loc}")
    };
    let start = obj
        .get("StartAt")
        .ok_or_else(|| {
            err(
                format!("{loc}/StartAt"),
                format!("{where_}: field 'StartAt' is required"),
            )
        })?
        .as_str()
        .ok_or_else(|| {
            err(
                format!("{loc}/StartAt"),
                format!("{where_}: field 'StartAt' must be a string"),
            )
        })?;
    let states_obj = obj
        .get("States")
        .ok_or_else(|| {
            err(
                format!("{loc}/States"),
                format!("{where_}: field 'States' is required"),
            )
        })?
        .as_object()
        .ok_or_else(|| {
            err(
                format!("{loc}/States"),
                format!("{where_}: field 'States' must be an object"),
            )
        })?;
    if states_obj.is_empty() {
        return Err(err(
            format!("{loc}/States"),
            format!("{where_}: 'States' is empty"),
        ));
    }
    let names: HashMap<String, usize> = states_obj
        .keys()
        .enumerate()
        .map(|(i, k)| (k.clone(), i))
        .collect();
    let start_at = *names.get(start).ok_or_else(|| {
        err(
            format!("{loc}/StartAt"),
            format!("{where_}: StartAt '{start}' is not a state in this branch"),
        )
    })?;
    let mut states = Vec::with_capacity(states_obj.len());
    for (name, body) in states_obj {
        if name.is_empty() || name.chars().count() > 80 {
            return Err(err(
                format!("{loc}/States/{name}"),
                format!("state name '{name}' must be 1 to 80 characters"),
            ));
        }
        states.push(parse_state(
            name,
            body,
            &format!("{loc}/States/{name}"),
            &names,
        )?);
    }
    let branch = Branch { start_at, states };
    check_reachable(&branch, loc)?;
    Ok(branch)
}

fn successors(s: &State) -> Vec<usize> {
    let mut out = Vec::new();
    if let Transition::Next(n) = s.next {
        out.push(n);
    }
    for c in &s.catch {
        out.push(c.next);
    }
    if let StateKind::Choice { choices, default } = &s.kind {
        out.extend(choices.iter().map(|c| c.next));
        out.extend(default.iter().copied());
    }
    out
}

fn check_reachable(b: &Branch, loc: &str) -> Result<(), DefinitionError> {
    let mut seen = vec![false; b.states.len()];
    let mut queue = VecDeque::from([b.start_at]);
    seen[b.start_at] = true;
    while let Some(i) = queue.pop_front() {
        for n in successors(&b.states[i]) {
            if !seen[n] {
                seen[n] = true;
                queue.push_back(n);
            }
        }
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        let name = &b.states[i].name;
        return Err(err(
            format!("{loc}/States/{name}"),
            format!("state '{name}' is not reachable from StartAt"),
        ));
    }
    let terminal = b.states.iter().any(|s| {
        matches!(s.kind, StateKind::Succeed | StateKind::Fail { .. }) || s.next == Transition::End
    });
    if !terminal {
        return Err(err(
            format!("{loc}/States"),
            "no terminal state: at least one state must have End, or be Succeed or Fail",
        ));
    }
    Ok(())
}

const COMMON: &[&str] = &["Type", "Comment", "QueryLanguage"];

fn allowed_fields(ty: &str) -> Option<&'static [&'static str]> {
    Some(match ty {
        "Pass" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Parameters",
            "Result",
            "ResultPath",
            "Assign",
        ],
        "Task" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Parameters",
            "ResultSelector",
            "ResultPath",
            "Retry",
            "Catch",
            "Resource",
            "TimeoutSeconds",
            "TimeoutSecondsPath",
            "HeartbeatSeconds",
            "HeartbeatSecondsPath",
            "Credentials",
            "Assign",
        ],
        "Choice" => &["Choices", "Default", "InputPath", "OutputPath", "Assign"],
        "Wait" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Seconds",
            "Timestamp",
            "SecondsPath",
            "TimestampPath",
            "Assign",
        ],
        "Succeed" => &["InputPath", "OutputPath"],
        "Fail" => &["Error", "ErrorPath", "Cause", "CausePath"],
        "Parallel" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Parameters",
            "ResultSelector",
            "ResultPath",
            "Retry",
            "Catch",
            "Branches",
            "Assign",
        ],
        "Map" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Parameters",
            "ItemSelector",
            "ResultSelector",
            "ResultPath",
            "Retry",
            "Catch",
            "ItemsPath",
            "Iterator",
            "ItemProcessor",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "ToleratedFailureCount",
            "ToleratedFailureCountPath",
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
            "Label",
            "Assign",
        ],
        _ => return None,
    })
}

struct Ctx<'a> {
    name: &'a str,
    loc: &'a str,
    names: &'a HashMap<String, usize>,
}

impl Ctx<'_> {
    fn e(&self, field: &str, msg: impl fmt::Display) -> DefinitionError {
        err(
            format!("{}/{field}", self.loc),
            format!("state '{}': field '{field}': {msg}", self.name),
        )
    }

    fn target(&self, field: &str, v: &Value) -> Result<usize, DefinitionError> {
        let t = v
            .as_str()
            .ok_or_else(|| self.e(field, "must be a state name"))?;
        self.names
            .get(t)
            .copied()
            .ok_or_else(|| self.e(field, format!("references unknown state '{t}'")))
    }

    fn path(&self, field: &str, v: &Value) -> Result<Path, DefinitionError> {
        let s = v
            .as_str()
            .ok_or_else(|| self.e(field, "must be a path string"))?;
        Path::parse(s).map_err(|e| self.e(field, e))
    }

    fn io_path(&self, obj: &Map<String, Value>, field: &str) -> Result<IoPath, DefinitionError> {
        match obj.get(field) {
            None => Ok(IoPath::Whole),
            Some(Value::Null) => Ok(IoPath::Null),
            Some(v) => {
                let p = self.path(field, v)?;
                if *p.root() != crate::path::Root::Input {
                    return Err(self.e(field, "must start with '$'"));
                }
                Ok(IoPath::At(p))
            }
        }
    }

    fn result_path(&self, obj: &Map<String, Value>) -> Result<ResultPath, DefinitionError> {
        match obj.get("ResultPath") {
            None => Ok(ResultPath::Replace),
            Some(Value::Null) => Ok(ResultPath::Discard),
            Some(v) => {
                let p = self.path("ResultPath", v)?;
                if !p.is_reference() {
                    return Err(self.e(
                        "ResultPath",
                        format!("'{p}' must be a reference path (fields and indexes only)"),
                    ));
                }
                if p.as_str() == "$" {
                    Ok(ResultPath::Replace)
                } else {
                    Ok(ResultPath::At(p))
                }
            }
        }
    }

    fn template(&self, field: &str, v: &Value) -> Result<Template, DefinitionError> {
        compile_template(v).map_err(|m| self.e(field, m))
    }

    fn number(
        &self,
        obj: &Map<String, Value>,
        field: &str,
        allow_zero: bool,
    ) -> Result<Option<NumberSource>, DefinitionError> {
        let path_field = format!("{field}Path");
        match (obj.get(field), obj.get(&path_field)) {
            (Some(_), Some(_)) => Err(self.e(
                field,
                format!("only one of '{field}' and '{path_field}' may be set"),
            )),
            (Some(v), None) => {
                let n = if allow_zero {
                    non_negative_int(
                        v,
                        &format!("{}/{field}", self.loc),
                        &format!("state '{}'", self.name),
                        field,
                    )?
                } else {
                    positive_int(
                        v,
                        &format!("{}/{field}", self.loc),
                        &format!("state '{}'", self.name),
                        field,
                    )?
                };
                Ok(Some(NumberSource::Fixed(n)))
            }
            (None, Some(p)) => Ok(Some(NumberSource::Path(self.path(&path_field, p)?))),
            (None, None) => Ok(None),
        }
    }

    fn string_source(
        &self,
        obj: &Map<String, Value>,
        field: &str,
    ) -> Result<Option<StringSource>, DefinitionError> {
        let path_field = format!("{field}Path");
        match (obj.get(field), obj.get(&path_field)) {
            (Some(_), Some(_)) => Err(self.e(
                field,
                format!("only one of '{field}' and '{path_field}' may be set"),
            )),
            (Some(v), None) => Ok(Some(StringSource::Fixed(
                v.as_str()
                    .ok_or_else(|| self.e(field, "must be a string"))?
                    .to_string(),
            ))),
            (None, Some(v)) => {
                let s = v
                    .as_str()
                    .ok_or_else(|| self.e(&path_field, "must be a path or intrinsic function"))?;
                Ok(Some(StringSource::Dynamic(
                    dynamic(s).map_err(|m| self.e(&path_field, m))?,
                )))
            }
            (None, None) => Ok(None),
        }
    }

    fn error_equals(&self, loc: &str, v: Option<&Value>) -> Result<Vec<String>, DefinitionError> {
        let arr = v
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                self.e(
                    &format!("{loc}/ErrorEquals"),
                    "must be a non-empty array of error names",
                )
            })?;
        let names: Vec<String> = arr
            .iter()
            .map(|x| {
                x.as_str().map(str::to_string).ok_or_else(|| {
                    self.e(&format!("{loc}/ErrorEquals"), "error names must be strings")
                })
            })
            .collect::<Result<_, _>>()?;
        if names.iter().any(|n| n == "States.ALL") && names.len() > 1 {
            return Err(self.e(
                &format!("{loc}/ErrorEquals"),
                "States.ALL must appear alone in ErrorEquals",
            ));
        }
        Ok(names)
    }

    fn retriers(&self, obj: &Map<String, Value>) -> Result<Vec<Retrier>, DefinitionError> {
        let Some(v) = obj.get("Retry") else {
            return Ok(Vec::new());
        };
        let arr = v
            .as_array()
            .ok_or_else(|| self.e("Retry", "must be an array"))?;
        let mut out = Vec::new();
        for (i, r) in arr.iter().enumerate() {
            let loc = format!("Retry/{i}");
            let o = r
                .as_object()
                .ok_or_else(|| self.e(&loc, "must be an object"))?;
            for k in o.keys() {
                if ![
                    "ErrorEquals",
                    "IntervalSeconds",
                    "MaxAttempts",
                    "BackoffRate",
                    "MaxDelaySeconds",
                    "JitterStrategy",
                    "Comment",
                ]
                .contains(&k.as_str())
                {
                    return Err(self.e(&format!("{loc}/{k}"), "is not a Retry field"));
                }
            }
            let error_equals = self.error_equals(&loc, o.get("ErrorEquals"))?;
            let interval_seconds = match o.get("IntervalSeconds") {
                None => 1.0,
                Some(v) => v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                    self.e(&format!("{loc}/IntervalSeconds"), "must be an integer ≥ 1")
                })? as f64,
            };
            let max_attempts = match o.get("MaxAttempts") {
                None => 3,
                Some(v) => v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        self.e(
                            &format!("{loc}/MaxAttempts"),
                            "must be a non-negative integer",
                        )
                    })?,
            };
            let backoff_rate = match o.get("BackoffRate") {
                None => 2.0,
                Some(v) => v.as_f64().filter(|n| *n >= 1.0).ok_or_else(|| {
                    self.e(&format!("{loc}/BackoffRate"), "must be a number ≥ 1.0")
                })?,
            };
            let max_delay_seconds = match o.get("MaxDelaySeconds") {
                None => None,
                Some(v) => Some(v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                    self.e(
                        &format!("{loc}/MaxDelaySeconds"),
                        "must be a positive integer",
                    )
                })? as f64),
            };
            let full_jitter = match o.get("JitterStrategy").map(|v| v.as_str()) {
                None | Some(Some("NONE")) => false,
                Some(Some("FULL")) => true,
                _ => {
                    return Err(self.e(
                        &format!("{loc}/JitterStrategy"),
                        "must be \"FULL\" or \"NONE\"",
                    ))
                }
            };
            out.push(Retrier {
                error_equals,
                interval_seconds,
                max_attempts,
                backoff_rate,
                max_delay_seconds,
                full_jitter,
            });
        }
        check_all_last(&out.iter().map(|r| &r.error_equals).collect::<Vec<_>>()).map_err(|i| {
            self.e(
                &format!("Retry/{i}/ErrorEquals"),
                "a retrier with States.ALL must be the last one",
            )
        })?;
        Ok(out)
    }

    fn catchers(&self, obj: &Map<String, Value>) -> Result<Vec<Catcher>, DefinitionError> {
        let Some(v) = obj.get("Catch") else {
            return Ok(Vec::new());
        };
        let arr = v
            .as_array()
            .ok_or_else(|| self.e("Catch", "must be an array"))?;
        let mut out = Vec::new();
        for (i, c) in arr.iter().enumerate() {
            let loc = format!("Catch/{i}");
            let o = c
                .as_object()
                .ok_or_else(|| self.e(&loc, "must be an object"))?;
            for k in o.keys() {
                if !["ErrorEquals", "Next", "ResultPath", "Comment", "Assign"].contains(&k.as_str())
                {
                    return Err(self.e(&format!("{loc}/{k}"), "is not a Catch field"));
                }
            }
            let error_equals = self.error_equals(&loc, o.get("ErrorEquals"))?;
            let next = self.target(
                &format!("{loc}/Next"),
                o.get("Next")
                    .ok_or_else(|| self.e(&format!("{loc}/Next"), "is required"))?,
            )?;
            let result_path = Ctx {
                loc: &format!("{}/{loc}", self.loc),
                ..*self
            }
            .result_path(o)?;
            let assign = o
                .get("Assign")
                .map(|a| self.template(&format!("{loc}/Assign"), a))
                .transpose()?;
            out.push(Catcher {
                error_equals,
                next,
                result_path,
                assign,
            });
        }
        check_all_last(&out.iter().map(|c| &c.error_equals).collect::<Vec<_>>()).map_err(|i| {
            self.e(
                &format!("Catch/{i}/ErrorEquals"),
                "a catcher with States.ALL must be the last one",
            )
        })?;
        Ok(out)
    }
}

fn check_all_last(lists: &[&Vec<String>]) -> Result<(), usize> {
    for (i, l) in lists.iter().enumerate() {
        if l.iter().any(|n| n == "States.ALL") && i + 1 != lists.len() {
            return Err(i);
        }
    }
    Ok(())
}

fn classify_resource(resource: &str) -> Integration {
    match resource {
        "arn:aws:states:::lambda:invoke" => Integration::LambdaInvoke,
        "arn:aws:states:::lambda:invoke.waitForTaskToken" => Integration::LambdaInvokeWaitForToken,
        r if r.starts_with("arn:aws:lambda:") || !r.starts_with("arn:") => Integration::LambdaArn,
        r => Integration::Other {
            wait_for_token: r.ends_with(".waitForTaskToken"),
        },
    }
}

fn parse_state(
    name: &str,
    body: &Value,
    loc: &str,
    names: &HashMap<String, usize>,
) -> Result<State, DefinitionError> {
    let cx = Ctx { name, loc, names };
    let obj = body
        .as_object()
        .ok_or_else(|| err(loc, format!("state '{name}' must be an object")))?;
    let ty = obj
        .get("Type")
        .and_then(Value::as_str)
        .ok_or_else(|| cx.e("Type", "is required and must be a string"))?;
    let allowed =
        allowed_fields(ty).ok_or_else(|| cx.e("Type", format!("unknown state type '{ty}'")))?;
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) && !COMMON.contains(&k.as_str()) {
            return Err(cx.e(k, format!("is not supported in a {ty} state")));
        }
    }
    if let Some(q) = obj.get("QueryLanguage") {
        if q != "JSONPath" {
            return Err(cx.e("QueryLanguage", "only \"JSONPath\" is supported"));
        }
    }
    let terminal_kind = matches!(ty, "Choice" | "Succeed" | "Fail");
    let next = match (obj.get("Next"), obj.get("End")) {
        _ if terminal_kind => Transition::End,
        (Some(_), Some(_)) => {
            return Err(cx.e("Next", "a state may not have both 'Next' and 'End'"))
        }
        (Some(n), None) => Transition::Next(cx.target("Next", n)?),
        (None, Some(Value::Bool(true))) => Transition::End,
        (None, Some(_)) => return Err(cx.e("End", "must be true when present")),
        (None, None) => return Err(cx.e("Next", "is required (or 'End': true)")),
    };
    let input_path = cx.io_path(obj, "InputPath")?;
    let output_path = cx.io_path(obj, "OutputPath")?;
    let result_path = cx.result_path(obj)?;
    let mut parameters = obj
        .get("Parameters")
        .map(|p| cx.template("Parameters", p))
        .transpose()?;
    let result_selector = obj
        .get("ResultSelector")
        .map(|p| cx.template("ResultSelector", p))
        .transpose()?;
    let assign = match obj.get("Assign") {
        None => None,
        Some(a) if a.is_object() => Some(cx.template("Assign", a)?),
        Some(_) => return Err(cx.e("Assign", "must be an object")),
    };
    let retry = cx.retriers(obj)?;
    let catch = cx.catchers(obj)?;
    let kind = match ty {
        "Pass" => StateKind::Pass {
            result: obj.get("Result").cloned(),
        },
        "Task" => {
            let resource = obj
                .get("Resource")
                .and_then(Value::as_str)
                .ok_or_else(|| cx.e("Resource", "is required and must be a string"))?
                .to_string();
            if resource.contains("${") {
                return Err(cx.e(
                    "Resource",
                    format!("'{resource}' still holds an unsubstituted placeholder"),
                ));
            }
            let timeout = cx.number(obj, "TimeoutSeconds", false)?;
            let heartbeat = cx.number(obj, "HeartbeatSeconds", false)?;
            if let (Some(NumberSource::Fixed(t)), Some(NumberSource::Fixed(h))) =
                (&timeout, &heartbeat)
            {
                if h >= t {
                    return Err(cx.e(
                        "HeartbeatSeconds",
                        format!(
                            "must be smaller than TimeoutSeconds ({h} is not smaller than {t})"
                        ),
                    ));
                }
            }
            StateKind::Task(Box::new(TaskSpec {
                integration: classify_resource(&resource),
                resource,
                timeout,
                heartbeat,
            }))
        }
        "Choice" => {
            let arr = obj
                .get("Choices")
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| cx.e("Choices", "is required and must be a non-empty array"))?;
            let mut choices = Vec::new();
            for (i, c) in arr.iter().enumerate() {
                let cloc = format!("Choices/{i}");
                let o = c
                    .as_object()
                    .ok_or_else(|| cx.e(&cloc, "must be an object"))?;
                let next = cx.target(
                    &format!("{cloc}/Next"),
                    o.get("Next")
                        .ok_or_else(|| cx.e(&format!("{cloc}/Next"), "is required"))?,
                )?;
                let assign = o
                    .get("Assign")
                    .map(|a| cx.template(&format!("{cloc}/Assign"), a))
                    .transpose()?;
                let rule = Rule::parse(o, true).map_err(|m| cx.e(&cloc, m))?;
                choices.push(ChoiceRule { rule, next, assign });
            }
            let default = obj
                .get("Default")
                .map(|d| cx.target("Default", d))
                .transpose()?;
            StateKind::Choice { choices, default }
        }
        "Wait" => {
            let present: Vec<&str> = ["Seconds", "Timestamp", "SecondsPath", "TimestampPath"]
                .into_iter()
                .filter(|f| obj.contains_key(*f))
                .collect();
            if present.len() != 1 {
                return Err(cx.e(
                    present.first().copied().unwrap_or("Seconds"),
                    "exactly one of Seconds, Timestamp, SecondsPath, TimestampPath is required",
                ));
            }
            let f = present[0];
            let v = &obj[f];
            StateKind::Wait(match f {
                "Seconds" => WaitSpec::Seconds(non_negative_int(
                    v,
                    &format!("{loc}/Seconds"),
                    &format!("state '{name}'"),
                    "Seconds",
                )?),
                "Timestamp" => WaitSpec::Timestamp(
                    v.as_str()
                        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                        .ok_or_else(|| cx.e("Timestamp", "must be an RFC 3339 timestamp"))?,
                ),
                "SecondsPath" => WaitSpec::SecondsPath(cx.path("SecondsPath", v)?),
                _ => WaitSpec::TimestampPath(cx.path("TimestampPath", v)?),
            })
        }
        "Succeed" => StateKind::Succeed,
        "Fail" => StateKind::Fail {
            error: cx.string_source(obj, "Error")?,
            cause: cx.string_source(obj, "Cause")?,
        },
        "Parallel" => {
            let arr = obj
                .get("Branches")
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| cx.e("Branches", "is required and must be a non-empty array"))?;
            let mut branches = Vec::new();
            for (i, b) in arr.iter().enumerate() {
                let bloc = format!("{loc}/Branches/{i}");
                let bo = b
                    .as_object()
                    .ok_or_else(|| cx.e(&format!("Branches/{i}"), "must be an object"))?;
                check_fields(
                    bo,
                    &bloc,
                    &format!("state '{name}' branch {i}"),
                    &["StartAt", "States", "Comment"],
                )?;
                branches.push(parse_branch(bo, &bloc)?);
            }
            StateKind::Parallel { branches }
        }
        "Map" => {
            if obj.contains_key("ItemSelector") && obj.contains_key("Parameters") {
                return Err(cx.e(
                    "ItemSelector",
                    "use either 'ItemSelector' or the older 'Parameters', not both",
                ));
            }
            if let Some(sel) = obj.get("ItemSelector") {
                parameters = Some(cx.template("ItemSelector", sel)?);
            }
            let (field, proc) = match (obj.get("ItemProcessor"), obj.get("Iterator")) {
                (Some(p), None) => ("ItemProcessor", p),
                (None, Some(p)) => ("Iterator", p),
                (Some(_), Some(_)) => {
                    return Err(cx.e(
                        "ItemProcessor",
                        "use either 'ItemProcessor' or 'Iterator', not both",
                    ))
                }
                (None, None) => return Err(cx.e("ItemProcessor", "is required")),
            };
            let po = proc
                .as_object()
                .ok_or_else(|| cx.e(field, "must be an object"))?;
            let ploc = format!("{loc}/{field}");
            check_fields(
                po,
                &ploc,
                &format!("state '{name}' {field}"),
                &["StartAt", "States", "Comment", "ProcessorConfig"],
            )?;
            if let Some(cfg) = po.get("ProcessorConfig") {
                let mode = cfg.get("Mode").and_then(Value::as_str).unwrap_or("INLINE");
                if mode != "INLINE" {
                    return Err(cx.e(
                        &format!("{field}/ProcessorConfig/Mode"),
                        format!(
                            "mode '{mode}' is not supported by the local engine; only INLINE is"
                        ),
                    ));
                }
            }
            let processor = parse_branch(po, &ploc)?;
            let items_path = obj
                .get("ItemsPath")
                .map(|p| cx.path("ItemsPath", p))
                .transpose()?;
            StateKind::Map(Box::new(MapSpec {
                items_path,
                processor,
                max_concurrency: cx.number(obj, "MaxConcurrency", true)?,
                tolerated_count: cx.number(obj, "ToleratedFailureCount", true)?,
                tolerated_percentage: cx.number(obj, "ToleratedFailurePercentage", true)?,
            }))
        }
        other => return Err(cx.e("Type", format!("unknown state type '{other}'"))),
    };
    Ok(State {
        name: name.to_string(),
        shared_name: std::sync::Arc::from(name),
        kind,
        input_path,
        output_path,
        parameters,
        result_selector,
        result_path,
        assign,
        next,
        retry,
        catch,
    })
}
