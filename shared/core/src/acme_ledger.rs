//! The ACME rate-limit ledger, kept in the [`Store`] (table [`TABLE`]).
//!
//! ACME CAs limit how much one subscriber may ask for; Let's Encrypt publishes three limits
//! certops plans against: new certificates per registered domain per rolling week, duplicate
//! certificates (the same set of names) per week, and new orders per account per three hours.
//! When a CA refuses anyway (HTTP 429, `urn:ietf:params:acme:error:rateLimited`), its
//! `Retry-After` is recorded so no new order is attempted before it.
//!
//! The renew step writes the ledger (an order before every ACME attempt, an issuance after
//! each certificate, the CA's `Retry-After` on a refusal); the validate step reads
//! [`usage`] into [`crate::validation::Facts::acme`] and validation's `RateLimit` check decides.
//! Entries older than the longest window are dropped on every write, so a record stays small.
//!
//! A `Retry-After` travels from an issuer to the renew step inside the message of
//! [`Error::RateLimited`], written by [`retry_after_note`] and read back by
//! [`parse_retry_after`], so the port keeps its shape.

use crate::ports::{StoreExt, Table};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::sha256_hex;
use crate::ports::Store;
use crate::Error;

/// How many times a conditional write is retried under contention before giving up.
const CAS_ATTEMPTS: usize = 16;

/// The marker that introduces a `Retry-After` instant inside a rate-limit message.
const RETRY_AFTER_MARKER: &str = "retry after ";

/// Issuances per registered domain (key `domain:<registered domain>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainLedger {
    /// Certificates issued in the last week, oldest first.
    #[serde(default)]
    pub issued: Vec<Issued>,
}

/// One issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Issued {
    /// When it was issued.
    pub at: DateTime<Utc>,
    /// [`names_key`] of its name set (duplicates share it).
    pub names: String,
}

/// Orders and refusals per ACME account (key `account:<issuer name>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountLedger {
    /// New orders created in the last three hours, oldest first.
    #[serde(default)]
    pub orders: Vec<DateTime<Utc>>,
    /// No new order before this instant (the CA's last `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<DateTime<Utc>>,
}

/// What the ledger says about one certificate object now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcmeUsage {
    /// Certificates issued for the registered domain in the last 7 days.
    pub certificates_this_week: u32,
    /// Certificates with exactly this name set issued in the last 7 days.
    pub duplicates_this_week: u32,
    /// New orders by the account in the last 3 hours.
    pub orders_last_3_hours: u32,
    /// The CA asked for no new order before this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<DateTime<Utc>>,
}

/// A stable key of a name set: SHA-256 over the sorted, lower-cased, de-duplicated names.
pub fn names_key(names: &[String]) -> String {
    let mut set: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    set.sort();
    set.dedup();
    sha256_hex(set.join("\n").as_bytes())
}

fn domain_key(domain: &str) -> String {
    format!("domain:{}", domain.to_ascii_lowercase())
}

fn account_key(issuer: &str) -> String {
    format!("account:{issuer}")
}

fn week() -> TimeDelta {
    TimeDelta::days(7)
}

fn three_hours() -> TimeDelta {
    TimeDelta::hours(3)
}

/// Reads, changes and conditionally writes one ledger record, retrying on contention.
async fn update<T, F>(store: &dyn Store, key: &str, mut change: F) -> Result<(), Error>
where
    T: Default + Serialize + for<'de> Deserialize<'de>,
    F: FnMut(&mut T),
{
    for _ in 0..CAS_ATTEMPTS {
        let current = store.get(Table::AcmeLedger, key).await?;
        let mut record: T = match &current {
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                Error::Corrupt(format!("ACME ledger record {key} is unreadable: {e}"))
            })?,
            None => T::default(),
        };
        change(&mut record);
        let new: Value = serde_json::to_value(&record)
            .map_err(|e| Error::InvalidInput(format!("ACME ledger record {key}: {e}")))?;
        if store
            .compare_and_swap(Table::AcmeLedger, key, current.as_ref(), &new)
            .await?
        {
            return Ok(());
        }
    }
    Err(Error::Conflict(format!(
        "ACME ledger record {key} kept changing; try again"
    )))
}

async fn read<T>(store: &dyn Store, key: &str) -> Result<T, Error>
where
    T: Default + for<'de> Deserialize<'de>,
{
    Ok(store
        .get_as::<T>(Table::AcmeLedger, key)
        .await?
        .unwrap_or_default())
}

/// Records a new order by the account of `issuer` at `now`.
pub async fn record_order(
    store: &dyn Store,
    issuer: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    update(store, &account_key(issuer), |l: &mut AccountLedger| {
        l.orders.retain(|t| now - *t < three_hours());
        l.orders.push(now);
    })
    .await
}

/// Records a certificate issued for `domain` with `names` at `now`.
pub async fn record_issuance(
    store: &dyn Store,
    domain: &str,
    names: &[String],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let key = names_key(names);
    update(store, &domain_key(domain), |l: &mut DomainLedger| {
        l.issued.retain(|i| now - i.at < week());
        l.issued.push(Issued {
            at: now,
            names: key.clone(),
        });
    })
    .await
}

/// Records that the CA of `issuer` asked for no new order before `until` (a later instant
/// already recorded is kept).
pub async fn record_retry_after(
    store: &dyn Store,
    issuer: &str,
    until: DateTime<Utc>,
) -> Result<(), Error> {
    update(store, &account_key(issuer), |l: &mut AccountLedger| {
        l.retry_after = Some(l.retry_after.map_or(until, |t| t.max(until)));
    })
    .await
}

/// The ledger's counts for a certificate object with `names`, of `domain`, ordered through
/// the account of `issuer`, at `now`.
pub async fn usage(
    store: &dyn Store,
    domain: &str,
    issuer: &str,
    names: &[String],
    now: DateTime<Utc>,
) -> Result<AcmeUsage, Error> {
    let domain_ledger: DomainLedger = read(store, &domain_key(domain)).await?;
    let account: AccountLedger = read(store, &account_key(issuer)).await?;
    let key = names_key(names);
    let this_week = domain_ledger.issued.iter().filter(|i| now - i.at < week());
    let count =
        |it: &mut dyn Iterator<Item = &Issued>| u32::try_from(it.count()).unwrap_or(u32::MAX);
    Ok(AcmeUsage {
        certificates_this_week: count(&mut this_week.clone()),
        duplicates_this_week: count(&mut this_week.filter(|i| i.names == key)),
        orders_last_3_hours: u32::try_from(
            account
                .orders
                .iter()
                .filter(|t| now - **t < three_hours())
                .count(),
        )
        .unwrap_or(u32::MAX),
        retry_after: account.retry_after.filter(|t| *t > now),
    })
}

/// The words an issuer appends to a [`Error::RateLimited`] message to carry the CA's
/// `Retry-After` (`retry after 2026-12-07T09:00:00Z`).
pub fn retry_after_note(at: DateTime<Utc>) -> String {
    format!(
        "{RETRY_AFTER_MARKER}{}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// The `Retry-After` instant written by [`retry_after_note`] into `message`, if any.
pub fn parse_retry_after(message: &str) -> Option<DateTime<Utc>> {
    let at = message.rfind(RETRY_AFTER_MARKER)? + RETRY_AFTER_MARKER.len();
    let rest = &message[at..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == ')' || c == ';' || c == ',')
        .unwrap_or(rest.len());
    DateTime::parse_from_rfc3339(&rest[..end])
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn names_key_ignores_order_case_and_repeats() {
        let a = names_key(&["b.example.com".into(), "A.example.com".into()]);
        let b = names_key(&[
            "a.example.com".into(),
            "b.example.com".into(),
            "b.example.com".into(),
        ]);
        assert_eq!(a, b);
        assert_ne!(a, names_key(&["a.example.com".into()]));
    }

    #[test]
    fn retry_after_round_trips_through_a_message() {
        let at = Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap();
        let msg = format!(
            "urn:ietf:params:acme:error:rateLimited: too many ({})",
            retry_after_note(at)
        );
        assert_eq!(parse_retry_after(&msg), Some(at));
        assert_eq!(parse_retry_after("no marker here"), None);
        assert_eq!(parse_retry_after("retry after soon"), None);
    }
}
