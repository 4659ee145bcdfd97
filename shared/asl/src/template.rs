//! Payload templates (`Parameters`, `ResultSelector`, `ItemSelector`,
//! `Assign`), compiled once when a definition is parsed: constant subtrees stay
//! constant values, and each `"key.$"` field becomes a path or a parsed
//! intrinsic call, evaluated later by [`crate::machine`].
//!
//! This module sits below both [`crate::definition`] and [`crate::choice`] (a
//! Choice rule's `Assign` is a template), so neither of those imports the
//! other's half; its items are public as `certops_asl::definition::…`.

use crate::path::Path;
use serde_json::{Map, Value};

/// A payload template (`Parameters`, `ResultSelector`, `ItemSelector`, `Assign`).
#[derive(Debug, Clone)]
pub enum Template {
    /// A constant with nothing to resolve.
    Const(Value),
    /// An object with at least one dynamic field somewhere inside.
    Object {
        /// The fields in order, `.$` suffixes removed from dynamic ones.
        fields: Vec<(String, Template)>,
        /// The result object with its constant fields filled in and `null`
        /// in place of the others, one entry per field in `fields`' order
        /// (`None` when two fields share a name). Evaluation clones it and
        /// fills the gaps, which costs less than building the object key by
        /// key (every insert hashes its key).
        skeleton: Option<Map<String, Value>>,
    },
    /// An array with at least one dynamic element somewhere inside.
    Array(Vec<Template>),
    /// A `.$` field: a path or an intrinsic function.
    Dynamic(Dynamic),
}

/// A value computed at run time.
#[derive(Debug, Clone)]
pub enum Dynamic {
    /// A JSONPath (input, context or variable).
    Path(Path),
    /// An intrinsic function call, e.g. `States.Format('{}', $.x)`, parsed.
    Intrinsic(crate::intrinsics::Expression),
}

/// Classifies the string value of a `.$` field.
pub fn dynamic(s: &str) -> Result<Dynamic, String> {
    if crate::intrinsics::is_intrinsic(s) {
        let e = crate::intrinsics::Expression::parse(s).map_err(|e| format!("'{s}': {e}"))?;
        return Ok(Dynamic::Intrinsic(e));
    }
    if s.starts_with('$') {
        return Path::parse(s).map(Dynamic::Path).map_err(|e| e.to_string());
    }
    Err(format!(
        "'{s}' is neither a path (starting with '$') nor an intrinsic function"
    ))
}

/// Compiles a payload template; constant subtrees stay constant.
pub fn compile_template(v: &Value) -> Result<Template, String> {
    match v {
        Value::Object(o) => {
            let mut fields = Vec::with_capacity(o.len());
            let mut dynamic_inside = false;
            for (k, val) in o {
                if let Some(name) = k.strip_suffix(".$") {
                    let s = val.as_str().ok_or_else(|| {
                        format!("'{k}' must be a string holding a path or intrinsic function")
                    })?;
                    let d = dynamic(s).map_err(|m| format!("'{k}': {m}"))?;
                    fields.push((name.to_string(), Template::Dynamic(d)));
                    dynamic_inside = true;
                } else {
                    let t = compile_template(val)?;
                    dynamic_inside |= !matches!(t, Template::Const(_));
                    fields.push((k.clone(), t));
                }
            }
            if dynamic_inside {
                let skeleton: Map<String, Value> = fields
                    .iter()
                    .map(|(k, t)| {
                        let v = match t {
                            Template::Const(c) => c.clone(),
                            _ => Value::Null,
                        };
                        (k.clone(), v)
                    })
                    .collect();
                let skeleton = (skeleton.len() == fields.len()).then_some(skeleton);
                Ok(Template::Object { fields, skeleton })
            } else {
                Ok(Template::Const(v.clone()))
            }
        }
        Value::Array(a) => {
            let items = a
                .iter()
                .map(compile_template)
                .collect::<Result<Vec<_>, _>>()?;
            if items.iter().all(|t| matches!(t, Template::Const(_))) {
                Ok(Template::Const(v.clone()))
            } else {
                Ok(Template::Array(items))
            }
        }
        other => Ok(Template::Const(other.clone())),
    }
}
