//! JSONPath as Step Functions uses it: reference paths for `ResultPath`, full
//! paths (wildcards, slices, unions, filters, deep scan) for selection, the
//! context object root `$$` and variable roots `$name`.
//!
//! A path is parsed once, when the definition is loaded, and evaluated many
//! times; evaluation never panics.

use serde_json::{Map, Value};
use std::fmt;

/// What a path starts from.
#[derive(Debug, Clone, PartialEq)]
pub enum Root {
    /// `$` — the state's input (or whatever the field applies to).
    Input,
    /// `$$` — the context object.
    Context,
    /// `$name` — a workflow variable set by `Assign`.
    Variable(String),
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Field(String),
    Index(i64),
    Wildcard,
    Slice(Option<i64>, Option<i64>, Option<i64>),
    Union(Vec<UnionItem>),
    Descendant(Option<String>),
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
enum UnionItem {
    Field(String),
    Index(i64),
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Exists(Vec<String>),
    Compare(Vec<String>, CmpOp, Value),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed JSONPath.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    root: Root,
    segments: Vec<Segment>,
    text: String,
}

/// Why a path could not be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid path '{path}': {reason}")]
pub struct PathSyntaxError {
    /// The path text as written.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a path could not be applied to data.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PathError {
    /// A definite path found nothing.
    #[error("the JSONPath '{path}' could not be found in the input '{input}'")]
    NotFound {
        /// The path text.
        path: String,
        /// The data it was applied to (compact JSON, truncated).
        input: String,
    },
    /// A variable was referenced that was never assigned.
    #[error("the variable '{name}' is not defined")]
    UndefinedVariable {
        /// Variable name without `$`.
        name: String,
    },
    /// `ResultPath` could not be applied (an intermediate node is not an object).
    #[error("unable to apply ResultPath '{path}' to input '{input}'")]
    CannotSet {
        /// The path text.
        path: String,
        /// The data it was applied to (compact JSON, truncated).
        input: String,
    },
}

/// Compact JSON of `v`, cut to a length fit for an error message.
pub fn excerpt(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 256 {
        let mut cut = 256;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Supplies the roots a path may start from.
pub trait Roots {
    /// The `$` document.
    fn input(&self) -> &Value;
    /// The `$$` context object.
    fn context(&self) -> Value;
    /// A variable by name, if assigned.
    fn variable(&self, name: &str) -> Option<&Value>;
}

/// Plain data with no context and no variables: `$` only.
pub struct InputOnly<'a>(pub &'a Value);

impl Roots for InputOnly<'_> {
    fn input(&self) -> &Value {
        self.0
    }
    fn context(&self) -> Value {
        Value::Null
    }
    fn variable(&self, _name: &str) -> Option<&Value> {
        None
    }
}

impl Path {
    /// Parses a path (`$`, `$.a.b[0]`, `$$.Execution.Id`, `$var.x`, `$.items[?(@.n > 1)]`, …).
    pub fn parse(text: &str) -> Result<Path, PathSyntaxError> {
        Parser::new(text).parse()
    }

    /// The text the path was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The root this path starts from.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// True for a path that names at most one node (fields and indexes only).
    pub fn is_definite(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Field(_) | Segment::Index(_)))
    }

    /// True for a reference path (`ResultPath`): rooted at `$`, definite, no negative index.
    pub fn is_reference(&self) -> bool {
        self.root == Root::Input
            && self.segments.iter().all(|s| match s {
                Segment::Field(_) => true,
                Segment::Index(i) => *i >= 0,
                _ => false,
            })
    }

    /// Applies the path. A definite path yields the node or [`PathError::NotFound`];
    /// an indefinite one yields an array of every match (possibly empty).
    pub fn select(&self, roots: &dyn Roots) -> Result<Value, PathError> {
        let ctx_holder;
        let start: &Value = match &self.root {
            Root::Input => roots.input(),
            Root::Context => {
                ctx_holder = roots.context();
                &ctx_holder
            }
            Root::Variable(name) => roots
                .variable(name)
                .ok_or_else(|| PathError::UndefinedVariable { name: name.clone() })?,
        };
        if self.is_definite() {
            let mut cur = start;
            for seg in &self.segments {
                let next = match seg {
                    Segment::Field(f) => cur.as_object().and_then(|o| field(o, f)),
                    Segment::Index(i) => cur.as_array().and_then(|a| index(a, *i)),
                    _ => None,
                };
                match next {
                    Some(n) => cur = n,
                    None => {
                        return Err(PathError::NotFound {
                            path: self.text.clone(),
                            input: excerpt(start),
                        })
                    }
                }
            }
            return Ok(cur.clone());
        }
        let mut cur: Vec<&Value> = vec![start];
        for seg in &self.segments {
            let mut next = Vec::new();
            for v in cur {
                apply_segment(seg, v, &mut next);
            }
            cur = next;
        }
        Ok(Value::Array(cur.into_iter().cloned().collect()))
    }

    /// Writes `value` at this reference path inside `target`, creating objects
    /// on the way, as `ResultPath` does.
    pub fn set(&self, target: Value, value: Value) -> Result<Value, PathError> {
        if self.segments.is_empty() {
            return Ok(value);
        }
        let mut target = target;
        let fail = |t: &Value| PathError::CannotSet {
            path: self.text.clone(),
            input: excerpt(t),
        };
        if !target.is_object() && !target.is_array() {
            if matches!(self.segments[0], Segment::Field(_)) && target.is_null() {
                target = Value::Object(Map::new());
            } else {
                return Err(fail(&target));
            }
        }
        // Check first, without touching `target`, so the error can quote the
        // input as given; the excerpt is only made when it is needed.
        if !self.settable(&target) {
            return Err(fail(&target));
        }
        let mut cur = &mut target;
        let last = self.segments.len() - 1;
        for (i, seg) in self.segments.iter().enumerate() {
            // `settable` has vouched for every step; the `None`s below are unreachable.
            let next = match (seg, cur) {
                (Segment::Field(f), Value::Object(obj)) => {
                    // An existing field is replaced where it stands (as
                    // `insert` would), without a new key or a hash.
                    if i == last {
                        match field_mut(obj, f) {
                            Some(slot) => *slot = value,
                            None => {
                                obj.insert(f.clone(), value);
                            }
                        }
                        return Ok(target);
                    }
                    if field_mut(obj, f).is_none() {
                        obj.insert(f.clone(), Value::Object(Map::new()));
                    }
                    field_mut(obj, f)
                }
                (Segment::Index(idx), Value::Array(arr)) => {
                    match usize::try_from(*idx).ok().and_then(|u| arr.get_mut(u)) {
                        Some(slot) if i == last => {
                            *slot = value;
                            return Ok(target);
                        }
                        other => other,
                    }
                }
                _ => None,
            };
            match next {
                Some(n) => cur = n,
                None => break,
            }
        }
        Err(fail(&target))
    }

    /// Whether [`Path::set`] can write into `target`: every step is a field of
    /// an object (or of an object still to be created for a missing field) or
    /// an existing index of an array.
    fn settable(&self, target: &Value) -> bool {
        // `None`: the node does not exist yet and would be created as `{}`.
        let mut cur = Some(target);
        let last = self.segments.len().saturating_sub(1);
        for (i, seg) in self.segments.iter().enumerate() {
            cur = match (seg, cur) {
                (Segment::Field(_), None) => None,
                (Segment::Field(f), Some(Value::Object(o))) => {
                    if i == last {
                        return true;
                    }
                    field(o, f)
                }
                (Segment::Index(idx), Some(Value::Array(a))) => {
                    match usize::try_from(*idx).ok().and_then(|u| a.get(u)) {
                        Some(_) if i == last => return true,
                        Some(v) => Some(v),
                        None => return false,
                    }
                }
                _ => return false,
            };
        }
        true
    }
}

/// Maps up to this size are searched key by key: comparing a few short keys
/// costs less than hashing the one looked for (serde_json's maps use SipHash).
const SCAN_LIMIT: usize = 8;

/// `o.get(k)`, without hashing `k` when `o` is small.
pub(crate) fn field<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    if o.len() <= SCAN_LIMIT {
        o.iter().find(|(key, _)| key.as_str() == k).map(|(_, v)| v)
    } else {
        o.get(k)
    }
}

/// `o.get_mut(k)`, without hashing `k` when `o` is small.
fn field_mut<'a>(o: &'a mut Map<String, Value>, k: &str) -> Option<&'a mut Value> {
    if o.len() <= SCAN_LIMIT {
        o.iter_mut()
            .find(|(key, _)| key.as_str() == k)
            .map(|(_, v)| v)
    } else {
        o.get_mut(k)
    }
}

fn index(a: &[Value], i: i64) -> Option<&Value> {
    let idx = if i < 0 { a.len() as i64 + i } else { i };
    usize::try_from(idx).ok().and_then(|u| a.get(u))
}

fn apply_segment<'a>(seg: &Segment, v: &'a Value, out: &mut Vec<&'a Value>) {
    match seg {
        Segment::Field(f) => {
            if let Some(x) = v.as_object().and_then(|o| field(o, f)) {
                out.push(x);
            }
        }
        Segment::Index(i) => {
            if let Some(x) = v.as_array().and_then(|a| index(a, *i)) {
                out.push(x);
            }
        }
        Segment::Wildcard => match v {
            Value::Object(o) => out.extend(o.values()),
            Value::Array(a) => out.extend(a.iter()),
            _ => {}
        },
        Segment::Slice(start, end, step) => {
            if let Some(a) = v.as_array() {
                let len = a.len() as i64;
                let step = step.unwrap_or(1);
                if step <= 0 {
                    return;
                }
                let norm = |x: i64| if x < 0 { (len + x).max(0) } else { x.min(len) };
                let s = start.map(norm).unwrap_or(0);
                let e = end.map(norm).unwrap_or(len);
                let mut i = s;
                while i < e {
                    out.push(&a[i as usize]);
                    i += step;
                }
            }
        }
        Segment::Union(items) => {
            for it in items {
                match it {
                    UnionItem::Field(f) => {
                        if let Some(x) = v.as_object().and_then(|o| field(o, f)) {
                            out.push(x);
                        }
                    }
                    UnionItem::Index(i) => {
                        if let Some(x) = v.as_array().and_then(|a| index(a, *i)) {
                            out.push(x);
                        }
                    }
                }
            }
        }
        Segment::Descendant(name) => descend(v, name.as_deref(), out),
        Segment::Filter(f) => {
            let candidates: Vec<&Value> = match v {
                Value::Array(a) => a.iter().collect(),
                Value::Object(o) => o.values().collect(),
                _ => Vec::new(),
            };
            for c in candidates {
                if eval_filter(f, c) {
                    out.push(c);
                }
            }
        }
    }
}

fn descend<'a>(v: &'a Value, name: Option<&str>, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                match name {
                    Some(n) if n == k => out.push(child),
                    None => out.push(child),
                    _ => {}
                }
                descend(child, name, out);
            }
        }
        Value::Array(a) => {
            for child in a {
                if name.is_none() {
                    out.push(child);
                }
                descend(child, name, out);
            }
        }
        _ => {}
    }
}

fn lookup<'a>(v: &'a Value, fields: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for f in fields {
        cur = cur.as_object()?.get(f)?;
    }
    Some(cur)
}

fn eval_filter(f: &Filter, item: &Value) -> bool {
    match f {
        Filter::Exists(fields) => lookup(item, fields).is_some(),
        Filter::And(a, b) => eval_filter(a, item) && eval_filter(b, item),
        Filter::Or(a, b) => eval_filter(a, item) || eval_filter(b, item),
        Filter::Not(a) => !eval_filter(a, item),
        Filter::Compare(fields, op, rhs) => {
            let Some(lhs) = lookup(item, fields) else {
                return false;
            };
            let ord = match (lhs, rhs) {
                (Value::Number(a), Value::Number(b)) => {
                    let (a, b) = (
                        a.as_f64().unwrap_or(f64::NAN),
                        b.as_f64().unwrap_or(f64::NAN),
                    );
                    a.partial_cmp(&b)
                }
                (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                (a, b) => {
                    return match op {
                        CmpOp::Eq => a == b,
                        CmpOp::Ne => a != b,
                        _ => false,
                    }
                }
            };
            let Some(ord) = ord else { return false };
            match op {
                CmpOp::Eq => ord.is_eq(),
                CmpOp::Ne => !ord.is_eq(),
                CmpOp::Lt => ord.is_lt(),
                CmpOp::Le => ord.is_le(),
                CmpOp::Gt => ord.is_gt(),
                CmpOp::Ge => ord.is_ge(),
            }
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    chars: Vec<char>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser {
            text,
            chars: text.chars().collect(),
            pos: 0,
        }
    }

    fn err(&self, reason: impl Into<String>) -> PathSyntaxError {
        PathSyntaxError {
            path: self.text.to_string(),
            reason: reason.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(c) if c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn parse(mut self) -> Result<Path, PathSyntaxError> {
        if !self.eat('$') {
            return Err(self.err("a path must start with '$'"));
        }
        let root = if self.eat('$') {
            Root::Context
        } else if matches!(self.peek(), Some(c) if is_ident_start(c)) {
            Root::Variable(self.ident())
        } else {
            Root::Input
        };
        let mut segments = Vec::new();
        while let Some(c) = self.peek() {
            match c {
                '.' => {
                    self.pos += 1;
                    if self.eat('.') {
                        if self.eat('*') || self.peek() == Some('[') {
                            segments.push(Segment::Descendant(None));
                        } else {
                            let name = self.member_name()?;
                            segments.push(Segment::Descendant(Some(name)));
                        }
                    } else if self.eat('*') {
                        segments.push(Segment::Wildcard);
                    } else {
                        let name = self.member_name()?;
                        segments.push(Segment::Field(name));
                    }
                }
                '[' => {
                    self.pos += 1;
                    segments.push(self.bracket()?);
                }
                _ => return Err(self.err(format!("unexpected character '{c}' at {}", self.pos))),
            }
        }
        Ok(Path {
            root,
            segments,
            text: self.text.to_string(),
        })
    }

    fn ident(&mut self) -> String {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if is_ident_char(c)) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn member_name(&mut self) -> Result<String, PathSyntaxError> {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c != '.' && c != '[' && !c.is_whitespace()) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.err(format!("empty member name at {start}")));
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    fn quoted(&mut self) -> Result<String, PathSyntaxError> {
        let q = self.peek().ok_or_else(|| self.err("unterminated string"))?;
        self.pos += 1;
        let mut s = String::new();
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c) => {
                            s.push(c);
                            self.pos += 1;
                        }
                        None => return Err(self.err("unterminated escape")),
                    }
                }
                Some(c) if c == q => {
                    self.pos += 1;
                    return Ok(s);
                }
                Some(c) => {
                    s.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn int(&mut self) -> Option<i64> {
        let start = self.pos;
        if self.peek() == Some('-') {
            self.pos += 1;
        }
        while matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
            self.pos += 1;
        }
        let s: String = self.chars[start..self.pos].iter().collect();
        match s.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                self.pos = start;
                None
            }
        }
    }

    fn bracket(&mut self) -> Result<Segment, PathSyntaxError> {
        self.skip_ws();
        let seg = match self.peek() {
            Some('*') => {
                self.pos += 1;
                Segment::Wildcard
            }
            Some('?') => {
                self.pos += 1;
                self.skip_ws();
                if !self.eat('(') {
                    return Err(self.err("expected '(' after '?'"));
                }
                let f = self.filter_or()?;
                self.skip_ws();
                if !self.eat(')') {
                    return Err(self.err("expected ')' to close the filter"));
                }
                Segment::Filter(f)
            }
            Some('\'') | Some('"') => {
                let mut items = vec![UnionItem::Field(self.quoted()?)];
                self.skip_ws();
                while self.eat(',') {
                    self.skip_ws();
                    items.push(UnionItem::Field(self.quoted()?));
                    self.skip_ws();
                }
                if items.len() == 1 {
                    let Some(UnionItem::Field(f)) = items.pop() else {
                        return Err(self.err("bad member"));
                    };
                    Segment::Field(f)
                } else {
                    Segment::Union(items)
                }
            }
            Some(c) if c == '-' || c == ':' || c.is_ascii_digit() => {
                let first = self.int();
                self.skip_ws();
                if self.eat(':') {
                    let end = self.int();
                    let step = if self.eat(':') { self.int() } else { None };
                    Segment::Slice(first, end, step)
                } else {
                    let first = first.ok_or_else(|| self.err("expected an index"))?;
                    let mut items = vec![UnionItem::Index(first)];
                    while self.eat(',') {
                        self.skip_ws();
                        items.push(UnionItem::Index(
                            self.int().ok_or_else(|| self.err("expected an index"))?,
                        ));
                        self.skip_ws();
                    }
                    if items.len() == 1 {
                        Segment::Index(first)
                    } else {
                        Segment::Union(items)
                    }
                }
            }
            _ => return Err(self.err(format!("unexpected content in brackets at {}", self.pos))),
        };
        self.skip_ws();
        if !self.eat(']') {
            return Err(self.err(format!("expected ']' at {}", self.pos)));
        }
        Ok(seg)
    }

    fn filter_or(&mut self) -> Result<Filter, PathSyntaxError> {
        let mut left = self.filter_and()?;
        loop {
            self.skip_ws();
            if self.peek() == Some('|') && self.chars.get(self.pos + 1) == Some(&'|') {
                self.pos += 2;
                let right = self.filter_and()?;
                left = Filter::Or(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn filter_and(&mut self) -> Result<Filter, PathSyntaxError> {
        let mut left = self.filter_atom()?;
        loop {
            self.skip_ws();
            if self.peek() == Some('&') && self.chars.get(self.pos + 1) == Some(&'&') {
                self.pos += 2;
                let right = self.filter_atom()?;
                left = Filter::And(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn filter_atom(&mut self) -> Result<Filter, PathSyntaxError> {
        self.skip_ws();
        if self.eat('!') {
            return Ok(Filter::Not(Box::new(self.filter_atom()?)));
        }
        if self.eat('(') {
            let f = self.filter_or()?;
            self.skip_ws();
            if !self.eat(')') {
                return Err(self.err("expected ')'"));
            }
            return Ok(f);
        }
        if !self.eat('@') {
            return Err(self.err("a filter term must start with '@'"));
        }
        let mut fields = Vec::new();
        loop {
            if self.eat('.') {
                fields.push(self.ident());
            } else if self.peek() == Some('[')
                && matches!(self.chars.get(self.pos + 1), Some('\'') | Some('"'))
            {
                self.pos += 1;
                fields.push(self.quoted()?);
                if !self.eat(']') {
                    return Err(self.err("expected ']'"));
                }
            } else {
                break;
            }
        }
        self.skip_ws();
        let op = match (self.peek(), self.chars.get(self.pos + 1).copied()) {
            (Some('='), Some('=')) => Some((CmpOp::Eq, 2)),
            (Some('!'), Some('=')) => Some((CmpOp::Ne, 2)),
            (Some('<'), Some('=')) => Some((CmpOp::Le, 2)),
            (Some('>'), Some('=')) => Some((CmpOp::Ge, 2)),
            (Some('<'), _) => Some((CmpOp::Lt, 1)),
            (Some('>'), _) => Some((CmpOp::Gt, 1)),
            _ => None,
        };
        let Some((op, len)) = op else {
            return Ok(Filter::Exists(fields));
        };
        self.pos += len;
        self.skip_ws();
        let rhs = match self.peek() {
            Some('\'') | Some('"') => Value::String(self.quoted()?),
            _ => {
                let start = self.pos;
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '+')
                {
                    self.pos += 1;
                }
                let lit: String = self.chars[start..self.pos].iter().collect();
                serde_json::from_str(&lit)
                    .map_err(|_| self.err(format!("bad literal '{lit}' in filter")))?
            }
        };
        Ok(Filter::Compare(fields, op, rhs))
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(p: &str, v: &Value) -> Result<Value, PathError> {
        Path::parse(p).expect("parses").select(&InputOnly(v))
    }

    #[test]
    fn definite_paths_select_one_node() {
        let v = json!({"a": {"b": [10, 20, 30]}, "odd key": 1});
        assert_eq!(sel("$", &v).unwrap(), v);
        assert_eq!(sel("$.a.b[1]", &v).unwrap(), json!(20));
        assert_eq!(sel("$.a.b[-1]", &v).unwrap(), json!(30));
        assert_eq!(sel("$['odd key']", &v).unwrap(), json!(1));
        assert!(matches!(sel("$.a.c", &v), Err(PathError::NotFound { .. })));
    }

    #[test]
    fn indefinite_paths_return_arrays() {
        let v = json!({"items": [{"n": 1, "k": "a"}, {"n": 5, "k": "b"}, {"n": 9}]});
        assert_eq!(sel("$.items[*].n", &v).unwrap(), json!([1, 5, 9]));
        assert_eq!(sel("$.items[0:2].n", &v).unwrap(), json!([1, 5]));
        assert_eq!(sel("$.items[0,2].n", &v).unwrap(), json!([1, 9]));
        assert_eq!(sel("$..n", &v).unwrap(), json!([1, 5, 9]));
        assert_eq!(sel("$.items[?(@.n > 2)].n", &v).unwrap(), json!([5, 9]));
        assert_eq!(sel("$.items[?(@.k == 'b')].n", &v).unwrap(), json!([5]));
        assert_eq!(sel("$.items[?(@.k)].n", &v).unwrap(), json!([1, 5]));
        assert_eq!(sel("$.items[?(@.n > 2 && @.k)].n", &v).unwrap(), json!([5]));
        assert_eq!(sel("$.missing[*]", &v).unwrap(), json!([]));
    }

    #[test]
    fn roots_are_recognised() {
        assert_eq!(
            Path::parse("$$.Execution.Id").unwrap().root(),
            &Root::Context
        );
        assert_eq!(
            Path::parse("$myVar.x").unwrap().root(),
            &Root::Variable("myVar".into())
        );
        assert!(Path::parse("$.a").unwrap().is_reference());
        assert!(!Path::parse("$.a[*]").unwrap().is_reference());
    }

    #[test]
    fn bad_paths_are_refused_not_panicked() {
        for bad in ["a.b", "$.", "$[", "$.a[?(x)]", "$.a[1", "$['x", "$.a b"] {
            assert!(Path::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn set_creates_intermediate_objects_and_replaces() {
        let p = Path::parse("$.a.b").unwrap();
        assert_eq!(
            p.set(json!({"x": 1}), json!(2)).unwrap(),
            json!({"x": 1, "a": {"b": 2}})
        );
        assert_eq!(
            Path::parse("$")
                .unwrap()
                .set(json!({"x": 1}), json!(3))
                .unwrap(),
            json!(3)
        );
        assert!(p.set(json!({"a": 5}), json!(1)).is_err());
        assert!(p.set(json!("str"), json!(1)).is_err());
        assert_eq!(
            Path::parse("$.l[1]")
                .unwrap()
                .set(json!({"l": [0, 0]}), json!(7))
                .unwrap(),
            json!({"l": [0, 7]})
        );
    }

    #[test]
    fn set_failures_quote_the_input_as_given() {
        let cases = [
            ("$.a.b", json!({"a": 5})),
            ("$.a.b.c", json!({"a": {"b": "s"}})),
            ("$.a[0]", json!({"x": 1})),
            ("$.l[2]", json!({"l": [0, 0]})),
            ("$.l[0].k", json!({"l": [3]})),
            ("$[0]", json!({"a": 1})),
            ("$.a", json!([1])),
            ("$.a", json!(7)),
        ];
        for (path, target) in cases {
            let err = Path::parse(path)
                .unwrap()
                .set(target.clone(), json!(1))
                .unwrap_err();
            assert_eq!(
                err,
                PathError::CannotSet {
                    path: path.into(),
                    input: excerpt(&target),
                },
                "{path} on {target}"
            );
        }
        // A missing intermediate field is created, also under a fresh object.
        assert_eq!(
            Path::parse("$.a.b.c")
                .unwrap()
                .set(json!({"l": [{}]}), json!(1))
                .unwrap(),
            json!({"l": [{}], "a": {"b": {"c": 1}}})
        );
        assert_eq!(
            Path::parse("$.l[0].k")
                .unwrap()
                .set(json!({"l": [{"j": 0}]}), json!(1))
                .unwrap(),
            json!({"l": [{"j": 0, "k": 1}]})
        );
        assert_eq!(
            Path::parse("$.a")
                .unwrap()
                .set(Value::Null, json!(1))
                .unwrap(),
            json!({"a": 1})
        );
    }
}
