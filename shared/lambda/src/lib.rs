//! What every certops Lambda `main` shares: the [`Deps`] built from the
//! environment, JSON logs, and the mapping of domain errors to the
//! `errorType` Step Functions routes on.
//!
//! Environment:
//! - `CERTOPS_STATE_MACHINE_ARN` — the renewal state machine (intake starts it).
//! - `CERTOPS_DATA_DIR` — where the embedded adapters keep state (default `/tmp/certops`).
//! - `CERTOPS_CONFIG_DIR` — inventory.toml, policy.toml, cert-renewal.runbook.toml
//!   (default: the example files compiled in).
//! - `CERTOPS_BACKEND` — `aws` for the AWS adapters (DynamoDB, SQS, Secrets
//!   Manager, ACM/ELBv2, CloudFront; see the environment contract in
//!   `infra/template.yaml`), `embedded` (default) for the embedded ones.
//! - `AWS_ENDPOINT_URL` / the usual AWS variables — honoured by every AWS
//!   client, so the same binary drives AWS, an emulator or `certops serve`.

mod aws;
mod secret;
mod secret_refs;

pub use certops_aws::sfn::SfnWorkflow;
pub use secret::EnvSecret;
pub use secret_refs::LambdaSecrets;

use certops_adapters::{Embedded, TlsProber};
use certops_core::integrations::Integrations;
use certops_core::ports::{Clock, Config, Deps, SystemClock};
use certops_core::{Error, Inventory, Policy, Runbook};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn load_config() -> Result<Config, Error> {
    let (inventory, policy, runbook, integrations) = match std::env::var_os("CERTOPS_CONFIG_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            let read = |name: &str| {
                std::fs::read_to_string(dir.join(name)).map_err(|e| {
                    Error::InvalidInput(format!("reading {}: {e}", dir.join(name).display()))
                })
            };
            (
                read("inventory.toml")?,
                read("policy.toml")?,
                read("cert-renewal.runbook.toml")?,
                certops_adapters::read_integrations(&dir.join("integrations.toml"))?,
            )
        }
        None => (
            include_str!("../../../runbooks/inventory.toml").to_string(),
            include_str!("../../../runbooks/policy.toml").to_string(),
            include_str!("../../../runbooks/cert-renewal.runbook.toml").to_string(),
            Integrations::none(),
        ),
    };
    Ok(Config {
        inventory: Inventory::from_toml_str(&inventory)?,
        policy: Policy::from_toml_str(&policy)?,
        runbook: Runbook::from_toml_str(&runbook)?,
        default_oncall: std::env::var("CERTOPS_DEFAULT_ONCALL")
            .unwrap_or_else(|_| "oncall-certops@example.com".into()),
        integrations,
    })
}

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
            other => Err(Error::InvalidInput(format!(
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
    let config = load_config()?;
    if Backend::from_env()? == Backend::Aws {
        return aws::deps(config, clock, &adapters).await;
    }
    let state_machine = std::env::var("CERTOPS_STATE_MACHINE_ARN").unwrap_or_default();
    let workflow = SfnWorkflow::new(aws_sdk_sfn::Client::new(sdk_config().await), state_machine);
    Ok(Deps {
        config: Arc::new(config),
        clock,
        store: adapters.store.clone(),
        queue: adapters.queue.clone(),
        itsm: adapters.tickets.clone(),
        chat: adapters.chat.clone(),
        issuer: adapters.ca.clone(),
        keystore: adapters.keystore.clone(),
        targets: adapters.endpoints.clone(),
        cdn: adapters.cdn.clone(),
        prober: Arc::new(TlsProber::new(Duration::from_secs(5))?),
        workflow: Arc::new(workflow),
        sealer: adapters.sealer.clone(),
    })
}

/// `[teams]` / `[slack]` in integrations.toml replace the chat port (secrets by ARN).
pub fn with_chat(mut deps: Deps) -> Result<Deps, Error> {
    let secrets = Arc::new(LambdaSecrets::default());
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
        .and_then(with_chat)
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
