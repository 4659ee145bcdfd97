//! Certificate fingerprints: the SHA-256 of a certificate's DER encoding, in one normalised form.
//!
//! Fingerprints reach certops spelled several ways: the prober's lower-case hex, the
//! inventory's `sha256:`-prefixed text, OpenSSL's upper-case colon-separated form.
//! [`Fingerprint::parse`] accepts each of them and yields the one form everything compares,
//! prints and stores: 64 lower-case hex digits without separators.
//!
//! ```
//! use certops_core::Fingerprint;
//!
//! let plain = Fingerprint::parse(&"ab".repeat(32))?;
//! let openssl = Fingerprint::parse(&["AB"; 32].join(":"))?;
//! let prefixed = Fingerprint::parse(&format!("sha256:{}", "AB".repeat(32)))?;
//! assert_eq!(plain, openssl);
//! assert_eq!(plain, prefixed);
//! assert_eq!(plain.as_str(), "ab".repeat(32));
//! assert!(Fingerprint::parse("sha256:00").is_err());
//! # Ok::<(), certops_core::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::canonical::sha256_hex;
use crate::Error;

/// Hex digits in a SHA-256 fingerprint.
const HEX_DIGITS: usize = 64;

/// The optional algorithm prefix, matched ignoring ASCII case (`sha256:`, `SHA256:`).
const PREFIX: &str = "sha256:";

/// How much of a rejected input an error message quotes.
const QUOTED_CHARS: usize = 80;

/// A certificate's SHA-256 fingerprint: always 64 lower-case hex digits.
///
/// Two fingerprints are equal exactly when they name the same DER bytes' digest, however
/// they were spelled when parsed. Serialises as that plain string, so a field holding a
/// `Fingerprint` has the same bytes as one that held the prober's hex `String`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Parses a fingerprint given as 64 hex digits in either case, optionally separated by
    /// `:` (`AB:CD:…`), optionally prefixed `sha256:` (any case), with surrounding whitespace
    /// ignored.
    ///
    /// Anything else is [`Error::InvalidInput`] naming what is wrong (a character that is no
    /// hex digit, or how many digits were found).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let trimmed = text.trim();
        let digits = strip_prefix(trimmed).unwrap_or(trimmed);
        let mut hex = String::with_capacity(HEX_DIGITS);
        for c in digits.chars().filter(|&c| c != ':') {
            if !c.is_ascii_hexdigit() {
                return Err(invalid(text, &format!("{c:?} is not a hex digit")));
            }
            hex.push(c.to_ascii_lowercase());
        }
        if hex.len() != HEX_DIGITS {
            return Err(invalid(text, &format!("{} hex digits", hex.len())));
        }
        Ok(Fingerprint(hex))
    }

    /// The fingerprint of a certificate's DER encoding.
    pub fn of_der(der: &[u8]) -> Self {
        Fingerprint(sha256_hex(der))
    }

    /// The normalised form: 64 lower-case hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `text` without a leading `sha256:` in any ASCII case, or `None` if it has none.
fn strip_prefix(text: &str) -> Option<&str> {
    text.get(..PREFIX.len())
        .filter(|head| head.eq_ignore_ascii_case(PREFIX))
        .and_then(|_| text.get(PREFIX.len()..))
}

fn invalid(text: &str, why: &str) -> Error {
    let mut quoted: String = text.chars().take(QUOTED_CHARS).collect();
    if quoted.len() < text.len() {
        quoted.push('…');
    }
    Error::InvalidInput(format!(
        "fingerprint {quoted:?}: {why}; expected a SHA-256 as {HEX_DIGITS} hex digits, \
         optionally colon-separated and prefixed \"{PREFIX}\""
    ))
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Fingerprint {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        Fingerprint::parse(text)
    }
}

impl AsRef<str> for Fingerprint {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<Fingerprint> for String {
    fn from(fingerprint: Fingerprint) -> String {
        fingerprint.0
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    /// Accepts every spelling [`Fingerprint::parse`] does.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Fingerprint::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of the empty input.
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn colon_separated(hex: &str) -> String {
        hex.as_bytes()
            .chunks(2)
            .map(|pair| String::from_utf8_lossy(pair).into_owned())
            .collect::<Vec<_>>()
            .join(":")
    }

    #[test]
    fn every_accepted_spelling_normalises_to_the_same_value() {
        let upper = EMPTY_SHA256.to_ascii_uppercase();
        let spellings = [
            EMPTY_SHA256.to_string(),
            upper.clone(),
            colon_separated(EMPTY_SHA256),
            colon_separated(&upper),
            format!("sha256:{EMPTY_SHA256}"),
            format!("SHA256:{upper}"),
            format!("Sha256:{}", colon_separated(EMPTY_SHA256)),
            format!("  sha256:{EMPTY_SHA256}\n"),
            format!("\t{}  ", colon_separated(&upper)),
        ];
        for spelling in spellings {
            let parsed = Fingerprint::parse(&spelling).unwrap();
            assert_eq!(parsed.as_str(), EMPTY_SHA256, "{spelling:?}");
            assert_eq!(parsed, Fingerprint::of_der(b""), "{spelling:?}");
        }
    }

    #[test]
    fn of_der_is_the_lower_case_hex_sha256() {
        assert_eq!(Fingerprint::of_der(b"").as_str(), EMPTY_SHA256);
        assert_eq!(Fingerprint::of_der(b"").to_string(), EMPTY_SHA256);
        assert_eq!(String::from(Fingerprint::of_der(b"")), EMPTY_SHA256);
    }

    #[test]
    fn malformed_input_is_a_clear_error_never_a_panic() {
        let cases: &[(&str, &str)] = &[
            ("", "0 hex digits"),
            ("   ", "0 hex digits"),
            ("sha256:", "0 hex digits"),
            ("sha256:00", "2 hex digits"),
            ("abc", "3 hex digits"),
            (&EMPTY_SHA256[1..], "63 hex digits"),
            ("zz", "'z' is not a hex digit"),
            ("ab cd", "' ' is not a hex digit"),
            ("shä256:00", "'s' is not a hex digit"),
            ("sha256ä00", "'s' is not a hex digit"),
            ("sha1:00", "'s' is not a hex digit"),
        ];
        for &(input, why) in cases {
            match Fingerprint::parse(input) {
                Err(Error::InvalidInput(message)) => {
                    assert!(message.contains(why), "{input:?}: {message}");
                    assert!(message.contains("64 hex digits"), "{input:?}: {message}");
                }
                other => panic!("{input:?} gave {other:?}"),
            }
        }
        let too_long = format!("{EMPTY_SHA256}00");
        assert!(Fingerprint::parse(&too_long).is_err());
        let twice_prefixed = format!("sha256:sha256:{EMPTY_SHA256}");
        assert!(Fingerprint::parse(&twice_prefixed).is_err());
    }

    #[test]
    fn an_error_quotes_a_long_input_only_in_part() {
        let long = "x".repeat(10_000);
        let Err(Error::InvalidInput(message)) = Fingerprint::parse(&long) else {
            panic!("accepted");
        };
        assert!(message.len() < 400, "{message}");
    }

    #[test]
    fn serialises_as_the_plain_string_the_prober_hex_was() {
        let fingerprint = Fingerprint::of_der(b"");
        let as_string = serde_json::to_string(&sha256_hex(b"")).unwrap();
        assert_eq!(serde_json::to_string(&fingerprint).unwrap(), as_string);
        assert_eq!(
            serde_json::from_str::<Fingerprint>(&as_string).unwrap(),
            fingerprint
        );
        let openssl = serde_json::to_string(&colon_separated(EMPTY_SHA256)).unwrap();
        assert_eq!(
            serde_json::from_str::<Fingerprint>(&openssl).unwrap(),
            fingerprint
        );
        assert!(serde_json::from_str::<Fingerprint>("\"sha256:00\"").is_err());
        assert!(serde_json::from_str::<Fingerprint>("42").is_err());
    }

    #[test]
    fn parses_through_from_str() {
        let fingerprint: Fingerprint = EMPTY_SHA256.parse().unwrap();
        assert_eq!(fingerprint, Fingerprint::of_der(b""));
    }
}
