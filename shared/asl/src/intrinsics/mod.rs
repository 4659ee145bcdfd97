//! Intrinsic functions of the States Language (JSONPath mode): `States.Format` … `States.UUID`.
//!
//! An intrinsic expression such as `States.Format('Hello {}', $.name)` is parsed into a small
//! call tree and then evaluated against an [`IntrinsicContext`], which resolves path arguments
//! (`$.x`, `$$.Execution.Id`, `$myVar.field`) and supplies randomness.
//!
//! Behaviour follows the AWS Step Functions developer guide ("Intrinsic functions for JSONPath
//! states") and Appendix B of the States Language specification:
//!
//! * Arguments are string literals in single quotes (escapes `\'`, `\{`, `\}`, `\\`; any other
//!   backslash is an error), numbers, `true`, `false`, `null`, paths starting with `$`, and nested
//!   `States.*` calls (at most 10 deep, per the guide).
//! * Unknown functions and wrong argument counts are rejected while parsing, before any path is
//!   resolved; argument types are checked during evaluation.
//! * Where the guide says non-integer numbers are "rounded off to the nearest integer"
//!   (`ArrayPartition`, `ArrayRange`, `MathRandom`, `MathAdd`) they are rounded; integer
//!   results are always emitted as JSON integers.
//!
//! This file holds the public surface ([`Expression`], [`evaluate`], [`check`], [`is_intrinsic`],
//! the [`IntrinsicContext`] a caller implements) and the table of functions with their arities;
//! `parse.rs` turns text into a call tree, `eval.rs` evaluates one, and `tests.rs` holds the
//! unit tests.

mod eval;
mod parse;
#[cfg(test)]
mod tests;

use eval::eval_call;
use parse::{is_name_char, parse, Call};
use serde_json::Value;

/// Resolves a path argument (`$.x`, `$` , `$$.Execution.Id`, `$myVar.field`) to a value, and supplies randomness.
pub trait IntrinsicContext {
    /// Resolve a JSONPath / context / variable path argument. The engine returns an error when nothing is found.
    fn resolve(&self, path: &str) -> Result<serde_json::Value, IntrinsicError>;
    /// Resolve a path argument that was parsed when the expression was (see
    /// [`Expression`]); by default the same as [`IntrinsicContext::resolve`]
    /// on its text. A context that can apply a parsed path saves parsing it
    /// on every evaluation.
    fn resolve_parsed(
        &self,
        path: &crate::path::Path,
    ) -> Result<serde_json::Value, IntrinsicError> {
        self.resolve(path.as_str())
    }
    /// 64 random bits (States.UUID, States.MathRandom). Tests pass a deterministic source.
    fn random_u64(&mut self) -> u64;
}

/// An intrinsic failed. The engine maps it to the error name `States.IntrinsicFailure` (or `States.Runtime` for path failures, when `path_failure` is true).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct IntrinsicError {
    /// Human-readable description of what went wrong (used as the error cause).
    pub message: String,
    /// True when the failure came from resolving a path argument rather than from the function itself.
    pub path_failure: bool,
}

/// Maximum nesting depth of intrinsic calls (the outermost call counts as depth 1).
const MAX_NESTING: usize = 10;
/// `States.ArrayRange` may not produce more items than this.
const MAX_RANGE_ITEMS: i128 = 1000;
/// Input limit (in characters) of `States.Base64Encode`, `States.Base64Decode` and `States.Hash`.
const MAX_DATA_CHARS: usize = 10_000;

/// True when `s` is an intrinsic call (starts with `States.` followed by a name and `(`).
pub fn is_intrinsic(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("States.") else {
        return false;
    };
    let name_len = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
    name_len > 0 && rest[name_len..].starts_with('(')
}

/// An intrinsic expression parsed once (when a definition is loaded) and
/// evaluated many times, its path arguments parsed too.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    text: String,
    call: Call,
}

impl Expression {
    /// Parses `expr` (see [`check`] for what is rejected).
    ///
    /// # Errors
    ///
    /// Malformed syntax, an unknown function or a wrong number of arguments.
    pub fn parse(expr: &str) -> Result<Expression, IntrinsicError> {
        Ok(Expression {
            text: expr.to_string(),
            call: parse(expr)?,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Evaluates the expression, as [`evaluate`] does its text.
    ///
    /// # Errors
    ///
    /// As [`evaluate`], less the syntax errors (found by [`Expression::parse`]).
    pub fn evaluate(&self, ctx: &mut dyn IntrinsicContext) -> Result<Value, IntrinsicError> {
        eval_call(&self.call, ctx)
    }
}

/// Parse and evaluate an intrinsic expression such as `States.Format('Hello {}', $.name)`.
///
/// # Errors
///
/// Fails on malformed syntax, an unknown function, a wrong number or type of arguments, or a
/// function-specific limit; path resolution errors from `ctx` are returned unchanged.
pub fn evaluate(
    expr: &str,
    ctx: &mut dyn IntrinsicContext,
) -> Result<serde_json::Value, IntrinsicError> {
    let call = parse(expr)?;
    eval_call(&call, ctx)
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Checks that `expr` is a well-formed call of a known intrinsic with a valid
/// argument count, without evaluating it (used when a definition is loaded).
pub fn check(expr: &str) -> Result<(), IntrinsicError> {
    parse(expr).map(|_| ())
}

fn fail(message: impl Into<String>) -> IntrinsicError {
    IntrinsicError {
        message: message.into(),
        path_failure: false,
    }
}

// ---------------------------------------------------------------------------------------------
// Function table
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Format,
    StringToJson,
    JsonToString,
    Array,
    ArrayPartition,
    ArrayContains,
    ArrayRange,
    ArrayGetItem,
    ArrayLength,
    ArrayUnique,
    Base64Encode,
    Base64Decode,
    Hash,
    JsonMerge,
    MathRandom,
    MathAdd,
    StringSplit,
    Uuid,
}

impl Func {
    const ALL: [Func; 18] = [
        Func::Format,
        Func::StringToJson,
        Func::JsonToString,
        Func::Array,
        Func::ArrayPartition,
        Func::ArrayContains,
        Func::ArrayRange,
        Func::ArrayGetItem,
        Func::ArrayLength,
        Func::ArrayUnique,
        Func::Base64Encode,
        Func::Base64Decode,
        Func::Hash,
        Func::JsonMerge,
        Func::MathRandom,
        Func::MathAdd,
        Func::StringSplit,
        Func::Uuid,
    ];

    fn name(self) -> &'static str {
        match self {
            Func::Format => "States.Format",
            Func::StringToJson => "States.StringToJson",
            Func::JsonToString => "States.JsonToString",
            Func::Array => "States.Array",
            Func::ArrayPartition => "States.ArrayPartition",
            Func::ArrayContains => "States.ArrayContains",
            Func::ArrayRange => "States.ArrayRange",
            Func::ArrayGetItem => "States.ArrayGetItem",
            Func::ArrayLength => "States.ArrayLength",
            Func::ArrayUnique => "States.ArrayUnique",
            Func::Base64Encode => "States.Base64Encode",
            Func::Base64Decode => "States.Base64Decode",
            Func::Hash => "States.Hash",
            Func::JsonMerge => "States.JsonMerge",
            Func::MathRandom => "States.MathRandom",
            Func::MathAdd => "States.MathAdd",
            Func::StringSplit => "States.StringSplit",
            Func::Uuid => "States.UUID",
        }
    }

    fn from_name(name: &str) -> Option<Func> {
        Func::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Minimum and (if bounded) maximum number of arguments.
    fn arity(self) -> (usize, Option<usize>) {
        match self {
            Func::Format => (1, None),
            Func::Array => (0, None),
            Func::Uuid => (0, Some(0)),
            Func::StringToJson
            | Func::JsonToString
            | Func::ArrayLength
            | Func::ArrayUnique
            | Func::Base64Encode
            | Func::Base64Decode => (1, Some(1)),
            Func::ArrayPartition
            | Func::ArrayContains
            | Func::ArrayGetItem
            | Func::Hash
            | Func::MathAdd
            | Func::StringSplit => (2, Some(2)),
            Func::MathRandom => (2, Some(3)),
            Func::ArrayRange | Func::JsonMerge => (3, Some(3)),
        }
    }

    fn check_arity(self, got: usize) -> Result<(), IntrinsicError> {
        let (min, max) = self.arity();
        if got >= min && max.is_none_or(|m| got <= m) {
            return Ok(());
        }
        let expected = match max {
            None => format!("at least {min}"),
            Some(m) if m == min => format!("exactly {min}"),
            Some(m) => format!("{min} to {m}"),
        };
        let plural = if max == Some(1) { "" } else { "s" };
        Err(fail(format!(
            "{} expects {expected} argument{plural}, but {got} {} given",
            self.name(),
            if got == 1 { "was" } else { "were" }
        )))
    }
}
