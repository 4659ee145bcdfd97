//! [`AcmeIssuer`]: certificates from an ACME CA (RFC 8555) through instant-acme.
//!
//! The account is created once and its credentials kept in the [`Keystore`] under
//! `acme-account/<issuer name>` (the secret half: never logged, never in history); every later
//! run restores it from there. Orders ask for exactly the planned names; each authorization is
//! answered by the certificate object's solver and cleaned up afterwards, whatever happened;
//! `finalize` gets the renew step's CSR, never a key.
//!
//! Errors come back as names the state machine routes:
//! - `rateLimited` (HTTP 429) → [`Error::RateLimited`] carrying the CA's `Retry-After`
//!   ([`certops_core::acme_ledger::retry_after_note`]); until then this issuer refuses without
//!   calling the CA, so a retry never becomes a tight loop;
//! - `badNonce` is retried by instant-acme (three attempts), then [`Error::Transient`];
//! - an invalid order or a failed challenge → [`Error::IssuanceFailed`] with the problem's
//!   type and detail;
//! - the CA unreachable, a 5xx, or an order that never completes → [`Error::IssuerDown`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use certops_core::acme_ledger::retry_after_note;
use certops_core::integrations::SecretResolver;
use certops_core::ports::{Bundle, IssueRequest, Keystore, SecretPem};
use certops_core::Error;
use chrono::{DateTime, Utc};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, CertificateIdentifier, ExternalAccountKey,
    Identifier, NewAccount, NewOrder, OrderStatus, Problem, RetryPolicy,
};
use rustls_pki_types::CertificateDer;

use crate::acme_http::AcmeHttp;
use crate::solvers::{Answer, ChallengeSolver};

const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";
const BAD_NONCE: &str = "urn:ietf:params:acme:error:badNonce";
const SERVER_INTERNAL: &str = "urn:ietf:params:acme:error:serverInternal";

/// What one certificate object asks of the ACME issuer.
#[derive(Clone)]
pub struct AcmeCertificate {
    /// How its challenges are answered.
    pub solver: Arc<dyn ChallengeSolver>,
    /// The profile to ask for, if any.
    pub profile: Option<String>,
}

/// The account-level configuration of one ACME issuer.
pub struct AcmeConfig {
    /// The issuer's inventory name (keys the account in the keystore).
    pub name: String,
    /// The directory URL.
    pub directory_url: String,
    /// Account contact URLs.
    pub contact: Vec<String>,
    /// External account binding: key id and the HMAC key (base64url, by reference).
    pub eab: Option<(String, certops_core::integrations::SecretRef)>,
    /// PEM of the anchors issued certificates chain to (`None`: the public web roots).
    pub trust_anchors_pem: Option<String>,
    /// How long to wait for an order to become ready, then valid.
    pub order_timeout: Duration,
}

/// An ACME CA behind the `Issuer` port.
pub struct AcmeIssuer {
    config: AcmeConfig,
    http: AcmeHttp,
    keystore: Arc<dyn Keystore>,
    secrets: Arc<dyn SecretResolver>,
    certificates: HashMap<String, AcmeCertificate>,
    default_solver: Option<Arc<dyn ChallengeSolver>>,
    account: tokio::sync::Mutex<Option<Account>>,
    not_before: Mutex<Option<DateTime<Utc>>>,
}

/// A CA's suggested renewal window for one certificate (RFC 9773 §4.2).
pub use certops_core::ports::RenewalWindow;

/// Parses an ARI identifier (`base64url(AKI keyIdentifier).base64url(serial)`), as
/// [`certificate_id`] makes and [`certops_core::ports::Observation::ari_id`] carries.
pub fn parse_certificate_id(text: &str) -> Result<CertificateIdentifier<'static>, Error> {
    let valid = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    match text.split_once('.') {
        Some((aki, serial)) if valid(aki) && valid(serial) => Ok(CertificateIdentifier {
            authority_key_identifier: aki.to_string().into(),
            serial: serial.to_string().into(),
        }),
        _ => Err(Error::InvalidInput(format!(
            "{text:?} is not an ARI certificate identifier (base64url AKI, '.', base64url serial)"
        ))),
    }
}

/// The ARI identifier (`base64url(AKI keyIdentifier).base64url(serial)`) of the leaf of
/// `chain_pem`.
pub fn certificate_id(chain_pem: &str) -> Result<CertificateIdentifier<'static>, Error> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes())
        .map_err(|e| Error::InvalidInput(format!("the certificate is not PEM: {e}")))?;
    let der = CertificateDer::from(pem.contents);
    CertificateIdentifier::try_from(&der)
        .map(CertificateIdentifier::into_owned)
        .map_err(|e| Error::InvalidInput(format!("no ARI identifier: {e}")))
}

fn chrono_of(t: time::OffsetDateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond()).unwrap_or_default()
}

impl std::fmt::Debug for AcmeIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeIssuer")
            .field("name", &self.config.name)
            .field("directory_url", &self.config.directory_url)
            .finish_non_exhaustive()
    }
}

/// The keystore name of an issuer's ACME account.
pub fn account_bundle_name(issuer: &str) -> String {
    format!("acme-account/{issuer}")
}

/// Whether keystore `reference` is the bundle `name`: it ends with the name (`keystore:<name>`,
/// a prefixed secret name), or with the name, `-` and the six-character suffix Secrets Manager
/// appends to ARNs.
fn names_bundle(reference: &str, name: &str) -> bool {
    if reference.ends_with(name) {
        return true;
    }
    match reference.rsplit_once('-') {
        Some((head, suffix)) => {
            suffix.len() == 6
                && suffix.bytes().all(|b| b.is_ascii_alphanumeric())
                && head.ends_with(name)
        }
        None => false,
    }
}

fn problem_text(p: &Problem) -> String {
    let mut text = format!(
        "{}: {}",
        p.r#type.as_deref().unwrap_or("about:blank"),
        p.detail.as_deref().unwrap_or("(no detail)")
    );
    for sub in &p.subproblems {
        text.push_str(&format!(
            "; {}: {}",
            sub.r#type.as_deref().unwrap_or("about:blank"),
            sub.detail.as_deref().unwrap_or("(no detail)")
        ));
    }
    text
}

impl AcmeIssuer {
    /// An issuer for `config`, speaking through `http`, keeping its account in `keystore`,
    /// resolving the EAB key through `secrets`. `certificates` maps certificate object ids to
    /// their solver and profile; `default_solver` answers for the others.
    pub fn new(
        config: AcmeConfig,
        http: AcmeHttp,
        keystore: Arc<dyn Keystore>,
        secrets: Arc<dyn SecretResolver>,
        certificates: HashMap<String, AcmeCertificate>,
        default_solver: Option<Arc<dyn ChallengeSolver>>,
    ) -> AcmeIssuer {
        AcmeIssuer {
            config,
            http,
            keystore,
            secrets,
            certificates,
            default_solver,
            account: tokio::sync::Mutex::new(None),
            not_before: Mutex::new(None),
        }
    }

    /// The issuer's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The PEM of the anchors issued certificates chain to, if not the public roots.
    pub fn trust_anchors(&self) -> Option<&str> {
        self.config.trust_anchors_pem.as_deref()
    }

    /// The instant before which this issuer will not send a new order (the CA's last
    /// `Retry-After`), if it is still ahead.
    pub fn retry_after(&self) -> Option<DateTime<Utc>> {
        self.not_before
            .lock()
            .ok()
            .and_then(|t| *t)
            .filter(|t| *t > Utc::now())
    }

    fn map_error(&self, what: &str, e: instant_acme::Error) -> Error {
        let name = &self.config.name;
        match e {
            instant_acme::Error::Api(p) => {
                let kind = p.r#type.as_deref().unwrap_or_default();
                let text = problem_text(&p);
                if kind == RATE_LIMITED || p.status == Some(429) {
                    let until = self.http.take_retry_after();
                    if let (Some(until), Ok(mut nb)) = (until, self.not_before.lock()) {
                        *nb = Some(nb.map_or(until, |t| t.max(until)));
                    }
                    let note = until
                        .map(retry_after_note)
                        .unwrap_or_else(|| "no Retry-After given".to_string());
                    Error::RateLimited(format!("ACME {name} {what}: {text} ({note})"))
                } else if kind == BAD_NONCE {
                    Error::Transient(format!("ACME {name} {what}: {text}"))
                } else if kind == SERVER_INTERNAL || p.status.is_some_and(|s| s >= 500) {
                    Error::IssuerDown(format!("ACME {name} {what}: {text}"))
                } else {
                    Error::IssuanceFailed(format!("ACME {name} {what}: {text}"))
                }
            }
            instant_acme::Error::Other(inner) => {
                Error::IssuerDown(format!("ACME {name} {what}: unreachable: {inner}"))
            }
            instant_acme::Error::Timeout(_) => Error::IssuerDown(format!(
                "ACME {name} {what}: the order did not complete within {}s",
                self.config.order_timeout.as_secs()
            )),
            instant_acme::Error::Json(e) => {
                Error::IssuerDown(format!("ACME {name} {what}: unreadable answer: {e}"))
            }
            other => Error::IssuanceFailed(format!("ACME {name} {what}: {other}")),
        }
    }

    /// The account: restored from the keystore, or created once and stored there.
    async fn account(&self) -> Result<Account, Error> {
        let mut slot = self.account.lock().await;
        if let Some(a) = slot.as_ref() {
            return Ok(a.clone());
        }
        let bundle_name = account_bundle_name(&self.config.name);
        let existing = self
            .keystore
            .references()
            .await?
            .into_iter()
            .find(|r| names_bundle(r, &bundle_name));
        let account = if let Some(reference) = existing {
            let bundle = self.keystore.get_bundle(&reference).await?;
            let credentials: AccountCredentials = serde_json::from_str(bundle.key.expose())
                .map_err(|_| {
                    Error::InvalidInput(format!("the ACME account in {reference} is unreadable"))
                })?;
            Account::builder_with_http(Box::new(self.http.clone()))
                .from_credentials(credentials)
                .await
                .map_err(|e| self.map_error("restoring the account", e))?
        } else {
            let contact: Vec<&str> = self.config.contact.iter().map(String::as_str).collect();
            let eab = match &self.config.eab {
                None => None,
                Some((kid, hmac_ref)) => {
                    let hmac = self.secrets.resolve(hmac_ref).await?;
                    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(hmac.trim().trim_end_matches('='))
                        .map_err(|_| {
                            Error::InvalidInput(format!(
                                "the EAB HMAC key {hmac_ref} is not base64url"
                            ))
                        })?;
                    Some(ExternalAccountKey::new(kid.clone(), &key))
                }
            };
            let (account, credentials) = Account::builder_with_http(Box::new(self.http.clone()))
                .create(
                    &NewAccount {
                        contact: &contact,
                        terms_of_service_agreed: true,
                        only_return_existing: false,
                    },
                    self.config.directory_url.clone(),
                    eab.as_ref(),
                )
                .await
                .map_err(|e| self.map_error("creating the account", e))?;
            let secret = serde_json::to_string(&credentials).map_err(|_| {
                Error::InvalidInput("ACME account credentials not serializable".into())
            })?;
            self.keystore
                .put_bundle(
                    &bundle_name,
                    Bundle {
                        chain_pem: serde_json::json!({
                            "acmeAccount": account.id(),
                            "directory": self.config.directory_url,
                        })
                        .to_string(),
                        key: SecretPem::new(secret),
                    },
                )
                .await?;
            tracing::info!(issuer = %self.config.name, account = %account.id(), "ACME account created");
            account
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    fn certificate(&self, cert_id: &str) -> Result<AcmeCertificate, Error> {
        if let Some(c) = self.certificates.get(cert_id) {
            return Ok(c.clone());
        }
        match &self.default_solver {
            Some(solver) => Ok(AcmeCertificate {
                solver: solver.clone(),
                profile: None,
            }),
            None => Err(Error::InvalidInput(format!(
                "{cert_id}: no ACME challenge solver in the inventory (acme.solver) and none \
                 configured for issuer {}",
                self.config.name
            ))),
        }
    }

    /// Orders, answers the challenges, finalizes with the CSR and downloads the chain.
    pub async fn issue_chain(&self, request: &IssueRequest) -> Result<String, Error> {
        if let Some(until) = self.retry_after() {
            return Err(Error::RateLimited(format!(
                "ACME {}: the CA asked for no new order before this ({}); not sending one",
                self.config.name,
                retry_after_note(until)
            )));
        }
        let cert = self.certificate(&request.cert_id)?;
        let csr = crate::csr::der(&request.csr_pem)?;
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = request
            .sans
            .iter()
            .map(|n| Identifier::Dns(n.clone()))
            .collect();
        // What the order replaces (RFC 9773 §5): the served certificate, from the scan's
        // renewal-information record, as the renew step names it.
        let replaces = match request.replaces.as_deref().map(parse_certificate_id) {
            Some(Ok(id)) => Some(id),
            Some(Err(e)) => {
                tracing::warn!(issuer = %self.config.name, error = %e, "replaces ignored");
                None
            }
            None => None,
        };
        let ordered = match Self::new_order(&account, &identifiers, &cert, replaces.as_ref()).await
        {
            // A CA without ARI: order without `replaces`.
            Err(instant_acme::Error::Unsupported(_)) if replaces.is_some() => {
                Self::new_order(&account, &identifiers, &cert, None).await
            }
            other => other,
        };
        let mut order = ordered.map_err(|e| self.map_error("newOrder", e))?;

        let mut presented: Vec<Answer> = Vec::new();
        let outcome = self.validate_order(&mut order, &cert, &mut presented).await;
        for answer in &presented {
            if let Err(e) = cert.solver.clean_up(answer).await {
                tracing::warn!(issuer = %self.config.name, name = %answer.name, error = %e, "ACME challenge clean-up failed");
            }
        }
        outcome?;

        order
            .finalize_csr(&csr)
            .await
            .map_err(|e| self.map_error("finalize", e))?;
        let retries = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(self.config.order_timeout);
        let chain = order
            .poll_certificate(&retries)
            .await
            .map_err(|e| self.map_error("certificate download", e))?;
        Ok(chain)
    }

    async fn new_order(
        account: &Account,
        identifiers: &[Identifier],
        cert: &AcmeCertificate,
        replaces: Option<&CertificateIdentifier<'static>>,
    ) -> Result<instant_acme::Order, instant_acme::Error> {
        let mut new_order = NewOrder::new(identifiers);
        if let Some(profile) = &cert.profile {
            new_order = new_order.profile(profile);
        }
        if let Some(r) = replaces {
            new_order = new_order.replaces(r.clone());
        }
        account.new_order(&new_order).await
    }

    /// The CA's suggested renewal window for the leaf of `chain_pem` (ARI, RFC 9773 §4).
    /// A CA without ARI is [`Error::InvalidInput`] saying so.
    pub async fn renewal_window(&self, chain_pem: &str) -> Result<RenewalWindow, Error> {
        self.renewal_window_by_id(&certificate_id(chain_pem)?).await
    }

    /// The CA's suggested renewal window for the certificate with ARI identifier `id`.
    /// A CA without ARI is [`Error::InvalidInput`] saying so.
    pub async fn renewal_window_by_id(
        &self,
        id: &CertificateIdentifier<'static>,
    ) -> Result<RenewalWindow, Error> {
        self.offered_window(id).await?.ok_or_else(|| {
            Error::InvalidInput(format!(
                "ACME {}: the CA does not offer renewal information",
                self.config.name
            ))
        })
    }

    /// The CA's window for `id`; `None` when the CA offers no ARI.
    pub async fn offered_window(
        &self,
        id: &CertificateIdentifier<'static>,
    ) -> Result<Option<RenewalWindow>, Error> {
        let account = self.account().await?;
        let (info, retry) = match account.renewal_info(id).await {
            Ok(found) => found,
            Err(instant_acme::Error::Unsupported(_)) => return Ok(None),
            Err(other) => return Err(self.map_error("renewalInfo", other)),
        };
        let now = Utc::now();
        Ok(Some(RenewalWindow {
            certificate_id: id.to_string(),
            start: chrono_of(info.suggested_window.start),
            end: chrono_of(info.suggested_window.end),
            next_check: now
                + chrono::TimeDelta::from_std(retry).unwrap_or(chrono::TimeDelta::hours(6)),
            explanation_url: info.explanation_url,
        }))
    }

    async fn validate_order(
        &self,
        order: &mut instant_acme::Order,
        cert: &AcmeCertificate,
        presented: &mut Vec<Answer>,
    ) -> Result<(), Error> {
        let kind = cert.solver.challenge_type();
        let mut authorizations = order.authorizations();
        while let Some(result) = authorizations.next().await {
            let mut authz = result.map_err(|e| self.map_error("authorization", e))?;
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(Error::IssuanceFailed(format!(
                        "ACME {}: authorization for {} is {other:?}",
                        self.config.name,
                        authz.identifier()
                    )))
                }
            }
            let name = authz.identifier().to_string();
            let mut challenge = authz.challenge(kind.clone()).ok_or_else(|| {
                Error::IssuanceFailed(format!(
                    "ACME {}: the CA offers no {kind:?} challenge for {name}",
                    self.config.name
                ))
            })?;
            let key_authorization = challenge.key_authorization();
            let answer = Answer {
                name: name.clone(),
                token: challenge.token.clone(),
                key_authorization: key_authorization.as_str().to_string(),
                dns_value: key_authorization.dns_value(),
            };
            presented.push(answer.clone());
            cert.solver.present(&answer).await?;
            challenge
                .set_ready()
                .await
                .map_err(|e| self.map_error(&format!("challenge for {name}"), e))?;
        }
        let retries = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(self.config.order_timeout);
        let status = order
            .poll_ready(&retries)
            .await
            .map_err(|e| self.map_error("order validation", e))?;
        if status != OrderStatus::Ready {
            return Err(self.invalid_order_reason(order).await);
        }
        Ok(())
    }

    /// Why an order went invalid: the first failed challenge's problem, if the CA says.
    async fn invalid_order_reason(&self, order: &mut instant_acme::Order) -> Error {
        let mut reasons = Vec::new();
        if let Some(p) = &order.state().error {
            reasons.push(problem_text(p));
        }
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authz)) = authorizations.next().await {
            if let Ok(state) = authz.refresh().await {
                for c in &state.challenges {
                    if let Some(p) = &c.error {
                        reasons.push(format!("{}: {}", state.identifier(), problem_text(p)));
                    }
                }
            }
        }
        if reasons.is_empty() {
            reasons.push("the order became invalid (the CA gave no reason)".into());
        }
        Error::IssuanceFailed(format!(
            "ACME {}: order invalid: {}",
            self.config.name,
            reasons.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_reference_names_exactly_its_issuer() {
        let name = account_bundle_name("pebble");
        assert!(names_bundle("keystore:acme-account/pebble", &name));
        assert!(names_bundle(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:certops/acme-account/pebble-AbC123",
            &name
        ));
        assert!(!names_bundle("keystore:acme-account/pebble-b", &name));
        assert!(!names_bundle(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:certops/acme-account/pebble-b-AbC123",
            &name
        ));
        assert!(!names_bundle("keystore:acme-account/xpebble", &name));
        assert!(!names_bundle(
            "keystore:acme-account/pebble-AbC123",
            &account_bundle_name("peb")
        ));
    }
}
