//! `certops demo`: the seed's two mini examples and the failure branches, end
//! to end on the embedded default — real TLS endpoints on 127.0.0.1, a local
//! CA as internal PKI, the local ticket book and chat inbox, the real state
//! machine on the local engine. Each scenario is checked, not just run.

use crate::prober::TlsProber;
use crate::stack::Stack;
use certops_adapters::{Embedded, IssuerFault, TargetFault};
use certops_core::ports::{
    Bundle, Clock, Config, IssueRequest, Keystore, NewTicket, Prober, SecretPem, TicketKind,
    TicketState,
};
use certops_core::workflow::{leaf_facts, WorkflowState};
use certops_core::{Endpoint, Error, Inventory, Policy, Runbook, ScanFinding, Trigger, Verdict};
use chrono::{DateTime, Duration as TimeDelta, Utc};
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

const RUNBOOK: &str = include_str!("../../../runbooks/cert-renewal.runbook.toml");
const OWNER: &str = "olivia@example.com";
const CAB: &str = "cab-alice@example.com";
const ECAB: &str = "erin@example.com";

/// An unrelated "vendor" CA that issued the certificates about to expire
/// (the ones certops replaces).
pub struct Legacy {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Legacy {
    /// A fresh CA with a run-time key.
    pub fn new() -> Result<Legacy, Error> {
        let key = rcgen::KeyPair::generate().map_err(rc)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Legacy Vendor CA (demo)");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        Ok(Legacy {
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// A certificate for `cn` that expires at `not_after` (possibly in the past): (chain PEM, key PEM).
    pub fn cert(&self, cn: &str, not_after: DateTime<Utc>) -> Result<(String, String), Error> {
        let key = rcgen::KeyPair::generate().map_err(rc)?;
        let mut params = rcgen::CertificateParams::new(vec![cn.to_string()]).map_err(rc)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.not_before = time_of(not_after - TimeDelta::days(90))?;
        params.not_after = time_of(not_after)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(rc)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

fn time_of(t: DateTime<Utc>) -> Result<time::OffsetDateTime, Error> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|e| Error::InvalidInput(format!("certificate validity out of range: {e}")))
}

fn rc(e: rcgen::Error) -> Error {
    Error::InvalidInput(format!("certificate generation: {e}"))
}

struct Scenario {
    id: &'static str,
    ci: &'static str,
    cn: &'static str,
    env: &'static str,
    issuer: &'static str,
    expires_in_hours: i64,
    cdn: bool,
}

const OBJECTS: &[Scenario] = &[
    Scenario {
        id: "shop-web-prod",
        ci: "shop-web-prod",
        cn: "shop.example.com",
        env: "prod",
        issuer: r#"{ name = "corp-pki", method = "internal-pki" }"#,
        expires_in_hours: 7 * 24,
        cdn: false,
    },
    Scenario {
        id: "pay-api-prod",
        ci: "pay-api-prod",
        cn: "pay.example.com",
        env: "prod",
        issuer: r#"{ name = "letsencrypt", method = "acme", registered_domain = "example.com" }"#,
        expires_in_hours: -48,
        cdn: true,
    },
    Scenario {
        id: "api-staging",
        ci: "api-staging",
        cn: "api.staging.example.org",
        env: "staging",
        issuer: r#"{ name = "letsencrypt", method = "acme", registered_domain = "example.org" }"#,
        expires_in_hours: 10 * 24,
        cdn: false,
    },
    Scenario {
        id: "cart-web-prod",
        ci: "cart-web-prod",
        cn: "cart.example.com",
        env: "prod",
        issuer: r#"{ name = "corp-pki", method = "internal-pki" }"#,
        expires_in_hours: 5 * 24,
        cdn: false,
    },
    Scenario {
        id: "media-web-prod",
        ci: "media-web-prod",
        cn: "media.example.com",
        env: "prod",
        issuer: r#"{ name = "corp-pki", method = "internal-pki" }"#,
        expires_in_hours: 6 * 24,
        cdn: true,
    },
];

fn policy_text() -> String {
    r#"version = "demo-2026.12"

[renewal]
planned_threshold_days = 30
emergency_threshold_hours = 24

[windows.prod]
timezone = "UTC"
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
start = "00:00"
end = "23:59"

[windows.staging]
timezone = "UTC"
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
start = "00:00"
end = "23:59"

[approval]
ecab = ["erin@example.com", "frank@example.com"]
timeouts = { standard_minutes = 60, normal_minutes = 1440, emergency_minutes = 30 }

# The demo's endpoints switch certificates at once: a short propagation schedule keeps the
# rollback scenario quick (production policies give minutes; runbooks/policy.toml).
[verify]
interval_seconds = 1
max_attempts = 3
backoff_percent = 100
max_interval_seconds = 1

[[standard_changes]]
name = "STD-CERT-NONPROD: certificate renewal outside production"
environments = ["staging", "dev"]
methods = ["acme", "internal-pki"]
covers_fallback = true

[acme]
certificates_per_registered_domain_per_week = 50
safety_margin = 10
"#
    .to_string()
}

async fn setup(
    adapters: &Embedded,
    clock: &Arc<dyn Clock>,
) -> Result<(String, Vec<Endpoint>), Error> {
    let legacy = Legacy::new()?;
    let now = clock.now();
    let mut toml = String::from(
        "# Generated by certops demo: endpoints are in-process TLS servers on 127.0.0.1.\n",
    );
    let mut endpoints = Vec::new();
    for s in OBJECTS {
        let (chain, key) = legacy.cert(s.cn, now + TimeDelta::hours(s.expires_in_hours))?;
        let current = adapters
            .keystore
            .put_bundle(
                &format!("current/{}", s.id),
                Bundle {
                    chain_pem: chain,
                    key: SecretPem::new(key),
                },
            )
            .await?;
        // The fallback certificate: pre-provisioned from the internal PKI.
        let fkey = rcgen::KeyPair::generate().map_err(rc)?;
        let mut p = rcgen::CertificateParams::new(vec![s.cn.to_string()]).map_err(rc)?;
        p.distinguished_name.push(rcgen::DnType::CommonName, s.cn);
        let csr = p
            .serialize_request(&fkey)
            .and_then(|c| c.pem())
            .map_err(rc)?;
        let issuer: certops_core::Issuer = toml_issuer(s.issuer)?;
        let fchain = certops_core::ports::Issuer::issue(
            adapters.ca.as_ref(),
            &IssueRequest {
                cert_id: s.id.into(),
                issuer,
                csr_pem: csr,
                common_name: s.cn.into(),
                sans: vec![s.cn.into()],
                replaces: None,
            },
        )
        .await?;
        let fallback = adapters
            .keystore
            .put_bundle(
                &format!("fallback/{}", s.id),
                Bundle {
                    chain_pem: fchain,
                    key: SecretPem::new(fkey.serialize_pem()),
                },
            )
            .await?;
        let target = format!("lb-{}", s.id);
        let addr = adapters.endpoints.start(&target, &current).await?;
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port: addr.port(),
            sni: s.cn.into(),
        };
        endpoints.push(ep.clone());
        toml.push_str(&format!(
            r#"
[[certificate]]
id = "{id}"
ci = "{ci}"
common_name = "{cn}"
sans = ["{cn}"]
environment = "{env}"
service_owner = "{OWNER}"
escalation = ["oncall-{id}@example.com"]
change_authority = ["{OWNER}", "{CAB}"]
fallback_cert = "{fallback}"
issuer = {issuer}
targets = [{{ kind = "local", id = "{target}", reload = "hot-swap" }}]
endpoints = [{{ host = "127.0.0.1", port = {port}, sni = "{cn}" }}]
{cdn}"#,
            id = s.id,
            ci = s.ci,
            cn = s.cn,
            env = s.env,
            issuer = s.issuer,
            port = addr.port(),
            cdn = if s.cdn { format!("cdn = {{ kind = \"local\", distribution_id = \"cdn-{}\", paths = [\"/*\"] }}\n", s.id) } else { String::new() },
        ));
    }
    Ok((toml, endpoints))
}

fn toml_issuer(text: &str) -> Result<certops_core::Issuer, Error> {
    #[derive(serde::Deserialize)]
    struct Wrapper {
        issuer: certops_core::Issuer,
    }
    toml::from_str::<Wrapper>(&format!("issuer = {text}"))
        .map(|w| w.issuer)
        .map_err(|e| Error::InvalidInput(format!("demo issuer: {e}")))
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
        .put_if_absent("issuances", "example.com", &json!({"count": 45}))
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

struct Run {
    r: ScenarioResult,
    started: std::time::Instant,
}

impl Run {
    fn new(name: &str, expected: &str) -> Run {
        Run {
            r: ScenarioResult {
                name: name.into(),
                expected: expected.into(),
                ok: false,
                problems: Vec::new(),
                execution: None,
                status: "not started".into(),
                ticket: None,
                ticket_state: None,
                path: None,
                approver: None,
                expiry_before: None,
                expiry_after: None,
                served_fingerprint: None,
                elapsed_ms: 0,
            },
            started: std::time::Instant::now(),
        }
    }

    /// Records a problem unless `got` is `want`.
    fn expect(&mut self, what: &str, got: Option<String>, want: &str) {
        if got.as_deref() != Some(want) {
            self.r.problems.push(format!("{what} {got:?}, want {want}"));
        }
    }

    fn check(&mut self, cond: bool, what: impl Into<String>) {
        if !cond {
            self.r.problems.push(what.into());
        }
    }

    fn finish(mut self) -> ScenarioResult {
        self.r.elapsed_ms = self.started.elapsed().as_millis();
        self.r.ok = self.r.problems.is_empty();
        self.r
    }

    fn fail(mut self, e: Error) -> ScenarioResult {
        self.r.problems.push(format!("{}: {e}", e.name()));
        self.finish()
    }
}

async fn scan(prober: &TlsProber, ep: &Endpoint, ci: &str) -> Result<ScanFinding, Error> {
    let obs = prober.probe(ep, None).await?;
    let first = obs.first().ok_or_else(|| {
        Error::VerificationFailed(format!("{}:{} served nothing", ep.host, ep.port))
    })?;
    Ok(ScanFinding {
        ci: ci.into(),
        observed_expiry: first.not_after,
        observed_fingerprint: Some(first.fingerprint.clone()),
    })
}

async fn served(
    stack: &Stack,
    prober: &TlsProber,
    ep: &Endpoint,
) -> Option<(String, DateTime<Utc>)> {
    let roots = certops_core::ports::Issuer::trust_anchors_pem(stack.adapters.ca.as_ref())
        .await
        .ok()
        .flatten();
    let obs = prober.probe(ep, roots.as_deref()).await.ok()?;
    obs.first().map(|o| (o.fingerprint.clone(), o.not_after))
}

/// Collects the common facts of a finished execution into the result.
async fn collect(stack: &Stack, run: &mut Run, execution: &str, prober: &TlsProber, ep: &Endpoint) {
    run.r.execution = Some(execution.to_string());
    if let Ok(info) = stack.engine.describe_execution(execution) {
        run.r.status = match &info.error {
            Some(e) => format!("{} ({e})", info.status.as_str()),
            None => info.status.as_str().to_string(),
        };
        let state: Option<WorkflowState> = info
            .output
            .clone()
            .and_then(|o| serde_json::from_value(o).ok())
            .or_else(|| last_state(stack, execution));
        if let Some(s) = state {
            if let Some(v) = &s.validation {
                run.r.ticket = Some(v.ticket.clone());
                run.r.path = Some(v.path.as_str().to_string());
                run.r.expiry_before = v.expiry_before;
            }
            run.r.approver = s
                .fallback_approval
                .as_ref()
                .or(s.approval.as_ref())
                .map(|a| a.approver.clone());
        }
    }
    if let Some(t) = &run.r.ticket {
        if let Ok(Some(ticket)) = stack.deps.itsm.get(t).await {
            run.r.ticket_state = Some(format!("{:?}", ticket.state));
        }
    }
    if let Some((fp, exp)) = served(stack, prober, ep).await {
        run.r.served_fingerprint = Some(fp);
        run.r.expiry_after = Some(exp);
    }
}

/// The state as of the last history event that carried it (for failed executions).
fn last_state(stack: &Stack, execution: &str) -> Option<WorkflowState> {
    let history = stack.engine.history(execution).ok()?;
    history.iter().rev().find_map(|e| {
        let d = e.details_value()?;
        let text = d.get("output").or_else(|| d.get("input"))?.as_str()?;
        serde_json::from_str::<WorkflowState>(text)
            .ok()
            .filter(|s| s.validation.is_some())
    })
}

async fn approve(stack: &Stack, execution: &str, who: &str) -> Result<(), Error> {
    let id = stack
        .wait_for_card(execution, Duration::from_secs(30))
        .await?;
    stack
        .decide(certops_fn_approval_callback::Callback {
            approval_id: id,
            approver: who.into(),
            verdict: Verdict::Approve,
            comment: Some("approved in demo".into()),
        })
        .await?;
    Ok(())
}

/// The daily-scan path: probe the endpoint as the scan does, start the
/// workflow from the finding, approve as `approver` once the card appears
/// (`None` for a pre-approved change) and wait for the execution to end.
async fn scan_and_run(
    stack: &Stack,
    prober: &TlsProber,
    ep: &Endpoint,
    ci: &str,
    approver: Option<&str>,
) -> Result<String, Error> {
    let finding = scan(prober, ep, ci).await?;
    let started = stack.trigger(Trigger::Scan(finding)).await?;
    if let Some(who) = approver {
        approve(stack, &started.execution, who).await?;
    }
    stack
        .wait(&started.execution, Duration::from_secs(120))
        .await?;
    Ok(started.execution)
}

async fn ticket_state(stack: &Stack, number: Option<&String>) -> Option<TicketState> {
    stack
        .deps
        .itsm
        .get(number?)
        .await
        .ok()
        .flatten()
        .map(|t| t.state)
}

async fn planned_renewal(stack: &Stack, prober: &TlsProber, ep: &Endpoint) -> ScenarioResult {
    let mut run = Run::new("1. Cert expires in 7 days", "scan finds it; change opened; service owner approves; renewed via internal PKI; deployed to the load balancer; verified; change closed with evidence");
    let before = served(stack, prober, ep).await;
    let result = scan_and_run(stack, prober, ep, "shop-web-prod", Some(OWNER)).await;
    let exec = match result {
        Ok(e) => e,
        Err(e) => return run.fail(e),
    };
    collect(stack, &mut run, &exec, prober, ep).await;
    run.expect("status", Some(run.r.status.clone()), "SUCCEEDED");
    run.expect("ticket state", run.r.ticket_state.clone(), "Closed");
    run.expect("approver", run.r.approver.clone(), OWNER);
    run.check(
        before.as_ref().map(|b| &b.0) != run.r.served_fingerprint.as_ref(),
        "the endpoint still serves the old certificate",
    );
    run.check(
        run.r.expiry_after > run.r.expiry_before,
        "expiry did not move forward",
    );
    run.finish()
}

async fn expired_incident(stack: &Stack, prober: &TlsProber, ep: &Endpoint) -> ScenarioResult {
    let mut run = Run::new("2. Cert already expired", "P1 incident enriched; ECAB approves; fallback certificate deployed, reloaded, CDN purged, verified; incident resolved");
    let result = async {
        let inc = stack
            .deps
            .itsm
            .open(NewTicket { kind: TicketKind::Incident, short_description: "pay.example.com: connection not private".into(), description: "Users report certificate errors on pay.example.com".into(), ci: "pay-api-prod".into(), priority: 1, correlation_id: "servicenow-INC-pay".into(), standard_change: None })
            .await?;
        let payload = json!({"number": inc.number, "sys_id": "6f1c2a", "sys_class_name": "incident", "category": "Certificate",
            "cmdb_ci": {"display_value": "pay-api-prod"}, "u_environment": "prod", "opened_by": {"display_value": "sam@example.com"}, "priority": "1"});
        let trigger = certops_fn_intake::trigger_from_servicenow(&payload)?;
        let started = stack.trigger(trigger).await?;
        approve(stack, &started.execution, ECAB).await?;
        stack.wait(&started.execution, Duration::from_secs(120)).await?;
        Ok::<_, Error>(started.execution)
    }
    .await;
    let exec = match result {
        Ok(e) => e,
        Err(e) => return run.fail(e),
    };
    collect(stack, &mut run, &exec, prober, ep).await;
    let fallback_fp = match stack
        .deps
        .keystore
        .get_bundle("keystore:fallback/pay-api-prod")
        .await
    {
        Ok(b) => leaf_facts(&b.chain_pem).ok().map(|f| f.fingerprint),
        Err(_) => None,
    };
    run.expect("status", Some(run.r.status.clone()), "SUCCEEDED");
    run.expect("path", run.r.path.clone(), "emergency");
    run.expect("approver", run.r.approver.clone(), ECAB);
    run.check(
        run.r.served_fingerprint.is_some() && run.r.served_fingerprint == fallback_fp,
        "the fallback certificate is not served",
    );
    run.expect("ticket state", run.r.ticket_state.clone(), "Resolved");
    if let Some(t) = run.r.ticket.clone() {
        let notes = stack
            .deps
            .itsm
            .get(&t)
            .await
            .ok()
            .flatten()
            .map(|t| t.work_notes)
            .unwrap_or_default();
        run.check(
            notes
                .iter()
                .any(|n| n.text.contains("Remediation") && n.text.contains("Current expiry")),
            "incident not enriched with endpoint, expiry and remediation",
        );
    }
    run.finish()
}

async fn rate_limited(stack: &Stack, prober: &TlsProber, ep: &Endpoint) -> ScenarioResult {
    let mut run = Run::new("3. ACME rate-limited", "pre-approved standard change; issuer rate-limits; fallback certificate (covered by the standard change) deployed and verified; change closed");
    stack
        .adapters
        .ca
        .set_fault("api-staging", Some(IssuerFault::RateLimited));
    let result = scan_and_run(stack, prober, ep, "api-staging", None).await;
    stack.adapters.ca.set_fault("api-staging", None);
    let exec = match result {
        Ok(e) => e,
        Err(e) => return run.fail(e),
    };
    collect(stack, &mut run, &exec, prober, ep).await;
    let state = stack
        .engine
        .describe_execution(&exec)
        .ok()
        .and_then(|i| i.output)
        .and_then(|o| serde_json::from_value::<WorkflowState>(o).ok());
    run.expect("status", Some(run.r.status.clone()), "SUCCEEDED");
    run.expect("path", run.r.path.clone(), "pre-approved");
    run.check(
        state
            .as_ref()
            .and_then(|s| s.renew_error.as_ref())
            .map(|e| e.error.as_str())
            == Some("RateLimited"),
        "renewal was not rate-limited",
    );
    run.check(
        state
            .as_ref()
            .and_then(|s| s.renewal.as_ref())
            .map(|r| r.source.as_str())
            == Some("fallback"),
        "the fallback certificate was not used",
    );
    run.expect("ticket state", run.r.ticket_state.clone(), "Closed");
    run.finish()
}

async fn rolled_back(stack: &Stack, prober: &TlsProber, ep: &Endpoint) -> ScenarioResult {
    let mut run = Run::new("4. Deploy ok, verification fails", "the load balancer keeps serving the old certificate after reload; verification fails; rollback restores last-known-good; the old certificate is served again");
    let before = served(stack, prober, ep).await;
    stack
        .adapters
        .endpoints
        .set_fault("lb-cart-web-prod", Some(TargetFault::IgnoresReload));
    let result = scan_and_run(stack, prober, ep, "cart-web-prod", Some(CAB)).await;
    stack.adapters.endpoints.set_fault("lb-cart-web-prod", None);
    let exec = match result {
        Ok(e) => e,
        Err(e) => return run.fail(e),
    };
    collect(stack, &mut run, &exec, prober, ep).await;
    run.expect("status", Some(run.r.status.clone()), "FAILED (RolledBack)");
    run.check(
        before.as_ref().map(|b| &b.0) == run.r.served_fingerprint.as_ref(),
        "the old certificate is not served after rollback",
    );
    run.expect("ticket state", run.r.ticket_state.clone(), "Canceled");
    run.finish()
}

async fn purge_failing(stack: &Stack, prober: &TlsProber, ep: &Endpoint) -> ScenarioResult {
    let mut run = Run::new("5. CDN purge keeps failing", "renewed and deployed; purge retried then given up; on-call notified; ticket Mitigating; verification still runs and passes");
    stack.adapters.cdn.set_failing("cdn-media-web-prod", true);
    let notes_before = stack
        .adapters
        .chat
        .notifications()
        .map(|n| n.len())
        .unwrap_or(0);
    let result = scan_and_run(stack, prober, ep, "media-web-prod", Some(OWNER)).await;
    stack.adapters.cdn.set_failing("cdn-media-web-prod", false);
    let exec = match result {
        Ok(e) => e,
        Err(e) => return run.fail(e),
    };
    collect(stack, &mut run, &exec, prober, ep).await;
    let notes_after = stack
        .adapters
        .chat
        .notifications()
        .map(|n| n.len())
        .unwrap_or(0);
    run.expect("status", Some(run.r.status.clone()), "SUCCEEDED");
    run.expect("ticket state", run.r.ticket_state.clone(), "Mitigating");
    run.check(notes_after > notes_before, "on-call was not notified");
    run.finish()
}

async fn unknown_ci(stack: &Stack, endpoints: &[Endpoint]) -> ScenarioResult {
    let mut run = Run::new(
        "6. CI maps to no known certificate",
        "blocked with reasons; nothing renewed, deployed or purged",
    );
    let refs_before = stack
        .deps
        .keystore
        .references()
        .await
        .map(|r| r.len())
        .unwrap_or(0);
    let served_before: Vec<_> = served_fingerprints(stack, endpoints).await;
    let result = async {
        let inc = stack
            .deps
            .itsm
            .open(NewTicket { kind: TicketKind::Incident, short_description: "billing.example.com certificate warning".into(), description: "Browser warning on the legacy billing portal".into(), ci: "legacy-billing-prod".into(), priority: 2, correlation_id: "servicenow-INC-billing".into(), standard_change: None })
            .await?;
        let payload = json!({"number": inc.number, "sys_id": "9a0b77", "sys_class_name": "incident", "category": "Certificate",
            "cmdb_ci": "legacy-billing-prod", "u_environment": "prod", "opened_by": "sam@example.com", "priority": "2"});
        let started = stack.trigger(certops_fn_intake::trigger_from_servicenow(&payload)?).await?;
        stack.wait(&started.execution, Duration::from_secs(60)).await?;
        Ok::<_, Error>((started.execution, inc.number))
    }
    .await;
    let (exec, number) = match result {
        Ok(e) => e,
        Err(e) => return run.fail(e),
    };
    run.r.execution = Some(exec.clone());
    run.r.ticket = Some(number.clone());
    if let Ok(info) = stack.engine.describe_execution(&exec) {
        run.r.status = format!(
            "{} ({})",
            info.status.as_str(),
            info.error.unwrap_or_default()
        );
    }
    run.r.path = Some("blocked".into());
    run.r.ticket_state = ticket_state(stack, Some(&number))
        .await
        .map(|s| format!("{s:?}"));
    let refs_after = stack
        .deps
        .keystore
        .references()
        .await
        .map(|r| r.len())
        .unwrap_or(0);
    let served_after: Vec<_> = served_fingerprints(stack, endpoints).await;
    run.expect("status", Some(run.r.status.clone()), "FAILED (Blocked)");
    run.check(refs_after == refs_before, "a certificate was issued");
    run.check(served_after == served_before, "an endpoint changed");
    let notes = stack
        .deps
        .itsm
        .get(&number)
        .await
        .ok()
        .flatten()
        .map(|t| t.work_notes)
        .unwrap_or_default();
    run.check(
        notes.iter().any(|n| n.text.contains("blocked")),
        "the ticket does not say why it was blocked",
    );
    run.finish()
}

async fn served_fingerprints(stack: &Stack, endpoints: &[Endpoint]) -> Vec<Option<String>> {
    let prober = match TlsProber::new(Duration::from_secs(3)) {
        Ok(p) => p,
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    for ep in endpoints {
        out.push(served(stack, &prober, ep).await.map(|s| s.0));
    }
    out
}
