//! Choice rules: comparisons and their `…Path` forms, `Is*` tests, `And`/`Or`/`Not`.

use crate::path::{Path, PathError, Roots};
use crate::template::Template;
use chrono::DateTime;
use serde_json::{Map, Value};

/// A top-level rule of a Choice state with its target.
#[derive(Debug, Clone)]
pub struct ChoiceRule {
    /// The boolean expression.
    pub rule: Rule,
    /// Index of the `Next` state.
    pub next: usize,
    /// `Assign` applied when this rule matches.
    pub assign: Option<Template>,
}

/// A boolean expression over the state's input.
#[derive(Debug, Clone)]
pub enum Rule {
    /// `And`.
    And(Vec<Rule>),
    /// `Or`.
    Or(Vec<Rule>),
    /// `Not`.
    Not(Box<Rule>),
    /// `Variable` compared with a literal or with another path.
    Compare {
        /// `Variable`.
        variable: Path,
        /// The operator.
        op: Op,
        /// The right-hand side.
        rhs: Rhs,
    },
    /// `IsNull`, `IsPresent`, … with the expected boolean.
    Test {
        /// `Variable`.
        variable: Path,
        /// Which test.
        test: TypeTest,
        /// The value the test must have for the rule to match.
        expected: bool,
    },
}

/// Right-hand side of a comparison.
#[derive(Debug, Clone)]
pub enum Rhs {
    /// A literal from the definition.
    Literal(Value),
    /// A `…Path` operator's path.
    Path(Path),
}

/// Comparison kinds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// `StringEquals`.
    StringEquals,
    /// `StringLessThan`.
    StringLessThan,
    /// `StringGreaterThan`.
    StringGreaterThan,
    /// `StringLessThanEquals`.
    StringLessThanEquals,
    /// `StringGreaterThanEquals`.
    StringGreaterThanEquals,
    /// `StringMatches` (`*` wildcard).
    StringMatches,
    /// `NumericEquals`.
    NumericEquals,
    /// `NumericLessThan`.
    NumericLessThan,
    /// `NumericGreaterThan`.
    NumericGreaterThan,
    /// `NumericLessThanEquals`.
    NumericLessThanEquals,
    /// `NumericGreaterThanEquals`.
    NumericGreaterThanEquals,
    /// `BooleanEquals`.
    BooleanEquals,
    /// `TimestampEquals`.
    TimestampEquals,
    /// `TimestampLessThan`.
    TimestampLessThan,
    /// `TimestampGreaterThan`.
    TimestampGreaterThan,
    /// `TimestampLessThanEquals`.
    TimestampLessThanEquals,
    /// `TimestampGreaterThanEquals`.
    TimestampGreaterThanEquals,
}

/// `Is*` tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TypeTest {
    /// `IsNull`.
    Null,
    /// `IsPresent`.
    Present,
    /// `IsNumeric`.
    Numeric,
    /// `IsString`.
    String,
    /// `IsBoolean`.
    Boolean,
    /// `IsTimestamp`.
    Timestamp,
}

const OPS: &[(&str, Op)] = &[
    ("StringEquals", Op::StringEquals),
    ("StringLessThan", Op::StringLessThan),
    ("StringGreaterThan", Op::StringGreaterThan),
    ("StringLessThanEquals", Op::StringLessThanEquals),
    ("StringGreaterThanEquals", Op::StringGreaterThanEquals),
    ("StringMatches", Op::StringMatches),
    ("NumericEquals", Op::NumericEquals),
    ("NumericLessThan", Op::NumericLessThan),
    ("NumericGreaterThan", Op::NumericGreaterThan),
    ("NumericLessThanEquals", Op::NumericLessThanEquals),
    ("NumericGreaterThanEquals", Op::NumericGreaterThanEquals),
    ("BooleanEquals", Op::BooleanEquals),
    ("TimestampEquals", Op::TimestampEquals),
    ("TimestampLessThan", Op::TimestampLessThan),
    ("TimestampGreaterThan", Op::TimestampGreaterThan),
    ("TimestampLessThanEquals", Op::TimestampLessThanEquals),
    ("TimestampGreaterThanEquals", Op::TimestampGreaterThanEquals),
];

const TESTS: &[(&str, TypeTest)] = &[
    ("IsNull", TypeTest::Null),
    ("IsPresent", TypeTest::Present),
    ("IsNumeric", TypeTest::Numeric),
    ("IsString", TypeTest::String),
    ("IsBoolean", TypeTest::Boolean),
    ("IsTimestamp", TypeTest::Timestamp),
];

/// A Choice rule could not be evaluated (`States.Runtime`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid path '{path}': the choice state's condition path references an invalid value")]
pub struct ChoiceError {
    /// The path that found nothing.
    pub path: String,
}

impl Rule {
    /// Parses a rule object; `top` is true for a member of `Choices` (which carries `Next`/`Assign`).
    pub fn parse(o: &Map<String, Value>, top: bool) -> Result<Rule, String> {
        let allowed_extra: &[&str] = if top {
            &["Next", "Assign", "Comment"]
        } else {
            &["Comment"]
        };
        let mut keys = o.keys().filter(|k| !allowed_extra.contains(&k.as_str()));
        let mut rest: Vec<&String> = Vec::new();
        for k in keys.by_ref() {
            rest.push(k);
        }
        if let Some(v) = o.get("And").or_else(|| o.get("Or")) {
            let which = if o.contains_key("And") { "And" } else { "Or" };
            if rest.len() != 1 {
                return Err(format!(
                    "'{which}' may not be combined with other operators"
                ));
            }
            let arr = v
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| format!("'{which}' must be a non-empty array of rules"))?;
            let rules = arr
                .iter()
                .map(|r| {
                    r.as_object()
                        .ok_or_else(|| format!("'{which}' members must be objects"))
                        .and_then(|o| Rule::parse(o, false))
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(if which == "And" {
                Rule::And(rules)
            } else {
                Rule::Or(rules)
            });
        }
        if let Some(v) = o.get("Not") {
            if rest.len() != 1 {
                return Err("'Not' may not be combined with other operators".into());
            }
            let inner = v.as_object().ok_or("'Not' must hold one rule object")?;
            return Ok(Rule::Not(Box::new(Rule::parse(inner, false)?)));
        }
        let variable = o
            .get("Variable")
            .and_then(Value::as_str)
            .ok_or("a comparison needs 'Variable' (a path string)")?;
        let variable = Path::parse(variable).map_err(|e| format!("Variable: {e}"))?;
        let ops: Vec<&&String> = rest.iter().filter(|k| k.as_str() != "Variable").collect();
        if ops.len() != 1 {
            return Err(format!(
                "a comparison needs exactly one operator, found {}",
                if ops.is_empty() {
                    "none".to_string()
                } else {
                    ops.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
        let key = ops[0].as_str();
        let value = &o[key];
        if let Some((_, test)) = TESTS.iter().find(|(n, _)| *n == key) {
            let expected = value
                .as_bool()
                .ok_or_else(|| format!("'{key}' must be true or false"))?;
            return Ok(Rule::Test {
                variable,
                test: *test,
                expected,
            });
        }
        let (base, is_path) = match key.strip_suffix("Path") {
            Some(b) if OPS.iter().any(|(n, _)| *n == b) => (b, true),
            _ => (key, false),
        };
        let (_, op) = OPS
            .iter()
            .find(|(n, _)| *n == base)
            .ok_or_else(|| format!("unknown comparison operator '{key}'"))?;
        if is_path && *op == Op::StringMatches {
            return Err("'StringMatchesPath' is not an operator".into());
        }
        let rhs = if is_path {
            let s = value
                .as_str()
                .ok_or_else(|| format!("'{key}' must be a path string"))?;
            Rhs::Path(Path::parse(s).map_err(|e| format!("{key}: {e}"))?)
        } else {
            let ok = match op {
                Op::StringEquals
                | Op::StringLessThan
                | Op::StringGreaterThan
                | Op::StringLessThanEquals
                | Op::StringGreaterThanEquals
                | Op::StringMatches => value.is_string(),
                Op::NumericEquals
                | Op::NumericLessThan
                | Op::NumericGreaterThan
                | Op::NumericLessThanEquals
                | Op::NumericGreaterThanEquals => value.is_number(),
                Op::BooleanEquals => value.is_boolean(),
                _ => value
                    .as_str()
                    .is_some_and(|s| DateTime::parse_from_rfc3339(s).is_ok()),
            };
            if !ok {
                return Err(format!("'{key}' has a value of the wrong type: {value}"));
            }
            Rhs::Literal(value.clone())
        };
        Ok(Rule::Compare {
            variable,
            op: *op,
            rhs,
        })
    }

    /// Evaluates the rule against the roots.
    pub fn eval(&self, roots: &dyn Roots) -> Result<bool, ChoiceError> {
        match self {
            Rule::And(rs) => {
                for r in rs {
                    if !r.eval(roots)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Rule::Or(rs) => {
                for r in rs {
                    if r.eval(roots)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Rule::Not(r) => Ok(!r.eval(roots)?),
            Rule::Test {
                variable,
                test,
                expected,
            } => {
                let got = match variable.select(roots) {
                    Ok(v) => Some(v),
                    Err(PathError::NotFound { .. }) | Err(PathError::UndefinedVariable { .. }) => {
                        None
                    }
                    Err(_) => None,
                };
                let result = match (test, got) {
                    (TypeTest::Present, v) => v.is_some(),
                    (_, None) => {
                        return Err(ChoiceError {
                            path: variable.to_string(),
                        })
                    }
                    (TypeTest::Null, Some(v)) => v.is_null(),
                    (TypeTest::Numeric, Some(v)) => v.is_number(),
                    (TypeTest::String, Some(v)) => v.is_string(),
                    (TypeTest::Boolean, Some(v)) => v.is_boolean(),
                    (TypeTest::Timestamp, Some(v)) => v
                        .as_str()
                        .is_some_and(|s| DateTime::parse_from_rfc3339(s).is_ok()),
                };
                Ok(result == *expected)
            }
            Rule::Compare { variable, op, rhs } => {
                let lhs = variable.select(roots).map_err(|_| ChoiceError {
                    path: variable.to_string(),
                })?;
                let rhs_v;
                let rhs = match rhs {
                    Rhs::Literal(v) => v,
                    Rhs::Path(p) => {
                        rhs_v = p.select(roots).map_err(|_| ChoiceError {
                            path: p.to_string(),
                        })?;
                        &rhs_v
                    }
                };
                Ok(compare(*op, &lhs, rhs))
            }
        }
    }
}

fn compare(op: Op, lhs: &Value, rhs: &Value) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match op {
        Op::StringMatches => {
            return match (lhs.as_str(), rhs.as_str()) {
                (Some(s), Some(p)) => string_matches(s, p),
                _ => false,
            }
        }
        Op::BooleanEquals => return lhs.is_boolean() && lhs == rhs,
        Op::StringEquals
        | Op::StringLessThan
        | Op::StringGreaterThan
        | Op::StringLessThanEquals
        | Op::StringGreaterThanEquals => match (lhs.as_str(), rhs.as_str()) {
            (Some(a), Some(b)) => Some(a.cmp(b)),
            _ => None,
        },
        Op::NumericEquals
        | Op::NumericLessThan
        | Op::NumericGreaterThan
        | Op::NumericLessThanEquals
        | Op::NumericGreaterThanEquals => match (lhs.as_f64(), rhs.as_f64()) {
            (Some(a), Some(b)) if lhs.is_number() && rhs.is_number() => a.partial_cmp(&b),
            _ => None,
        },
        _ => {
            let p = |v: &Value| {
                v.as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            };
            match (p(lhs), p(rhs)) {
                (Some(a), Some(b)) => Some(a.cmp(&b)),
                _ => None,
            }
        }
    };
    let Some(ord) = ord else { return false };
    match op {
        Op::StringEquals | Op::NumericEquals | Op::TimestampEquals => ord.is_eq(),
        Op::StringLessThan | Op::NumericLessThan | Op::TimestampLessThan => ord.is_lt(),
        Op::StringGreaterThan | Op::NumericGreaterThan | Op::TimestampGreaterThan => ord.is_gt(),
        Op::StringLessThanEquals | Op::NumericLessThanEquals | Op::TimestampLessThanEquals => {
            ord.is_le()
        }
        _ => ord.is_ge(),
    }
}

/// `StringMatches`: `*` matches any run of characters; `\*` and `\\` are literal.
pub fn string_matches(s: &str, pattern: &str) -> bool {
    #[derive(PartialEq)]
    enum Tok {
        Star,
        Ch(char),
    }
    let mut toks = Vec::new();
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => match it.next() {
                Some(n) => toks.push(Tok::Ch(n)),
                None => toks.push(Tok::Ch('\\')),
            },
            '*' => toks.push(Tok::Star),
            c => toks.push(Tok::Ch(c)),
        }
    }
    let chars: Vec<char> = s.chars().collect();
    // Classic greedy wildcard match with backtracking to the last star.
    let (mut si, mut pi) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while si < chars.len() {
        if pi < toks.len() && toks[pi] == Tok::Ch(chars[si]) {
            si += 1;
            pi += 1;
        } else if pi < toks.len() && toks[pi] == Tok::Star {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < toks.len() && toks[pi] == Tok::Star {
        pi += 1;
    }
    pi == toks.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::InputOnly;
    use serde_json::json;

    fn rule(v: Value) -> Rule {
        Rule::parse(v.as_object().unwrap(), false).unwrap()
    }

    #[test]
    fn wildcard_matching() {
        assert!(string_matches("log-2024.txt", "log-*.txt"));
        assert!(string_matches("anything", "*"));
        assert!(!string_matches("log.csv", "log-*.txt"));
        assert!(string_matches("a*b", "a\\*b"));
        assert!(!string_matches("axb", "a\\*b"));
    }

    #[test]
    fn comparisons_and_types() {
        let input =
            json!({"n": 5, "s": "b", "t": "2026-01-01T00:00:00Z", "b": true, "z": null, "m": 5});
        let r = InputOnly(&input);
        assert!(rule(json!({"Variable": "$.n", "NumericGreaterThan": 4}))
            .eval(&r)
            .unwrap());
        assert!(rule(json!({"Variable": "$.n", "NumericEqualsPath": "$.m"}))
            .eval(&r)
            .unwrap());
        assert!(!rule(json!({"Variable": "$.s", "NumericEquals": 1}))
            .eval(&r)
            .unwrap());
        assert!(rule(json!({"Variable": "$.s", "StringLessThan": "c"}))
            .eval(&r)
            .unwrap());
        assert!(
            rule(json!({"Variable": "$.t", "TimestampLessThan": "2026-02-01T00:00:00Z"}))
                .eval(&r)
                .unwrap()
        );
        assert!(rule(json!({"Variable": "$.b", "BooleanEquals": true}))
            .eval(&r)
            .unwrap());
        assert!(rule(json!({"Variable": "$.z", "IsNull": true}))
            .eval(&r)
            .unwrap());
        assert!(rule(json!({"Variable": "$.q", "IsPresent": false}))
            .eval(&r)
            .unwrap());
        assert!(rule(json!({"Variable": "$.t", "IsTimestamp": true}))
            .eval(&r)
            .unwrap());
        assert!(
            rule(json!({"Not": {"Variable": "$.s", "StringEquals": "a"}}))
                .eval(&r)
                .unwrap()
        );
        assert!(rule(json!({"And": [{"Variable": "$.n", "NumericLessThanEquals": 5}, {"Variable": "$.s", "StringEquals": "b"}]}))
            .eval(&r)
            .unwrap());
        assert!(rule(json!({"Variable": "$.missing", "StringEquals": "x"}))
            .eval(&r)
            .is_err());
    }

    #[test]
    fn malformed_rules_are_refused() {
        for bad in [
            json!({"Variable": "$.a"}),
            json!({"Variable": "$.a", "StringEquals": 1}),
            json!({"Variable": "$.a", "Bogus": 1}),
            json!({"And": []}),
            json!({"Variable": "$.a", "StringEquals": "x", "NumericEquals": 1}),
        ] {
            assert!(
                Rule::parse(bad.as_object().unwrap(), false).is_err(),
                "{bad}"
            );
        }
    }
}
