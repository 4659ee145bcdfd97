//! A throw-away CA generated at run time (rcgen) and a loopback leaf it signs, for the TLS of
//! the test servers themselves (pebble's API, the fault proxy, the small ACME server). Keys
//! live only in memory and in the test's temporary directory.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The CA and one leaf for `127.0.0.1` / `localhost`, written into a directory.
pub struct TestPki {
    /// The CA certificate (what clients trust).
    pub ca_pem: String,
    /// The CA certificate's file.
    pub ca_file: PathBuf,
    /// The leaf certificate's file (for the servers).
    pub leaf_file: PathBuf,
    /// The leaf key's file (for the servers).
    pub leaf_key_file: PathBuf,
    /// The leaf certificate PEM.
    pub leaf_pem: String,
    /// The leaf key PEM.
    pub leaf_key_pem: String,
}

impl TestPki {
    /// Generates the CA and leaf into `dir`.
    pub fn generate(dir: &Path) -> TestPki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name
            .push(DnType::CommonName, "certops test server CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let leaf_key = KeyPair::generate().expect("leaf key");
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).expect("leaf");
        leaf.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("leaf cert");
        let pki = TestPki {
            ca_pem: ca_cert.pem(),
            ca_file: dir.join("test-ca.pem"),
            leaf_file: dir.join("server.pem"),
            leaf_key_file: dir.join("server.key"),
            leaf_pem: leaf_cert.pem(),
            leaf_key_pem: leaf_key.serialize_pem(),
        };
        std::fs::write(&pki.ca_file, &pki.ca_pem).expect("write CA");
        std::fs::write(&pki.leaf_file, &pki.leaf_pem).expect("write leaf");
        std::fs::write(&pki.leaf_key_file, &pki.leaf_key_pem).expect("write leaf key");
        pki
    }

    /// A reqwest client trusting only this CA.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only(
                reqwest::Certificate::from_pem_bundle(self.ca_pem.as_bytes()).expect("CA"),
            )
            .no_proxy()
            .build()
            .expect("client")
    }

    /// A rustls server configuration presenting the leaf.
    pub fn server_config(&self) -> std::sync::Arc<rustls::ServerConfig> {
        use rustls_pki_types::pem::PemObject;
        let certs: Vec<rustls_pki_types::CertificateDer<'static>> =
            rustls_pki_types::CertificateDer::pem_slice_iter(self.leaf_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("leaf PEM");
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(self.leaf_key_pem.as_bytes())
            .expect("key PEM");
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
        std::sync::Arc::new(config)
    }
}
