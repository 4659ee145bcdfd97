//! The intrinsic expression syntax: the call tree ([`Call`], [`Arg`]) and the parser that builds
//! it, checking function names, argument counts and nesting depth before anything is evaluated.

use super::{fail, Func, IntrinsicError, MAX_NESTING};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Arg {
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
pub(super) struct Call {
    pub(super) func: Func,
    pub(super) args: Vec<Arg>,
}

pub(super) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

pub(super) fn parse(expr: &str) -> Result<Call, IntrinsicError> {
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
