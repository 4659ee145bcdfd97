//! [`IssuerRouter`]: the `Issuer` port for a whole inventory. Each inventory issuer name with
//! an `[issuers.<name>]` table goes to its real adapter (ACME, Vault/OpenBao PKI, AWS Private
//! CA); every other name keeps the embedded default (the local CA). The configured kind must
//! fit the inventory's renewal method (`acme` ↔ `acme`, `vault`/`aws-private-ca` ↔
//! `internal-pki`), or the request is refused rather than sent to the wrong CA.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use certops_core::integrations::SecretResolver;
use certops_core::inventory::{RenewalMethod, Solver};
use certops_core::ports::{Config, IssueRequest, Issuer, Keystore, RenewalWindow};
use certops_core::Error;

use crate::acme::{AcmeCertificate, AcmeConfig, AcmeIssuer};
use crate::acme_http::AcmeHttp;
use crate::private_ca::{AwsPrivateCa, PrivateCaConfig};
use crate::settings::{issuer_settings, AcmeSettings, IssuerSettings};
use crate::solvers::{ChallengeSolver, DnsUpdateSolver, Route53Solver, WebrootSolver};
use crate::vault::{VaultPki, VaultPkiConfig};

/// One routed issuer and the renewal method it serves.
struct Route {
    method: RenewalMethod,
    issuer: Arc<dyn Issuer>,
}

/// Dispatches the `Issuer` port by the inventory issuer's name.
pub struct IssuerRouter {
    default: Arc<dyn Issuer>,
    routes: HashMap<String, Route>,
}

impl std::fmt::Debug for IssuerRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.routes.keys().collect();
        names.sort();
        f.debug_struct("IssuerRouter")
            .field("routes", &names)
            .finish_non_exhaustive()
    }
}

impl IssuerRouter {
    /// A router sending everything to `default`.
    pub fn new(default: Arc<dyn Issuer>) -> IssuerRouter {
        IssuerRouter {
            default,
            routes: HashMap::new(),
        }
    }

    /// Routes the inventory issuer `name` (of renewal `method`) to `issuer`.
    pub fn route(mut self, name: &str, method: RenewalMethod, issuer: Arc<dyn Issuer>) -> Self {
        self.routes
            .insert(name.to_string(), Route { method, issuer });
        self
    }

    /// The inventory issuer names with a real adapter.
    pub fn routed(&self) -> Vec<String> {
        let mut names: Vec<String> = self.routes.keys().cloned().collect();
        names.sort();
        names
    }

    fn pick(&self, issuer: &certops_core::Issuer) -> Result<&Arc<dyn Issuer>, Error> {
        match self.routes.get(&issuer.name) {
            None => Ok(&self.default),
            Some(route) if route.method == issuer.method => Ok(&route.issuer),
            Some(route) => Err(Error::InvalidInput(format!(
                "issuer {} is configured for {} but the inventory renews through it by {}",
                issuer.name, route.method, issuer.method
            ))),
        }
    }
}

#[async_trait]
impl Issuer for IssuerRouter {
    async fn issue(&self, request: &IssueRequest) -> Result<String, Error> {
        self.pick(&request.issuer)?.issue(request).await
    }

    /// Every issuer's anchors together (the prober trusts them all); an issuer that cannot
    /// be asked right now is left out rather than failing every verification.
    async fn trust_anchors_pem(&self) -> Result<Option<String>, Error> {
        let mut all = String::new();
        if let Some(pem) = self.default.trust_anchors_pem().await? {
            all.push_str(&pem);
        }
        for (name, route) in &self.routes {
            match route.issuer.trust_anchors_pem().await {
                Ok(Some(pem)) => {
                    if !all.is_empty() && !all.ends_with('\n') {
                        all.push('\n');
                    }
                    all.push_str(&pem);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(issuer = %name, error = %e, "trust anchors unavailable"),
            }
        }
        Ok((!all.is_empty()).then_some(all))
    }

    async fn trust_anchors_for(
        &self,
        issuer: &certops_core::Issuer,
    ) -> Result<Option<String>, Error> {
        self.pick(issuer)?.trust_anchors_pem().await
    }

    async fn renewal_window(
        &self,
        issuer: &certops_core::Issuer,
        certificate_id: &str,
    ) -> Result<Option<RenewalWindow>, Error> {
        self.pick(issuer)?
            .renewal_window(issuer, certificate_id)
            .await
    }
}

#[async_trait]
impl Issuer for AcmeIssuer {
    async fn issue(&self, request: &IssueRequest) -> Result<String, Error> {
        self.issue_chain(request).await
    }

    async fn trust_anchors_pem(&self) -> Result<Option<String>, Error> {
        Ok(self.trust_anchors().map(str::to_string))
    }

    /// The CA's window for the certificate; `None` when the CA offers no ARI.
    async fn renewal_window(
        &self,
        _issuer: &certops_core::Issuer,
        certificate_id: &str,
    ) -> Result<Option<RenewalWindow>, Error> {
        let id = crate::acme::parse_certificate_id(certificate_id)?;
        self.offered_window(&id).await
    }
}

/// What [`build`] needs besides the configuration.
pub struct RouterParts {
    /// The embedded default (the local CA).
    pub default: Arc<dyn Issuer>,
    /// Where ACME account credentials are kept.
    pub keystore: Arc<dyn Keystore>,
    /// Resolves tokens and EAB keys.
    pub secrets: Arc<dyn SecretResolver>,
    /// The AWS SDK configuration for Route 53 and Private CA (loaded from the environment
    /// when needed and not given).
    pub aws: Option<aws_config::SdkConfig>,
}

fn read_pem(path: &Path, what: &str) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::InvalidInput(format!("{what} {}: {e}", path.display())))
}

/// A reqwest client (rustls, aws-lc-rs) trusting only the roots in `roots_file` when given.
pub fn http_client(roots_file: Option<&Path>) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .no_proxy();
    if let Some(path) = roots_file {
        let pem = read_pem(path, "server roots")?;
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| Error::InvalidInput(format!("server roots {}: {e}", path.display())))?;
        builder = builder.tls_certs_only(certs);
    }
    builder
        .build()
        .map_err(|e| Error::InvalidInput(format!("HTTP client: {e}")))
}

async fn sdk(parts: &mut RouterParts) -> aws_config::SdkConfig {
    if parts.aws.is_none() {
        parts.aws = Some(aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await);
    }
    parts
        .aws
        .clone()
        .unwrap_or_else(|| aws_config::SdkConfig::builder().build())
}

async fn acme_issuer(
    name: &str,
    settings: &AcmeSettings,
    config: &Config,
    parts: &mut RouterParts,
) -> Result<AcmeIssuer, Error> {
    let objects: Vec<_> = config
        .inventory
        .certificates
        .iter()
        .filter(|c| c.issuer.name == name)
        .collect();
    let first = |f: &dyn Fn(&certops_core::AcmeOptions) -> Option<String>| {
        objects.iter().filter_map(|c| c.acme.as_ref()).find_map(f)
    };
    let directory_url = first(&|a| a.directory_url.clone())
        .or_else(|| settings.directory_url.clone())
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "issuer {name}: no ACME directory URL (inventory acme.directory_url or \
                 [issuers.{name}] directory_url)"
            ))
        })?;
    let contact = objects
        .iter()
        .filter_map(|c| c.acme.as_ref())
        .find(|a| !a.contact.is_empty())
        .map(|a| a.contact.clone())
        .unwrap_or_default();
    let eab = match (first(&|a| a.eab_kid.clone()), &settings.eab_hmac) {
        (Some(kid), Some(hmac)) => Some((kid, hmac.clone())),
        (Some(_), None) => {
            return Err(Error::InvalidInput(format!(
                "issuer {name}: acme.eab_kid is set but [issuers.{name}] eab_hmac is not"
            )))
        }
        _ => None,
    };
    let client = http_client(settings.server_roots_file.as_deref())?;
    let mut certificates = HashMap::new();
    for cert in &objects {
        let Some(acme) = &cert.acme else { continue };
        let Some(solver) = &acme.solver else { continue };
        let solver: Arc<dyn ChallengeSolver> = match solver {
            Solver::Http01 { webroot } => Arc::new(WebrootSolver::new(webroot)?),
            Solver::Dns01Update => {
                let url = settings.dns_update_url.as_deref().ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "{}: solver dns-01-update needs [issuers.{name}] dns_update_url",
                        cert.id
                    ))
                })?;
                Arc::new(DnsUpdateSolver::new(url, client.clone()))
            }
            Solver::Dns01Route53 { hosted_zone_id } => {
                let sdk = sdk(parts).await;
                Arc::new(Route53Solver::new(
                    aws_sdk_route53::Client::new(&sdk),
                    hosted_zone_id,
                    Duration::from_secs(120),
                ))
            }
        };
        certificates.insert(
            cert.id.clone(),
            AcmeCertificate {
                solver,
                profile: acme.profile.clone(),
            },
        );
    }
    let trust_anchors_pem = match &settings.trust_anchors_file {
        Some(p) => Some(read_pem(p, "trust anchors")?),
        None => None,
    };
    Ok(AcmeIssuer::new(
        AcmeConfig {
            name: name.to_string(),
            directory_url,
            contact,
            eab,
            trust_anchors_pem,
            order_timeout: Duration::from_secs(settings.order_timeout_secs.unwrap_or(90)),
        },
        AcmeHttp::new(client),
        parts.keystore.clone(),
        parts.secrets.clone(),
        certificates,
        None,
    ))
}

/// The `Issuer` port for `config`: the default alone when `integrations.toml` has no
/// `[issuers]`, else an [`IssuerRouter`] over every configured issuer. Building makes no
/// network call; ACME accounts are created on first use.
pub async fn build(config: &Config, mut parts: RouterParts) -> Result<Arc<dyn Issuer>, Error> {
    let settings = issuer_settings(&config.integrations)?;
    if settings.is_empty() {
        return Ok(parts.default.clone());
    }
    let mut router = IssuerRouter::new(parts.default.clone());
    for (name, s) in &settings {
        let (method, issuer): (RenewalMethod, Arc<dyn Issuer>) = match s {
            IssuerSettings::Acme(a) => (
                RenewalMethod::Acme,
                Arc::new(acme_issuer(name, a, config, &mut parts).await?),
            ),
            IssuerSettings::Vault(v) => (
                RenewalMethod::InternalPki,
                Arc::new(VaultPki::new(
                    VaultPkiConfig {
                        name: name.clone(),
                        address: v.address.clone(),
                        mount: v.mount.clone(),
                        role: v.role.clone(),
                        token: v.token.clone(),
                        namespace: v.namespace.clone(),
                        ttl: v.ttl.clone(),
                    },
                    http_client(v.server_roots_file.as_deref())?,
                    parts.secrets.clone(),
                )),
            ),
            IssuerSettings::AwsPrivateCa(p) => {
                let sdk = sdk(&mut parts).await;
                (
                    RenewalMethod::InternalPki,
                    Arc::new(AwsPrivateCa::new(
                        PrivateCaConfig {
                            name: name.clone(),
                            certificate_authority_arn: p.certificate_authority_arn.clone(),
                            signing_algorithm: p
                                .signing_algorithm
                                .clone()
                                .unwrap_or_else(|| "SHA256WITHECDSA".into()),
                            validity_days: p.validity_days.unwrap_or(90),
                            template_arn: p.template_arn.clone(),
                            issue_timeout: Duration::from_secs(p.issue_timeout_secs.unwrap_or(60)),
                        },
                        aws_sdk_acmpca::Client::new(&sdk),
                    )),
                )
            }
        };
        router = router.route(name, method, issuer);
    }
    Ok(Arc::new(router))
}
