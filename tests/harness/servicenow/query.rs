//! ServiceNow encoded queries (`sysparm_query`) as the emulator understands them:
//! conditions joined by `^` (AND) and `^OR` (OR with the previous condition), `^^` as an
//! escaped caret, operators `=`, `!=`, `LIKE`, `NOT LIKE`, `STARTSWITH`, `ENDSWITH`, `IN`,
//! `NOT IN`, `ISEMPTY`, `ISNOTEMPTY`, `<`, `<=`, `>`, `>=`, and `ORDERBY`/`ORDERBYDESC`.

use serde_json::{Map, Value};

/// One condition.
#[derive(Debug, Clone, PartialEq)]
struct Cond {
    field: String,
    op: String,
    value: String,
}

/// A parsed query: a disjunction-per-term conjunction plus the ordering.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// AND of groups; each group is an OR of conditions.
    groups: Vec<Vec<Cond>>,
    /// (field, descending).
    pub order: Vec<(String, bool)>,
}

const OPS: &[&str] = &[
    "ISNOTEMPTY",
    "ISEMPTY",
    "NOT LIKE",
    "NOT IN",
    "STARTSWITH",
    "ENDSWITH",
    "LIKE",
    "IN",
    "!=",
    ">=",
    "<=",
    "=",
    ">",
    "<",
];

fn split_terms(q: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut cur = String::new();
    let mut chars = q.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '^' {
            if chars.peek() == Some(&'^') {
                chars.next();
                cur.push('^');
                continue;
            }
            terms.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    terms.push(cur);
    terms
}

impl Query {
    /// Parses `sysparm_query`. Unknown operators make the whole query an error, as
    /// ServiceNow answers an invalid query with no records rather than all of them.
    pub fn parse(q: &str) -> Result<Query, String> {
        let mut query = Query::default();
        for term in split_terms(q) {
            if term.is_empty() || term == "NQ" {
                continue;
            }
            if let Some(f) = term.strip_prefix("ORDERBYDESC") {
                query.order.push((f.to_string(), true));
                continue;
            }
            if let Some(f) = term.strip_prefix("ORDERBY") {
                query.order.push((f.to_string(), false));
                continue;
            }
            let (or, body) = match term.strip_prefix("OR") {
                Some(rest) if !query.groups.is_empty() => (true, rest),
                _ => (false, term.as_str()),
            };
            // Field names are lower case (`short_description`, `u_environment`, `cmdb_ci.name`);
            // operators are upper case or symbols (`LIKE`, `STARTSWITH`, `=`, `!=`).
            let end = body
                .find(|c: char| {
                    !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
                })
                .unwrap_or(body.len());
            let (field, rest) = body.split_at(end);
            let op = OPS
                .iter()
                .find(|op| rest.starts_with(**op))
                .ok_or_else(|| format!("invalid query term '{term}'"))?;
            let cond = Cond {
                field: field.to_string(),
                op: op.to_string(),
                value: rest[op.len()..].to_string(),
            };
            match (or, query.groups.last_mut()) {
                (true, Some(g)) => g.push(cond),
                _ => query.groups.push(vec![cond]),
            }
        }
        Ok(query)
    }

    /// Whether a record (string-valued fields) matches.
    pub fn matches(&self, record: &Map<String, Value>) -> bool {
        self.groups
            .iter()
            .all(|g| g.iter().any(|c| cond_matches(c, record)))
    }
}

fn cond_matches(c: &Cond, record: &Map<String, Value>) -> bool {
    let v = record.get(&c.field).and_then(Value::as_str).unwrap_or("");
    let num = |s: &str| s.parse::<f64>().ok();
    let cmp = |f: fn(f64, f64) -> bool, fs: fn(&str, &str) -> bool| match (num(v), num(&c.value)) {
        (Some(a), Some(b)) => f(a, b),
        _ => fs(v, &c.value),
    };
    match c.op.as_str() {
        "=" => v == c.value,
        "!=" => v != c.value,
        "LIKE" => v.to_lowercase().contains(&c.value.to_lowercase()),
        "NOT LIKE" => !v.to_lowercase().contains(&c.value.to_lowercase()),
        "STARTSWITH" => v.starts_with(&c.value),
        "ENDSWITH" => v.ends_with(&c.value),
        "IN" => c.value.split(',').any(|x| x == v),
        "NOT IN" => !c.value.split(',').any(|x| x == v),
        "ISEMPTY" => v.is_empty(),
        "ISNOTEMPTY" => !v.is_empty(),
        ">" => cmp(|a, b| a > b, |a, b| a > b),
        ">=" => cmp(|a, b| a >= b, |a, b| a >= b),
        "<" => cmp(|a, b| a < b, |a, b| a < b),
        "<=" => cmp(|a, b| a <= b, |a, b| a <= b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn conditions_and_or_and_order_parse_as_servicenow_writes_them() {
        let q = Query::parse("active=true^priority<=2^ORstate=6^ORDERBYDESCnumber").unwrap();
        assert_eq!(q.order, vec![("number".to_string(), true)]);
        assert!(q.matches(&rec(
            json!({"active": "true", "priority": "1", "state": "2"})
        )));
        assert!(q.matches(&rec(
            json!({"active": "true", "priority": "4", "state": "6"})
        )));
        assert!(!q.matches(&rec(json!({"active": "false", "priority": "1"}))));
        let q = Query::parse("correlation_id=scan:a^^b^short_descriptionLIKEcert").unwrap();
        assert!(q.matches(&rec(
            json!({"correlation_id": "scan:a^b", "short_description": "Renew Cert"})
        )));
        assert!(Query::parse("numberBOGUSx").is_err());
    }
}
