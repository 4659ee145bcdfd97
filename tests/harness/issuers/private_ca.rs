//! An AWS Private CA root on moto server, made ACTIVE the way the console does it: create the
//! CA, issue its own certificate from its CSR with the root template, import it.

use aws_sdk_acmpca::primitives::Blob;
use aws_sdk_acmpca::types::{
    Asn1Subject, CertificateAuthorityConfiguration, CertificateAuthorityType, KeyAlgorithm,
    SigningAlgorithm, Validity, ValidityPeriodType,
};

/// Creates an ACTIVE root CA; returns its ARN.
pub async fn active_root_ca(sdk: &aws_config::SdkConfig) -> String {
    let pca = aws_sdk_acmpca::Client::new(sdk);
    let ca_arn = pca
        .create_certificate_authority()
        .certificate_authority_type(CertificateAuthorityType::Root)
        .certificate_authority_configuration(
            CertificateAuthorityConfiguration::builder()
                .key_algorithm(KeyAlgorithm::EcPrime256v1)
                .signing_algorithm(SigningAlgorithm::Sha256Withecdsa)
                .subject(
                    Asn1Subject::builder()
                        .common_name("certops moto root")
                        .build(),
                )
                .build()
                .expect("ca config"),
        )
        .send()
        .await
        .expect("create CA")
        .certificate_authority_arn()
        .expect("arn")
        .to_string();
    let ca_csr = pca
        .get_certificate_authority_csr()
        .certificate_authority_arn(&ca_arn)
        .send()
        .await
        .expect("CA CSR")
        .csr()
        .expect("csr")
        .to_string();
    let root_arn = pca
        .issue_certificate()
        .certificate_authority_arn(&ca_arn)
        .csr(Blob::new(ca_csr.as_bytes()))
        .signing_algorithm(SigningAlgorithm::Sha256Withecdsa)
        .template_arn("arn:aws:acm-pca:::template/RootCACertificate/V1")
        .validity(
            Validity::builder()
                .value(3650)
                .r#type(ValidityPeriodType::Days)
                .build()
                .expect("validity"),
        )
        .send()
        .await
        .expect("issue root")
        .certificate_arn()
        .expect("root arn")
        .to_string();
    let root_pem = pca
        .get_certificate()
        .certificate_authority_arn(&ca_arn)
        .certificate_arn(&root_arn)
        .send()
        .await
        .expect("root")
        .certificate()
        .expect("root pem")
        .to_string();
    pca.import_certificate_authority_certificate()
        .certificate_authority_arn(&ca_arn)
        .certificate(Blob::new(root_pem.as_bytes()))
        .send()
        .await
        .expect("import root");
    ca_arn
}
