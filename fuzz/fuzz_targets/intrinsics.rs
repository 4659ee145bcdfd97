//! Intrinsic functions (`States.Format`, `States.Array`, … `States.UUID`):
//! [`Expression::parse`] and [`Expression::evaluate`].
//!
//! Input: the expression on the first line, the state's input (JSON) after it
//! (a small fixed document when the rest is not JSON).
//!
//! Asserts: `parse` and `check` accept the same expressions and what they accept is
//! an intrinsic call; evaluating a parsed expression equals evaluating its text
//! ([`evaluate`]) with the same random source, and is repeatable;
//! `States.JsonToString` yields JSON text.

#![no_main]

use certops_asl::intrinsics::{
    check, evaluate, is_intrinsic, Expression, IntrinsicContext, IntrinsicError,
};
use certops_asl::path::{Path, Roots};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

struct Ctx<'a> {
    input: &'a Value,
    seed: u64,
}

impl Roots for Ctx<'_> {
    fn input(&self) -> &Value {
        self.input
    }
    fn context(&self) -> Value {
        json!({"Execution": {"Id": "arn:aws:states:us-east-1:123456789012:execution:sm:x",
            "Name": "x"}, "State": {"Name": "S"}})
    }
    fn variable(&self, name: &str) -> Option<&Value> {
        (name == "v").then_some(self.input)
    }
}

impl IntrinsicContext for Ctx<'_> {
    fn resolve(&self, path: &str) -> Result<Value, IntrinsicError> {
        let p = Path::parse(path).map_err(|e| IntrinsicError {
            message: e.to_string(),
            path_failure: true,
        })?;
        p.select(self).map_err(|e| IntrinsicError {
            message: e.to_string(),
            path_failure: true,
        })
    }
    fn random_u64(&mut self) -> u64 {
        // splitmix64: deterministic, so two evaluations can be compared.
        self.seed = self.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (expr, doc) = text.split_once('\n').unwrap_or((text, ""));
    let input: Value = serde_json::from_str(doc).unwrap_or_else(|_| {
        json!({"who": "world", "n": 3, "items": [1, 2, 3], "s": "a,b,c", "obj": {"k": [true, null]}})
    });
    let parsed = Expression::parse(expr);
    assert_eq!(
        parsed.is_ok(),
        check(expr).is_ok(),
        "parse and check disagree"
    );
    let Ok(parsed) = parsed else {
        return;
    };
    assert!(
        is_intrinsic(expr.trim_start()),
        "{expr:?} parsed but is not an intrinsic call"
    );
    assert_eq!(parsed.as_str(), expr);

    let run = |f: &dyn Fn(&mut Ctx<'_>) -> Result<Value, IntrinsicError>| {
        let mut ctx = Ctx {
            input: &input,
            seed: 42,
        };
        f(&mut ctx)
    };
    let first = run(&|c| parsed.evaluate(c));
    assert_eq!(
        first,
        run(&|c| parsed.evaluate(c)),
        "evaluation is repeatable"
    );
    assert_eq!(
        first,
        run(&|c| evaluate(expr, c)),
        "parsed and text evaluation agree"
    );
    match &first {
        Ok(v) if expr.trim_start().starts_with("States.JsonToString(") => {
            let s = v.as_str().expect("JsonToString yields a string");
            serde_json::from_str::<Value>(s).expect("JsonToString yields JSON text");
        }
        _ => {}
    }
});
