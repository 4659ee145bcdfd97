//! `certops demo`: the seed's two mini examples and the failure branches, end
//! to end on the embedded default — real TLS endpoints on 127.0.0.1, a local
//! CA as internal PKI, the local ticket book and chat inbox, the real state
//! machine on the local engine. Each scenario is checked, not just run.

//!
//! - [`world`]: the world the scenarios run in: the legacy CA, the six certificates, their
//!   TLS endpoints, fallback bundles, inventory and policy;
//! - [`scenarios`]: the six scenarios, each a [`ScenarioResult`] with what was checked;
//! - [`checks`]: what every scenario checks with: the scan, the served certificate, the
//!   execution's last state, approvals and tickets.

mod checks;
mod scenarios;
mod world;

use scenarios::{
    expired_incident, planned_renewal, purge_failing, rate_limited, rolled_back, unknown_ci,
};
pub use world::Legacy;
use world::{policy_text, setup, RUNBOOK};

use crate::prober::TlsProber;
use crate::stack::Stack;
use certops_adapters::Embedded;
use certops_core::ports::{Clock, Config, Table};
use certops_core::{Error, Inventory, Policy, Runbook};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The outcome of one scenario.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioResult {
    /// Scenario number and title.
    pub name: String,
    /// What should happen.
    pub expected: String,
    /// Whether everything expected happened.
    pub ok: bool,
    /// Checks that failed (empty when ok).
    pub problems: Vec<String>,
    /// The execution.
    pub execution: Option<String>,
    /// Execution status and error.
    pub status: String,
    /// The ITSM record and its final state.
    pub ticket: Option<String>,
    /// Final ticket state.
    pub ticket_state: Option<String>,
    /// The approval path.
    pub path: Option<String>,
    /// Who approved.
    pub approver: Option<String>,
    /// Expiry before.
    pub expiry_before: Option<DateTime<Utc>>,
    /// Expiry served after.
    pub expiry_after: Option<DateTime<Utc>>,
    /// Fingerprint served at the end.
    pub served_fingerprint: Option<String>,
    /// Wall time of the scenario, ms.
    pub elapsed_ms: u128,
}

/// The whole demo.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoReport {
    /// The data directory used.
    pub data_dir: String,
    /// Every scenario.
    pub scenarios: Vec<ScenarioResult>,
}

impl DemoReport {
    /// Whether every scenario ended as expected.
    pub fn all_ok(&self) -> bool {
        self.scenarios.iter().all(|s| s.ok)
    }
}

/// Runs every scenario against a fresh stack in `data_dir`.
pub async fn run(data_dir: &Path, progress: &(dyn Fn(&str) + Sync)) -> Result<DemoReport, Error> {
    run_with(
        data_dir,
        certops_core::integrations::Integrations::none(),
        progress,
    )
    .await
}

/// Runs every scenario with `integrations` selecting adapters (e.g. `[servicenow]`: every
/// record is opened, moved and closed in that instance instead of the local ticket book).
pub async fn run_with(
    data_dir: &Path,
    integrations: certops_core::integrations::Integrations,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<DemoReport, Error> {
    let clock: Arc<dyn Clock> = Arc::new(certops_core::ports::SystemClock);
    let adapters = Embedded::open(data_dir, clock.clone())?;
    progress("starting TLS endpoints, local CA and fallback certificates");
    let (inventory_text, endpoints) = setup(&adapters, &clock).await?;
    std::fs::write(data_dir.join("demo-inventory.toml"), &inventory_text)
        .map_err(|e| Error::InvalidInput(format!("writing demo inventory: {e}")))?;
    // The same configuration as <data_dir>/config, which `certops serve --data-dir <data_dir>`
    // picks up, so the web console shows the demo's certificates and decides its approvals.
    let config_dir = data_dir.join("config");
    for (file, text) in [
        ("inventory.toml", inventory_text.as_str()),
        ("policy.toml", policy_text().as_str()),
        ("cert-renewal.runbook.toml", RUNBOOK),
    ] {
        std::fs::create_dir_all(&config_dir)
            .and_then(|()| std::fs::write(config_dir.join(file), text))
            .map_err(|e| Error::InvalidInput(format!("writing demo {file}: {e}")))?;
    }
    let config = Config {
        inventory: Inventory::from_toml_str(&inventory_text)?,
        policy: Policy::from_toml_str(&policy_text())?,
        runbook: Runbook::from_toml_str(RUNBOOK)?,
        default_oncall: certops_core::ports::DEFAULT_ONCALL.into(),
        integrations,
    };
    let stack = Stack::with_adapters(
        data_dir,
        adapters,
        config,
        clock.clone(),
        Duration::from_secs(3),
    )
    .await?;
    // The ACME budget for example.com is nearly spent this week (scenario 2).
    stack
        .deps
        .store
        .put_if_absent(Table::Issuances, "example.com", &json!({"count": 45}))
        .await?;
    let prober = TlsProber::new(Duration::from_secs(3))?;
    let mut results = Vec::new();

    progress("1/6 cert expires in 7 days: daily scan → change → owner approval → internal PKI → load balancer → verify → close");
    results.push(planned_renewal(&stack, &prober, &endpoints[0]).await);
    progress("2/6 cert already expired: P1 incident → ECAB approval → fallback certificate → reload → CDN purge → verify");
    results.push(expired_incident(&stack, &prober, &endpoints[1]).await);
    progress("3/6 ACME rate-limited → fallback path (pre-approved by standard change)");
    results.push(rate_limited(&stack, &prober, &endpoints[2]).await);
    progress("4/6 deploy succeeds but verification fails → rollback, old certificate served again");
    results.push(rolled_back(&stack, &prober, &endpoints[3]).await);
    progress("5/6 CDN purge keeps failing → on-call notified, ticket Mitigating");
    results.push(purge_failing(&stack, &prober, &endpoints[4]).await);
    progress("6/6 ticket whose CI maps to no known certificate → blocked, nothing executed");
    results.push(unknown_ci(&stack, &endpoints).await);
    Ok(DemoReport {
        data_dir: data_dir.display().to_string(),
        scenarios: results,
    })
}
