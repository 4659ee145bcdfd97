//! The classification of one probed endpoint, and the rules that choose it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::certificate::CertSummary;

/// What a probe concluded about an endpoint; serialised kebab-case (`not-yet-valid`).
///
/// Variants are listed from best to worst within their [`Severity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Valid, trusted, matching chain with more than the warning threshold left.
    Ok,
    /// Valid but the verified chain expires within the warning threshold.
    Expiring,
    /// The leaf, or a certificate needed to reach a trust anchor, has expired.
    Expired,
    /// The leaf, or a certificate of the chain, is not valid yet.
    NotYetValid,
    /// The chain is valid but does not cover the requested name.
    NameMismatch,
    /// The chain does not lead to a trusted root (or is invalid in another way).
    Untrusted,
    /// The server omitted the leaf's issuer, so no path to a root can be built.
    IncompleteChain,
    /// The leaf is self-signed and not itself trusted.
    SelfSigned,
    /// An RSA key under 2048 bits, or a SHA-1 / MD5 signature in the chain.
    Weak,
    /// TLS failed: garbage, a non-TLS service, an alert, an oversized message.
    HandshakeFailure,
    /// The per-endpoint deadline passed (DNS, connect, handshake or read).
    Timeout,
    /// The TCP connection was refused or could not be made.
    Refused,
    /// The host name did not resolve.
    DnsFailure,
}

/// Monitoring severity of a status, in the Nagios sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Nothing to do.
    Ok,
    /// Needs attention soon (expiring).
    Warning,
    /// We could not tell (timeout, refused, DNS): worse than a warning, better than critical.
    Unknown,
    /// Broken for clients now.
    Critical,
}

impl Status {
    /// Every status, best first.
    pub const ALL: [Status; 13] = [
        Status::Ok,
        Status::Expiring,
        Status::Timeout,
        Status::Refused,
        Status::DnsFailure,
        Status::HandshakeFailure,
        Status::Weak,
        Status::NameMismatch,
        Status::IncompleteChain,
        Status::SelfSigned,
        Status::Untrusted,
        Status::NotYetValid,
        Status::Expired,
    ];

    /// The kebab-case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Expiring => "expiring",
            Status::Expired => "expired",
            Status::NotYetValid => "not-yet-valid",
            Status::NameMismatch => "name-mismatch",
            Status::Untrusted => "untrusted",
            Status::IncompleteChain => "incomplete-chain",
            Status::SelfSigned => "self-signed",
            Status::Weak => "weak",
            Status::HandshakeFailure => "handshake-failure",
            Status::Timeout => "timeout",
            Status::Refused => "refused",
            Status::DnsFailure => "dns-failure",
        }
    }

    /// The monitoring severity (an `expiring` endpoint is a warning here; callers with a
    /// critical-days threshold may escalate it).
    pub fn severity(self) -> Severity {
        match self {
            Status::Ok => Severity::Ok,
            Status::Expiring => Severity::Warning,
            Status::Timeout | Status::Refused | Status::DnsFailure => Severity::Unknown,
            _ => Severity::Critical,
        }
    }

    /// Position in [`Status::ALL`]: a larger rank is a worse outcome.
    pub fn rank(self) -> usize {
        Status::ALL
            .iter()
            .position(|s| *s == self)
            .unwrap_or(usize::MAX)
    }

    /// Whether a retry may change the outcome (network-level failures).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Status::Timeout | Status::Refused | Status::DnsFailure | Status::HandshakeFailure
        )
    }

    /// Whether the endpoint serves a valid, trusted, matching chain (possibly expiring).
    pub fn is_valid(self) -> bool {
        matches!(self, Status::Ok | Status::Expiring)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of verifying the presented chain against the trust store.
#[derive(Debug, Clone)]
pub(crate) enum ChainVerdict {
    /// A path to an anchor was found; `not_after` is the earliest expiry along it.
    Verified {
        not_after: DateTime<Utc>,
    },
    Expired(String),
    NotYetValid(String),
    UnknownIssuer(String),
    Invalid(String),
}

/// Everything classification looks at, gathered after the handshake.
#[derive(Debug)]
pub(crate) struct Facts<'a> {
    pub now: DateTime<Utc>,
    pub leaf: &'a CertSummary,
    pub chain: ChainVerdict,
    pub name_ok: bool,
    pub leaf_issuer_presented: bool,
    /// Certificates presented, when more than the prober keeps.
    pub truncated_from: Option<usize>,
    pub weakness: Option<String>,
    pub warn_days: i64,
}

/// Whole days from `now` until `t`, rounded down (negative once past).
pub fn days_until(now: DateTime<Utc>, t: DateTime<Utc>) -> i64 {
    (t - now).num_seconds().div_euclid(86_400)
}

/// Chooses the status: leaf validity first, then weakness, then the chain, then the name,
/// then the expiry of the verified path against the warning threshold.
pub(crate) fn classify(f: &Facts<'_>) -> (Status, Option<String>) {
    if f.now > f.leaf.not_after {
        return (
            Status::Expired,
            Some(format!("leaf expired {}", f.leaf.not_after)),
        );
    }
    if f.now < f.leaf.not_before {
        return (
            Status::NotYetValid,
            Some(format!("leaf valid from {}", f.leaf.not_before)),
        );
    }
    if let Some(n) = f.truncated_from {
        return (
            Status::Untrusted,
            Some(format!(
                "server presented {n} certificates; more than any legitimate chain"
            )),
        );
    }
    if let Some(w) = &f.weakness {
        return (Status::Weak, Some(w.clone()));
    }
    let not_after = match &f.chain {
        ChainVerdict::Verified { not_after } => *not_after,
        ChainVerdict::Expired(d) => return (Status::Expired, Some(d.clone())),
        ChainVerdict::NotYetValid(d) => return (Status::NotYetValid, Some(d.clone())),
        ChainVerdict::UnknownIssuer(d) | ChainVerdict::Invalid(d) => {
            let (status, why) = if f.leaf.self_issued {
                (
                    Status::SelfSigned,
                    "self-signed leaf, not in the trust store".to_owned(),
                )
            } else if !f.leaf_issuer_presented && matches!(f.chain, ChainVerdict::UnknownIssuer(_))
            {
                (
                    Status::IncompleteChain,
                    format!(
                        "server did not send the leaf's issuer ({}), and it is not a trusted root",
                        f.leaf.issuer
                    ),
                )
            } else {
                (Status::Untrusted, "no path to a trusted root".to_owned())
            };
            return (status, Some(format!("{why}; {d}")));
        }
    };
    if !f.name_ok {
        return (
            Status::NameMismatch,
            Some(format!("certificate names {:?}", f.leaf.sans)),
        );
    }
    let days = days_until(f.now, not_after);
    if days <= f.warn_days {
        return (
            Status::Expiring,
            Some(format!(
                "verified chain expires in {days} days ({not_after})"
            )),
        );
    }
    (Status::Ok, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn leaf(now: DateTime<Utc>, days: i64) -> CertSummary {
        CertSummary {
            subject: "CN=leaf".into(),
            issuer: "CN=ca".into(),
            sans: vec!["a.example".into()],
            serial: "01".into(),
            sha256: "00".repeat(32),
            key_type: "EC".into(),
            key_bits: 256,
            signature_algorithm: "ecdsa-with-SHA256".into(),
            not_before: now - Duration::days(10),
            not_after: now + Duration::days(days),
            self_issued: false,
            is_ca: false,
            ari_id: None,
        }
    }

    fn facts(leaf: &CertSummary, chain: ChainVerdict) -> Facts<'_> {
        Facts {
            now: leaf.not_before + Duration::days(10),
            leaf,
            chain,
            name_ok: true,
            leaf_issuer_presented: true,
            truncated_from: None,
            weakness: None,
            warn_days: 30,
        }
    }

    #[test]
    fn rules_pick_the_expected_status() {
        let now = Utc::now();
        let l = leaf(now, 90);
        let verified = |d: i64| ChainVerdict::Verified {
            not_after: now + Duration::days(d),
        };
        assert_eq!(classify(&facts(&l, verified(90))).0, Status::Ok);
        // The verified path, not the leaf alone, decides expiry.
        assert_eq!(classify(&facts(&l, verified(5))).0, Status::Expiring);
        let mut f = facts(&l, verified(90));
        f.name_ok = false;
        assert_eq!(classify(&f).0, Status::NameMismatch);
        let mut f = facts(&l, verified(90));
        f.weakness = Some("RSA key of 1024 bits".into());
        assert_eq!(classify(&f).0, Status::Weak);
        let mut f = facts(&l, ChainVerdict::UnknownIssuer("unknown issuer".into()));
        assert_eq!(classify(&f).0, Status::Untrusted);
        f.leaf_issuer_presented = false;
        assert_eq!(classify(&f).0, Status::IncompleteChain);
        let mut self_signed = l.clone();
        self_signed.self_issued = true;
        assert_eq!(
            classify(&facts(
                &self_signed,
                ChainVerdict::UnknownIssuer("x".into())
            ))
            .0,
            Status::SelfSigned
        );
        assert_eq!(
            classify(&facts(&l, ChainVerdict::Expired("intermediate".into()))).0,
            Status::Expired
        );
        assert_eq!(
            classify(&facts(&l, ChainVerdict::NotYetValid("x".into()))).0,
            Status::NotYetValid
        );
        let mut f = facts(&l, verified(90));
        f.truncated_from = Some(100);
        assert_eq!(classify(&f).0, Status::Untrusted);
        let gone = leaf(now, -1);
        assert_eq!(classify(&facts(&gone, verified(90))).0, Status::Expired);
    }

    #[test]
    fn statuses_serialise_kebab_case_and_rank() {
        assert_eq!(
            serde_json::to_string(&Status::NotYetValid).unwrap_or_default(),
            "\"not-yet-valid\""
        );
        for s in Status::ALL {
            assert_eq!(
                serde_json::to_string(&s).unwrap_or_default(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert!(Status::Expired.rank() > Status::Timeout.rank());
        assert!(Status::Timeout.severity() > Status::Expiring.severity());
        assert!(Status::Untrusted.severity() > Status::Timeout.severity());
    }

    #[test]
    fn days_round_down() {
        let now = Utc::now();
        assert_eq!(days_until(now, now + Duration::hours(47)), 1);
        assert_eq!(days_until(now, now - Duration::hours(1)), -1);
    }
}
