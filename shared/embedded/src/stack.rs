//! The embedded stack: one data directory, the durable local engine running
//! `statemachines/cert-renewal.asl.json`, the embedded adapters, and every
//! step handler registered as an in-process Lambda function.

use certops_adapters::{Embedded, EngineWorkflow};
use certops_asl::{
    Engine, EngineOptions, ExecutionInfo, FunctionRegistry, StatesError, Storage, TokioClock,
};
use certops_core::ports::{Clock, Config, Deps, Table};
use certops_core::workflow::StepEvent;
use certops_core::Error;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The one definition both runtimes execute.
pub const DEFINITION: &str = include_str!("../../../statemachines/cert-renewal.asl.json");

/// The state machine's name.
pub const STATE_MACHINE: &str = "cert-renewal";

/// The step functions the definition references: substitution name → function name.
pub const FUNCTIONS: &[(&str, &str)] = &[
    ("ValidateFunctionArn", "certops-validate"),
    ("ApprovalRequestFunctionArn", "certops-approval-request"),
    ("RenewFunctionArn", "certops-renew"),
    ("DeployFunctionArn", "certops-deploy"),
    ("PurgeFunctionArn", "certops-purge"),
    ("VerifyFunctionArn", "certops-verify"),
    ("ItsmUpdateFunctionArn", "certops-itsm-update"),
    ("RollbackFunctionArn", "certops-rollback"),
];

/// The Lambda ARN a function gets in the embedded runtime.
pub fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:us-east-1:123456789012:function:{name}")
}

/// The definition with its substitutions applied.
pub fn definition() -> Result<String, Error> {
    let subs: HashMap<String, String> = FUNCTIONS
        .iter()
        .map(|(k, v)| (k.to_string(), function_arn(v)))
        .collect();
    certops_asl::definition::substitute(DEFINITION, &subs)
        .map_err(|e| Error::InvalidInput(e.to_string()))
}

/// Options for [`Stack::open`].
pub struct StackOptions {
    /// The data directory (engine state, adapters' database, keystore).
    pub data_dir: PathBuf,
    /// Inventory, policy and runbook.
    pub config: Config,
    /// The domain clock.
    pub clock: Arc<dyn Clock>,
    /// Per-endpoint deadline of the prober.
    pub probe_timeout: Duration,
}

/// The running embedded stack.
pub struct Stack {
    /// The local Step Functions engine.
    pub engine: Engine,
    /// The embedded adapters (ticket book, chat inbox, CA, endpoints, cache, …).
    pub adapters: Embedded,
    /// The ports handed to every handler.
    pub deps: Deps,
    /// The state machine's ARN.
    pub state_machine_arn: String,
    /// The in-process functions.
    pub functions: FunctionRegistry,
}

fn lambda_error(e: &Error) -> StatesError {
    StatesError::new(
        e.name(),
        json!({"errorType": e.name(), "errorMessage": e.to_string()}).to_string(),
    )
}

fn register_step<F, Fut, O>(reg: &FunctionRegistry, name: &str, deps: Deps, f: F)
where
    F: Fn(Deps, StepEvent) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<O, Error>> + Send + 'static,
    O: Serialize,
{
    reg.register(name, move |payload: Value| {
        let deps = deps.clone();
        let f = f.clone();
        async move {
            let event: StepEvent = serde_json::from_value(payload)
                .map_err(|e| lambda_error(&Error::InvalidInput(format!("step event: {e}"))))?;
            let out = f(deps, event).await.map_err(|e| lambda_error(&e))?;
            serde_json::to_value(out).map_err(|e| lambda_error(&Error::InvalidInput(e.to_string())))
        }
    });
}

impl Stack {
    /// Opens the stack over a data directory and resumes any running executions.
    pub async fn open(opts: StackOptions) -> Result<Stack, Error> {
        std::fs::create_dir_all(&opts.data_dir).map_err(|e| {
            Error::InvalidInput(format!("creating {}: {e}", opts.data_dir.display()))
        })?;
        let adapters = Embedded::open(&opts.data_dir, opts.clock.clone())?;
        Self::with_adapters(
            &opts.data_dir,
            adapters,
            opts.config,
            opts.clock,
            opts.probe_timeout,
        )
        .await
    }

    /// Assembles the stack over adapters that are already open (the demo
    /// starts its TLS endpoints before it can write the inventory).
    pub async fn with_adapters(
        data_dir: &Path,
        adapters: Embedded,
        config: Config,
        clock: Arc<dyn Clock>,
        probe_timeout: Duration,
    ) -> Result<Stack, Error> {
        Self::with_engine_clock(
            data_dir,
            adapters,
            config,
            clock,
            probe_timeout,
            Arc::new(TokioClock::system()),
        )
        .await
    }

    /// [`Stack::with_adapters`] with the engine's own clock given: the one its Wait
    /// states, Retry back-off and timeouts run on (e.g. a [`certops_asl::ScaledClock`] in
    /// a test that puts minutes of retries against a server down for seconds).
    pub async fn with_engine_clock(
        data_dir: &Path,
        adapters: Embedded,
        config: Config,
        clock: Arc<dyn Clock>,
        probe_timeout: Duration,
        engine_clock: Arc<dyn certops_asl::Clock>,
    ) -> Result<Stack, Error> {
        let functions = FunctionRegistry::with_builtins();
        // Paused until the step functions below are registered: a step that
        // was in flight at a crash is invoked again on resume, and must find them.
        let engine = Engine::open_paused(
            EngineOptions {
                storage: Storage::Sqlite(data_dir.join("state.db")),
                ..EngineOptions::default()
            },
            Arc::new(functions.clone()),
            engine_clock,
        )
        .map_err(|e| Error::Transient(format!("opening the engine: {e}")))?;
        let definition = definition()?;
        let arn = engine.state_machine_arn(STATE_MACHINE);
        match engine.describe_state_machine(&arn) {
            Ok(m) if m.definition == definition => {}
            Ok(_) => {
                engine
                    .update_state_machine(&arn, Some(&definition), None)
                    .map_err(|e| Error::InvalidInput(e.to_string()))?;
            }
            Err(_) => {
                engine
                    .create_state_machine(STATE_MACHINE, &definition, certops_asl::DEFAULT_ROLE_ARN)
                    .map_err(|e| Error::InvalidInput(e.to_string()))?;
            }
        }
        let prober = crate::prober::TlsProber::new(probe_timeout)?;
        // Local endpoints and cache plus the real servers the inventory connects to.
        let routers = certops_servers::Routers::embedded(&adapters, &config.inventory)?;
        // [servicenow] in integrations.toml: the ServiceNow adapter replaces the ticket book.
        let itsm = certops_servicenow::from_integrations(
            &config.integrations,
            &certops_adapters::LocalSecrets,
        )
        .await?
        .unwrap_or_else(|| adapters.tickets.clone());
        // Real issuers from [issuers.<name>] in integrations.toml; the local CA otherwise.
        let issuer = certops_issuers::build(
            &config,
            certops_issuers::RouterParts {
                default: adapters.ca.clone(),
                keystore: adapters.keystore.clone(),
                secrets: Arc::new(certops_adapters::LocalSecrets),
                aws: None,
            },
        )
        .await?;
        let config = Arc::new(config);
        // `[teams]` / `[slack]` in integrations.toml replace the local chat inbox.
        let chat = certops_chatops::config::chat_port(
            &config,
            adapters.store.clone(),
            Arc::new(certops_adapters::LocalSecrets),
        )?
        .unwrap_or_else(|| adapters.chat.clone());
        let deps = Deps {
            clock,
            itsm,
            chat,
            issuer,
            targets: routers.targets,
            cdn: routers.cdn,
            ..adapters.deps(
                config,
                Arc::new(EngineWorkflow::new(engine.clone(), arn.clone())),
                Arc::new(prober),
            )
        };
        let reg = &functions;
        register_step(reg, "certops-validate", deps.clone(), |d, e| async move {
            certops_fn_validate::handle(&d, e).await
        });
        register_step(
            reg,
            "certops-approval-request",
            deps.clone(),
            |d, e| async move { certops_fn_approval_request::handle(&d, e).await },
        );
        register_step(reg, "certops-renew", deps.clone(), |d, e| async move {
            certops_fn_renew::handle(&d, e).await
        });
        register_step(reg, "certops-deploy", deps.clone(), |d, e| async move {
            certops_fn_deploy::handle(&d, e).await
        });
        register_step(reg, "certops-purge", deps.clone(), |d, e| async move {
            certops_fn_purge::handle(&d, e).await
        });
        register_step(reg, "certops-verify", deps.clone(), |d, e| async move {
            certops_fn_verify::handle(&d, e).await
        });
        register_step(
            reg,
            "certops-itsm-update",
            deps.clone(),
            |d, e| async move { certops_fn_itsm_update::handle(&d, e).await },
        );
        register_step(reg, "certops-rollback", deps.clone(), |d, e| async move {
            certops_fn_rollback::handle(&d, e).await
        });
        // Every terminal path (StopExecution, a failure with no Catch, a
        // time-out) releases the execution's certificate lease.
        let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel::<String>();
        engine.on_finished(ended_tx);
        let store = deps.store.clone();
        tokio::spawn(async move {
            while let Some(execution) = ended.recv().await {
                if let Err(e) =
                    certops_core::lease::release_for_execution(store.as_ref(), &execution).await
                {
                    tracing::warn!(execution, error = %e, "could not release the certificate lease");
                }
            }
        });
        engine.resume();
        Ok(Stack {
            engine,
            adapters,
            deps,
            state_machine_arn: arn,
            functions,
        })
    }

    /// Starts (or finds) the execution for a trigger, through the intake handler.
    pub async fn trigger(
        &self,
        trigger: certops_core::Trigger,
    ) -> Result<certops_fn_intake::Started, Error> {
        certops_fn_intake::start(&self.deps, trigger).await
    }

    /// Applies an approver's decision, through the approval-callback handler.
    pub async fn decide(
        &self,
        callback: certops_fn_approval_callback::Callback,
    ) -> Result<certops_fn_approval_callback::Decided, Error> {
        certops_fn_approval_callback::handle(&self.deps, callback).await
    }

    /// Waits for an execution to finish.
    pub async fn wait(&self, execution: &str, timeout: Duration) -> Result<ExecutionInfo, Error> {
        match tokio::time::timeout(timeout, self.engine.wait_for(execution)).await {
            Ok(r) => r.map_err(|e| Error::InvalidInput(e.to_string())),
            Err(_) => Err(Error::Transient(format!(
                "{execution} still running after {}s",
                timeout.as_secs()
            ))),
        }
    }

    /// Waits until an approval card for `execution` is in the chat inbox; returns its approval id.
    pub async fn wait_for_card(&self, execution: &str, timeout: Duration) -> Result<String, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            for card in self.adapters.chat.pending_cards()? {
                let record = self
                    .deps
                    .store
                    .get(Table::Approvals, &card.approval_id)
                    .await?;
                if record.as_ref().and_then(|r| r["execution"].as_str()) == Some(execution)
                    && record
                        .as_ref()
                        .map(|r| r["status"] == "pending")
                        .unwrap_or(false)
                {
                    return Ok(card.approval_id);
                }
            }
            let info = self
                .engine
                .describe_execution(execution)
                .map_err(|e| Error::InvalidInput(e.to_string()))?;
            if info.status != certops_asl::ExecutionStatus::Running {
                return Err(Error::InvalidInput(format!(
                    "{execution} ended ({}) without asking for approval",
                    info.status.as_str()
                )));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Transient(format!(
                    "no approval card for {execution} within {}s",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
