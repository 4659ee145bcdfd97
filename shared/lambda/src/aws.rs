//! The AWS backend (`CERTOPS_BACKEND=aws`): DynamoDB store and audit, SQS
//! queues, Step Functions, the Secrets Manager keystore, ACM/ELBv2 targets and
//! CloudFront, all from one SDK configuration (so `AWS_ENDPOINT_URL` points
//! every client at an emulator). Building the clients makes no network call;
//! the token-sealing key is read from Secrets Manager only by the functions
//! given `CERTOPS_SEALING_KEY_ARN` (approval-request and approval-callback).
//!
//! ITSM is ServiceNow when `[servicenow]` is configured (credentials by Secrets Manager
//! ARN), else the embedded ticket book under `CERTOPS_DATA_DIR` (a Lambda's `/tmp`). The
//! issuer is the
//! router of `certops-issuers` (`[issuers.<name>]`: ACME, Vault/OpenBao PKI, AWS
//! Private CA), over the local CA for unconfigured names; ACME accounts live in
//! the Secrets Manager keystore.

use crate::EnvSecret;
use certops_adapters::{AesGcmSealer, Embedded, TlsProber};
use certops_aws::cloudfront::CloudFrontPurger;
use certops_aws::dynamo::DynamoStore;
use certops_aws::secrets::SecretsKeystore;
use certops_aws::sfn::SfnWorkflow;
use certops_aws::sqs::SqsQueue;
use certops_aws::targets::AwsTargets;
use certops_core::ports::{Clock, Config, Deps, Keystore, TokenSealer};
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
    Error::InvalidInput(
        "CERTOPS_SEALING_KEY_ARN is not set for this function; it does not handle task tokens"
            .into(),
    )
}

pub(crate) async fn deps(
    config: Config,
    clock: Arc<dyn Clock>,
    embedded: &Embedded,
) -> Result<Deps, Error> {
    let sdk = crate::sdk_config().await;
    let keystore: Arc<dyn Keystore> = Arc::new(SecretsKeystore::from_env(sdk));
    let sealing = EnvSecret::from_env("CERTOPS_SEALING_KEY");
    let sealer: Arc<dyn TokenSealer> = if sealing.is_configured() {
        let seed = sealing.get().await?;
        let text = std::str::from_utf8(&seed)
            .map_err(|_| Error::InvalidInput("the token-sealing secret is not text".into()))?;
        Arc::new(AesGcmSealer::from_secret(text)?)
    } else {
        Arc::new(NoSealer)
    };
    // [servicenow] in integrations.toml: ServiceNow, its credentials from Secrets Manager
    // (or the function's environment); otherwise the ticket book under CERTOPS_DATA_DIR.
    let secrets = Arc::new(certops_aws::secret_resolver::AwsSecrets::new(
        certops_aws::secrets::aws_sdk_secretsmanager::Client::new(sdk),
    ));
    let itsm = certops_servicenow::from_integrations(&config.integrations, secrets.as_ref())
        .await?
        .unwrap_or_else(|| embedded.tickets.clone());
    let issuer = certops_issuers::build(
        &config,
        certops_issuers::RouterParts {
            default: embedded.ca.clone(),
            keystore: keystore.clone(),
            secrets: secrets.clone(),
            aws: Some(sdk.clone()),
        },
    )
    .await?;
    Ok(Deps {
        config: Arc::new(config),
        clock: clock.clone(),
        store: Arc::new(DynamoStore::from_env(sdk)?.with_clock(clock.clone())),
        queue: Arc::new(SqsQueue::from_env(sdk)),
        itsm,
        chat: embedded.chat.clone(),
        issuer,
        keystore: keystore.clone(),
        targets: Arc::new(AwsTargets::new(sdk, keystore)),
        cdn: Arc::new(CloudFrontPurger::new(
            certops_aws::cloudfront::aws_sdk_cloudfront::Client::new(sdk),
            clock,
        )),
        prober: Arc::new(TlsProber::new(Duration::from_secs(5))?),
        // Only intake starts executions; the others complete tasks and need no ARN.
        workflow: Arc::new(SfnWorkflow::new(
            aws_sdk_sfn::Client::new(sdk),
            std::env::var("CERTOPS_STATE_MACHINE_ARN").unwrap_or_default(),
        )),
        sealer,
    })
}
