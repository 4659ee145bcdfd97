//! [`Issuer`] stand-in for an internal PKI: a local root CA and an intermediate (rcgen),
//! created on first use and kept in the [`Keystore`] (their private keys never touch the
//! database), signing CSRs with the intermediate.
//!
//! The issued certificate carries exactly the names of the request (common name and SANs
//! from the inventory, i.e. what the plan approved); a CSR asking for any other name is
//! refused. Faults can be injected per certificate object so demos and tests can drive the
//! rate-limit and outage paths of the workflow.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use certops_core::ports::{Bundle, Clock, IssueRequest, Issuer, Keystore, SecretPem};
use certops_core::Error;
use chrono::{DateTime, Datelike, TimeDelta, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

/// Keystore name of the root CA bundle.
pub const ROOT_BUNDLE: &str = "local-ca/root";
/// Keystore name of the intermediate CA bundle.
pub const INTERMEDIATE_BUNDLE: &str = "local-ca/intermediate";

/// Default leaf validity: 90 days.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);

/// A failure to inject into `issue` for one certificate object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerFault {
    /// `issue` fails with [`Error::RateLimited`].
    RateLimited,
    /// `issue` fails with [`Error::IssuerDown`].
    Down,
}

struct CaState {
    root_pem: String,
    intermediate_pem: String,
    issuer: rcgen::Issuer<'static, KeyPair>,
}

/// The local CA.
pub struct LocalCa {
    keystore: Arc<dyn Keystore>,
    clock: Arc<dyn Clock>,
    validity: Duration,
    state: tokio::sync::Mutex<Option<Arc<CaState>>>,
    faults: Mutex<HashMap<String, IssuerFault>>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

fn ca_err(what: &str, e: rcgen::Error) -> Error {
    Error::IssuerDown(format!("local CA: {what}: {e}"))
}

/// Sets `not_before`/`not_after` from chrono times (rcgen speaks `time`).
fn set_validity(
    params: &mut CertificateParams,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(), Error> {
    let secs = |t: DateTime<Utc>| {
        if !(1970..=9000).contains(&t.year()) {
            return Err(Error::InvalidInput(format!(
                "validity time {t} is out of range"
            )));
        }
        u64::try_from(t.timestamp())
            .map(Duration::from_secs)
            .map_err(|_| Error::InvalidInput(format!("validity time {t} is out of range")))
    };
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + secs(from)?;
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + secs(to)?;
    Ok(())
}

fn random_serial() -> SerialNumber {
    let mut bytes = *uuid::Uuid::new_v4().as_bytes();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte to strip
    SerialNumber::from_slice(&bytes)
}

fn to_timedelta(d: Duration) -> Result<TimeDelta, Error> {
    TimeDelta::from_std(d).map_err(|_| Error::InvalidInput(format!("duration {d:?} is too long")))
}

impl LocalCa {
    /// A CA keeping its root and intermediate in `keystore`; leaves are valid for
    /// [`DEFAULT_VALIDITY`] from `clock`'s now.
    pub fn new(keystore: Arc<dyn Keystore>, clock: Arc<dyn Clock>) -> LocalCa {
        LocalCa {
            keystore,
            clock,
            validity: DEFAULT_VALIDITY,
            state: tokio::sync::Mutex::new(None),
            faults: Mutex::new(HashMap::new()),
        }
    }

    /// The same CA issuing leaves valid for `validity` (must be at least one second).
    pub fn with_validity(mut self, validity: Duration) -> Result<LocalCa, Error> {
        if validity < Duration::from_secs(1) || validity > Duration::from_secs(10 * 365 * 86_400) {
            return Err(Error::InvalidInput(format!(
                "leaf validity {validity:?} must be between 1 s and 10 years"
            )));
        }
        self.validity = validity;
        Ok(self)
    }

    /// Makes `issue` for `cert_id` fail with `fault` (`None` clears it).
    pub fn set_fault(&self, cert_id: &str, fault: Option<IssuerFault>) {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        match fault {
            Some(f) => faults.insert(cert_id.to_string(), f),
            None => faults.remove(cert_id),
        };
    }

    /// The root CA certificate (PEM), creating the CA on first use.
    pub async fn root_pem(&self) -> Result<String, Error> {
        Ok(self.state().await?.root_pem.clone())
    }

    /// The intermediate CA certificate (PEM), creating the CA on first use.
    pub async fn intermediate_pem(&self) -> Result<String, Error> {
        Ok(self.state().await?.intermediate_pem.clone())
    }

    async fn state(&self) -> Result<Arc<CaState>, Error> {
        let mut guard = self.state.lock().await;
        if let Some(state) = guard.as_ref() {
            return Ok(state.clone());
        }
        let root_ref = format!("keystore:{ROOT_BUNDLE}");
        let int_ref = format!("keystore:{INTERMEDIATE_BUNDLE}");
        let state =
            if self.keystore.exists(&root_ref).await? && self.keystore.exists(&int_ref).await? {
                let root = self.keystore.get_bundle(&root_ref).await?;
                let int = self.keystore.get_bundle(&int_ref).await?;
                let key = KeyPair::from_pem(int.key.expose())
                    .map_err(|e| ca_err("intermediate key does not load", e))?;
                let issuer = rcgen::Issuer::from_ca_cert_pem(&int.chain_pem, key)
                    .map_err(|e| ca_err("intermediate certificate does not load", e))?;
                CaState {
                    root_pem: root.chain_pem,
                    intermediate_pem: int.chain_pem,
                    issuer,
                }
            } else {
                self.create().await?
            };
        let state = Arc::new(state);
        *guard = Some(state.clone());
        Ok(state)
    }

    async fn create(&self) -> Result<CaState, Error> {
        let now = self.clock.now();
        let start = now - TimeDelta::hours(1);

        let root_key = KeyPair::generate().map_err(|e| ca_err("root key", e))?;
        let mut root = CertificateParams::default();
        root.distinguished_name = DistinguishedName::new();
        root.distinguished_name
            .push(DnType::CommonName, "certops local root CA");
        root.distinguished_name
            .push(DnType::OrganizationName, "certops (embedded)");
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        root.serial_number = Some(random_serial());
        set_validity(&mut root, start, now + TimeDelta::days(3650))?;
        let root_cert = root
            .self_signed(&root_key)
            .map_err(|e| ca_err("root certificate", e))?;
        let root_pem = root_cert.pem();
        let root_issuer = rcgen::Issuer::new(root, root_key);

        let int_key = KeyPair::generate().map_err(|e| ca_err("intermediate key", e))?;
        let mut int = CertificateParams::default();
        int.distinguished_name = DistinguishedName::new();
        int.distinguished_name
            .push(DnType::CommonName, "certops local intermediate CA");
        int.distinguished_name
            .push(DnType::OrganizationName, "certops (embedded)");
        int.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        int.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        int.use_authority_key_identifier_extension = true;
        int.serial_number = Some(random_serial());
        set_validity(&mut int, start, now + TimeDelta::days(1825))?;
        let int_cert = int
            .signed_by(&int_key, &root_issuer)
            .map_err(|e| ca_err("intermediate certificate", e))?;
        let intermediate_pem = int_cert.pem();

        let root_key_pem = root_issuer.key().serialize_pem();
        self.keystore
            .put_bundle(
                ROOT_BUNDLE,
                Bundle {
                    chain_pem: root_pem.clone(),
                    key: SecretPem::new(root_key_pem),
                },
            )
            .await?;
        self.keystore
            .put_bundle(
                INTERMEDIATE_BUNDLE,
                Bundle {
                    chain_pem: intermediate_pem.clone(),
                    key: SecretPem::new(int_key.serialize_pem()),
                },
            )
            .await?;
        tracing::info!("local CA created (root and intermediate stored in the keystore)");
        Ok(CaState {
            root_pem,
            intermediate_pem,
            issuer: rcgen::Issuer::new(int, int_key),
        })
    }
}

/// The names a request allows: its common name and SANs, lowercased, in order, deduplicated.
fn requested_names(request: &IssueRequest) -> Vec<String> {
    let mut seen = BTreeSet::new();
    std::iter::once(&request.common_name)
        .chain(request.sans.iter())
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty() && seen.insert(n.clone()))
        .collect()
}

fn san_for(name: &str) -> Result<SanType, Error> {
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let ia5 = name
        .to_string()
        .try_into()
        .map_err(|_| Error::InvalidInput(format!("\"{name}\" is not a valid DNS name")))?;
    Ok(SanType::DnsName(ia5))
}

#[async_trait]
impl Issuer for LocalCa {
    async fn issue(&self, request: &IssueRequest) -> Result<String, Error> {
        let fault = self
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&request.cert_id)
            .copied();
        match fault {
            Some(IssuerFault::RateLimited) => {
                return Err(Error::RateLimited(format!(
                    "local CA: injected rate limit for {}",
                    request.cert_id
                )))
            }
            Some(IssuerFault::Down) => {
                return Err(Error::IssuerDown(format!(
                    "local CA: injected outage for {}",
                    request.cert_id
                )))
            }
            None => {}
        }
        let names = requested_names(request);
        if names.is_empty() {
            return Err(Error::InvalidInput(
                "issue request names no common name or SAN".into(),
            ));
        }
        let mut csr = CertificateSigningRequestParams::from_pem(&request.csr_pem).map_err(|e| {
            Error::InvalidInput(format!("CSR for {} is not usable: {e}", request.cert_id))
        })?;
        for san in &csr.params.subject_alt_names {
            let name = match san {
                SanType::DnsName(n) => n.as_str().to_ascii_lowercase(),
                SanType::IpAddress(ip) => ip.to_string(),
                other => {
                    return Err(Error::InvalidInput(format!(
                        "CSR for {} asks for an unsupported SAN {other:?}",
                        request.cert_id
                    )))
                }
            };
            if !names.contains(&name) {
                return Err(Error::InvalidInput(format!(
                    "CSR for {} asks for \"{name}\", which the request does not name",
                    request.cert_id
                )));
            }
        }
        let state = self.state().await?;
        let now = self.clock.now();
        let params = &mut csr.params;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, request.common_name.trim());
        params.subject_alt_names = names.iter().map(|n| san_for(n)).collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        set_validity(params, now, now + to_timedelta(self.validity)?)?;
        let leaf = csr
            .signed_by(&state.issuer)
            .map_err(|e| ca_err("signing", e))?;
        tracing::info!(cert_id = %request.cert_id, names = ?names, "local CA issued a certificate");
        Ok(format!("{}{}", leaf.pem(), state.intermediate_pem))
    }

    async fn trust_anchors_pem(&self) -> Result<Option<String>, Error> {
        Ok(Some(self.root_pem().await?))
    }
}

/// Test support shared by the adapters' tests: a CSR and key for some names, a fixed clock.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A system-time clock (TLS verification in tests uses the real time).
    pub(crate) struct Now;
    impl Clock for Now {
        fn now(&self) -> DateTime<Utc> {
            Utc::now()
        }
    }

    /// A fresh key and a CSR for `names` (first one is the CN).
    pub(crate) fn make_csr(names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        (csr, key.serialize_pem())
    }

    /// The SANs of the first certificate of `chain_pem`, as x509-parser prints them
    /// (`DNSName(shop.local)`).
    pub(crate) fn leaf_sans(chain_pem: &str) -> Vec<String> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes()).unwrap();
        let leaf = pem.parse_x509().unwrap();
        leaf.subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect()
    }

    /// An issue request for `cert_id` covering `names`.
    pub(crate) fn request(cert_id: &str, names: &[&str], csr_pem: String) -> IssueRequest {
        IssueRequest {
            cert_id: cert_id.into(),
            issuer: certops_core::Issuer {
                name: "corp-pki".into(),
                method: certops_core::RenewalMethod::InternalPki,
                registered_domain: None,
            },
            csr_pem,
            common_name: names[0].into(),
            sans: names.iter().map(|s| s.to_string()).collect(),
            replaces: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::FileKeystore;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use x509_parser::prelude::*;

    fn ca(dir: &std::path::Path) -> (Arc<FileKeystore>, LocalCa) {
        let ks = Arc::new(FileKeystore::open(&dir.join("keystore")).unwrap());
        (ks.clone(), LocalCa::new(ks, Arc::new(Now)))
    }

    fn ders(pem: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    #[tokio::test]
    async fn issues_a_leaf_whose_chain_verifies_to_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let (ks, ca) = ca(tmp.path());
        let (csr, _key) = make_csr(&["shop.local", "www.shop.local"]);
        let chain = ca
            .issue(&request("shop-www", &["shop.local", "www.shop.local"], csr))
            .await
            .unwrap();
        let certs = ders(&chain);
        assert_eq!(certs.len(), 2, "leaf + intermediate");

        let (_, leaf) = X509Certificate::from_der(&certs[0]).unwrap();
        let (_, int) = X509Certificate::from_der(&certs[1]).unwrap();
        assert_eq!(leaf.issuer(), int.subject());
        assert!(!leaf.is_ca());
        let days = (leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp())
            / 86_400;
        assert_eq!(days, 90);
        let nb = leaf.validity().not_before.timestamp();
        assert!((nb - Utc::now().timestamp()).abs() < 60, "starts now");
        assert_eq!(
            testing::leaf_sans(&chain),
            ["DNSName(shop.local)", "DNSName(www.shop.local)"]
        );

        // Verify the chain as a TLS client would, trusting only the root.
        let root = ca.trust_anchors_pem().await.unwrap().unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in ders(&root) {
            roots.add(c).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        let name = ServerName::try_from("www.shop.local").unwrap();
        verifier
            .verify_server_cert(&certs[0], &certs[1..], &name, &[], UnixTime::now())
            .unwrap();
        let wrong = ServerName::try_from("evil.local").unwrap();
        assert!(verifier
            .verify_server_cert(&certs[0], &certs[1..], &wrong, &[], UnixTime::now())
            .is_err());

        // The CA keys live in the keystore, and a new CA over it reuses them.
        let refs = ks.references().await.unwrap();
        assert_eq!(
            refs,
            ["keystore:local-ca/intermediate", "keystore:local-ca/root"]
        );
        let again = LocalCa::new(ks, Arc::new(Now));
        assert_eq!(again.root_pem().await.unwrap(), root);
        let (csr2, _) = make_csr(&["shop.local"]);
        let chain2 = again
            .issue(&request("shop-www", &["shop.local"], csr2))
            .await
            .unwrap();
        let certs2 = ders(&chain2);
        verifier
            .verify_server_cert(
                &certs2[0],
                &certs2[1..],
                &ServerName::try_from("shop.local").unwrap(),
                &[],
                UnixTime::now(),
            )
            .unwrap();
    }

    #[tokio::test]
    async fn validity_is_configurable() {
        let tmp = tempfile::tempdir().unwrap();
        let (_ks, ca) = ca(tmp.path());
        let ca = ca.with_validity(Duration::from_secs(7 * 86_400)).unwrap();
        let (csr, _) = make_csr(&["a.local"]);
        let chain = ca.issue(&request("a", &["a.local"], csr)).await.unwrap();
        let certs = ders(&chain);
        let (_, leaf) = X509Certificate::from_der(&certs[0]).unwrap();
        let v = leaf.validity();
        assert_eq!(
            v.not_after.timestamp() - v.not_before.timestamp(),
            7 * 86_400
        );
        let (_ks, ca) = self::ca(tmp.path());
        assert_eq!(
            ca.with_validity(Duration::ZERO).unwrap_err().name(),
            "InvalidInput"
        );
    }

    #[tokio::test]
    async fn csrs_for_other_names_or_garbage_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (_ks, ca) = ca(tmp.path());
        let (csr, _) = make_csr(&["shop.local", "evil.local"]);
        let err = ca
            .issue(&request("shop", &["shop.local"], csr))
            .await
            .unwrap_err();
        assert_eq!(err.name(), "InvalidInput");
        assert!(err.to_string().contains("evil.local"), "{err}");
        let err = ca
            .issue(&request("shop", &["shop.local"], "not a csr".into()))
            .await
            .unwrap_err();
        assert_eq!(err.name(), "InvalidInput");
    }

    #[tokio::test]
    async fn injected_faults_map_to_rate_limited_and_issuer_down() {
        let tmp = tempfile::tempdir().unwrap();
        let (_ks, ca) = ca(tmp.path());
        let (csr, _) = make_csr(&["shop.local"]);
        let req = request("shop", &["shop.local"], csr);
        ca.set_fault("shop", Some(IssuerFault::RateLimited));
        assert_eq!(ca.issue(&req).await.unwrap_err().name(), "RateLimited");
        ca.set_fault("shop", Some(IssuerFault::Down));
        assert_eq!(ca.issue(&req).await.unwrap_err().name(), "IssuerDown");
        // Other certificates are unaffected; clearing the fault restores issuance.
        let (csr_b, _) = make_csr(&["b.local"]);
        ca.issue(&request("b", &["b.local"], csr_b)).await.unwrap();
        ca.set_fault("shop", None);
        ca.issue(&req).await.unwrap();
    }
}
