//! The tamper-evident audit trail: append-only records, hash-chained per execution.
//!
//! `hash = SHA-256(prev_hash ‖ canonical(record without hash))`, hex encoded; the first
//! record's `prev_hash` is 64 zeros. Editing, removing, inserting or reordering a record breaks
//! the chain at that record, and [`verify_chain`] reports where.
//!
//! Removing the tail, or editing a record and re-hashing the rest, leaves a chain that still
//! links. So every store also keeps, apart from the records, each chain's **anchored head**
//! ([`ChainHead`]): its length and last hash, with an HMAC-SHA-256 under a key held with the
//! keystore ([`AuditKey`]), moved in the same transaction as each append. [`verify_anchored`]
//! checks records and head together and names the first bad record, the missing tail, the
//! missing chain or a head not made with the key.
//!
//! Private keys and secret tokens never enter a record: [`AuditChain::append`] refuses any
//! entry in which [`check_no_secrets`] finds something that looks like one. Use [`redact`]
//! first when recording a response that may carry one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{sha256_hex, to_canonical_string};
use crate::Error;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The `prev_hash` of the first record of every execution.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Replaces redacted values.
pub const REDACTED: &str = "[REDACTED]";

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditKind {
    /// The trigger payload and ticket ids.
    Trigger,
    /// The validation report.
    Validation,
    /// The plan and its hash.
    Plan,
    /// An approval request or decision (who, when).
    Approval,
    /// An action against the outside world and its response.
    Action,
    /// How the execution ended.
    Outcome,
}

/// What a caller supplies to append a record; the chain adds the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// When it happened (passed in; the core has no clock).
    pub at: DateTime<Utc>,
    /// What it is about.
    pub kind: AuditKind,
    /// Who acted (a person's identity or a step name such as `step:renew`).
    pub actor: String,
    /// The details, as JSON; must not contain secrets.
    pub summary: Value,
    /// The runbook version that ran.
    pub runbook_version: String,
}

/// One sealed audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// The execution the record belongs to.
    pub execution: String,
    /// Position in the execution's chain, from 0.
    pub seq: u64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What it is about.
    pub kind: AuditKind,
    /// Who acted.
    pub actor: String,
    /// The details.
    pub summary: Value,
    /// The runbook version that ran.
    pub runbook_version: String,
    /// The previous record's hash ([`GENESIS_HASH`] for seq 0).
    pub prev_hash: String,
    /// `SHA-256(prev_hash ‖ canonical(record without hash))`, lowercase hex.
    pub hash: String,
}

impl AuditRecord {
    /// Seals `entry` as the record following `prev` (or as the first record when `prev` is
    /// `None`). For stores that append one record at a time (read the last, write the next
    /// with a conditional write on `seq`).
    ///
    /// Fails with [`Error::SecretMaterial`] if the entry carries something that looks like a
    /// key or token, and [`Error::InvalidInput`] if `prev` belongs to another execution.
    pub fn next(
        prev: Option<&AuditRecord>,
        execution: &str,
        entry: AuditEntry,
    ) -> Result<AuditRecord, Error> {
        if execution.trim().is_empty() {
            return Err(Error::InvalidInput(
                "audit record needs an execution".into(),
            ));
        }
        check_no_secrets(&Value::String(entry.actor.clone()), "actor")?;
        check_no_secrets(
            &Value::String(entry.runbook_version.clone()),
            "runbook_version",
        )?;
        check_no_secrets(&entry.summary, "summary")?;
        let (seq, prev_hash) = match prev {
            None => (0, GENESIS_HASH.to_string()),
            Some(p) if p.execution != execution => {
                return Err(Error::InvalidInput(format!(
                    "previous record belongs to execution \"{}\", not \"{execution}\"",
                    p.execution
                )))
            }
            Some(p) => (p.seq + 1, p.hash.clone()),
        };
        let mut record = AuditRecord {
            execution: execution.to_string(),
            seq,
            at: entry.at,
            kind: entry.kind,
            actor: entry.actor,
            summary: entry.summary,
            runbook_version: entry.runbook_version,
            prev_hash,
            hash: String::new(),
        };
        record.hash = record.compute_hash();
        Ok(record)
    }

    /// Recomputes the hash from the record's content (ignoring the stored `hash`).
    pub fn compute_hash(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.remove("hash");
        }
        let mut bytes = self.prev_hash.clone().into_bytes();
        bytes.extend_from_slice(to_canonical_string(&value).as_bytes());
        sha256_hex(&bytes)
    }
}

/// An execution's chain held in memory (embedded runtime, tests, `audit verify`).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditChain {
    execution: String,
    records: Vec<AuditRecord>,
}

impl AuditChain {
    /// An empty chain for `execution`.
    pub fn new(execution: &str) -> AuditChain {
        AuditChain {
            execution: execution.to_string(),
            records: Vec::new(),
        }
    }

    /// Resumes a stored chain after verifying it; all records must belong to `execution`.
    pub fn resume(execution: &str, records: Vec<AuditRecord>) -> Result<AuditChain, Error> {
        verify_chain(&records)?;
        if let Some(r) = records.iter().find(|r| r.execution != execution) {
            return Err(Error::InvalidInput(format!(
                "record {} belongs to execution \"{}\", not \"{execution}\"",
                r.seq, r.execution
            )));
        }
        Ok(AuditChain {
            execution: execution.to_string(),
            records,
        })
    }

    /// Appends `entry` and returns the sealed record. Refuses secrets
    /// ([`Error::SecretMaterial`]); nothing is appended then.
    pub fn append(&mut self, entry: AuditEntry) -> Result<&AuditRecord, Error> {
        let record = AuditRecord::next(self.records.last(), &self.execution, entry)?;
        self.records.push(record);
        Ok(&self.records[self.records.len() - 1])
    }

    /// The records, in order.
    pub fn records(&self) -> &[AuditRecord] {
        &self.records
    }

    /// The hash of the last record ([`GENESIS_HASH`] when empty); store it elsewhere to
    /// detect truncation with [`verify_chain_head`].
    pub fn head(&self) -> &str {
        self.records
            .last()
            .map_or(GENESIS_HASH, |r| r.hash.as_str())
    }

    /// The execution this chain belongs to.
    pub fn execution(&self) -> &str {
        &self.execution
    }

    /// Gives the records up.
    pub fn into_records(self) -> Vec<AuditRecord> {
        self.records
    }
}

/// Verifies a whole chain: sequence numbers from 0 without gaps, one execution, every
/// `prev_hash` equal to the previous `hash` (the first is [`GENESIS_HASH`]), every `hash`
/// recomputed. Returns [`Error::ChainBreak`] at the first record that does not hold.
///
/// Removing records from the *end* leaves a valid shorter chain; compare the head with a
/// separately stored value ([`verify_chain_head`]) to catch that.
pub fn verify_chain(records: &[AuditRecord]) -> Result<(), Error> {
    let brk = |seq: u64, reason: String| Err(Error::ChainBreak { seq, reason });
    let mut prev_hash = GENESIS_HASH;
    for (index, record) in records.iter().enumerate() {
        let expected_seq = index as u64;
        if record.seq != expected_seq {
            return brk(
                record.seq,
                format!(
                    "expected seq {expected_seq} at position {index}: record removed, inserted or reordered"
                ),
            );
        }
        if record.execution != records[0].execution {
            return brk(
                record.seq,
                format!(
                    "belongs to execution \"{}\", chain is \"{}\"",
                    record.execution, records[0].execution
                ),
            );
        }
        if record.prev_hash != prev_hash {
            return brk(
                record.seq,
                "prev_hash does not match the previous record's hash".into(),
            );
        }
        if record.compute_hash() != record.hash {
            return brk(
                record.seq,
                "content does not match its hash: record edited".into(),
            );
        }
        prev_hash = &record.hash;
    }
    Ok(())
}

/// [`verify_chain`], and the last hash must be `head` (catches truncation).
pub fn verify_chain_head(records: &[AuditRecord], head: &str) -> Result<(), Error> {
    verify_chain(records)?;
    let actual = records.last().map_or(GENESIS_HASH, |r| r.hash.as_str());
    if actual == head {
        Ok(())
    } else {
        Err(Error::ChainBreak {
            seq: records.len() as u64,
            reason: format!("chain ends at {actual}, expected head {head}: records removed"),
        })
    }
}

/// The key of the audit heads' MACs: 32 bytes or more, wiped on drop, never printed.
#[derive(Clone)]
pub struct AuditKey(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey([REDACTED])")
    }
}

/// Shortest audit key accepted, in bytes.
pub const MIN_AUDIT_KEY_LEN: usize = 32;

impl AuditKey {
    /// A key from its bytes; [`Error::InvalidInput`] under [`MIN_AUDIT_KEY_LEN`] bytes.
    pub fn new(bytes: Vec<u8>) -> Result<AuditKey, Error> {
        let bytes = Zeroizing::new(bytes);
        if bytes.len() < MIN_AUDIT_KEY_LEN {
            return Err(Error::InvalidInput(format!(
                "the audit key must be at least {MIN_AUDIT_KEY_LEN} bytes"
            )));
        }
        Ok(AuditKey(bytes))
    }

    fn mac(&self, execution: &str, length: u64, head: &str) -> Hmac<Sha256> {
        // HMAC takes keys of any length; the constructor cannot fail for HMAC-SHA-256.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable_hmac(),
        };
        for part in [
            b"certops audit head v1".as_slice(),
            execution.as_bytes(),
            length.to_string().as_bytes(),
            head.as_bytes(),
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }
}

#[allow(clippy::panic)]
fn unreachable_hmac() -> ! {
    panic!("HMAC-SHA-256 accepts keys of every length")
}

/// An execution's anchored head: how many records its chain has and the last one's hash,
/// MACed with the [`AuditKey`]. Stored apart from the records and moved with each append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainHead {
    /// The execution.
    pub execution: String,
    /// Records in the chain.
    pub length: u64,
    /// The last record's hash.
    pub head: String,
    /// `HMAC-SHA-256(key, execution, length, head)`, hex (each part length-prefixed).
    pub mac: String,
}

impl ChainHead {
    /// The head after `record` was appended, MACed with `key`.
    pub fn after(record: &AuditRecord, key: &AuditKey) -> ChainHead {
        let length = record.seq + 1;
        let mac = hex::encode(
            key.mac(&record.execution, length, &record.hash)
                .finalize()
                .into_bytes(),
        );
        ChainHead {
            execution: record.execution.clone(),
            length,
            head: record.hash.clone(),
            mac,
        }
    }

    /// Whether the MAC was made with `key` over this head (constant-time compare).
    pub fn is_authentic(&self, key: &AuditKey) -> bool {
        let Ok(tag) = hex::decode(&self.mac) else {
            return false;
        };
        key.mac(&self.execution, self.length, &self.head)
            .verify_slice(&tag)
            .is_ok()
    }
}

/// Verifies `records` against their anchored `head` with `key`:
/// - no head but records: the head was deleted (or the records were written around it);
/// - a head but no records: the chain is missing;
/// - a head whose MAC does not verify: forged or rewritten without the key;
/// - the records themselves ([`verify_chain`]): the first bad record;
/// - fewer records than the head anchors: the missing tail, by position;
/// - more records, or a last hash other than the head's: records appended or re-hashed
///   without the key.
///
/// Every failure is [`Error::ChainBreak`] at the first position that does not hold.
pub fn verify_anchored(
    execution: &str,
    records: &[AuditRecord],
    head: Option<&ChainHead>,
    key: &AuditKey,
) -> Result<(), Error> {
    let brk = |seq: u64, reason: String| Err(Error::ChainBreak { seq, reason });
    let Some(head) = head else {
        if records.is_empty() {
            return Ok(());
        }
        return brk(
            0,
            format!(
                "{} record(s) of {execution} but no anchored head: the head was deleted",
                records.len()
            ),
        );
    };
    if head.execution != execution {
        return brk(
            0,
            format!("the anchored head belongs to \"{}\"", head.execution),
        );
    }
    if !head.is_authentic(key) {
        return brk(
            head.length,
            "the anchored head's MAC does not verify: head forged or rewritten without the audit key"
                .into(),
        );
    }
    if records.is_empty() {
        return brk(
            0,
            format!(
                "missing chain: the anchored head holds {} record(s) of {execution} and none is stored",
                head.length
            ),
        );
    }
    verify_chain(records)?;
    let length = records.len() as u64;
    if length < head.length {
        return brk(
            length,
            format!(
                "missing tail: records {length}..{} of the {} anchored are gone",
                head.length - 1,
                head.length
            ),
        );
    }
    if length > head.length {
        return brk(
            head.length,
            format!(
                "{} record(s) after the anchored head: appended without the audit key",
                length - head.length
            ),
        );
    }
    let last = records.last().map_or(GENESIS_HASH, |r| r.hash.as_str());
    if last != head.head {
        return brk(
            length - 1,
            "the chain's last hash is not the anchored head's: records re-hashed without the audit key"
                .into(),
        );
    }
    Ok(())
}

/// Refuses to extend a chain whose anchored head is missing, not made with `key`, or not
/// the head of its last record `prev`: a tampered chain stops growing and the refusal says why.
pub fn check_append(
    execution: &str,
    prev: Option<&AuditRecord>,
    head: Option<&ChainHead>,
    key: &AuditKey,
) -> Result<(), Error> {
    let brk = |seq: u64, reason: String| Err(Error::ChainBreak { seq, reason });
    match (prev, head) {
        (None, None) => Ok(()),
        (Some(p), None) => brk(
            p.seq,
            format!("{execution} has records but no anchored head: not appending"),
        ),
        (None, Some(h)) => brk(
            0,
            format!(
                "the anchored head of {execution} holds {} record(s) and none is stored: not appending",
                h.length
            ),
        ),
        (Some(p), Some(h)) => {
            if !h.is_authentic(key) {
                brk(p.seq, format!("the anchored head of {execution} does not verify with the audit key: not appending"))
            } else if h.length != p.seq + 1 || h.head != p.hash {
                brk(p.seq, format!("the last record of {execution} is not its anchored head: not appending"))
            } else {
                Ok(())
            }
        }
    }
}

/// Key names whose (non-empty) values are secrets. Matched case-insensitively as
/// substrings, after `-` becomes `_`.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "private_key",
    "privatekey",
    "api_key",
    "apikey",
    "authorization",
    "token",
    "credential",
];

/// Key suffixes that name a reference to a secret, not the secret (`secret_arn`, `key_ref`).
const REFERENCE_SUFFIXES: &[&str] = &["_ref", "_reference", "_arn", "_id", "_name"];

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    SECRET_KEYS.iter().any(|s| key.contains(s))
        && !REFERENCE_SUFFIXES.iter().any(|s| key.ends_with(s))
}

/// What kind of secret `text` looks like, if any: a PEM private key, a bearer token, a JWT,
/// an AWS access key id, a Slack or GitHub token.
pub fn find_secret(text: &str) -> Option<&'static str> {
    if text.contains("PRIVATE KEY-----")
        || (text.contains("-----BEGIN") && text.contains("PRIVATE KEY"))
    {
        return Some("PEM private key");
    }
    for word in text.split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';' | '='))
    {
        if let Some(kind) = secret_word(word) {
            return Some(kind);
        }
    }
    let lower = text.to_ascii_lowercase();
    if let Some(pos) = lower.find("bearer ") {
        let rest = text[pos + 7..].trim_start();
        if rest.chars().take_while(|c| !c.is_whitespace()).count() >= 16 {
            return Some("bearer token");
        }
    }
    None
}

fn secret_word(word: &str) -> Option<&'static str> {
    let token_chars = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=' | '/' | '+'))
    };
    if word.starts_with("eyJ")
        && word.split('.').count() == 3
        && word.len() >= 30
        && token_chars(word)
    {
        return Some("JWT");
    }
    if (word.starts_with("AKIA") || word.starts_with("ASIA"))
        && word.len() == 20
        && word
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        return Some("AWS access key id");
    }
    let prefixed = [
        "xoxb-",
        "xoxp-",
        "xoxa-",
        "xoxr-",
        "xoxs-",
        "ghp_",
        "gho_",
        "ghs_",
        "ghu_",
        "github_pat_",
    ];
    if prefixed.iter().any(|p| word.starts_with(p)) && word.len() >= 20 && token_chars(word) {
        return Some("API token");
    }
    None
}

/// `Ok` unless `value` contains something that looks like a private key or secret token,
/// or a non-empty value under a secret-sounding key (`password`, `token`, `authorization`, …;
/// `*_ref`, `*_arn`, `*_id` keys are references and allowed, as is [`REDACTED`]). The error names the JSON path
/// (starting at `root`), never the value.
pub fn check_no_secrets(value: &Value, root: &str) -> Result<(), Error> {
    match value {
        Value::String(s) => match find_secret(s) {
            Some(kind) => Err(Error::SecretMaterial {
                location: format!("{root} ({kind})"),
            }),
            None => Ok(()),
        },
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_no_secrets(v, &format!("{root}[{i}]"))),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            let path = format!("{root}.{k}");
            if is_secret_key(k) && may_hold_secret(v) {
                return Err(Error::SecretMaterial {
                    location: format!("{path} (secret-named field)"),
                });
            }
            check_no_secrets(v, &path)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// Whether a value under a secret-named key could hold a secret: numbers, booleans, null,
/// empty values and [`REDACTED`] cannot.
fn may_hold_secret(value: &Value) -> bool {
    match value {
        Value::String(s) => !s.is_empty() && s != REDACTED,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// A copy of `value` with every secret-looking string and every value under a secret-named
/// key replaced by [`REDACTED`]. The result always passes [`check_no_secrets`].
pub fn redact(value: &Value) -> Value {
    match value {
        Value::String(s) if find_secret(s).is_some() => Value::String(REDACTED.into()),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) && may_hold_secret(v) {
                        Value::String(REDACTED.into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    /// Built at run time so the source holds no PEM key header.
    const KEY: &str = concat!("PRIVATE", " ", "KEY");
    use super::*;
    use chrono::{TimeDelta, TimeZone};
    use serde_json::json;

    fn entry(minute: i64, kind: AuditKind, summary: Value) -> AuditEntry {
        AuditEntry {
            at: Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap() + TimeDelta::minutes(minute),
            kind,
            actor: "step:validate".into(),
            summary,
            runbook_version: "1.0.0".into(),
        }
    }

    fn chain() -> AuditChain {
        let mut chain = AuditChain::new("exec-1");
        chain
            .append(entry(
                0,
                AuditKind::Trigger,
                json!({"ticket": "INC0012345"}),
            ))
            .unwrap();
        chain
            .append(entry(1, AuditKind::Validation, json!({"path": "normal"})))
            .unwrap();
        chain
            .append(entry(
                5,
                AuditKind::Approval,
                json!({"approver": "carol@example.com"}),
            ))
            .unwrap();
        chain
            .append(entry(
                6,
                AuditKind::Action,
                json!({"step": "renew", "serial": "04ab"}),
            ))
            .unwrap();
        chain
    }

    fn break_seq(result: Result<(), Error>) -> u64 {
        match result {
            Err(Error::ChainBreak { seq, .. }) => seq,
            other => panic!("expected ChainBreak, got {other:?}"),
        }
    }

    #[test]
    fn an_untouched_chain_verifies_and_links_from_genesis() {
        let chain = chain();
        let records = chain.records();
        assert_eq!(records[0].prev_hash, GENESIS_HASH);
        assert_eq!(records[1].prev_hash, records[0].hash);
        assert_eq!(records[3].seq, 3);
        assert_eq!(verify_chain(records), Ok(()));
        assert_eq!(verify_chain_head(records, chain.head()), Ok(()));
        let resumed = AuditChain::resume("exec-1", records.to_vec()).unwrap();
        assert_eq!(resumed.head(), chain.head());
    }

    #[test]
    fn hash_is_sha256_of_prev_hash_and_canonical_record() {
        let chain = chain();
        let r = &chain.records()[1];
        let mut value = serde_json::to_value(r).unwrap();
        value.as_object_mut().unwrap().remove("hash");
        let expected =
            sha256_hex(format!("{}{}", r.prev_hash, to_canonical_string(&value)).as_bytes());
        assert_eq!(r.hash, expected);
    }

    #[test]
    fn verify_catches_an_edited_record() {
        let mut records = chain().into_records();
        records[2].summary = json!({"approver": "mallory@example.com"});
        assert_eq!(break_seq(verify_chain(&records)), 2);
    }

    #[test]
    fn verify_catches_an_edit_even_when_the_hash_is_recomputed() {
        let mut records = chain().into_records();
        records[1].summary = json!({"path": "pre-approved"});
        records[1].hash = records[1].compute_hash();
        assert_eq!(break_seq(verify_chain(&records)), 2);
    }

    #[test]
    fn verify_catches_a_removed_record() {
        let mut records = chain().into_records();
        records.remove(1);
        assert!(verify_chain(&records).is_err());
        let mut first_gone = chain().into_records();
        first_gone.remove(0);
        assert!(verify_chain(&first_gone).is_err());
    }

    #[test]
    fn verify_head_catches_a_truncated_tail() {
        let chain = chain();
        let head = chain.head().to_string();
        let mut records = chain.into_records();
        records.pop();
        assert_eq!(verify_chain(&records), Ok(()));
        assert_eq!(break_seq(verify_chain_head(&records, &head)), 3);
    }

    #[test]
    fn verify_catches_reordered_records() {
        let mut records = chain().into_records();
        records.swap(1, 2);
        assert_eq!(break_seq(verify_chain(&records)), 2);
        // Renumbering after the swap does not help: the links no longer hold.
        records[1].seq = 1;
        records[2].seq = 2;
        assert_eq!(break_seq(verify_chain(&records)), 1);
    }

    #[test]
    fn verify_catches_an_inserted_record() {
        let mut records = chain().into_records();
        // A forged record sealed properly after record 1, then spliced in and renumbered.
        let forged = AuditRecord::next(
            Some(&records[1]),
            "exec-1",
            entry(
                2,
                AuditKind::Approval,
                json!({"approver": "mallory@example.com"}),
            ),
        )
        .unwrap();
        records.insert(2, forged);
        for (i, r) in records.iter_mut().enumerate() {
            r.seq = i as u64;
        }
        // The forged record itself is well formed; the one after it no longer links.
        assert_eq!(break_seq(verify_chain(&records)), 3);
    }

    #[test]
    fn verify_catches_a_record_from_another_execution() {
        let mut records = chain().into_records();
        let mut other = AuditChain::new("exec-2");
        other
            .append(entry(0, AuditKind::Trigger, json!({})))
            .unwrap();
        records[0] = other.into_records().remove(0);
        assert_eq!(break_seq(verify_chain(&records)), 1);
    }

    fn key() -> AuditKey {
        AuditKey::new(vec![7u8; 32]).unwrap()
    }

    fn anchored() -> (Vec<AuditRecord>, ChainHead) {
        let records = chain().into_records();
        let head = ChainHead::after(records.last().unwrap(), &key());
        (records, head)
    }

    fn anchored_break(records: &[AuditRecord], head: Option<&ChainHead>) -> (u64, String) {
        match verify_anchored("exec-1", records, head, &key()) {
            Err(Error::ChainBreak { seq, reason }) => (seq, reason),
            other => panic!("expected a break, got {other:?}"),
        }
    }

    #[test]
    fn an_anchored_chain_verifies_and_its_head_needs_the_key() {
        let (records, head) = anchored();
        assert_eq!(head.length, records.len() as u64);
        assert_eq!(
            verify_anchored("exec-1", &records, Some(&head), &key()),
            Ok(())
        );
        assert!(!head.is_authentic(&AuditKey::new(vec![8u8; 32]).unwrap()));
        assert!(AuditKey::new(vec![1u8; 31]).is_err());
        assert_eq!(format!("{:?}", key()), "AuditKey([REDACTED])");
    }

    #[test]
    fn a_truncated_tail_is_named_by_position() {
        let (mut records, head) = anchored();
        records.pop();
        let n = records.len() as u64;
        let (seq, reason) = anchored_break(&records, Some(&head));
        assert_eq!(seq, n);
        assert!(
            reason.contains(&format!("missing tail: records {n}..{n}")),
            "{reason}"
        );
    }

    #[test]
    fn a_missing_chain_or_a_missing_head_is_named() {
        let (records, head) = anchored();
        let (_, reason) = anchored_break(&[], Some(&head));
        assert!(reason.contains("missing chain"), "{reason}");
        let (_, reason) = anchored_break(&records, None);
        assert!(reason.contains("no anchored head"), "{reason}");
        assert_eq!(verify_anchored("exec-1", &[], None, &key()), Ok(()));
    }

    #[test]
    fn an_edit_rehashed_without_the_key_is_detected() {
        let (mut records, head) = anchored();
        // Edit record 1 and re-hash it and every record after it, as anyone could.
        records[1].summary = json!({"approver": "mallory"});
        for i in 1..records.len() {
            records[i].prev_hash = records[i - 1].hash.clone();
            records[i].hash = records[i].compute_hash();
        }
        assert_eq!(verify_chain(&records), Ok(()), "the bare chain still links");
        let last = records.len() - 1;
        let (seq, reason) = anchored_break(&records, Some(&head));
        assert_eq!(seq, last as u64);
        assert!(reason.contains("re-hashed"), "{reason}");
        // Moving the head too needs the key: a head re-made without it does not verify.
        let forged = ChainHead {
            head: records[last].hash.clone(),
            ..head.clone()
        };
        let (_, reason) = anchored_break(&records, Some(&forged));
        assert!(reason.contains("MAC does not verify"), "{reason}");
        // A record appended past the head is named too.
        let (mut longer, head) = anchored();
        let extra = AuditRecord::next(
            longer.last(),
            "exec-1",
            entry(9, AuditKind::Action, json!({})),
        )
        .unwrap();
        longer.push(extra);
        let (seq, reason) = anchored_break(&longer, Some(&head));
        assert_eq!(seq, head.length);
        assert!(reason.contains("after the anchored head"), "{reason}");
    }

    #[test]
    fn key_material_is_refused_in_audit_records() {
        let mut chain = chain();
        let pem = format!(
            "-----BEGIN RSA {}-----\nMIIEowIBAAKCAQEA\n-----END RSA {}-----",
            KEY, KEY
        );
        let err = chain
            .append(entry(
                7,
                AuditKind::Action,
                json!({"response": {"body": pem}}),
            ))
            .unwrap_err();
        assert_eq!(err.name(), "SecretMaterial");
        assert!(err.to_string().contains("summary.response.body"), "{err}");
        assert!(!err.to_string().contains("MIIE"), "{err}");
        assert_eq!(chain.records().len(), 4, "nothing appended");
    }

    #[test]
    fn secret_tokens_and_secret_named_fields_are_refused() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjZXJ0b3BzIn0.c2lnbmF0dXJlLXZhbHVl";
        for summary in [
            json!({"headers": ["Authorization: Bearer abcdefghijklmnopqrstuvwxyz"]}),
            json!({"note": jwt}),
            json!({"aws": "AKIAIOSFODNN7EXAMPLE"}),
            json!({"slack": "xoxb-123456789012-abcdefghijkl"}),
            json!({"password": "hunter2"}),
            json!({"task_token": "AAAAKgAAAAIAAAAAAAAAA"}),
        ] {
            let err =
                AuditRecord::next(None, "exec-1", entry(0, AuditKind::Action, summary.clone()))
                    .unwrap_err();
            assert_eq!(err.name(), "SecretMaterial", "{summary}");
        }
        let mut e = entry(0, AuditKind::Action, json!({}));
        e.actor = format!("-----BEGIN {KEY}-----");
        assert_eq!(
            AuditRecord::next(None, "exec-1", e).unwrap_err().name(),
            "SecretMaterial"
        );
    }

    #[test]
    fn references_and_certificates_are_allowed() {
        let summary = json!({
            "key_ref": "keystore:shop-www/2026-12",
            "secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:certops/shop-www",
            "certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
            "password": null,
            "token_count": 3,
        });
        assert_eq!(check_no_secrets(&summary, "summary"), Ok(()));
    }

    #[test]
    fn redact_scrubs_what_check_would_refuse() {
        let dirty = json!({
            "status": 200,
            "body": {"private_key": format!("-----BEGIN EC {KEY}-----\nAAA\n-----END EC {KEY}-----"),
                     "serial": "04ab"},
            "authorization": "Bearer abcdefghijklmnopqrstuvwxyz",
        });
        assert!(check_no_secrets(&dirty, "summary").is_err());
        let clean = redact(&dirty);
        assert_eq!(check_no_secrets(&clean, "summary"), Ok(()));
        assert_eq!(clean["body"]["private_key"], REDACTED);
        assert_eq!(clean["body"]["serial"], "04ab");
        assert_eq!(clean["status"], 200);
    }
}
