//! [`AwsPrivateCa`]: certificates from AWS Private CA (`IssueCertificate` with the renew
//! step's CSR, then `GetCertificate` until it is issued); trust anchors from
//! `GetCertificateAuthorityCertificate`.
//!
//! Errors: throttling and `LimitExceededException` → [`Error::RateLimited`]; a refused CSR or
//! argument (`MalformedCSRException`, `InvalidArgsException`, …) → [`Error::IssuanceFailed`];
//! anything else (the service unreachable, the CA disabled) → [`Error::IssuerDown`].

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_acmpca::error::ProvideErrorMetadata;
use aws_sdk_acmpca::primitives::Blob;
use aws_sdk_acmpca::types::{SigningAlgorithm, Validity, ValidityPeriodType};
use certops_core::ports::{IssueRequest, Issuer};
use certops_core::Error;

/// Which CA and how.
#[derive(Debug, Clone)]
pub struct PrivateCaConfig {
    /// The issuer's inventory name.
    pub name: String,
    /// The certificate authority's ARN.
    pub certificate_authority_arn: String,
    /// Signing algorithm (`SHA256WITHECDSA`, `SHA256WITHRSA`, …).
    pub signing_algorithm: String,
    /// Validity in days.
    pub validity_days: i64,
    /// Template ARN, if not the default.
    pub template_arn: Option<String>,
    /// How long to wait for issuance.
    pub issue_timeout: Duration,
}

/// The AWS Private CA adapter.
#[derive(Debug, Clone)]
pub struct AwsPrivateCa {
    config: PrivateCaConfig,
    client: aws_sdk_acmpca::Client,
}

fn classify<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    name: &str,
    what: &str,
    e: &aws_sdk_acmpca::error::SdkError<E>,
) -> Error {
    let code = e.code().unwrap_or_default().to_string();
    let message = e.message().unwrap_or_default().to_string();
    let text = format!(
        "Private CA {name} {what}: {} {message}",
        if code.is_empty() {
            "unreachable:"
        } else {
            code.as_str()
        }
    );
    match code.as_str() {
        "ThrottlingException" | "LimitExceededException" | "TooManyRequestsException" => {
            Error::RateLimited(text)
        }
        "MalformedCSRException"
        | "InvalidArgsException"
        | "InvalidArnException"
        | "InvalidRequestException"
        | "InvalidPolicyException"
        | "ResourceNotFoundException"
        | "InvalidStateException" => Error::IssuanceFailed(text),
        "" => Error::IssuerDown(format!(
            "{text}{}",
            aws_sdk_acmpca::error::DisplayErrorContext(e)
        )),
        _ => Error::IssuerDown(text),
    }
}

impl AwsPrivateCa {
    /// An adapter for `config` over `client`.
    pub fn new(config: PrivateCaConfig, client: aws_sdk_acmpca::Client) -> AwsPrivateCa {
        AwsPrivateCa { config, client }
    }
}

#[async_trait]
impl Issuer for AwsPrivateCa {
    async fn issue(&self, request: &IssueRequest) -> Result<String, Error> {
        crate::csr::der(&request.csr_pem)?;
        let c = &self.config;
        let validity = Validity::builder()
            .value(c.validity_days)
            .r#type(ValidityPeriodType::Days)
            .build()
            .map_err(|e| Error::InvalidInput(format!("Private CA validity: {e}")))?;
        // The same CSR twice within five minutes is one certificate, as the API promises.
        let token = certops_core::canonical::sha256_hex(request.csr_pem.as_bytes());
        let mut call = self
            .client
            .issue_certificate()
            .certificate_authority_arn(&c.certificate_authority_arn)
            .csr(Blob::new(request.csr_pem.as_bytes()))
            .signing_algorithm(SigningAlgorithm::from(c.signing_algorithm.as_str()))
            .validity(validity)
            .idempotency_token(&token[..36]);
        if let Some(t) = &c.template_arn {
            call = call.template_arn(t);
        }
        let arn = call
            .send()
            .await
            .map_err(|e| classify(&c.name, "IssueCertificate", &e))?
            .certificate_arn()
            .map(str::to_string)
            .ok_or_else(|| {
                Error::IssuerDown(format!(
                    "Private CA {}: no certificate ARN returned",
                    c.name
                ))
            })?;
        let deadline = tokio::time::Instant::now() + c.issue_timeout;
        let mut delay = Duration::from_millis(200);
        loop {
            match self
                .client
                .get_certificate()
                .certificate_authority_arn(&c.certificate_authority_arn)
                .certificate_arn(&arn)
                .send()
                .await
            {
                Ok(out) => {
                    let leaf = out.certificate().unwrap_or_default().trim();
                    if leaf.is_empty() {
                        return Err(Error::IssuerDown(format!(
                            "Private CA {}: GetCertificate returned no certificate",
                            c.name
                        )));
                    }
                    let mut chain = format!("{leaf}\n");
                    if let Some(rest) = out.certificate_chain() {
                        chain.push_str(rest.trim());
                        chain.push('\n');
                    }
                    return Ok(chain);
                }
                Err(e) if e.code() == Some("RequestInProgressException") => {}
                Err(e) => return Err(classify(&c.name, "GetCertificate", &e)),
            }
            if tokio::time::Instant::now() + delay > deadline {
                return Err(Error::IssuerDown(format!(
                    "Private CA {}: {arn} not issued within {}s",
                    c.name,
                    c.issue_timeout.as_secs()
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(3));
        }
    }

    async fn trust_anchors_pem(&self) -> Result<Option<String>, Error> {
        let out = self
            .client
            .get_certificate_authority_certificate()
            .certificate_authority_arn(&self.config.certificate_authority_arn)
            .send()
            .await
            .map_err(|e| classify(&self.config.name, "GetCertificateAuthorityCertificate", &e))?;
        // The chain ends in the root; a root CA has no chain and is its own anchor.
        let pem = match out.certificate_chain() {
            Some(chain) if !chain.trim().is_empty() => chain.to_string(),
            _ => out.certificate().unwrap_or_default().to_string(),
        };
        Ok((!pem.trim().is_empty()).then_some(pem))
    }
}
