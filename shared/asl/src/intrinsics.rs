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

use std::collections::HashSet;
use std::fmt::Write as _;

use base64::Engine as _;
use serde_json::{Map, Value};

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

// ---------------------------------------------------------------------------------------------
// Syntax tree and parser
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    /// Number, boolean or null literal.
    Literal(Value),
    /// Single-quoted string literal, unescaped. `placeholders` holds the byte offsets in `value`
    /// of every unescaped `{}` (only meaningful for the template of `States.Format`).
    Str {
        value: String,
        placeholders: Vec<usize>,
    },
    /// Path argument, verbatim (`$.a[0]`, `$$.Execution.Id`, `$var.x`), and
    /// parsed when it parses (otherwise resolving its text reports why not).
    Path(String, Option<crate::path::Path>),
    /// Nested intrinsic call.
    Call(Call),
}

#[derive(Debug, Clone, PartialEq)]
struct Call {
    func: Func,
    args: Vec<Arg>,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

fn parse(expr: &str) -> Result<Call, IntrinsicError> {
    let mut p = Parser { src: expr, pos: 0 };
    p.skip_ws();
    let call = p.parse_call(1)?;
    p.skip_ws();
    if let Some(c) = p.peek() {
        return Err(p.error(&format!(
            "unexpected `{c}` after the closing `)` of {}",
            call.func.name()
        )));
    }
    Ok(call)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn error(&self, msg: &str) -> IntrinsicError {
        let at = self.src[..self.pos].chars().count() + 1;
        fail(format!(
            "Invalid intrinsic function call `{}`: {msg} (at character {at})",
            self.src
        ))
    }

    fn parse_call(&mut self, depth: usize) -> Result<Call, IntrinsicError> {
        let start = self.pos;
        while self.peek().is_some_and(is_name_char) {
            self.bump();
        }
        let name = &self.src[start..self.pos];
        if name.is_empty() {
            return Err(self.error("expected an intrinsic function name such as `States.Format`"));
        }
        let Some(func) = Func::from_name(name) else {
            self.pos = start;
            return Err(self.error(&format!("unknown intrinsic function `{name}`")));
        };
        if depth > MAX_NESTING {
            self.pos = start;
            return Err(self.error(&format!(
                "intrinsic functions may be nested at most {MAX_NESTING} deep"
            )));
        }
        if self.peek() != Some('(') {
            return Err(self.error(&format!("expected `(` after `{name}`")));
        }
        self.bump();
        let mut args = Vec::new();
        self.skip_ws();
        if self.peek() == Some(')') {
            self.bump();
        } else {
            loop {
                self.skip_ws();
                args.push(self.parse_arg(depth)?);
                self.skip_ws();
                match self.bump() {
                    Some(',') => {}
                    Some(')') => break,
                    Some(c) => {
                        self.pos -= c.len_utf8();
                        return Err(self.error(&format!(
                            "unexpected `{c}` in the arguments of {name}, expected `,` or `)`"
                        )));
                    }
                    None => {
                        return Err(self.error(&format!(
                            "unterminated argument list of {name}, expected `)`"
                        )))
                    }
                }
            }
        }
        func.check_arity(args.len())?;
        Ok(Call { func, args })
    }

    fn parse_arg(&mut self, depth: usize) -> Result<Arg, IntrinsicError> {
        match self.peek() {
            None => Err(self.error("expected an argument, found the end of the expression")),
            Some('\'') => self.parse_string(),
            Some('$') => self.parse_path(),
            Some(c) if c == '-' || c.is_ascii_digit() => self.parse_number(),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self.peek().is_some_and(is_name_char) {
                    self.bump();
                }
                let word = &self.src[start..self.pos];
                if self.peek() == Some('(') || word.starts_with("States.") {
                    self.pos = start;
                    return Ok(Arg::Call(self.parse_call(depth + 1)?));
                }
                match word {
                    "true" => Ok(Arg::Literal(Value::Bool(true))),
                    "false" => Ok(Arg::Literal(Value::Bool(false))),
                    "null" => Ok(Arg::Literal(Value::Null)),
                    _ => {
                        self.pos = start;
                        Err(self.error(&format!(
                            "unexpected `{word}`: an argument must be a quoted string, a number, \
                             true, false, null, a path starting with `$` or an intrinsic function"
                        )))
                    }
                }
            }
            Some(c @ (',' | ')')) => Err(self.error(&format!("missing argument before `{c}`"))),
            Some('"') => Err(self.error("string arguments must be enclosed in single quotes (')")),
            Some(c) => Err(self.error(&format!("unexpected character `{c}`"))),
        }
    }

    fn parse_string(&mut self) -> Result<Arg, IntrinsicError> {
        let open = self.pos;
        self.bump(); // opening quote
        let mut value = String::new();
        let mut placeholders = Vec::new();
        loop {
            let Some(c) = self.bump() else {
                self.pos = open;
                return Err(self.error("unterminated string literal"));
            };
            match c {
                '\'' => break,
                '\\' => match self.bump() {
                    Some(e @ ('\'' | '{' | '}' | '\\')) => value.push(e),
                    other => {
                        self.pos -= 1 + other.map_or(0, char::len_utf8);
                        let found = other
                            .map_or_else(|| "`\\` at the end".to_string(), |e| format!("`\\{e}`"));
                        return Err(self.error(&format!(
                            "invalid escape sequence {found}: only \\', \\{{, \\}} and \\\\ are allowed"
                        )));
                    }
                },
                '{' if self.peek() == Some('}') => {
                    self.bump();
                    placeholders.push(value.len());
                    value.push_str("{}");
                }
                c => value.push(c),
            }
        }
        Ok(Arg::Str {
            value,
            placeholders,
        })
    }

    /// A path runs up to the next `,` or `)` that is not inside brackets, parentheses or quotes.
    fn parse_path(&mut self) -> Result<Arg, IntrinsicError> {
        let start = self.pos;
        let mut brackets = 0usize;
        let mut parens = 0usize;
        let mut quote: Option<char> = None;
        while let Some(c) = self.peek() {
            if let Some(q) = quote {
                if c == '\\' {
                    self.bump();
                } else if c == q {
                    quote = None;
                }
                self.bump();
                continue;
            }
            match c {
                '[' => brackets += 1,
                ']' => brackets = brackets.saturating_sub(1),
                '\'' | '"' if brackets > 0 => quote = Some(c),
                '(' => parens += 1,
                ')' if parens > 0 => parens -= 1,
                ',' | ')' if brackets == 0 => break,
                _ => {}
            }
            self.bump();
        }
        if quote.is_some() || brackets > 0 || parens > 0 {
            self.pos = start;
            return Err(self.error("unterminated path argument"));
        }
        let text = self.src[start..self.pos].trim_end();
        Ok(Arg::Path(
            text.to_string(),
            crate::path::Path::parse(text).ok(),
        ))
    }

    fn parse_number(&mut self) -> Result<Arg, IntrinsicError> {
        let start = self.pos;
        self.bump(); // digit or '-'
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        {
            self.bump();
        }
        let text = &self.src[start..self.pos];
        let value = if text.contains(['.', 'e', 'E']) {
            text.parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
        } else if let Ok(i) = text.parse::<i64>() {
            Some(Value::from(i))
        } else {
            text.parse::<u64>().ok().map(Value::from)
        };
        match value {
            Some(v) => Ok(Arg::Literal(v)),
            None => {
                self.pos = start;
                Err(self.error(&format!("invalid number `{text}`")))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

fn eval_arg(arg: &Arg, ctx: &mut dyn IntrinsicContext) -> Result<Value, IntrinsicError> {
    match arg {
        Arg::Literal(v) => Ok(v.clone()),
        Arg::Str { value, .. } => Ok(Value::String(value.clone())),
        Arg::Path(_, Some(parsed)) => ctx.resolve_parsed(parsed),
        Arg::Path(text, None) => ctx.resolve(text),
        Arg::Call(call) => eval_call(call, ctx),
    }
}

fn eval_call(call: &Call, ctx: &mut dyn IntrinsicContext) -> Result<Value, IntrinsicError> {
    let f = call.func;
    let args = call
        .args
        .iter()
        .map(|a| eval_arg(a, ctx))
        .collect::<Result<Vec<_>, _>>()?;
    let a = Args { f, values: &args };
    match f {
        Func::Format => format(&a, &call.args[0]),
        Func::StringToJson => {
            let s = a.string(0)?;
            serde_json::from_str(s)
                .map_err(|e| fail(format!("{}: argument is not valid JSON: {e}", f.name())))
        }
        Func::JsonToString => Ok(Value::String(args[0].to_string())),
        Func::Array => Ok(Value::Array(args)),
        Func::ArrayPartition => {
            let items = a.array(0)?;
            let size = a.int_rounded(1)?;
            if size <= 0 {
                return Err(fail(format!(
                    "{}: the chunk size must be a positive integer, got {size}",
                    f.name()
                )));
            }
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            Ok(Value::Array(
                items
                    .chunks(size)
                    .map(|chunk| Value::Array(chunk.to_vec()))
                    .collect(),
            ))
        }
        Func::ArrayContains => {
            let items = a.array(0)?;
            let needle = canonical_key(&args[1]);
            Ok(Value::Bool(
                items.iter().any(|item| canonical_key(item) == needle),
            ))
        }
        Func::ArrayRange => array_range(&a),
        Func::ArrayGetItem => {
            let items = a.array(0)?;
            let index = a.int_exact(1)?;
            usize::try_from(index)
                .ok()
                .and_then(|i| items.get(i))
                .cloned()
                .ok_or_else(|| {
                    fail(format!(
                        "{}: index {index} is out of bounds for an array of length {}",
                        f.name(),
                        items.len()
                    ))
                })
        }
        Func::ArrayLength => Ok(Value::from(a.array(0)?.len())),
        Func::ArrayUnique => {
            let items = a.array(0)?;
            let mut seen = HashSet::new();
            Ok(Value::Array(
                items
                    .iter()
                    .filter(|item| seen.insert(canonical_key(item)))
                    .cloned()
                    .collect(),
            ))
        }
        Func::Base64Encode => {
            let s = a.string(0)?;
            a.check_data_len(s, "input")?;
            Ok(Value::String(
                base64::engine::general_purpose::STANDARD.encode(s.as_bytes()),
            ))
        }
        Func::Base64Decode => base64_decode(&a),
        Func::Hash => hash(&a),
        Func::JsonMerge => {
            let left = a.object(0)?;
            let right = a.object(1)?;
            if a.boolean(2)? {
                return Err(fail(format!(
                    "{}: deep merge (third argument `true`) is not supported; pass `false` for a \
                     shallow merge",
                    f.name()
                )));
            }
            let mut merged = left.clone();
            for (key, value) in right {
                merged.insert(key.clone(), value.clone());
            }
            Ok(Value::Object(merged))
        }
        Func::MathRandom => {
            let start = a.int_rounded(0)?;
            let end = a.int_rounded(1)?;
            if start >= end {
                return Err(fail(format!(
                    "{}: the start ({start}) must be less than the end ({end})",
                    f.name()
                )));
            }
            let bits = if args.len() > 2 {
                // Same seed, same number: derive the bits from the seed alone.
                splitmix64(a.int_rounded(2)? as u64)
            } else {
                ctx.random_u64()
            };
            let span = (i128::from(end) - i128::from(start)) as u128;
            let offset = (u128::from(bits) * span) >> 64;
            let n = i128::from(start) + offset as i128;
            Ok(Value::from(n as i64))
        }
        Func::MathAdd => {
            let x = a.int32(0)?;
            let y = a.int32(1)?;
            Ok(Value::from(x + y))
        }
        Func::StringSplit => {
            let s = a.string(0)?;
            let delimiters = a.string(1)?;
            Ok(Value::Array(
                s.split(|c: char| delimiters.contains(c))
                    .filter(|part| !part.is_empty())
                    .map(|part| Value::String(part.to_string()))
                    .collect(),
            ))
        }
        Func::Uuid => Ok(Value::String(uuid_v4(ctx.random_u64(), ctx.random_u64()))),
    }
}

/// `States.Format`. A template written as a string literal knows which of its `{}` were escaped
/// (`\{\}` is literal text); a template that comes from a path or a nested call treats every `{}`
/// as a placeholder.
fn format(a: &Args<'_>, template_arg: &Arg) -> Result<Value, IntrinsicError> {
    let name = a.f.name();
    let Value::String(template) = &a.values[0] else {
        return Err(fail(format!(
            "{name}: the template (argument 1) must be a string, got {}",
            type_name(&a.values[0])
        )));
    };
    let placeholders: Vec<usize> = match template_arg {
        Arg::Str { placeholders, .. } => placeholders.clone(),
        _ => template.match_indices("{}").map(|(i, _)| i).collect(),
    };
    let values = &a.values[1..];
    if placeholders.len() != values.len() {
        return Err(fail(format!(
            "{name}: the template has {} `{{}}` placeholder(s) but {} value argument(s) were given",
            placeholders.len(),
            values.len()
        )));
    }
    let mut out = String::with_capacity(template.len());
    let mut last = 0;
    for (offset, value) in placeholders.iter().zip(values) {
        out.push_str(&template[last..*offset]);
        match value {
            Value::String(s) => out.push_str(s),
            other => {
                let _ = write!(out, "{other}");
            }
        }
        last = offset + 2;
    }
    out.push_str(&template[last..]);
    Ok(Value::String(out))
}

fn array_range(a: &Args<'_>) -> Result<Value, IntrinsicError> {
    let name = a.f.name();
    let start = a.int_rounded(0)?;
    let end = a.int_rounded(1)?;
    let step = a.int_rounded(2)?;
    if step == 0 {
        return Err(fail(format!("{name}: the step (argument 3) must not be 0")));
    }
    let span = i128::from(end) - i128::from(start);
    let step_wide = i128::from(step);
    let count = if span != 0 && span.signum() != step_wide.signum() {
        0
    } else {
        span / step_wide + 1
    };
    if count > MAX_RANGE_ITEMS {
        return Err(fail(format!(
            "{name}: the range would contain {count} items, more than the maximum of {MAX_RANGE_ITEMS}"
        )));
    }
    Ok(Value::Array(
        (0..count)
            .map(|i| Value::from((i128::from(start) + i * step_wide) as i64))
            .collect(),
    ))
}

fn base64_decode(a: &Args<'_>) -> Result<Value, IntrinsicError> {
    use base64::engine::{
        general_purpose::GeneralPurposeConfig, DecodePaddingMode, GeneralPurpose,
    };
    const MIME: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let name = a.f.name();
    let s = a.string(0)?;
    a.check_data_len(s, "input")?;
    // MIME base64 may be wrapped over several lines.
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = MIME
        .decode(compact.as_bytes())
        .map_err(|e| fail(format!("{name}: argument is not valid base64: {e}")))?;
    String::from_utf8(bytes)
        .map(Value::String)
        .map_err(|_| fail(format!("{name}: the decoded data is not valid UTF-8 text")))
}

fn hash(a: &Args<'_>) -> Result<Value, IntrinsicError> {
    let data = match &a.values[0] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    a.check_data_len(&data, "data")?;
    let algorithm = a.string(1)?;
    let bytes = data.as_bytes();
    let digest = match algorithm {
        "MD5" => hex_digest::<md5::Md5>(bytes),
        "SHA-1" => hex_digest::<sha1::Sha1>(bytes),
        "SHA-256" => hex_digest::<sha2::Sha256>(bytes),
        "SHA-384" => hex_digest::<sha2::Sha384>(bytes),
        "SHA-512" => hex_digest::<sha2::Sha512>(bytes),
        other => {
            return Err(fail(format!(
                "{}: unsupported algorithm `{other}`; expected one of MD5, SHA-1, SHA-256, \
                 SHA-384, SHA-512",
                a.f.name()
            )))
        }
    };
    Ok(Value::String(digest))
}

fn hex_digest<D: sha2::Digest>(data: &[u8]) -> String {
    let digest = D::digest(data);
    let mut out = String::with_capacity(digest.len() * 2);
    for byte in digest {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// RFC 4122 version-4 UUID built from 128 random bits, lowercase and hyphenated.
fn uuid_v4(high: u64, low: u64) -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&high.to_be_bytes());
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // variant 10xx (RFC 4122)
    let mut out = String::with_capacity(36);
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// SplitMix64: a small, well-distributed mix so that a seed maps to a fixed pseudo-random value.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A key that is equal for JSON-equal values: object key order is ignored and numbers compare by
/// value (`1` equals `1.0`). Used by `States.ArrayContains` and `States.ArrayUnique`.
fn canonical_key(value: &Value) -> String {
    fn walk(value: &Value, out: &mut String) {
        match value {
            Value::Null => out.push('n'),
            Value::Bool(b) => out.push(if *b { 't' } else { 'f' }),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    let _ = write!(out, "i{i}");
                } else if let Some(u) = n.as_u64() {
                    let _ = write!(out, "i{u}");
                } else {
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    if f.fract() == 0.0 && f.abs() < 9.0e15 {
                        let _ = write!(out, "i{}", f as i64);
                    } else {
                        let _ = write!(out, "d{f:e}");
                    }
                }
            }
            Value::String(s) => {
                let _ = write!(out, "{}", Value::String(s.clone()));
            }
            Value::Array(items) => {
                out.push('[');
                for item in items {
                    walk(item, out);
                    out.push(',');
                }
                out.push(']');
            }
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|x, y| x.0.cmp(y.0));
                out.push('{');
                for (key, item) in entries {
                    let _ = write!(out, "{}:", Value::String(key.clone()));
                    walk(item, out);
                    out.push(',');
                }
                out.push('}');
            }
        }
    }
    let mut out = String::new();
    walk(value, &mut out);
    out
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Evaluated arguments of one call, with typed accessors that produce uniform error messages.
struct Args<'a> {
    f: Func,
    values: &'a [Value],
}

impl<'a> Args<'a> {
    fn type_error(&self, i: usize, expected: &str) -> IntrinsicError {
        fail(format!(
            "{}: argument {} must be {expected}, got {}",
            self.f.name(),
            i + 1,
            type_name(&self.values[i])
        ))
    }

    fn string(&self, i: usize) -> Result<&'a str, IntrinsicError> {
        self.values[i]
            .as_str()
            .ok_or_else(|| self.type_error(i, "a string"))
    }

    fn array(&self, i: usize) -> Result<&'a Vec<Value>, IntrinsicError> {
        self.values[i]
            .as_array()
            .ok_or_else(|| self.type_error(i, "an array"))
    }

    fn object(&self, i: usize) -> Result<&'a Map<String, Value>, IntrinsicError> {
        self.values[i]
            .as_object()
            .ok_or_else(|| self.type_error(i, "a JSON object"))
    }

    fn boolean(&self, i: usize) -> Result<bool, IntrinsicError> {
        self.values[i]
            .as_bool()
            .ok_or_else(|| self.type_error(i, "a boolean"))
    }

    fn number(&self, i: usize) -> Result<&'a serde_json::Number, IntrinsicError> {
        match &self.values[i] {
            Value::Number(n) => Ok(n),
            _ => Err(self.type_error(i, "an integer")),
        }
    }

    fn out_of_range(&self, i: usize) -> IntrinsicError {
        fail(format!(
            "{}: argument {} ({}) is out of the supported integer range",
            self.f.name(),
            i + 1,
            self.values[i]
        ))
    }

    /// An integer; a non-integer number is rounded to the nearest integer, as AWS documents.
    fn int_rounded(&self, i: usize) -> Result<i64, IntrinsicError> {
        let n = self.number(i)?;
        if let Some(v) = n.as_i64() {
            return Ok(v);
        }
        match n.as_f64() {
            Some(f) if n.is_f64() && f.is_finite() && f.round().abs() < 9.2e18 => {
                Ok(f.round() as i64)
            }
            _ => Err(self.out_of_range(i)),
        }
    }

    /// An integer; a number with a fractional part is an error.
    fn int_exact(&self, i: usize) -> Result<i64, IntrinsicError> {
        let n = self.number(i)?;
        if let Some(v) = n.as_i64() {
            return Ok(v);
        }
        match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() != 0.0 => Err(self.type_error(i, "an integer")),
            Some(f) if n.is_f64() && f.abs() < 9.2e18 => Ok(f as i64),
            _ => Err(self.out_of_range(i)),
        }
    }

    /// A (rounded) integer within the 32-bit signed range, as `States.MathAdd` requires.
    fn int32(&self, i: usize) -> Result<i64, IntrinsicError> {
        let v = self.int_rounded(i)?;
        if i32::try_from(v).is_err() {
            return Err(fail(format!(
                "{}: argument {} ({v}) must be between {} and {}",
                self.f.name(),
                i + 1,
                i32::MIN,
                i32::MAX
            )));
        }
        Ok(v)
    }

    fn check_data_len(&self, s: &str, what: &str) -> Result<(), IntrinsicError> {
        let chars = s.chars().count();
        if chars > MAX_DATA_CHARS {
            return Err(fail(format!(
                "{}: the {what} is {chars} characters long; at most {MAX_DATA_CHARS} are allowed",
                self.f.name()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Test context: `$…` reads `input`, `$$…` reads `context`, `$name…` reads `vars`; paths in
    /// `exact` are answered verbatim. Random numbers come from `random` in order (then repeat).
    struct TestCtx {
        input: Value,
        context: Value,
        vars: Map<String, Value>,
        exact: HashMap<String, Value>,
        random: Vec<u64>,
        next_random: usize,
        resolved: RefCell<Vec<String>>,
    }

    impl TestCtx {
        fn new(input: Value) -> Self {
            TestCtx {
                input,
                context: json!({}),
                vars: Map::new(),
                exact: HashMap::new(),
                random: vec![0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210],
                next_random: 0,
                resolved: RefCell::new(Vec::new()),
            }
        }

        fn lookup(&self, path: &str) -> Option<Value> {
            let (mut cur, mut rest) = if let Some(r) = path.strip_prefix("$$") {
                (&self.context, r)
            } else if let Some(r) = path.strip_prefix('$') {
                let n = r
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(r.len());
                if n > 0 {
                    (self.vars.get(&r[..n])?, &r[n..])
                } else {
                    (&self.input, r)
                }
            } else {
                return None;
            };
            while !rest.is_empty() {
                if let Some(r) = rest.strip_prefix("['") {
                    let end = r.find("']")?;
                    cur = cur.get(&r[..end])?;
                    rest = &r[end + 2..];
                } else if let Some(r) = rest.strip_prefix('[') {
                    let end = r.find(']')?;
                    cur = cur.get(r[..end].parse::<usize>().ok()?)?;
                    rest = &r[end + 1..];
                } else if let Some(r) = rest.strip_prefix('.') {
                    let n = r.find(['.', '[']).unwrap_or(r.len());
                    cur = cur.get(&r[..n])?;
                    rest = &r[n..];
                } else {
                    return None;
                }
            }
            Some(cur.clone())
        }
    }

    impl IntrinsicContext for TestCtx {
        fn resolve(&self, path: &str) -> Result<Value, IntrinsicError> {
            self.resolved.borrow_mut().push(path.to_string());
            self.exact
                .get(path)
                .cloned()
                .or_else(|| self.lookup(path))
                .ok_or_else(|| IntrinsicError {
                    message: format!("The JSONPath '{path}' could not be found in the input"),
                    path_failure: true,
                })
        }

        fn random_u64(&mut self) -> u64 {
            let v = self.random[self.next_random % self.random.len()];
            self.next_random += 1;
            v
        }
    }

    fn eval_with(ctx: &mut TestCtx, expr: &str) -> Value {
        evaluate(expr, ctx).unwrap_or_else(|e| panic!("`{expr}` failed: {e}"))
    }

    fn eval(input: Value, expr: &str) -> Value {
        eval_with(&mut TestCtx::new(input), expr)
    }

    fn eval_err(input: Value, expr: &str) -> IntrinsicError {
        match evaluate(expr, &mut TestCtx::new(input)) {
            Ok(v) => panic!("`{expr}` should fail but returned {v}"),
            Err(e) => e,
        }
    }

    fn assert_err(input: Value, expr: &str, needle: &str) {
        let e = eval_err(input, expr);
        assert!(
            e.message.contains(needle),
            "error for `{expr}` was `{}`, expected it to mention `{needle}`",
            e.message
        );
        assert!(!e.path_failure, "`{expr}` is not a path failure");
    }

    fn guide_array() -> Value {
        json!({"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9], "lookingFor": 5, "index": 5})
    }

    // ----- parsed once, evaluated many times ---------------------------------------------------

    #[test]
    fn a_parsed_expression_evaluates_like_its_text_every_time() {
        let expr = "States.Format('{} has {} of {}', $.name, States.MathAdd($.n, 1), $$.Total)";
        let parsed = Expression::parse(expr).unwrap();
        assert_eq!(parsed.as_str(), expr);
        for n in [0, 41, -3] {
            let input = json!({"name": "bin", "n": n});
            let mut a = TestCtx::new(input.clone());
            a.context = json!({"Total": 100});
            let mut b = TestCtx::new(input);
            b.context = json!({"Total": 100});
            assert_eq!(parsed.evaluate(&mut a).unwrap(), eval_with(&mut b, expr));
            // The same paths are resolved, in the same order.
            assert_eq!(*a.resolved.borrow(), *b.resolved.borrow());
        }
        // Path failures stay path failures.
        let e = parsed.evaluate(&mut TestCtx::new(json!({}))).unwrap_err();
        assert!(e.path_failure, "{e}");
        assert!(Expression::parse("States.Nope(1)").is_err());
    }

    #[test]
    fn path_arguments_are_handed_over_parsed() {
        struct Parsed(RefCell<Vec<String>>);
        impl IntrinsicContext for Parsed {
            fn resolve(&self, path: &str) -> Result<Value, IntrinsicError> {
                Err(IntrinsicError {
                    message: format!("unparsed {path}"),
                    path_failure: true,
                })
            }
            fn resolve_parsed(&self, path: &crate::path::Path) -> Result<Value, IntrinsicError> {
                self.0.borrow_mut().push(path.as_str().to_string());
                Ok(json!(2))
            }
            fn random_u64(&mut self) -> u64 {
                4
            }
        }
        let mut ctx = Parsed(RefCell::new(Vec::new()));
        let v = Expression::parse("States.MathAdd($.a, $$.b)")
            .unwrap()
            .evaluate(&mut ctx)
            .unwrap();
        assert_eq!(v, json!(4));
        assert_eq!(*ctx.0.borrow(), ["$.a", "$$.b"]);
    }

    // ----- is_intrinsic ---------------------------------------------------------------------

    #[test]
    fn is_intrinsic_recognises_calls_only() {
        assert!(is_intrinsic("States.Array($.Id)"));
        assert!(is_intrinsic("States.UUID()"));
        assert!(is_intrinsic("States.Format('{}', $.x)"));
        assert!(is_intrinsic("States.Unknown(1)"));
        assert!(!is_intrinsic("$.States.Format"));
        assert!(!is_intrinsic("States.Format"));
        assert!(!is_intrinsic("States.(1)"));
        assert!(!is_intrinsic("States.Format ('x')"));
        assert!(!is_intrinsic("Format('x')"));
        assert!(!is_intrinsic(""));
        assert!(!is_intrinsic("$"));
    }

    // ----- States.Format ----------------------------------------------------------------------

    #[test]
    fn format_guide_example_literal_and_path_template() {
        let input = json!({"name": "Arnav", "template": "Hello, my name is {}."});
        assert_eq!(
            eval(
                input.clone(),
                "States.Format('Hello, my name is {}.', $.name)"
            ),
            json!("Hello, my name is Arnav.")
        );
        assert_eq!(
            eval(input, "States.Format($.template, $.name)"),
            json!("Hello, my name is Arnav.")
        );
    }

    #[test]
    fn format_spec_example_with_escaped_quote() {
        let input = json!({"firstName": "John", "lastName": "Doe"});
        assert_eq!(
            eval(
                input,
                r"States.Format('Welcome to {} {}\'s playlist.', $.firstName, $.lastName)"
            ),
            json!("Welcome to John Doe's playlist.")
        );
    }

    #[test]
    fn format_spec_example_with_number_literal() {
        let input = json!({"name": "Foo", "zebra": "stripe"});
        assert_eq!(
            eval(
                input,
                "States.Format('Your name is {}, we are in the year {}', $.name, 2020)"
            ),
            json!("Your name is Foo, we are in the year 2020")
        );
    }

    #[test]
    fn format_spec_example_with_context_object() {
        let mut ctx = TestCtx::new(json!({}));
        ctx.context = json!({"DayOfWeek": "TUESDAY"});
        assert_eq!(
            eval_with(&mut ctx, "States.Format('Today is {}', $$.DayOfWeek)"),
            json!("Today is TUESDAY")
        );
    }

    #[test]
    fn format_escaped_braces_and_backslash_are_literal() {
        assert_eq!(
            eval(
                json!({}),
                r"States.Format('\{\} is literal, {} is not', 'this')"
            ),
            json!("{} is literal, this is not")
        );
        assert_eq!(eval(json!({}), r"States.Format('\{}')"), json!("{}"));
        assert_eq!(
            eval(json!({}), r"States.Format('C:\\dir\\{}', 'file')"),
            json!(r"C:\dir\file")
        );
    }

    #[test]
    fn format_renders_non_string_values_as_json() {
        let input = json!({"obj": {"a": 1, "b": "x"}, "arr": [1, 2], "f": 2.5});
        assert_eq!(
            eval(
                input,
                "States.Format('{}|{}|{}|{}|{}|{}|{}', true, false, null, 42, $.f, $.obj, $.arr)"
            ),
            json!(r#"true|false|null|42|2.5|{"a":1,"b":"x"}|[1,2]"#)
        );
    }

    #[test]
    fn format_without_placeholders_and_unicode() {
        assert_eq!(eval(json!({}), "States.Format('plain')"), json!("plain"));
        assert_eq!(
            eval(
                json!({"n": "wörld"}),
                "States.Format('héllo {} ✓ {}', $.n, -3)"
            ),
            json!("héllo wörld ✓ -3")
        );
    }

    #[test]
    fn format_placeholder_count_must_match() {
        assert_err(
            json!({}),
            "States.Format('{} and {}', 'one')",
            "2 `{}` placeholder(s) but 1",
        );
        assert_err(
            json!({}),
            "States.Format('{}', 'one', 'two')",
            "1 `{}` placeholder(s) but 2",
        );
        assert_err(
            json!({}),
            "States.Format('none', 'extra')",
            "0 `{}` placeholder(s) but 1",
        );
        assert_err(json!({}), "States.Format()", "at least 1 argument");
    }

    #[test]
    fn format_template_must_be_a_string() {
        assert_err(
            json!({"t": 5}),
            "States.Format($.t)",
            "template (argument 1) must be a string",
        );
        assert_err(json!({}), "States.Format(12)", "must be a string");
    }

    #[test]
    fn format_guide_nested_arn_example() {
        let input = json!({"ImageRecipe": {"Arn": "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/my-recipe/1.0.0"}});
        // The guide's nine-call example, with the template given as many `{}` as arguments.
        let expr = "States.Format('{}.{}', States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 0), States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 1))";
        assert_eq!(eval(input.clone(), expr), json!("1.0"));
        // Verbatim, the guide's template has three `{}` but only two values: that is an error.
        let verbatim = expr.replacen("'{}.{}'", "'{}.{}.{}'", 1);
        assert_err(input, &verbatim, "3 `{}` placeholder(s) but 2");
    }

    // ----- States.StringToJson / States.JsonToString ----------------------------------------

    #[test]
    fn string_to_json_examples() {
        assert_eq!(
            eval(
                json!({"someString": "{\"number\": 20}", "zebra": "stripe"}),
                "States.StringToJson($.someString)"
            ),
            json!({"number": 20})
        );
        assert_eq!(
            eval(
                json!({"escapedJsonString": "{\"foo\": \"bar\"}"}),
                "States.StringToJson($.escapedJsonString)"
            ),
            json!({"foo": "bar"})
        );
        assert_eq!(
            eval(json!({}), "States.StringToJson('[1, 2.5, null]')"),
            json!([1, 2.5, null])
        );
    }

    #[test]
    fn string_to_json_errors() {
        assert_err(
            json!({"s": "{not json"}),
            "States.StringToJson($.s)",
            "not valid JSON",
        );
        assert_err(
            json!({"s": 3}),
            "States.StringToJson($.s)",
            "argument 1 must be a string, got number",
        );
        assert_err(
            json!({}),
            "States.StringToJson('a', 'b')",
            "exactly 1 argument, but 2",
        );
    }

    #[test]
    fn json_to_string_examples() {
        assert_eq!(
            eval(
                json!({"someJson": {"name": "Foo", "year": 2020}, "zebra": "stripe"}),
                "States.JsonToString($.someJson)"
            ),
            json!("{\"name\":\"Foo\",\"year\":2020}")
        );
        assert_eq!(
            eval(
                json!({"unescapedJson": {"foo": "bar"}}),
                "States.JsonToString($.unescapedJson)"
            ),
            json!("{\"foo\":\"bar\"}")
        );
        assert_eq!(
            eval(json!({"s": "x"}), "States.JsonToString($.s)"),
            json!("\"x\"")
        );
        assert_err(
            json!({}),
            "States.JsonToString()",
            "exactly 1 argument, but 0 were",
        );
    }

    #[test]
    fn json_round_trip_through_nested_calls() {
        let input = json!({"someJson": {"b": [1, {"c": null}], "a": true}});
        assert_eq!(
            eval(
                input.clone(),
                "States.StringToJson(States.JsonToString($.someJson))"
            ),
            input["someJson"]
        );
    }

    // ----- Array functions --------------------------------------------------------------------

    #[test]
    fn array_examples() {
        assert_eq!(
            eval(json!({"Id": 123456}), "States.Array($.Id)"),
            json!([123456])
        );
        assert_eq!(
            eval(
                json!({"someJson": {"random": "abcdefg"}, "zebra": "stripe"}),
                "States.Array('Foo', 2020, $.someJson, null)"
            ),
            json!(["Foo", 2020, {"random": "abcdefg"}, null])
        );
        assert_eq!(eval(json!({}), "States.Array()"), json!([]));
        assert_eq!(
            eval(json!({}), "States.Array(-1, 2.5, -0.5, 1e3, true, false)"),
            json!([-1, 2.5, -0.5, 1000.0, true, false])
        );
    }

    #[test]
    fn array_partition_example() {
        assert_eq!(
            eval(guide_array(), "States.ArrayPartition($.inputArray,4)"),
            json!([[1, 2, 3, 4], [5, 6, 7, 8], [9]])
        );
        assert_eq!(
            eval(guide_array(), "States.ArrayPartition($.inputArray, 9)"),
            json!([[1, 2, 3, 4, 5, 6, 7, 8, 9]])
        );
        assert_eq!(
            eval(json!({"a": []}), "States.ArrayPartition($.a, 3)"),
            json!([])
        );
        // Non-integers are rounded to the nearest integer (3.6 -> 4).
        assert_eq!(
            eval(guide_array(), "States.ArrayPartition($.inputArray, 3.6)"),
            json!([[1, 2, 3, 4], [5, 6, 7, 8], [9]])
        );
    }

    #[test]
    fn array_partition_errors() {
        assert_err(
            guide_array(),
            "States.ArrayPartition($.inputArray, 0)",
            "positive integer",
        );
        assert_err(
            guide_array(),
            "States.ArrayPartition($.inputArray, -2)",
            "positive integer",
        );
        assert_err(
            guide_array(),
            "States.ArrayPartition($.lookingFor, 2)",
            "argument 1 must be an array, got number",
        );
        assert_err(
            guide_array(),
            "States.ArrayPartition($.inputArray, '2')",
            "argument 2 must be an integer, got string",
        );
        assert_err(
            guide_array(),
            "States.ArrayPartition($.inputArray)",
            "exactly 2 arguments, but 1 was",
        );
    }

    #[test]
    fn array_contains_example() {
        assert_eq!(
            eval(
                guide_array(),
                "States.ArrayContains($.inputArray, $.lookingFor)"
            ),
            json!(true)
        );
        assert_eq!(
            eval(guide_array(), "States.ArrayContains($.inputArray, 10)"),
            json!(false)
        );
        assert_eq!(
            eval(guide_array(), "States.ArrayContains($.inputArray, '5')"),
            json!(false)
        );
        assert_eq!(
            eval(guide_array(), "States.ArrayContains($.inputArray, 5.0)"),
            json!(true)
        );
        let input = json!({"a": [{"x": 1, "y": [1, 2]}, null], "needle": {"y": [1, 2], "x": 1}});
        assert_eq!(
            eval(input.clone(), "States.ArrayContains($.a, $.needle)"),
            json!(true)
        );
        assert_eq!(eval(input, "States.ArrayContains($.a, null)"), json!(true));
        assert_err(
            guide_array(),
            "States.ArrayContains($.index, 5)",
            "must be an array",
        );
    }

    #[test]
    fn array_range_example() {
        assert_eq!(
            eval(json!({}), "States.ArrayRange(1, 9, 2)"),
            json!([1, 3, 5, 7, 9])
        );
        assert_eq!(
            eval(json!({}), "States.ArrayRange(1, 10, 2)"),
            json!([1, 3, 5, 7, 9])
        );
        assert_eq!(
            eval(json!({}), "States.ArrayRange(9, 1, -2)"),
            json!([9, 7, 5, 3, 1])
        );
        assert_eq!(eval(json!({}), "States.ArrayRange(5, 5, 1)"), json!([5]));
        assert_eq!(eval(json!({}), "States.ArrayRange(1, 9, -1)"), json!([]));
        assert_eq!(
            eval(json!({}), "States.ArrayRange(-2, 2, 2)"),
            json!([-2, 0, 2])
        );
        // Non-integers are rounded: (0.6, 3.4, 1) -> (1, 3, 1).
        assert_eq!(
            eval(json!({}), "States.ArrayRange(0.6, 3.4, 1)"),
            json!([1, 2, 3])
        );
    }

    #[test]
    fn array_range_limits_and_errors() {
        let v = eval(json!({}), "States.ArrayRange(1, 1000, 1)");
        assert_eq!(v.as_array().map(Vec::len), Some(1000));
        assert_err(
            json!({}),
            "States.ArrayRange(1, 1001, 1)",
            "1001 items, more than the maximum of 1000",
        );
        assert_err(
            json!({}),
            "States.ArrayRange(-9223372036854775808, 9223372036854775807, 1)",
            "more than the maximum of 1000",
        );
        assert_err(json!({}), "States.ArrayRange(1, 9, 0)", "must not be 0");
        assert_err(
            json!({}),
            "States.ArrayRange(1, 9)",
            "exactly 3 arguments, but 2 were",
        );
        assert_err(
            json!({}),
            "States.ArrayRange('1', 9, 1)",
            "argument 1 must be an integer, got string",
        );
    }

    #[test]
    fn array_get_item_example() {
        assert_eq!(
            eval(guide_array(), "States.ArrayGetItem($.inputArray, $.index)"),
            json!(6)
        );
        assert_eq!(
            eval(guide_array(), "States.ArrayGetItem($.inputArray, 0)"),
            json!(1)
        );
        assert_eq!(
            eval(guide_array(), "States.ArrayGetItem($.inputArray, 8.0)"),
            json!(9)
        );
        assert_eq!(
            eval(json!({"a": [{"k": "v"}]}), "States.ArrayGetItem($.a, 0)"),
            json!({"k": "v"})
        );
    }

    #[test]
    fn array_get_item_errors() {
        assert_err(
            guide_array(),
            "States.ArrayGetItem($.inputArray, 9)",
            "index 9 is out of bounds for an array of length 9",
        );
        assert_err(
            guide_array(),
            "States.ArrayGetItem($.inputArray, -1)",
            "index -1 is out of bounds",
        );
        assert_err(
            guide_array(),
            "States.ArrayGetItem($.inputArray, 1.5)",
            "argument 2 must be an integer",
        );
        assert_err(
            guide_array(),
            "States.ArrayGetItem($.index, 1)",
            "argument 1 must be an array",
        );
    }

    #[test]
    fn array_length_example() {
        let v = eval(guide_array(), "States.ArrayLength($.inputArray)");
        assert_eq!(v, json!(9));
        assert_eq!(v.to_string(), "9");
        assert_eq!(
            eval(json!({}), "States.ArrayLength(States.Array())"),
            json!(0)
        );
        assert_err(
            json!({"s": "abc"}),
            "States.ArrayLength($.s)",
            "must be an array, got string",
        );
    }

    #[test]
    fn array_unique_example() {
        assert_eq!(
            eval(
                json!({"inputArray": [1, 2, 3, 3, 3, 3, 3, 3, 4]}),
                "States.ArrayUnique($.inputArray)"
            ),
            json!([1, 2, 3, 4])
        );
        assert_eq!(
            eval(
                json!({"a": [3, "3", 1, 3.0, {"x": 1, "y": 2}, {"y": 2, "x": 1}, [1], [1], null, null, 1]}),
                "States.ArrayUnique($.a)"
            ),
            json!([3, "3", 1, {"x": 1, "y": 2}, [1], null])
        );
        assert_err(
            json!({"o": {}}),
            "States.ArrayUnique($.o)",
            "must be an array, got object",
        );
    }

    // ----- Encoding ---------------------------------------------------------------------------

    #[test]
    fn base64_encode_example() {
        assert_eq!(
            eval(
                json!({"input": "Data to encode"}),
                "States.Base64Encode($.input)"
            ),
            json!("RGF0YSB0byBlbmNvZGU=")
        );
        assert_eq!(eval(json!({}), "States.Base64Encode('')"), json!(""));
        assert_err(
            json!({"n": 1}),
            "States.Base64Encode($.n)",
            "must be a string",
        );
    }

    #[test]
    fn base64_decode_example() {
        // The guide decodes the encode example's output; its printed result ("Decoded data") is a
        // slip in the guide, the encoded text is "Data to encode".
        assert_eq!(
            eval(
                json!({"base64": "RGF0YSB0byBlbmNvZGU="}),
                "States.Base64Decode($.base64)"
            ),
            json!("Data to encode")
        );
        assert_eq!(
            eval(json!({}), "States.Base64Decode('RGF0YSB0byBl\nbmNvZGU=')"),
            json!("Data to encode")
        );
        assert_err(
            json!({}),
            "States.Base64Decode('not base64!')",
            "not valid base64",
        );
        assert_err(json!({}), "States.Base64Decode('/w==')", "not valid UTF-8");
        assert_err(
            json!({"n": null}),
            "States.Base64Decode($.n)",
            "must be a string, got null",
        );
    }

    #[test]
    fn base64_length_limit_is_10000_characters() {
        // The limit counts characters, not bytes.
        let wide = "é".repeat(10_000);
        assert!(eval(json!({ "s": wide }), "States.Base64Encode($.s)").is_string());
        // 7,500 bytes encode to exactly 10,000 base64 characters, which still decode.
        let plain = "a".repeat(7_500);
        let encoded = eval(json!({ "s": plain }), "States.Base64Encode($.s)");
        assert_eq!(encoded.as_str().map(str::len), Some(10_000));
        assert_eq!(
            eval(json!({ "b": encoded }), "States.Base64Decode($.b)"),
            json!(plain)
        );
        assert_err(
            json!({ "s": "a".repeat(10_001) }),
            "States.Base64Encode($.s)",
            "10001 characters long",
        );
        assert_err(
            json!({ "s": "A".repeat(10_004) }),
            "States.Base64Decode($.s)",
            "at most 10000",
        );
    }

    // ----- Hash -------------------------------------------------------------------------------

    #[test]
    fn hash_guide_example() {
        // The guide prints "aaff4a450a104cd177d28d18d7485e8cae074b7", which is one hex digit short
        // of a SHA-1 digest (a "4" is missing after "d7"); the full digest is below.
        let v = eval(
            json!({"Data": "input data", "Algorithm": "SHA-1"}),
            "States.Hash($.Data, $.Algorithm)",
        );
        assert_eq!(v, json!("aaff4a450a104cd177d28d18d74485e8cae074b7"));
        assert_eq!(
            v.as_str().map(|s| s.replacen("d744", "d74", 1)).as_deref(),
            Some("aaff4a450a104cd177d28d18d7485e8cae074b7")
        );
    }

    #[test]
    fn hash_standard_test_vectors() {
        // RFC 1321 and FIPS 180 "abc" test vectors.
        let cases = [
            ("MD5", "900150983cd24fb0d6963f7d28e17f72"),
            ("SHA-1", "a9993e364706816aba3e25717850c26c9cd0d89d"),
            ("SHA-256", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("SHA-384", "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"),
            ("SHA-512", "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"),
        ];
        for (algorithm, digest) in cases {
            assert_eq!(
                eval(json!({}), &format!("States.Hash('abc', '{algorithm}')")),
                json!(digest),
                "{algorithm}"
            );
        }
        assert_eq!(
            eval(json!({}), "States.Hash('', 'MD5')"),
            json!("d41d8cd98f00b204e9800998ecf8427e")
        );
    }

    #[test]
    fn hash_errors_and_stringified_input() {
        assert_err(
            json!({}),
            "States.Hash('abc', 'SHA-3')",
            "unsupported algorithm `SHA-3`",
        );
        assert_err(
            json!({}),
            "States.Hash('abc', 'sha-256')",
            "unsupported algorithm",
        );
        assert_err(
            json!({}),
            "States.Hash('abc', 256)",
            "argument 2 must be a string",
        );
        assert_err(
            json!({ "s": "a".repeat(10_001) }),
            "States.Hash($.s, 'MD5')",
            "at most 10000",
        );
        assert_eq!(
            eval(json!({}), "States.Hash(123, 'MD5')"),
            eval(json!({}), "States.Hash('123', 'MD5')")
        );
    }

    // ----- JsonMerge --------------------------------------------------------------------------

    #[test]
    fn json_merge_example() {
        let input = json!({
            "json1": {"a": {"a1": 1, "a2": 2}, "b": 2},
            "json2": {"a": {"a3": 1, "a4": 2}, "c": 3}
        });
        let v = eval(input, "States.JsonMerge($.json1, $.json2, false)");
        assert_eq!(v, json!({"a": {"a3": 1, "a4": 2}, "b": 2, "c": 3}));
        assert_eq!(v.to_string(), r#"{"a":{"a3":1,"a4":2},"b":2,"c":3}"#);
    }

    #[test]
    fn json_merge_errors() {
        let input = json!({"o": {"a": 1}, "n": 1});
        assert_err(
            input.clone(),
            "States.JsonMerge($.o, $.o, true)",
            "deep merge",
        );
        assert_err(
            input.clone(),
            "States.JsonMerge($.o, $.o, 'false')",
            "argument 3 must be a boolean",
        );
        assert_err(
            input.clone(),
            "States.JsonMerge($.n, $.o, false)",
            "argument 1 must be a JSON object, got number",
        );
        assert_err(
            input.clone(),
            "States.JsonMerge($.o, States.Array(), false)",
            "argument 2 must be a JSON object, got array",
        );
        assert_err(input, "States.JsonMerge($.o, $.o)", "exactly 3 arguments");
    }

    // ----- Math -------------------------------------------------------------------------------

    #[test]
    fn math_random_stays_in_range() {
        for bits in [
            0,
            1,
            u64::MAX / 2,
            u64::MAX - 1,
            u64::MAX,
            0x0123_4567_89ab_cdef,
        ] {
            let mut ctx = TestCtx::new(json!({"start": 1, "end": 999}));
            ctx.random = vec![bits];
            let v = eval_with(&mut ctx, "States.MathRandom($.start, $.end)");
            let n = v.as_i64().expect("integer result");
            assert!((1..999).contains(&n), "{n} out of [1, 999)");
        }
        let mut ctx = TestCtx::new(json!({}));
        ctx.random = vec![0];
        assert_eq!(eval_with(&mut ctx, "States.MathRandom(1, 999)"), json!(1));
        ctx.random = vec![u64::MAX];
        assert_eq!(eval_with(&mut ctx, "States.MathRandom(1, 999)"), json!(998));
        assert_eq!(eval_with(&mut ctx, "States.MathRandom(-5, -4)"), json!(-5));
        let full = eval_with(
            &mut ctx,
            "States.MathRandom(-9223372036854775808, 9223372036854775807)",
        );
        assert!(full.is_i64());
    }

    #[test]
    fn math_random_with_seed_is_deterministic() {
        let mut a = TestCtx::new(json!({}));
        a.random = vec![1];
        let mut b = TestCtx::new(json!({}));
        b.random = vec![u64::MAX];
        let first = eval_with(&mut a, "States.MathRandom(1, 999, 42)");
        assert_eq!(eval_with(&mut b, "States.MathRandom(1, 999, 42)"), first);
        assert_eq!(eval_with(&mut a, "States.MathRandom(1, 999, 42)"), first);
        assert_eq!(
            a.next_random, 0,
            "a seeded call must not consume context randomness"
        );
        let n = first.as_i64().expect("integer");
        assert!((1..999).contains(&n));
        let others: HashSet<i64> = (0..20)
            .map(|seed| {
                eval_with(&mut a, &format!("States.MathRandom(1, 999, {seed})"))
                    .as_i64()
                    .expect("integer")
            })
            .collect();
        assert!(
            others.len() > 1,
            "different seeds should give different numbers"
        );
    }

    #[test]
    fn math_random_errors() {
        assert_err(
            json!({}),
            "States.MathRandom(5, 5)",
            "start (5) must be less than the end (5)",
        );
        assert_err(json!({}), "States.MathRandom(9, 1)", "must be less than");
        assert_err(
            json!({}),
            "States.MathRandom('1', 9)",
            "argument 1 must be an integer",
        );
        assert_err(
            json!({}),
            "States.MathRandom(1)",
            "2 to 3 arguments, but 1 was",
        );
        assert_err(
            json!({}),
            "States.MathRandom(1, 2, 3, 4)",
            "2 to 3 arguments, but 4 were",
        );
    }

    #[test]
    fn math_add_example() {
        let v = eval(
            json!({"value1": 111, "step": -1}),
            "States.MathAdd($.value1, $.step)",
        );
        assert_eq!(v, json!(110));
        assert!(v.is_i64());
        assert_eq!(
            eval(json!({}), "States.MathAdd(2147483647, 2147483647)"),
            json!(4294967294_i64)
        );
        assert_eq!(
            eval(json!({}), "States.MathAdd(-2147483648, 0)"),
            json!(-2147483648_i64)
        );
        // Non-integers are rounded to the nearest integer: 1.4 -> 1, 2.6 -> 3.
        assert_eq!(eval(json!({}), "States.MathAdd(1.4, 2.6)"), json!(4));
    }

    #[test]
    fn math_add_errors() {
        assert_err(
            json!({}),
            "States.MathAdd(2147483648, 1)",
            "must be between -2147483648 and 2147483647",
        );
        assert_err(json!({}), "States.MathAdd(1, -2147483649)", "argument 2");
        assert_err(
            json!({}),
            "States.MathAdd('1', 1)",
            "argument 1 must be an integer, got string",
        );
        assert_err(
            json!({}),
            "States.MathAdd(1, null)",
            "argument 2 must be an integer, got null",
        );
        assert_err(
            json!({}),
            "States.MathAdd(1, 18446744073709551615)",
            "out of the supported integer range",
        );
    }

    // ----- StringSplit ------------------------------------------------------------------------

    #[test]
    fn string_split_examples() {
        assert_eq!(
            eval(
                json!({"inputString": "1,2,3,4,5", "splitter": ","}),
                "States.StringSplit($.inputString, $.splitter)"
            ),
            json!(["1", "2", "3", "4", "5"])
        );
        assert_eq!(
            eval(
                json!({"inputString": "This.is+a,test=string", "splitter": ".+,="}),
                "States.StringSplit($.inputString, $.splitter)"
            ),
            json!(["This", "is", "a", "test", "string"])
        );
    }

    #[test]
    fn string_split_drops_empty_strings() {
        assert_eq!(
            eval(json!({}), "States.StringSplit(',,a,,b,', ',')"),
            json!(["a", "b"])
        );
        assert_eq!(
            eval(json!({}), "States.StringSplit(',,,,', ',')"),
            json!([])
        );
        assert_eq!(eval(json!({}), "States.StringSplit('', ',')"), json!([]));
        assert_eq!(
            eval(json!({}), "States.StringSplit(' , ', ',')"),
            json!([" ", " "])
        );
        assert_eq!(
            eval(json!({}), "States.StringSplit('abc', '')"),
            json!(["abc"])
        );
        assert_eq!(
            eval(json!({}), "States.StringSplit('a→b', '→')"),
            json!(["a", "b"])
        );
        assert_err(
            json!({}),
            "States.StringSplit(1, ',')",
            "argument 1 must be a string",
        );
        assert_err(
            json!({}),
            "States.StringSplit('a', null)",
            "argument 2 must be a string",
        );
    }

    // ----- UUID -------------------------------------------------------------------------------

    fn is_v4_uuid(s: &str) -> bool {
        let groups: Vec<&str> = s.split('-').collect();
        groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
            && s.chars()
                .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c))
            && groups[2].starts_with('4')
            && groups[3].starts_with(['8', '9', 'a', 'b'])
    }

    #[test]
    fn uuid_is_version_4_from_context_randomness() {
        assert!(
            is_v4_uuid("ca4c1140-dcc1-40cd-ad05-7b4aa23df4a8"),
            "guide example"
        );
        let mut ctx = TestCtx::new(json!({}));
        // Bytes 01 23 45 67 89 ab cd ef fe dc ba 98 76 54 32 10: byte 6 gets version nibble 4,
        // byte 8 gets variant bits 10.
        let v = eval_with(&mut ctx, "States.UUID()");
        assert_eq!(v, json!("01234567-89ab-4def-bedc-ba9876543210"));
        assert_eq!(ctx.next_random, 2);
        ctx.random = vec![u64::MAX];
        assert_eq!(
            eval_with(&mut ctx, "States.UUID()"),
            json!("ffffffff-ffff-4fff-bfff-ffffffffffff")
        );
        ctx.random = vec![0];
        let zero = eval_with(&mut ctx, "States.UUID()");
        assert_eq!(zero, json!("00000000-0000-4000-8000-000000000000"));
        assert!(is_v4_uuid(zero.as_str().unwrap_or_default()));
        assert_err(
            json!({}),
            "States.UUID(1)",
            "exactly 0 arguments, but 1 was",
        );
    }

    // ----- Parser -----------------------------------------------------------------------------

    #[test]
    fn paths_are_passed_verbatim() {
        let mut ctx = TestCtx::new(json!({"a": {"b c": [10, 20]}, "items": [{"x": 1}]}));
        ctx.context = json!({"Execution": {"Id": "arn:exec:1"}});
        ctx.vars.insert("myVar".into(), json!({"field": "v"}));
        for path in [
            "$.items[?(@.x == 1, 2)]",
            "$.a.*",
            "$..x",
            "$.items.length()",
        ] {
            ctx.exact.insert(path.to_string(), json!(path));
        }
        let v = eval_with(
            &mut ctx,
            "States.Array( $ , $.a['b c'][1],$$.Execution.Id, $myVar.field, $.items[?(@.x == 1, 2)], $.a.* ,$..x, $.items.length() )",
        );
        assert_eq!(
            v,
            json!([
                {"a": {"b c": [10, 20]}, "items": [{"x": 1}]},
                20,
                "arn:exec:1",
                "v",
                "$.items[?(@.x == 1, 2)]",
                "$.a.*",
                "$..x",
                "$.items.length()"
            ])
        );
        assert_eq!(
            ctx.resolved.borrow().as_slice(),
            [
                "$",
                "$.a['b c'][1]",
                "$$.Execution.Id",
                "$myVar.field",
                "$.items[?(@.x == 1, 2)]",
                "$.a.*",
                "$..x",
                "$.items.length()"
            ]
        );
    }

    #[test]
    fn path_failures_propagate_unchanged() {
        let e = eval_err(json!({}), "States.Format('{}', $.missing)");
        assert!(e.path_failure);
        assert!(e.message.contains("$.missing"));
        let e = eval_err(json!({}), "States.ArrayLength(States.Array($.nope))");
        assert!(e.path_failure);
    }

    #[test]
    fn arity_is_checked_before_paths_are_resolved() {
        let mut ctx = TestCtx::new(json!({}));
        let e = evaluate("States.ArrayLength($.a, $.b)", &mut ctx).expect_err("arity");
        assert!(!e.path_failure);
        assert!(ctx.resolved.borrow().is_empty());
    }

    #[test]
    fn literals_and_whitespace() {
        assert_eq!(
            eval(json!({}), "  States.Array(  'a b' ,\t-12 , 0.25,-1.5e2, 9007199254740993, null,true ,false )  "),
            json!(["a b", -12, 0.25, -150.0, 9007199254740993_i64, null, true, false])
        );
        assert_eq!(
            eval(json!({}), "States.Array(18446744073709551615)"),
            json!([u64::MAX])
        );
        assert_eq!(
            eval(json!({}), r"States.Array('it\'s', '\\', '\{x\}', '')"),
            json!(["it's", "\\", "{x}", ""])
        );
        assert_eq!(
            eval(json!({}), "States.Array('a, b)', ')')"),
            json!(["a, b)", ")"])
        );
    }

    #[test]
    fn nested_calls() {
        assert_eq!(
            eval(
                json!({}),
                "States.ArrayLength(States.Array(1, 2, States.Array()))"
            ),
            json!(3)
        );
        assert_eq!(
            eval(json!({}), "States.ArrayGetItem(States.StringSplit(States.Format('{}-{}', 'a', States.MathAdd(1, 1)), '-'), 1)"),
            json!("2")
        );
        let mut ten = "1".to_string();
        for _ in 0..10 {
            ten = format!("States.Array({ten})");
        }
        assert_eq!(eval(json!({}), &ten), json!([[[[[[[[[[1]]]]]]]]]]));
        let eleven = format!("States.Array({ten})");
        assert_err(json!({}), &eleven, "nested at most 10 deep");
    }

    #[test]
    fn unknown_functions_are_rejected() {
        assert_err(
            json!({}),
            "States.Nope(1)",
            "unknown intrinsic function `States.Nope`",
        );
        assert_err(
            json!({}),
            "States.format('x')",
            "unknown intrinsic function `States.format`",
        );
        assert_err(
            json!({}),
            "States.Array(Foo.Bar(1))",
            "unknown intrinsic function `Foo.Bar`",
        );
        assert_err(json!({}), "Foo()", "unknown intrinsic function `Foo`");
    }

    #[test]
    fn malformed_expressions_are_errors() {
        let cases = [
            ("", "expected an intrinsic function name"),
            ("$.a", "expected an intrinsic function name"),
            ("States.Array", "expected `(` after `States.Array`"),
            ("States.Array(1", "unterminated argument list"),
            ("States.Array(1,", "expected an argument"),
            ("States.Array('abc)", "unterminated string literal"),
            ("States.Array(1,)", "missing argument before `)`"),
            ("States.Array(,1)", "missing argument before `,`"),
            ("States.Array(1 2)", "unexpected `2`"),
            ("States.Array(1) x", "unexpected `x` after the closing `)`"),
            ("States.Array(1))", "unexpected `)` after the closing `)`"),
            ("States.Array(foo)", "unexpected `foo`"),
            ("States.Array(\"x\")", "single quotes"),
            ("States.Array(-)", "invalid number `-`"),
            ("States.Array(1.2.3)", "invalid number `1.2.3`"),
            ("States.Array(1e)", "invalid number `1e`"),
            ("States.Array(@)", "unexpected character `@`"),
            (r"States.Format('\n')", r"invalid escape sequence `\n`"),
            (
                r"States.Format('abc\",
                r"invalid escape sequence `\` at the end",
            ),
            ("States.Array($.a[0)", "unterminated path argument"),
            ("States.Array($.a['x)", "unterminated path argument"),
            (
                "States.Array(States.Array)",
                "expected `(` after `States.Array`",
            ),
        ];
        for (expr, needle) in cases {
            let e = eval_err(json!({"a": [1]}), expr);
            assert!(
                e.message.contains(needle),
                "error for `{expr}` was `{}`, expected `{needle}`",
                e.message
            );
            assert!(!e.path_failure);
        }
    }

    #[test]
    fn error_display_is_the_message() {
        let e = eval_err(json!({}), "States.Nope()");
        assert_eq!(e.to_string(), e.message);
        assert!(e.message.contains("at character 1"), "{}", e.message);
    }

    #[test]
    fn every_function_is_known_by_name() {
        assert_eq!(Func::ALL.len(), 18);
        for f in Func::ALL {
            assert_eq!(Func::from_name(f.name()), Some(f));
            assert!(is_intrinsic(&format!("{}()", f.name())));
        }
    }
}
