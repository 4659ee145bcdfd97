//! The `Keystore` contract (shared/core/src/ports.rs): a bundle stored under a name comes
//! back by its reference with the key only inside a `SecretPem`; storing the same name
//! again keeps the reference; `exists` and `references` see it; an unknown reference is an
//! error; no error or `Debug` output carries the key.
//!
//! Also here: [`TestCa`], the run-time CA (rcgen) every contract suite issues its
//! certificates from, so no key is ever committed.

use certops_core::ports::{Bundle, Keystore, SecretPem};
use chrono::{DateTime, TimeDelta, Utc};

/// A CA made at run time, issuing leaf certificates with fresh keys.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate (trust anchor for handshakes), PEM.
    pub root_pem: String,
}

/// A freshly issued certificate and its key.
pub struct Issued {
    /// Leaf then CA, PEM.
    pub chain_pem: String,
    /// The leaf's PEM only.
    pub leaf_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
    /// The leaf's notAfter, whole seconds since the epoch.
    pub not_after: i64,
}

impl Issued {
    /// The certificate and key as a keystore bundle.
    pub fn bundle(&self) -> Bundle {
        Bundle {
            chain_pem: self.chain_pem.clone(),
            key: SecretPem::new(self.key_pem.clone()),
        }
    }

    /// The base64 body of the key: what must never show up in an error or a log.
    pub fn key_body(&self) -> String {
        self.key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

impl TestCa {
    /// A new CA ("certops contract test CA").
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "certops contract test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let root_pem = params.self_signed(&key).expect("CA certificate").pem();
        TestCa {
            issuer: rcgen::Issuer::new(params, key),
            root_pem,
        }
    }

    /// Issues a leaf for `dns` valid from an hour ago until `days` days from now.
    pub fn issue(&self, dns: &str, days: i64) -> Issued {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let mut params = rcgen::CertificateParams::new(vec![dns.to_string()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, dns);
        let now = Utc::now().timestamp();
        let not_after = now + TimeDelta::days(days).num_seconds();
        params.not_before = offset(now - 3600);
        params.not_after = offset(not_after);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let leaf_pem = params.signed_by(&key, &self.issuer).expect("sign").pem();
        Issued {
            chain_pem: format!("{leaf_pem}{}", self.root_pem),
            leaf_pem,
            key_pem: key.serialize_pem(),
            not_after,
        }
    }
}

fn offset(secs: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(secs).expect("time")
}

/// A notAfter (epoch seconds) as a date, for messages.
pub fn date(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

/// Runs the keystore contract. `names` prefixes every bundle name (unique per run);
/// `unknown` is a well-formed reference of this keystore that was never stored.
pub async fn keystore_contract(keystore: &dyn Keystore, names: &str, unknown: &str) {
    let ca = TestCa::new();
    let first = ca.issue("shop.contract.test", 30);
    let name = format!("{names}/shop-www");

    // Round trip: the key comes back inside a SecretPem only.
    let reference = keystore
        .put_bundle(&name, first.bundle())
        .await
        .expect("put_bundle");
    assert!(
        !reference.contains(&first.key_body()),
        "a reference carries no key"
    );
    let back = keystore
        .get_bundle(&reference)
        .await
        .expect("get_bundle of the reference put_bundle returned");
    assert_eq!(back.chain_pem, first.chain_pem, "the chain round-trips");
    assert_eq!(back.key.expose(), first.key_pem, "the key round-trips");
    // `Bundle` has no Debug at all; its key prints redacted.
    let printed = format!("{:?} {}", back.key, back.key);
    assert!(!printed.contains(&first.key_body()), "{printed}");
    assert!(printed.contains("REDACTED"), "{printed}");

    // Storing the same name again keeps the reference and replaces the content.
    let second = ca.issue("shop.contract.test", 60);
    let again = keystore
        .put_bundle(&name, second.bundle())
        .await
        .expect("re-put");
    assert_eq!(
        again, reference,
        "a re-put of the same name keeps the reference"
    );
    let back = keystore
        .get_bundle(&reference)
        .await
        .expect("get after re-put");
    assert_eq!(
        back.chain_pem, second.chain_pem,
        "the new content is served"
    );
    assert_eq!(back.key.expose(), second.key_pem);

    // exists / references.
    let other = keystore
        .put_bundle(
            &format!("{names}/fallback.docs"),
            ca.issue("docs.contract.test", 10).bundle(),
        )
        .await
        .expect("second bundle");
    assert_ne!(other, reference);
    assert!(keystore.exists(&reference).await.expect("exists"));
    assert!(keystore.exists(&other).await.expect("exists"));
    assert!(
        !keystore
            .exists(unknown)
            .await
            .expect("exists of an unknown reference"),
        "{unknown} was never stored"
    );
    let references = keystore.references().await.expect("references");
    for r in [&reference, &other] {
        assert!(references.contains(r), "{r} missing from {references:?}");
    }
    assert!(!references.iter().any(|r| r == unknown));
    assert_eq!(
        references.iter().filter(|r| *r == &reference).count(),
        1,
        "a re-put does not add a reference"
    );

    // Unknown references and bad names are errors that never quote a key.
    let err = keystore
        .get_bundle(unknown)
        .await
        .err()
        .expect("get_bundle of an unknown reference fails");
    assert_eq!(err.name(), "InvalidInput", "{err}");
    let err = keystore
        .put_bundle("bad name with spaces", second.bundle())
        .await
        .expect_err("a name with spaces is refused");
    assert_eq!(err.name(), "InvalidInput", "{err}");
    assert!(!err.to_string().contains(&second.key_body()), "{err}");
}
