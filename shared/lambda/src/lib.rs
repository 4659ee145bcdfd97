//! What every certops Lambda `main` shares: the [`Deps`] built from the
//! environment, JSON logs, and the mapping of domain errors to the
//! `errorType` Step Functions routes on.
//!
//! Environment:
//! - `CERTOPS_STATE_MACHINE_ARN` — the renewal state machine (intake starts it).
//! - `CERTOPS_DATA_DIR` — where the embedded adapters keep state (default `/tmp/certops`).
//! - `CERTOPS_CONFIG_DIR` — inventory.toml, policy.toml, cert-renewal.runbook.toml;
//!   `CERTOPS_CONFIG_ARN` — the configuration secret (AWS); see [`config_source`]. The
//!   example files compiled in are used on the embedded backend only.
//! - `CERTOPS_ALLOW_STAND_INS` — see [`stand_in`]: on the AWS backend a port without a
//!   real adapter refuses, and no renewal starts, unless this is `1` (emulator tests).
//! - `CERTOPS_BACKEND` — `aws` for the AWS adapters (DynamoDB, SQS, Secrets
//!   Manager, ACM/ELBv2, CloudFront; see the environment contract in
//!   `infra/template.yaml`), `embedded` (default) for the embedded ones.
//! - `AWS_ENDPOINT_URL` / the usual AWS variables — honoured by every AWS
//!   client, so the same binary drives AWS, an emulator or `certops serve`.

mod aws;
pub mod config_source;
mod secret;
pub mod stand_in;

pub use certops_aws::sfn::SfnWorkflow;
pub use secret::EnvSecret;

use certops_adapters::{Embedded, TlsProber};
use certops_aws::secret_resolver::AwsSecrets;
use certops_core::ports::{Clock, Deps, SystemClock};
use certops_core::Error;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The process's one AWS SDK configuration (region, credentials, endpoint, HTTP client),
/// loaded on first use and shared by every client and secret read, so its work (provider
/// chains, the TLS root store) is done once per sandbox.
pub async fn sdk_config() -> &'static aws_config::SdkConfig {
    static SDK: tokio::sync::OnceCell<aws_config::SdkConfig> = tokio::sync::OnceCell::const_new();
    SDK.get_or_init(|| aws_config::load_defaults(aws_config::BehaviorVersion::latest()))
        .await
}

/// Which adapters back the ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// DynamoDB, SQS, Step Functions, Secrets Manager, ACM/ELBv2, CloudFront
    /// (`CERTOPS_BACKEND=aws`, what the SAM template sets).
    Aws,
    /// The embedded adapters under `CERTOPS_DATA_DIR` (the default).
    Embedded,
}

impl Backend {
    /// `CERTOPS_BACKEND`: `aws` or `embedded` (default); anything else is refused.
    pub fn from_env() -> Result<Backend, Error> {
        match std::env::var("CERTOPS_BACKEND")
            .unwrap_or_default()
            .as_str()
        {
            "aws" => Ok(Backend::Aws),
            "" | "embedded" => Ok(Backend::Embedded),
            other => Err(Error::Misconfigured(format!(
                "CERTOPS_BACKEND={other:?} is not a backend; use \"aws\" or \"embedded\""
            ))),
        }
    }
}

/// Builds the ports from the environment.
pub async fn deps_from_env() -> Result<Deps, Error> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let dir = std::env::var_os("CERTOPS_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("/tmp/certops").to_path_buf());
    let adapters = Embedded::open(&dir, clock.clone())?;
    let backend = Backend::from_env()?;
    let config = config_source::load(backend).await?;
    if backend == Backend::Aws {
        return aws::deps(config, clock, &adapters).await;
    }
    let state_machine = std::env::var("CERTOPS_STATE_MACHINE_ARN").unwrap_or_default();
    let workflow = SfnWorkflow::new(aws_sdk_sfn::Client::new(sdk_config().await), state_machine);
    let itsm = certops_servicenow::from_integrations(
        &config.integrations,
        &certops_adapters::LocalSecrets,
    )
    .await?
    .unwrap_or_else(|| adapters.tickets.clone());
    let issuer = certops_issuers::build(
        &config,
        certops_issuers::RouterParts {
            default: adapters.ca.clone(),
            keystore: adapters.keystore.clone(),
            secrets: Arc::new(certops_adapters::LocalSecrets),
            aws: Some(sdk_config().await.clone()),
        },
    )
    .await?;
    with_chat(
        Deps {
            clock,
            itsm,
            issuer,
            ..adapters.deps(
                Arc::new(config),
                Arc::new(workflow),
                Arc::new(TlsProber::new(Duration::from_secs(5))?),
            )
        },
        secret_resolver().await,
    )
}

/// The secret resolver of the functions: Secrets Manager ARNs (each read once per sandbox,
/// `<arn>#key` for one key of a JSON secret) and `env:` references.
pub async fn secret_resolver() -> Arc<AwsSecrets> {
    Arc::new(AwsSecrets::new(
        certops_aws::secrets::aws_sdk_secretsmanager::Client::new(sdk_config().await),
    ))
}

/// `[teams]` / `[slack]` in integrations.toml replace the chat port (secrets by ARN); the
/// AWS backend builds its chat port itself, with its stand-in rule.
fn with_chat(mut deps: Deps, secrets: Arc<AwsSecrets>) -> Result<Deps, Error> {
    if let Some(chat) =
        certops_chatops::config::chat_port(&deps.config, deps.store.clone(), secrets)?
    {
        deps.chat = chat;
    }
    Ok(deps)
}

/// JSON logs to stdout, as CloudWatch expects; `RUST_LOG` filters.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .without_time()
        .try_init();
}

/// Runs a step handler as a Lambda function: events in, results out, domain
/// errors as `errorType` names Step Functions can `Retry`/`Catch`.
pub async fn run<E, O, F, Fut>(handler: F) -> Result<(), lambda_runtime::Error>
where
    E: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    F: Fn(Deps, E) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<O, Error>> + Send + 'static,
{
    init_tracing();
    let deps = deps_from_env()
        .await
        .map_err(|e| Box::new(e) as lambda_runtime::Error)?;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<E>| {
            let deps = deps.clone();
            let handler = handler.clone();
            async move {
                handler(deps, event.payload)
                    .await
                    .map_err(lambda_runtime::Diagnostic::from)
            }
        },
    ))
    .await
}
