//! Console sessions: random session ids in an `HttpOnly; SameSite=Strict`
//! cookie (plus `Secure` when served over TLS), a per-session CSRF token every
//! POST must echo, a double-submit token for the sign-in form, and a sign-in
//! rate limit (per account and overall) so passwords cannot be guessed fast.

use rand::RngCore as _;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie.
pub const SESSION_COOKIE: &str = "certops_session";
/// The sign-in form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "certops_signin";
/// How long a session lives without use.
pub const IDLE: Duration = Duration::from_secs(60 * 60);
/// How long a session lives at most.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 60 * 60);
/// Failed sign-ins per account within [`WINDOW`] before the account is refused.
pub const MAX_FAILURES_PER_ACCOUNT: usize = 5;
/// Sign-in attempts (any account) within [`WINDOW`] before every attempt is refused.
pub const MAX_ATTEMPTS_OVERALL: usize = 30;
/// The rate-limit window.
pub const WINDOW: Duration = Duration::from_secs(5 * 60);

/// A signed-in person.
#[derive(Debug, Clone)]
pub struct Session {
    /// The account name: the identity every decision is made as.
    pub user: String,
    /// The token every POST must carry.
    pub csrf: String,
    created: Instant,
    last_used: Instant,
}

/// 32 random bytes from the OS-seeded CSPRNG, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Constant-time equality of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a sign-in attempt is refused before its password is even checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// Too many failures for this account recently.
    Account,
    /// Too many attempts overall recently.
    Overall,
}

/// Live sessions and the sign-in rate limiter (in memory: a restart signs everyone out).
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
    attempts: Mutex<Vec<Instant>>,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl Sessions {
    /// Opens a session for `user`; returns its id (the cookie value).
    pub fn open(&self, user: &str) -> String {
        let id = random_token();
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|_, s| !expired(s, now));
        live.insert(
            id.clone(),
            Session {
                user: user.to_string(),
                csrf: random_token(),
                created: now,
                last_used: now,
            },
        );
        id
    }

    /// The session for a cookie value, if it is live (and marks it used).
    pub fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let s = live.get_mut(id)?;
        if expired(s, now) {
            live.remove(id);
            return None;
        }
        s.last_used = now;
        Some(s.clone())
    }

    /// Ends a session.
    pub fn close(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Counts an attempt for `account`; refuses it when a limit is reached.
    pub fn admit_attempt(&self, account: &str) -> Result<(), Throttled> {
        let now = Instant::now();
        {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            let list = failures.entry(account.to_lowercase()).or_default();
            list.retain(|t| now.duration_since(*t) < WINDOW);
            if list.len() >= MAX_FAILURES_PER_ACCOUNT {
                return Err(Throttled::Account);
            }
        }
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        attempts.retain(|t| now.duration_since(*t) < WINDOW);
        if attempts.len() >= MAX_ATTEMPTS_OVERALL {
            return Err(Throttled::Overall);
        }
        attempts.push(now);
        Ok(())
    }

    /// Records a failed sign-in for `account`.
    pub fn failed(&self, account: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(account.to_lowercase())
            .or_default()
            .push(Instant::now());
    }

    /// Clears an account's failures after it signed in.
    pub fn succeeded(&self, account: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&account.to_lowercase());
    }
}

fn expired(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_used) > IDLE || now.duration_since(s.created) > ABSOLUTE
}

/// The `Set-Cookie` value for a cookie scoped to the console.
pub fn cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// A cookie's value from the request's `Cookie` headers.
pub fn read_cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_compared_exactly() {
        let a = random_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, random_token());
        assert!(same_token(&a, &a.clone()));
        assert!(!same_token(&a, &a[..63]));
        assert!(!same_token("", ""));
    }

    #[test]
    fn sessions_open_read_and_close() {
        let s = Sessions::default();
        let id = s.open("alice");
        assert_eq!(s.get(&id).map(|x| x.user), Some("alice".into()));
        assert!(s.get("nope").is_none());
        s.close(&id);
        assert!(s.get(&id).is_none());
    }

    #[test]
    fn an_account_is_refused_after_repeated_failures() {
        let s = Sessions::default();
        for _ in 0..MAX_FAILURES_PER_ACCOUNT {
            assert_eq!(s.admit_attempt("Bob"), Ok(()));
            s.failed("bob");
        }
        assert_eq!(s.admit_attempt("bob"), Err(Throttled::Account));
        assert_eq!(s.admit_attempt("carol"), Ok(()));
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_over_tls() {
        let c = cookie(SESSION_COOKIE, "x", false, None);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && !c.contains("Secure"));
        assert!(cookie(SESSION_COOKIE, "x", true, None).ends_with("; Secure"));
    }
}
