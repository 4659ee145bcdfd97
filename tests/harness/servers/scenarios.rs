//! The demo's scenarios on real servers: one certificate object (`shop-web-prod`, expiring
//! in 7 days, issued by an unrelated "legacy" CA) served by a real nginx and/or HAProxy,
//! behind a real Varnish, renewed by the embedded stack through the real state machine.
//! Mirrors `shared/embedded/src/demo.rs` (scenarios 1, 4 and 5) and `world.rs`, with the
//! in-process endpoint and cache replaced by the servers of [`super`]. With
//! [`WorldOptions::real_parts`], the issuer is pebble (HTTP-01 answered from the real nginx's
//! webroot) and the ITSM is the ServiceNow emulator, through the real adapters.

use std::sync::Arc;
use std::time::Duration;

use certops_adapters::Embedded;
use certops_asl::ExecutionStatus;
use certops_core::ports::{Clock, Config, Observation, Prober, SystemClock, TicketState};
use certops_core::workflow::WorkflowState;
use certops_core::{Endpoint, Inventory, Policy, Runbook, ScanFinding, Trigger, Verdict};
use certops_embedded::Stack;
use serde_json::Value;

use super::haproxy::Haproxy;
use super::nginx::Nginx;
use super::origin::Origin;
use super::varnish::Varnish;
use crate::contract::keystore::{Issued, TestCa};
use crate::issuers::pebble::Pebble;
use crate::issuers::setup::secret_file;
use crate::process::free_port;
use crate::servicenow::ServiceNowEmulator;

/// The common name of the certificate object.
pub const DNS: &str = "shop.example.com";
/// Service owner and approver.
pub const OWNER: &str = "olivia@example.com";
/// The CDN's distribution id.
pub const CDN: &str = "varnish-shop";

/// Which real termination points serve the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// A private nginx.
    Nginx,
    /// A private HAProxy.
    Haproxy,
}

/// How to build the world.
#[derive(Debug, Clone)]
pub struct WorldOptions {
    /// The servers, each a target of the certificate object (deploy order).
    pub edges: Vec<Edge>,
    /// Also verify the first server's second listener, which no deploy reaches (scenario 4).
    pub second_listener: bool,
    /// Purge Varnish over its admin port instead of HTTP.
    pub varnish_admin: bool,
    /// Issue from pebble (HTTP-01 through the nginx edge's webroot, so [`Edge::Nginx`] must be
    /// one of the edges) and keep the ticket in the ServiceNow emulator, instead of the local
    /// CA and ticket book.
    pub real_parts: bool,
}

/// The real issuer and ITSM of "every real part at once".
pub struct RealParts {
    /// pebble and its challenge test server.
    pub pebble: Pebble,
    /// The ServiceNow instance emulator.
    pub servicenow: ServiceNowEmulator,
    _secrets: tempfile::TempDir,
}

/// The ServiceNow integration user.
const SN_USER: &str = "certops.integration";

/// The world.
pub struct RealWorld {
    /// The embedded stack.
    pub stack: Stack,
    /// The nginx, if one of the edges.
    pub nginx: Option<Nginx>,
    /// The HAProxy, if one of the edges.
    pub haproxy: Option<Haproxy>,
    /// Varnish in front.
    pub varnish: Varnish,
    /// The endpoints verified.
    pub endpoints: Vec<Endpoint>,
    /// The certificate served before any change.
    pub initial: Issued,
    /// Trust anchors for every certificate in play (legacy CA + local CA, + pebble's).
    pub roots: String,
    /// pebble and the ServiceNow emulator, with [`WorldOptions::real_parts`].
    pub parts: Option<RealParts>,
    _origin: Origin,
    _legacy: TestCa,
    _dir: tempfile::TempDir,
}

/// What one run ended as.
#[derive(Debug)]
pub struct Outcome {
    /// The execution.
    pub execution: String,
    /// Final status.
    pub status: ExecutionStatus,
    /// Its error name, if it failed.
    pub error: Option<String>,
    /// The last workflow state seen (output, or the last state in history).
    pub state: Option<WorkflowState>,
    /// The ticket's final state.
    pub ticket_state: Option<TicketState>,
}

fn policy() -> String {
    crate::world::policy(None)
}

/// Builds the world in a fresh temporary directory.
pub async fn real_world(opts: WorldOptions) -> RealWorld {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let adapters = Embedded::open(&dir.path().join("state"), clock.clone()).expect("adapters");
    let legacy = TestCa::new();
    let initial = legacy.issue(DNS, 7);
    let origin = Origin::start().await;
    let varnish = Varnish::start(origin.port);
    let http01 = opts.real_parts.then(free_port);
    let nginx = opts
        .edges
        .contains(&Edge::Nginx)
        .then(|| Nginx::start_with_webroot(&initial, http01));
    assert!(
        !opts.real_parts || nginx.is_some(),
        "pebble's HTTP-01 is answered from the nginx edge's webroot"
    );
    let parts = match http01 {
        Some(port) => {
            let servicenow = ServiceNowEmulator::start().expect("ServiceNow emulator");
            let secrets = tempfile::tempdir().expect("secrets dir");
            Some(RealParts {
                pebble: Pebble::start(port),
                servicenow,
                _secrets: secrets,
            })
        }
        None => None,
    };
    let haproxy = opts
        .edges
        .contains(&Edge::Haproxy)
        .then(|| Haproxy::start(&initial));

    // The fallback certificate, pre-provisioned from the internal PKI (as the demo does).
    let fallback = adapters
        .provision_fallback("fallback/shop", "shop-web-prod", &[DNS])
        .await
        .expect("fallback");

    let mut targets = Vec::new();
    let mut connections = String::new();
    let mut endpoints = Vec::new();
    let endpoint = |port: u16| Endpoint {
        host: "127.0.0.1".into(),
        port,
        sni: DNS.into(),
    };
    for edge in &opts.edges {
        match edge {
            Edge::Nginx => {
                let n = nginx.as_ref().expect("nginx");
                targets
                    .push("{ kind = \"nginx\", id = \"edge-nginx\", reload = \"nginx-reload\" }");
                connections.push_str(&n.connection_toml("edge-nginx"));
                endpoints.push(endpoint(n.port));
            }
            Edge::Haproxy => {
                let h = haproxy.as_ref().expect("haproxy");
                targets.push(
                    "{ kind = \"haproxy\", id = \"edge-haproxy\", reload = \"haproxy-runtime-api\" }",
                );
                connections.push_str(&h.connection_toml("edge-haproxy"));
                endpoints.push(endpoint(h.port));
            }
        }
        connections.push('\n');
    }
    if opts.second_listener {
        let port2 = match opts.edges.first() {
            Some(Edge::Nginx) => nginx.as_ref().map(|n| n.port2),
            Some(Edge::Haproxy) => haproxy.as_ref().map(|h| h.port2),
            None => None,
        };
        endpoints.push(endpoint(port2.expect("a first edge")));
    }
    connections.push_str(&if opts.varnish_admin {
        varnish.admin_connection_toml(CDN)
    } else {
        varnish.http_connection_toml(CDN)
    });
    let endpoint_list: Vec<String> = endpoints
        .iter()
        .map(|e| {
            format!(
                "{{ host = \"{}\", port = {}, sni = \"{}\" }}",
                e.host, e.port, e.sni
            )
        })
        .collect();
    let mut integrations = String::new();
    let mut issuer = "issuer = { name = \"corp-pki\", method = \"internal-pki\" }".to_string();
    let mut pebble_roots = String::new();
    if let (Some(p), Some(n)) = (&parts, &nginx) {
        let password = format!("sn-{}", uuid::Uuid::new_v4());
        p.servicenow
            .add_user(SN_USER, &password, &["itil", "sn_change_writer"]);
        let secrets = p._secrets.path();
        let roots_file = p.pebble.issued_roots_file().await;
        pebble_roots = std::fs::read_to_string(&roots_file).expect("pebble roots");
        issuer = format!(
            "issuer = {{ name = \"pebble\", method = \"acme\", registered_domain = \"example.com\" }}\nacme = {{ eab_kid = \"{kid}\", solver = {{ type = \"http-01\", webroot = \"{webroot}\" }} }}",
            kid = p.pebble.eab_kid,
            webroot = n.webroot.as_ref().expect("webroot").display(),
        );
        integrations = format!(
            "[issuers.pebble]\nkind = \"acme\"\ndirectory_url = \"{dir_url}\"\nserver_roots_file = \"{server_roots}\"\ntrust_anchors_file = \"{roots}\"\neab_hmac = \"{eab}\"\norder_timeout_secs = 30\n\n[servicenow]\ninstance_url = \"{sn}\"\nusername = \"{SN_USER}\"\npassword = \"{pw}\"\nbackoff_millis = 50\n",
            dir_url = p.pebble.directory_url(),
            server_roots = p.pebble.pki.ca_file.display(),
            roots = roots_file.display(),
            eab = secret_file(secrets, "eab.secret", &p.pebble.eab_hmac),
            sn = p.servicenow.url(),
            pw = secret_file(secrets, "servicenow.password", &password),
        );
    }
    let inventory_text = format!(
        r#"[[certificate]]
id = "shop-web-prod"
ci = "shop-web-prod"
common_name = "{DNS}"
environment = "prod"
service_owner = "{OWNER}"
escalation = ["oncall-shop@example.com"]
change_authority = ["{OWNER}", "cab-alice@example.com"]
fallback_cert = "{fallback}"
{issuer}
targets = [{targets}]
endpoints = [{endpoints}]
cdn = {{ kind = "varnish", distribution_id = "{CDN}", paths = ["/*"] }}

{connections}"#,
        targets = targets.join(", "),
        endpoints = endpoint_list.join(", "),
    );
    let config = Config {
        inventory: Inventory::from_toml_str(&inventory_text)
            .unwrap_or_else(|e| panic!("{e}\n{inventory_text}")),
        policy: Policy::from_toml_str(&policy()).expect("policy"),
        runbook: Runbook::from_toml_str(crate::world::RUNBOOK).expect("runbook"),
        default_oncall: "oncall@example.com".into(),
        integrations: certops_core::integrations::Integrations::from_toml_str(&integrations)
            .expect("integrations"),
    };
    let local_root = adapters.ca.root_pem().await.expect("local root");
    let roots = format!("{}{local_root}{pebble_roots}", legacy.root_pem);
    let stack = Stack::with_adapters(
        &dir.path().join("state"),
        adapters,
        config,
        clock,
        Duration::from_secs(3),
    )
    .await
    .expect("stack");
    RealWorld {
        stack,
        nginx,
        haproxy,
        varnish,
        endpoints,
        initial,
        roots,
        parts,
        _origin: origin,
        _legacy: legacy,
        _dir: dir,
    }
}

impl RealWorld {
    /// What a handshake on every endpoint sees now.
    pub async fn served(&self) -> Vec<Observation> {
        let prober = certops_adapters::TlsProber::new(Duration::from_secs(5)).expect("prober");
        let mut out = Vec::new();
        for e in &self.endpoints {
            let mut obs = prober
                .probe(e, Some(&self.roots))
                .await
                .unwrap_or_else(|err| panic!("probe {}:{}: {err}", e.host, e.port));
            out.push(obs.remove(0));
        }
        out
    }

    /// The daily scan's path: probe, trigger, approve as the owner, wait for the end.
    pub async fn scan_and_run(&self) -> Outcome {
        let first = self.served().await.remove(0);
        let finding = ScanFinding {
            ci: "shop-web-prod".into(),
            observed_expiry: first.not_after,
            observed_fingerprint: Some(first.fingerprint),
        };
        let started = self
            .stack
            .trigger(Trigger::Scan(finding))
            .await
            .expect("trigger");
        let execution = started.execution;
        let approval_id = self
            .stack
            .wait_for_card(&execution, Duration::from_secs(30))
            .await
            .expect("approval card");
        self.stack
            .decide(certops_fn_approval_callback::Callback {
                approval_id,
                approver: OWNER.into(),
                verdict: Verdict::Approve,
                comment: Some("approved in the real-server test".into()),
            })
            .await
            .expect("approve");
        let info = self
            .stack
            .wait(&execution, Duration::from_secs(120))
            .await
            .expect("execution ends");
        let state: Option<WorkflowState> = info
            .output
            .clone()
            .and_then(|o| serde_json::from_value(o).ok())
            .or_else(|| self.last_state(&execution));
        let ticket_state = match state.as_ref().and_then(|s| s.validation.as_ref()) {
            Some(v) => self
                .stack
                .deps
                .itsm
                .get(&v.ticket)
                .await
                .ok()
                .flatten()
                .map(|t| t.state),
            None => None,
        };
        Outcome {
            execution,
            status: info.status,
            error: info.error,
            state,
            ticket_state,
        }
    }

    fn last_state(&self, execution: &str) -> Option<WorkflowState> {
        let history = self.stack.engine.history(execution).ok()?;
        history.iter().rev().find_map(|e| {
            let d = e.details_value()?;
            let text = d.get("output").or_else(|| d.get("input"))?.as_str()?;
            serde_json::from_str::<WorkflowState>(text)
                .ok()
                .filter(|s| s.validation.is_some())
        })
    }

    /// The summaries of the execution's audit records that are actions named `action`.
    pub async fn actions(&self, execution: &str, action: &str) -> Vec<Value> {
        use certops_core::ports::Store;
        self.stack
            .adapters
            .store
            .audit(execution)
            .await
            .expect("audit")
            .into_iter()
            .filter_map(|r| serde_json::to_value(&r).ok())
            .filter(|r| r.to_string().contains(&format!("\"action\":\"{action}\"")))
            .collect()
    }
}
