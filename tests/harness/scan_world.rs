//! A fleet for the expiry-scan tests: sixty certificate objects over a handful
//! of real TLS endpoints on 127.0.0.1, their leaves signed at run time by the
//! embedded local CA (so the prober trusts them through the issuer's trust
//! anchors) with chosen lifetimes — healthy, expiring, expired, an unexpected
//! leaf, two nodes disagreeing, and an endpoint that refuses connections.

use crate::world::{policy, TestClock, RUNBOOK};
use certops_adapters::local_ca::INTERMEDIATE_BUNDLE;
use certops_adapters::{Embedded, EngineWorkflow, TlsProber};
use certops_asl::{Engine, EngineOptions, NoTasks, TokioClock};
use certops_core::ports::{Bundle, Clock, Config, Deps, Keystore, SecretPem};
use certops_core::{Inventory, Policy, Runbook};
use chrono::{DateTime, Duration as TimeDelta, Utc};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Certificate objects in the fleet's inventory.
pub const OBJECTS: usize = 60;

/// The planned-renewal threshold of the fleet's policy, in days.
pub const THRESHOLD_DAYS: i64 = 30;

/// One TLS endpoint of the fleet.
#[derive(Debug, Clone)]
pub struct Node {
    /// The local target id.
    pub target: String,
    /// The SNI name its leaf covers.
    pub sni: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// SHA-256 of the served leaf (lowercase hex); empty for the refusing node.
    pub fingerprint: String,
    /// The served leaf's notAfter (whole seconds).
    pub not_after: DateTime<Utc>,
}

/// What each object is, so tests can state what the scan must find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// 80 days left, the leaf the inventory expects (when it records one).
    Healthy,
    /// 5 days left: within the planned threshold.
    Expiring,
    /// Expired yesterday.
    Expired,
    /// 80 days left, but not the leaf the inventory's `expected_fingerprint` names.
    UnexpectedLeaf,
    /// Two endpoints serving different (healthy) leaves.
    SplitNodes,
    /// Its only endpoint refuses connections.
    Refusing,
}

/// One certificate object of the fleet.
#[derive(Debug, Clone)]
pub struct Object {
    /// Inventory id.
    pub id: String,
    /// CI.
    pub ci: String,
    /// What it is.
    pub kind: Kind,
    /// The nodes its endpoints point at (names in [`ScanWorld::nodes`]).
    pub nodes: Vec<&'static str>,
}

/// The fleet.
pub struct ScanWorld {
    /// The embedded adapters (queue, store, endpoints …).
    pub adapters: Embedded,
    /// The ports handed to the scan.
    pub deps: Deps,
    /// The domain clock.
    pub clock: Arc<TestClock>,
    /// The workflow engine behind `deps.workflow` (the scan must start nothing on it).
    pub engine: Engine,
    /// Nodes by name: `healthy`, `healthy-b`, `expiring`, `expired`, `refusing`.
    pub nodes: BTreeMap<&'static str, Node>,
    /// Objects in inventory order.
    pub objects: Vec<Object>,
}

impl ScanWorld {
    /// The objects of one kind.
    pub fn of_kind(&self, kind: Kind) -> Vec<&Object> {
        self.objects.iter().filter(|o| o.kind == kind).collect()
    }

    /// The object with this id.
    pub fn object(&self, id: &str) -> &Object {
        self.objects
            .iter()
            .find(|o| o.id == id)
            .unwrap_or_else(|| panic!("no object {id}"))
    }

    /// The node with this name.
    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .get(name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }
}

/// What object `index` is: the problems are spread over the three batches.
fn kind_of(index: usize) -> Kind {
    match index {
        3 | 17 | 28 | 41 | 52 => Kind::Expiring,
        33 => Kind::Expired,
        12 => Kind::UnexpectedLeaf,
        47 => Kind::SplitNodes,
        58 => Kind::Refusing,
        _ => Kind::Healthy,
    }
}

fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).expect("timestamp")
}

fn offset(t: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp()).expect("time")
}

/// Signs a leaf for `sni` valid from `not_before` to `not_after` with the local CA's
/// intermediate, stores it (with its fresh key) in the keystore, and returns the bundle
/// reference and the leaf's fingerprint.
async fn leaf(
    adapters: &Embedded,
    issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
    intermediate_pem: &str,
    name: &str,
    sni: &str,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("leaf key");
    let mut params = rcgen::CertificateParams::new(vec![sni.to_string()]).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, sni);
    params.not_before = offset(not_before);
    params.not_after = offset(not_after);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, issuer).expect("sign leaf");
    let fingerprint = certops_core::canonical::sha256_hex(cert.der());
    let reference = adapters
        .keystore
        .put_bundle(
            &format!("scan-fleet/{name}"),
            Bundle {
                chain_pem: format!("{}{intermediate_pem}", cert.pem()),
                key: SecretPem::new(key.serialize_pem()),
            },
        )
        .await
        .expect("bundle");
    (reference, fingerprint)
}

/// Waits until nothing accepts connections on `port` any more.
async fn wait_refused(port: u16) {
    crate::eventually::eventually_async(
        &format!("port {port} refusing connections after its endpoint stopped"),
        Duration::from_secs(2),
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
}

/// Builds the fleet in `dir` and the `Deps` the scan runs with.
pub async fn scan_world(dir: &Path) -> ScanWorld {
    let clock = TestClock::now_real();
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let adapters = Embedded::open(dir, dyn_clock.clone()).expect("adapters");
    adapters.ca.root_pem().await.expect("local CA");
    let intermediate = adapters
        .keystore
        .get_bundle(&format!("keystore:{INTERMEDIATE_BUNDLE}"))
        .await
        .expect("intermediate bundle");
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &intermediate.chain_pem,
        rcgen::KeyPair::from_pem(intermediate.key.expose()).expect("intermediate key"),
    )
    .expect("intermediate issuer");

    let now = whole_seconds(Utc::now());
    let day = TimeDelta::days(1);
    // name, sni, not_before, not_after
    let plan: [(&'static str, &str, DateTime<Utc>, DateTime<Utc>); 5] = [
        ("healthy", "healthy.scan.test", now - day, now + day * 80),
        (
            "healthy-b",
            "healthy-b.scan.test",
            now - day,
            now + day * 79,
        ),
        (
            "expiring",
            "expiring.scan.test",
            now - day * 85,
            now + day * 5,
        ),
        ("expired", "expired.scan.test", now - day * 90, now - day),
        ("refusing", "refusing.scan.test", now - day, now + day * 80),
    ];
    let mut nodes = BTreeMap::new();
    for (name, sni, from, to) in plan {
        let (reference, fingerprint) = leaf(
            &adapters,
            &issuer,
            &intermediate.chain_pem,
            name,
            sni,
            from,
            to,
        )
        .await;
        let addr = adapters
            .endpoints
            .start(name, &reference)
            .await
            .expect("endpoint");
        nodes.insert(
            name,
            Node {
                target: name.to_string(),
                sni: sni.to_string(),
                port: addr.port(),
                fingerprint,
                not_after: to,
            },
        );
    }
    // The refusing node served once; now its port is closed.
    assert!(adapters.endpoints.stop("refusing"));
    wait_refused(nodes["refusing"].port).await;
    if let Some(n) = nodes.get_mut("refusing") {
        n.fingerprint.clear();
    }

    let mut objects = Vec::with_capacity(OBJECTS);
    let mut text = String::new();
    for index in 0..OBJECTS {
        let kind = kind_of(index);
        let id = format!("svc-{index:02}");
        let (node_names, expected): (Vec<&'static str>, Option<String>) = match kind {
            // Every tenth healthy object records the leaf it expects, written the way
            // an operator might copy it (upper case, colon-separated).
            Kind::Healthy if index % 10 == 0 => {
                let fp = &nodes["healthy"].fingerprint;
                let pretty = fp
                    .to_ascii_uppercase()
                    .as_bytes()
                    .chunks(2)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<Vec<_>>()
                    .join(":");
                (vec!["healthy"], Some(pretty))
            }
            Kind::Healthy => (vec!["healthy"], None),
            Kind::Expiring => (vec!["expiring"], None),
            Kind::Expired => (vec!["expired"], None),
            Kind::UnexpectedLeaf => (
                vec!["healthy-b"],
                Some(nodes["healthy"].fingerprint.clone()),
            ),
            Kind::SplitNodes => (vec!["healthy", "healthy-b"], None),
            Kind::Refusing => (vec!["refusing"], None),
        };
        let endpoints = node_names
            .iter()
            .map(|n| {
                format!(
                    r#"{{ host = "127.0.0.1", port = {}, sni = "{}" }}"#,
                    nodes[n].port, nodes[n].sni
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            text,
            r#"[[certificate]]
id = "{id}"
ci = "{id}-ci"
common_name = "{sni}"
environment = "prod"
service_owner = "team-{id}@example.com"
escalation = ["oncall@example.com"]
issuer = {{ name = "corp-pki", method = "internal-pki" }}
targets = [{{ kind = "local", id = "{target}", reload = "hot-swap" }}]
endpoints = [{endpoints}]
{expected}
"#,
            sni = nodes[node_names[0]].sni,
            target = nodes[node_names[0]].target,
            expected = expected
                .map(|fp| format!("expected_fingerprint = \"{fp}\""))
                .unwrap_or_default(),
        );
        objects.push(Object {
            ci: format!("{id}-ci"),
            id,
            kind,
            nodes: node_names,
        });
    }
    let config = Config {
        inventory: Inventory::from_toml_str(&text).expect("inventory"),
        policy: Policy::from_toml_str(&policy(None)).expect("policy"),
        runbook: Runbook::from_toml_str(RUNBOOK).expect("runbook"),
        default_oncall: "oncall@example.com".into(),
        integrations: certops_core::integrations::Integrations::none(),
    };
    assert_eq!(
        config.policy.renewal.planned_threshold_days,
        u32::try_from(THRESHOLD_DAYS).expect("threshold")
    );
    let engine = Engine::open(
        EngineOptions::default(),
        Arc::new(NoTasks),
        Arc::new(TokioClock::system()),
    )
    .expect("engine");
    let workflow = EngineWorkflow::new(engine.clone(), engine.state_machine_arn("cert-renewal"));
    let deps = adapters.deps(
        Arc::new(config),
        Arc::new(workflow),
        Arc::new(TlsProber::new(Duration::from_secs(3)).expect("prober")),
    );
    ScanWorld {
        adapters,
        deps,
        clock,
        engine,
        nodes,
        objects,
    }
}
