//! Evaluation of a parsed intrinsic call against an [`IntrinsicContext`]: argument resolution,
//! type checks, and each `States.*` function's behaviour and limits.

use super::parse::{Arg, Call};
use super::{fail, Func, IntrinsicContext, IntrinsicError, MAX_DATA_CHARS, MAX_RANGE_ITEMS};
use base64::Engine as _;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt::Write as _;

fn eval_arg(arg: &Arg, ctx: &mut dyn IntrinsicContext) -> Result<Value, IntrinsicError> {
    match arg {
        Arg::Literal(v) => Ok(v.clone()),
        Arg::Str { value, .. } => Ok(Value::String(value.clone())),
        Arg::Path(_, Some(parsed)) => ctx.resolve_parsed(parsed),
        Arg::Path(text, None) => ctx.resolve(text),
        Arg::Call(call) => eval_call(call, ctx),
    }
}

pub(super) fn eval_call(
    call: &Call,
    ctx: &mut dyn IntrinsicContext,
) -> Result<Value, IntrinsicError> {
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
