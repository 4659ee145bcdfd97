//! Unit tests of the intrinsic functions: the examples of the AWS developer guide and the
//! States Language specification, limits, and parse errors.

use super::*;
use serde_json::{json, Map};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

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
        eval(
            json!({}),
            "  States.Array(  'a b' ,\t-12 , 0.25,-1.5e2, 9007199254740993, null,true ,false )  "
        ),
        json!([
            "a b",
            -12,
            0.25,
            -150.0,
            9007199254740993_i64,
            null,
            true,
            false
        ])
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
