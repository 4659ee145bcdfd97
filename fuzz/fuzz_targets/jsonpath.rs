//! JSONPath as Step Functions uses it ([`Path::parse`], [`Path::select`], [`Path::set`]).
//!
//! Input: the path on the first line, a JSON document after it (a small fixed
//! document when the rest is not JSON).
//!
//! Asserts: a parsed path's text re-parses to an equal path; a reference path is
//! definite and rooted at `$`; selecting never panics, a definite path yields a node
//! or `NotFound`, an indefinite one an array; writing a value at a reference path
//! (`ResultPath`) and selecting that path gives the value back.

#![no_main]

use certops_asl::path::{Path, PathError, Root, Roots};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

struct Doc<'a> {
    input: &'a Value,
    variable: Value,
}

impl Roots for Doc<'_> {
    fn input(&self) -> &Value {
        self.input
    }
    fn context(&self) -> Value {
        json!({"Execution": {"Id": "arn:aws:states:us-east-1:123456789012:execution:sm:x",
            "Input": self.input}, "State": {"Name": "S", "RetryCount": 0}, "Task": {"Token": "t"}})
    }
    fn variable(&self, name: &str) -> Option<&Value> {
        (name == "v").then_some(&self.variable)
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path_text, doc_text) = text.split_once('\n').unwrap_or((text, ""));
    let input: Value = serde_json::from_str(doc_text).unwrap_or_else(|_| {
        json!({"a": {"b": [1, {"c": "x"}, null]}, "items": [{"n": 1}, {"n": 2, "k": "y"}], "s": "t"})
    });
    let Ok(path) = Path::parse(path_text) else {
        return;
    };
    assert_eq!(path.as_str(), path_text);
    assert_eq!(Path::parse(&path.to_string()).as_ref(), Ok(&path));
    if path.is_reference() {
        assert!(path.is_definite());
        assert_eq!(path.root(), &Root::Input);
    }

    let roots = Doc {
        input: &input,
        variable: input.clone(),
    };
    match path.select(&roots) {
        Ok(v) => {
            if !path.is_definite() {
                assert!(v.is_array(), "an indefinite path yields an array");
            }
        }
        Err(PathError::NotFound { .. }) => assert!(path.is_definite()),
        Err(PathError::UndefinedVariable { name }) => {
            assert_eq!(path.root(), &Root::Variable(name));
        }
        Err(e) => panic!("select failed with {e}"),
    }

    if path.is_reference() {
        let value = json!({"written": [path_text]});
        if let Ok(out) = path.set(input.clone(), value.clone()) {
            let back = path
                .select(&Doc {
                    input: &out,
                    variable: Value::Null,
                })
                .expect("a written path is found");
            assert_eq!(back, value, "a written value reads back");
        }
    }
});
