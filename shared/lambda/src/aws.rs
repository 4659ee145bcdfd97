//! The AWS backend (`CERTOPS_BACKEND=aws`): DynamoDB store and audit, SQS
//! queues, Step Functions, the Secrets Manager keystore, ACM/ELBv2 targets and
//! CloudFront, all from one SDK configuration (so `AWS_ENDPOINT_URL` points
//! every client at an emulator). Building the clients makes no network call;
//! the token-sealing key is read from Secrets Manager only by the functions
//! given `CERTOPS_SEALING_KEY_ARN` (approval-request and approval-callback).
//!
//! The audit key (`CERTOPS_AUDIT_KEY_ARN`) is read at init by every function.
//!
//! ITSM, chat and the issuer are built from the configuration's integrations; a port
//! without one gets a refusing stand-in and no renewal starts ([`crate::stand_in`]).

use crate::stand_in::{NotConfigured, RefusingStart, ALLOW_STAND_INS_ENV};
use crate::EnvSecret;
use certops_adapters::{AesGcmSealer, Embedded, TlsProber};
use certops_aws::cloudfront::CloudFrontPurger;
use certops_aws::dynamo::DynamoStore;
use certops_aws::secrets::SecretsKeystore;
use certops_aws::sfn::SfnWorkflow;
use certops_aws::sqs::SqsQueue;
use certops_aws::targets::AwsTargets;
use certops_core::integrations::SecretResolver;
use certops_core::ports::{
    Chat, Clock, Config, Deps, Issuer, Itsm, Keystore, Store, TokenSealer, Workflow,
};
use certops_core::Error;
use std::sync::Arc;
use std::time::Duration;

/// A sealer for functions that never handle task tokens: refuses, naming the variable.
struct NoSealer;

impl TokenSealer for NoSealer {
    fn seal(&self, _token: &str) -> Result<String, Error> {
        Err(unsealed())
    }
    fn open(&self, _sealed: &str) -> Result<String, Error> {
        Err(unsealed())
    }
}

fn unsealed() -> Error {
    Error::Misconfigured(
        "CERTOPS_SEALING_KEY_ARN is not set for this function; it does not handle task tokens"
            .into(),
    )
}

/// The real ITSM adapter the integrations name (`[servicenow]`), if any.
async fn itsm_adapter(
    config: &Config,
    secrets: &dyn SecretResolver,
) -> Result<Option<Arc<dyn Itsm>>, Error> {
    certops_servicenow::from_integrations(&config.integrations, secrets).await
}

/// The real chat adapter the integrations name (`[teams]`, `[slack]`), if any.
fn chat_adapter(
    config: &Arc<Config>,
    store: Arc<dyn Store>,
    secrets: &Arc<dyn SecretResolver>,
) -> Result<Option<Arc<dyn Chat>>, Error> {
    certops_chatops::config::chat_port(config, store, secrets.clone())
}

/// The real issuer adapter the integrations name (`[issuers.<name>]`), if any.
/// Names without a table of their own fall to the local CA only when stand-ins are allowed;
/// otherwise to a refusing stand-in, so nothing is ever issued by a sandbox-local CA.
async fn issuer_adapter(
    config: &Config,
    embedded: &Embedded,
    keystore: &Arc<dyn Keystore>,
    secrets: &Arc<dyn SecretResolver>,
    sdk: &aws_config::SdkConfig,
    allow_stand_ins: bool,
) -> Result<Option<Arc<dyn Issuer>>, Error> {
    if !config.integrations.has("issuers") {
        return Ok(None);
    }
    let default: Arc<dyn Issuer> = if allow_stand_ins {
        embedded.ca.clone()
    } else {
        Arc::new(NotConfigured {
            port: "issuer",
            tables: "[issuers.<name>]",
        })
    };
    let router = certops_issuers::build(
        config,
        certops_issuers::RouterParts {
            default,
            keystore: keystore.clone(),
            secrets: secrets.clone(),
            aws: Some(sdk.clone()),
        },
    )
    .await?;
    Ok(Some(router))
}

/// The HMAC key of the audit chains' anchored heads (`CERTOPS_AUDIT_KEY_ARN`, the template's
/// `AuditKeySecret`). Every function appends audit, so every function needs it.
async fn audit_key() -> Result<certops_core::AuditKey, Error> {
    let secret = EnvSecret::from_env("CERTOPS_AUDIT_KEY");
    if !secret.is_configured() {
        return Err(Error::Misconfigured(
            "CERTOPS_AUDIT_KEY_ARN is not set: the audit chains' heads cannot be anchored \
             (the template sets it to AuditKeySecret)"
                .into(),
        ));
    }
    certops_core::AuditKey::new(secret.get().await?.to_vec())
}

pub(crate) async fn deps(
    config: Config,
    clock: Arc<dyn Clock>,
    embedded: &Embedded,
) -> Result<Deps, Error> {
    let sdk = crate::sdk_config().await;
    let keystore: Arc<dyn Keystore> = Arc::new(SecretsKeystore::from_env(sdk));
    let store: Arc<dyn Store> =
        Arc::new(DynamoStore::from_env(sdk, audit_key().await?)?.with_clock(clock.clone()));
    let config = Arc::new(config);
    let sealing = EnvSecret::from_env("CERTOPS_SEALING_KEY");
    let sealer: Arc<dyn TokenSealer> = if sealing.is_configured() {
        let seed = sealing.get().await?;
        let text = std::str::from_utf8(&seed)
            .map_err(|_| Error::Misconfigured("the token-sealing secret is not text".into()))?;
        Arc::new(AesGcmSealer::from_secret(text)?)
    } else {
        Arc::new(NoSealer)
    };
    // A port without a real adapter: the embedded one only when explicitly allowed
    // (emulator tests), else a refusing stand-in, and no renewal may start.
    let allow = std::env::var(ALLOW_STAND_INS_ENV).is_ok_and(|v| v == "1");
    let mut stand_ins = Vec::new();
    let secrets: Arc<dyn SecretResolver> = crate::secret_resolver().await;
    let itsm: Arc<dyn Itsm> = match itsm_adapter(&config, secrets.as_ref()).await? {
        Some(a) => a,
        None if allow => embedded.tickets.clone(),
        None => {
            stand_ins.push("ITSM");
            Arc::new(NotConfigured {
                port: "ITSM",
                tables: "[servicenow]",
            })
        }
    };
    let chat: Arc<dyn Chat> = match chat_adapter(&config, store.clone(), &secrets)? {
        Some(a) => a,
        None if allow => embedded.chat.clone(),
        None => {
            stand_ins.push("chat");
            Arc::new(NotConfigured {
                port: "chat",
                tables: "[teams] or [slack]",
            })
        }
    };
    let issuer: Arc<dyn Issuer> =
        match issuer_adapter(&config, embedded, &keystore, &secrets, sdk, allow).await? {
            Some(a) => a,
            None if allow => embedded.ca.clone(),
            None => {
                stand_ins.push("issuer");
                Arc::new(NotConfigured {
                    port: "issuer",
                    tables: "[issuers.<name>]",
                })
            }
        };
    // Only intake starts executions; the others complete tasks and need no ARN.
    let sfn: Arc<dyn Workflow> = Arc::new(SfnWorkflow::new(
        aws_sdk_sfn::Client::new(sdk),
        std::env::var("CERTOPS_STATE_MACHINE_ARN").unwrap_or_default(),
    ));
    let workflow: Arc<dyn Workflow> = if stand_ins.is_empty() {
        sfn
    } else {
        tracing::warn!(
            ?stand_ins,
            "ports without a real adapter: renewals will not start"
        );
        Arc::new(RefusingStart {
            inner: sfn,
            stand_ins,
        })
    };
    Ok(Deps {
        config,
        clock: clock.clone(),
        store,
        queue: Arc::new(SqsQueue::from_env(sdk)),
        itsm,
        chat,
        issuer,
        keystore: keystore.clone(),
        targets: Arc::new(AwsTargets::new(sdk, keystore)),
        cdn: Arc::new(CloudFrontPurger::new(
            certops_aws::cloudfront::aws_sdk_cloudfront::Client::new(sdk),
            clock,
        )),
        prober: Arc::new(TlsProber::new(Duration::from_secs(5))?),
        workflow,
        sealer,
    })
}
