//! The workflow, keystore, deploy-target and CDN contract suites, each run against the
//! embedded adapter and against the AWS adapter on a moto server (the workflow also
//! against `certops serve`, the local Step Functions endpoint). Both sides must pass the
//! same suite.
//!
//! moto runs Step Functions executions for real only in its "execute_state_machine" mode
//! (switched on through its `/moto-api/config` endpoint below); callbacks go through an
//! SQS `.waitForTaskToken` task because moto's Lambda needs Docker. EC2 (the VPC and
//! subnets a load balancer needs) has no SDK client in this workspace, so those two
//! fixtures are made with moto's EC2 query API over plain HTTP; everything else is set up
//! through the AWS SDK for Rust.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use std::sync::{Arc, Mutex};
use std::time::Duration;

use certops_adapters::{EngineWorkflow, TlsProber};
use certops_asl::{Engine, EngineOptions, EventType, FunctionRegistry, TokioClock};
use certops_aws::acm::aws_sdk_acm;
use certops_aws::cloudfront::{aws_sdk_cloudfront, CloudFrontPurger};
use certops_aws::elb::aws_sdk_elasticloadbalancingv2 as elbv2;
use certops_aws::secrets::{aws_sdk_secretsmanager, SecretsKeystore, DEFAULT_PREFIX};
use certops_aws::sfn::SfnWorkflow;
use certops_aws::targets::AwsTargets;
use certops_core::ports::{CdnPurger, Clock, DeployTarget, Keystore, Prober, SystemClock};
use certops_core::{Cdn, CdnKind, Endpoint, ReloadMethod, Target, TargetKind};
use certops_tests::contract::cdn::{cdn_contract, RetryPromise};
use certops_tests::contract::deploy::{deploy_contract, DeployCase, ServedCertificate};
use certops_tests::contract::keystore::{keystore_contract, TestCa};
use certops_tests::contract::workflow::{
    callback_definition, find_token, workflow_contract, Outcome, WorkflowProbe,
};
use certops_tests::moto::Moto;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LAMBDA_CALLBACK: &str = "arn:aws:states:::lambda:invoke.waitForTaskToken";
const SQS_CALLBACK: &str = "arn:aws:states:::sqs:sendMessage.waitForTaskToken";
const ROLE: &str = "arn:aws:iam::123456789012:role/certops-contract";
const DNS: &str = "shop.contract.test";

/// A name no earlier run used (execution and bundle names).
fn run_id(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{what}-{}-{nanos}", std::process::id())
}

// ---------------------------------------------------------------------------------------
// moto over plain HTTP: its configuration endpoint and the EC2/SQS query APIs.

/// POSTs `body` to moto; returns the response body, failing the test on a non-2xx status.
async fn moto_post(moto: &Moto, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", moto.port))
        .await
        .expect("connect to moto");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n",
        moto.port,
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write to moto");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read from moto");
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split(' ').nth(1).unwrap_or("");
    assert!(status.starts_with('2'), "moto {path} answered: {text}");
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// A call to one of moto's query-protocol APIs. moto routes by the credential scope of
/// the `Authorization` header and does not check the signature.
async fn query(moto: &Moto, service: &str, params: &[(&str, &str)]) -> String {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, \
         SignedHeaders=host, Signature=00"
    );
    let body: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('/', "%2F").replace(':', "%3A")))
        .collect();
    moto_post(
        moto,
        "/",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &body.join("&"),
    )
    .await
}

/// The text of the first `<tag>` element.
fn xml(text: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = text
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {text}"))
        + open.len();
    let end = text[start..]
        .find(&format!("</{tag}>"))
        .unwrap_or_else(|| panic!("no </{tag}> in {text}"));
    text[start..start + end].to_string()
}

// ---------------------------------------------------------------------------------------
// Workflow

struct EngineProbe(Engine);

impl WorkflowProbe for EngineProbe {
    async fn task_token(&self, execution: &str) -> String {
        certops_tests::eventually::eventually(
            &format!("a TaskScheduled event with a token for {execution}"),
            Duration::from_secs(5),
            || {
                self.0
                    .history(execution)
                    .expect("history")
                    .iter()
                    .filter(|e| e.kind == EventType::TaskScheduled)
                    .filter_map(|e| e.details_value())
                    .find_map(|d| find_token(&d))
            },
        )
    }

    async fn outcome(&self, execution: &str) -> Outcome {
        let info = tokio::time::timeout(Duration::from_secs(30), self.0.wait_for(execution))
            .await
            .expect("the execution ends")
            .expect("wait_for");
        Outcome {
            status: info.status.as_str().to_string(),
            output: info.output,
            error: info.error,
        }
    }
}

/// Looks into executions through the Step Functions API (AWS, moto or `certops serve`),
/// asking the workflow whose state machine the execution belongs to.
struct SfnProbe(Vec<SfnWorkflow>);

impl SfnProbe {
    fn of(&self, execution: &str) -> &SfnWorkflow {
        self.0
            .iter()
            .find(|w| {
                w.execution_arn("")
                    .is_ok_and(|prefix| execution.starts_with(&prefix))
            })
            .unwrap_or_else(|| panic!("no workflow runs {execution}"))
    }
}

impl WorkflowProbe for SfnProbe {
    async fn task_token(&self, execution: &str) -> String {
        certops_tests::eventually::eventually_async(
            &format!("a TaskScheduled event with a token for {execution}"),
            Duration::from_secs(10),
            || async move {
                self.of(execution)
                    .history(execution)
                    .await
                    .expect("history")
                    .iter()
                    .filter_map(|e| e.task_scheduled_event_details())
                    .filter_map(|d| serde_json::from_str::<Value>(d.parameters()).ok())
                    .find_map(|p| find_token(&p))
            },
        )
        .await
    }

    async fn outcome(&self, execution: &str) -> Outcome {
        certops_tests::eventually::eventually_async(
            &format!("{execution} ending"),
            Duration::from_secs(30),
            || async move {
                let d = self
                    .of(execution)
                    .client()
                    .describe_execution()
                    .execution_arn(execution)
                    .send()
                    .await
                    .expect("describe_execution");
                let status = d.status().as_str().to_string();
                (status != "RUNNING").then(|| Outcome {
                    status,
                    output: d.output().and_then(|o| serde_json::from_str(o).ok()),
                    error: d.error().map(str::to_string),
                })
            },
        )
        .await
    }
}

fn lambda_callback_definition() -> String {
    callback_definition(
        LAMBDA_CALLBACK,
        json!({"FunctionName": "noop", "Payload": {"token.$": "$$.Task.Token", "cert.$": "$.cert"}}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_engine_passes_the_workflow_contract() {
    let engine = Engine::open(
        EngineOptions::default(),
        Arc::new(FunctionRegistry::with_builtins()),
        Arc::new(TokioClock::system()),
    )
    .expect("engine");
    let machine = engine
        .create_state_machine("contract", &lambda_callback_definition(), ROLE)
        .expect("state machine");
    let workflow = EngineWorkflow::new(engine.clone(), machine.arn);
    workflow_contract(
        &workflow,
        &workflow,
        &EngineProbe(engine),
        &run_id("embedded"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sfn_workflow_on_certops_serve_passes_the_workflow_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = certops_tests::process::start_serve(dir.path());
    let client = certops_tests::process::sfn_client(&serve.url());
    let machine = client
        .create_state_machine()
        .name("contract")
        .definition(lambda_callback_definition())
        .role_arn(ROLE)
        .send()
        .await
        .expect("create_state_machine on certops serve");
    let workflow = SfnWorkflow::new(client, machine.state_machine_arn());
    workflow_contract(
        &workflow,
        &workflow,
        &SfnProbe(vec![workflow.clone()]),
        &run_id("serve"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sfn_workflow_on_moto_passes_the_workflow_contract() {
    // moto (5.2) runs executions for real only with "execute_state_machine" on, and then
    // fails every StartExecution after the first one on a server (it deep-copies state
    // holding a lock: HTTP 500). So each of the suite's two executions gets its own server.
    let mut servers = Vec::new();
    let mut workflows = Vec::new();
    for name in ["contract", "contract-reject"] {
        let moto = Moto::start();
        // Without this moto keeps every execution RUNNING, returns a canned history and
        // accepts any task token.
        moto_post(
            &moto,
            "/moto-api/config",
            &[("Content-Type", "application/json")],
            &json!({"stepfunctions": {"execute_state_machine": true}}).to_string(),
        )
        .await;
        let queue = xml(
            &query(
                &moto,
                "sqs",
                &[
                    ("Action", "CreateQueue"),
                    ("QueueName", "approvals"),
                    ("Version", "2012-11-05"),
                ],
            )
            .await,
            "QueueUrl",
        );
        let client = aws_sdk_sfn::Client::new(&moto.sdk_config().await);
        let definition = callback_definition(
            SQS_CALLBACK,
            json!({"QueueUrl": queue, "MessageBody": {"token.$": "$$.Task.Token", "cert.$": "$.cert"}}),
        );
        let machine = client
            .create_state_machine()
            .name(name)
            .definition(definition)
            .role_arn(ROLE)
            .send()
            .await
            .expect("create_state_machine on moto");
        workflows.push(SfnWorkflow::new(client, machine.state_machine_arn()));
        servers.push(moto);
    }
    let workflow = &workflows[0];
    let names = run_id("moto");
    workflow_contract(
        workflow,
        &workflows[1],
        &SfnProbe(workflows.clone()),
        &names,
    )
    .await;

    // The history helper returns the whole execution, oldest first.
    let arn = workflow
        .execution_arn(&format!("{names}-approve"))
        .expect("arn");
    let history = workflow.history(&arn).await.expect("history");
    let kinds: Vec<&str> = history.iter().map(|e| e.r#type().as_str()).collect();
    assert_eq!(kinds.first(), Some(&"ExecutionStarted"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"ExecutionSucceeded"), "{kinds:?}");
    assert!(kinds.contains(&"TaskSucceeded"), "{kinds:?}");
    assert!(history.windows(2).all(|w| w[0].id() < w[1].id()));
}

// ---------------------------------------------------------------------------------------
// Keystore

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_keystore_passes_the_keystore_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded =
        certops_adapters::Embedded::open(dir.path(), Arc::new(SystemClock)).expect("embedded");
    keystore_contract(
        embedded.keystore.as_ref(),
        "contract",
        "keystore:contract/never-stored",
    )
    .await;
}

fn unknown_secret_arn(name: &str) -> String {
    format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{DEFAULT_PREFIX}{name}-AbCdEf")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_keystore_on_moto_passes_the_keystore_contract() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let keystore = SecretsKeystore::new(aws_sdk_secretsmanager::Client::new(&sdk), DEFAULT_PREFIX);
    keystore_contract(
        &keystore,
        "contract",
        &unknown_secret_arn("contract/never-stored"),
    )
    .await;

    // One secret per bundle, named <prefix><name>, holding {chain_pem, key_pem}.
    let ca = TestCa::new();
    let issued = ca.issue(DNS, 30);
    let reference = keystore
        .put_bundle("layout/shop", issued.bundle())
        .await
        .expect("put");
    let secret = keystore
        .client()
        .get_secret_value()
        .secret_id(&reference)
        .send()
        .await
        .expect("get_secret_value");
    assert_eq!(secret.name(), Some("certops/bundles/layout/shop"));
    assert_eq!(secret.arn(), Some(reference.as_str()));
    let stored: Value =
        serde_json::from_str(secret.secret_string().expect("string")).expect("JSON");
    assert_eq!(stored["chain_pem"], issued.chain_pem.as_str());
    assert_eq!(stored["key_pem"], issued.key_pem.as_str());

    // Secrets outside the prefix are not bundles: refused before they are read, and
    // nothing of theirs shows in the error or in references().
    let other = keystore
        .client()
        .create_secret()
        .name("certops/sealing-key")
        .secret_string("sealing-key-material-do-not-print")
        .send()
        .await
        .expect("create another secret");
    let other_arn = other.arn().expect("arn");
    let err = keystore
        .get_bundle(other_arn)
        .await
        .err()
        .expect("a secret outside the prefix");
    assert_eq!(err.name(), "InvalidInput");
    assert!(!err.to_string().contains("do-not-print"), "{err}");
    assert!(!keystore
        .references()
        .await
        .expect("references")
        .iter()
        .any(|r| r == other_arn));

    // A secret under the prefix that is not a bundle is an error that quotes nothing.
    let junk = keystore
        .client()
        .create_secret()
        .name("certops/bundles/junk")
        .secret_string("\"junk-secret-do-not-print\"")
        .send()
        .await
        .expect("create junk");
    let err = keystore
        .get_bundle(junk.arn().expect("arn"))
        .await
        .err()
        .expect("not a bundle");
    assert_eq!(err.name(), "InvalidInput");
    assert!(!err.to_string().contains("do-not-print"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Deploy targets

/// A TLS handshake from outside, trusting the contract CA.
struct Handshake {
    prober: TlsProber,
    endpoint: Endpoint,
    root_pem: String,
}

impl ServedCertificate for Handshake {
    async fn served(&self, _target: &Target) -> (String, i64) {
        let seen = self
            .prober
            .probe(&self.endpoint, Some(&self.root_pem))
            .await
            .expect("probe");
        let first = seen.first().expect("an observation");
        assert!(first.chain_valid, "the served chain verifies: {first:?}");
        (first.fingerprint.clone(), first.not_after.timestamp())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_endpoints_pass_the_deploy_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded =
        certops_adapters::Embedded::open(dir.path(), Arc::new(SystemClock)).expect("embedded");
    let ca = TestCa::new();
    let initial = embedded
        .keystore
        .put_bundle("contract/v0", ca.issue(DNS, 5).bundle())
        .await
        .expect("v0");
    let addr = embedded
        .endpoints
        .start("web-contract", &initial)
        .await
        .expect("start endpoint");
    let served = Handshake {
        prober: TlsProber::new(Duration::from_secs(5)).expect("prober"),
        endpoint: Endpoint {
            host: "127.0.0.1".into(),
            port: addr.port(),
            sni: DNS.into(),
        },
        root_pem: ca.root_pem.clone(),
    };
    let run = deploy_contract(DeployCase {
        targets: embedded.endpoints.as_ref(),
        keystore: embedded.keystore.as_ref(),
        target: Target {
            kind: TargetKind::Local,
            id: "web-contract".into(),
            reload: ReloadMethod::HotSwap,
        },
        dns: DNS,
        wrong_kind: Target {
            kind: TargetKind::Acm,
            id: "arn:aws:acm:us-east-1:123456789012:certificate/x".into(),
            reload: ReloadMethod::None,
        },
        unknown_bundle: "keystore:contract/never-stored",
        names: "contract",
        served: &served,
        ca: &ca,
    })
    .await;
    assert_eq!(run.served[0], run.served[2], "the rollback serves v1 again");
}

async fn not_after(acm: &aws_sdk_acm::Client, arn: &str) -> i64 {
    let d = acm
        .describe_certificate()
        .certificate_arn(arn)
        .send()
        .await
        .expect("describe_certificate");
    d.certificate()
        .and_then(|c| c.not_after())
        .map(|t| t.secs())
        .expect("NotAfter")
}

/// What ACM holds under the target's ARN (DescribeCertificate).
struct AcmView(aws_sdk_acm::Client);

impl ServedCertificate for AcmView {
    async fn served(&self, target: &Target) -> (String, i64) {
        (target.id.clone(), not_after(&self.0, &target.id).await)
    }
}

/// The listener's default certificate (DescribeListeners) and what ACM says of it.
struct ListenerView {
    elb: elbv2::Client,
    acm: aws_sdk_acm::Client,
}

impl ServedCertificate for ListenerView {
    async fn served(&self, target: &Target) -> (String, i64) {
        let out = self
            .elb
            .describe_listeners()
            .listener_arns(&target.id)
            .send()
            .await
            .expect("describe_listeners");
        let arn = out.listeners()[0].certificates()[0]
            .certificate_arn()
            .expect("certificate ARN")
            .to_string();
        let na = not_after(&self.acm, &arn).await;
        (arn, na)
    }
}

async fn import(acm: &aws_sdk_acm::Client, ca: &TestCa, days: i64) -> String {
    let issued = ca.issue(DNS, days);
    acm.import_certificate()
        .certificate(aws_sdk_acm::primitives::Blob::new(
            issued.leaf_pem.as_bytes(),
        ))
        .private_key(aws_sdk_acm::primitives::Blob::new(
            issued.key_pem.as_bytes(),
        ))
        .certificate_chain(aws_sdk_acm::primitives::Blob::new(ca.root_pem.as_bytes()))
        .send()
        .await
        .expect("import the fixture certificate")
        .certificate_arn()
        .expect("arn")
        .to_string()
}

fn aws_targets(sdk: &aws_config::SdkConfig) -> (AwsTargets, SecretsKeystore) {
    let keystore = SecretsKeystore::new(aws_sdk_secretsmanager::Client::new(sdk), DEFAULT_PREFIX);
    let shared: Arc<dyn Keystore> = Arc::new(keystore.clone());
    (AwsTargets::new(sdk, shared), keystore)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acm_target_on_moto_passes_the_deploy_contract() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let acm = aws_sdk_acm::Client::new(&sdk);
    let (targets, keystore) = aws_targets(&sdk);
    let ca = TestCa::new();
    let arn = import(&acm, &ca, 5).await;
    let target = Target {
        kind: TargetKind::Acm,
        id: arn.clone(),
        reload: ReloadMethod::None,
    };
    let run = deploy_contract(DeployCase {
        targets: &targets,
        keystore: &keystore,
        target: target.clone(),
        dns: DNS,
        wrong_kind: Target {
            kind: TargetKind::Nginx,
            id: "web-01.shop.internal".into(),
            reload: ReloadMethod::NginxReload,
        },
        unknown_bundle: &unknown_secret_arn("contract/never-stored"),
        names: "acm-contract",
        served: &AcmView(acm.clone()),
        ca: &ca,
    })
    .await;

    // Re-imported in place: the ARN never changed, and ACM serves v1's leaf with the chain.
    assert!(run.served.iter().all(|(a, _)| a == &arn));
    let v1 = keystore.get_bundle(&run.v1).await.expect("v1");
    let got = acm
        .get_certificate()
        .certificate_arn(&arn)
        .send()
        .await
        .expect("get_certificate");
    let leaf = got.certificate().expect("certificate");
    assert!(
        v1.chain_pem.starts_with(leaf.trim_end()),
        "ACM holds v1's leaf"
    );
    // (moto appends a chain of its own after the imported one.)
    assert!(
        got.certificate_chain()
            .is_some_and(|c| c.starts_with(ca.root_pem.trim_end())),
        "and the rest of the chain: {:?}",
        got.certificate_chain()
    );
    // AwsTargets refuses the reload methods ACM does not have.
    let mut wrong_reload = target;
    wrong_reload.reload = ReloadMethod::ListenerUpdate;
    assert_eq!(
        targets
            .deploy(&wrong_reload, &run.v2)
            .await
            .unwrap_err()
            .name(),
        "DeployFailed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elb_target_on_moto_passes_the_deploy_contract() {
    let moto = Moto::start();
    let vpc = xml(
        &query(
            &moto,
            "ec2",
            &[
                ("Action", "CreateVpc"),
                ("CidrBlock", "10.20.0.0/16"),
                ("Version", "2016-11-15"),
            ],
        )
        .await,
        "vpcId",
    );
    let mut subnets = Vec::new();
    for (cidr, zone) in [
        ("10.20.1.0/24", "us-east-1a"),
        ("10.20.2.0/24", "us-east-1b"),
    ] {
        subnets.push(xml(
            &query(
                &moto,
                "ec2",
                &[
                    ("Action", "CreateSubnet"),
                    ("VpcId", &vpc),
                    ("CidrBlock", cidr),
                    ("AvailabilityZone", zone),
                    ("Version", "2016-11-15"),
                ],
            )
            .await,
            "subnetId",
        ));
    }
    let sdk = moto.sdk_config().await;
    let acm = aws_sdk_acm::Client::new(&sdk);
    let elb = elbv2::Client::new(&sdk);
    let (targets, keystore) = aws_targets(&sdk);
    let ca = TestCa::new();
    let initial = import(&acm, &ca, 5).await;
    let lb = elb
        .create_load_balancer()
        .name("shop-contract")
        .set_subnets(Some(subnets))
        .r#type(elbv2::types::LoadBalancerTypeEnum::Application)
        .send()
        .await
        .expect("create_load_balancer");
    let lb_arn = lb.load_balancers()[0]
        .load_balancer_arn()
        .expect("arn")
        .to_string();
    let tg = elb
        .create_target_group()
        .name("shop-contract")
        .protocol(elbv2::types::ProtocolEnum::Http)
        .port(80)
        .vpc_id(&vpc)
        .send()
        .await
        .expect("create_target_group");
    let tg_arn = tg.target_groups()[0]
        .target_group_arn()
        .expect("arn")
        .to_string();
    let listener = elb
        .create_listener()
        .load_balancer_arn(&lb_arn)
        .protocol(elbv2::types::ProtocolEnum::Https)
        .port(443)
        .certificates(
            elbv2::types::Certificate::builder()
                .certificate_arn(&initial)
                .build(),
        )
        .default_actions(
            elbv2::types::Action::builder()
                .r#type(elbv2::types::ActionTypeEnum::Forward)
                .target_group_arn(&tg_arn)
                .build(),
        )
        .send()
        .await
        .expect("create_listener");
    let listener_arn = listener.listeners()[0]
        .listener_arn()
        .expect("arn")
        .to_string();
    let target = Target {
        kind: TargetKind::LoadBalancer,
        id: listener_arn.clone(),
        reload: ReloadMethod::ListenerUpdate,
    };
    assert_eq!(
        targets.current(&target).await.expect("current"),
        Some(initial.clone()),
        "a certificate certops did not import is snapshotted by its ARN"
    );
    assert_eq!(
        targets.reload(&target).await.unwrap_err().name(),
        "DeployFailed",
        "nothing deployed yet, nothing to reload"
    );
    let run = deploy_contract(DeployCase {
        targets: &targets,
        keystore: &keystore,
        target: target.clone(),
        dns: DNS,
        wrong_kind: Target {
            kind: TargetKind::Haproxy,
            id: "lb-01.shop.internal".into(),
            reload: ReloadMethod::HaproxyRuntimeApi,
        },
        unknown_bundle: &unknown_secret_arn("contract/never-stored"),
        names: "elb-contract",
        served: &ListenerView {
            elb: elb.clone(),
            acm: acm.clone(),
        },
        ca: &ca,
    })
    .await;

    // DescribeListeners showed a new certificate ARN for each bundle, and the rollback
    // reused v1's certificate instead of importing it again.
    let arns: Vec<&str> = run.served.iter().map(|(a, _)| a.as_str()).collect();
    assert!(!arns.contains(&initial.as_str()));
    assert_ne!(arns[0], arns[1]);
    assert_eq!(arns[0], arns[2]);
    let mut tagged = Vec::new();
    let summaries = acm
        .list_certificates()
        .includes(
            aws_sdk_acm::types::Filters::builder()
                .key_types(aws_sdk_acm::types::KeyAlgorithm::EcPrime256v1)
                .key_types(aws_sdk_acm::types::KeyAlgorithm::Rsa2048)
                .build(),
        )
        .send()
        .await
        .expect("list_certificates");
    for s in summaries.certificate_summary_list() {
        let arn = s.certificate_arn().expect("arn");
        let tags = acm
            .list_tags_for_certificate()
            .certificate_arn(arn)
            .send()
            .await
            .expect("tags");
        for t in tags.tags() {
            if t.key() == certops_aws::acm::BUNDLE_TAG {
                tagged.push(t.value().unwrap_or_default().to_string());
            }
        }
    }
    tagged.sort();
    let mut expected = vec![run.v1.clone(), run.v2.clone()];
    expected.sort();
    assert_eq!(tagged, expected, "one ACM certificate per bundle");
    // The first renewal's rollback: the snapshot (the certificate the listener served
    // before certops touched it) is restored by pointing the listener back at it.
    targets
        .deploy(&target, &initial)
        .await
        .expect("restore the snapshot");
    targets.reload(&target).await.expect("reload the snapshot");
    assert_eq!(
        ListenerView {
            elb: elb.clone(),
            acm: acm.clone()
        }
        .served(&target)
        .await
        .0,
        initial,
        "the listener serves its original certificate again"
    );
    // A deploy to a listener that does not exist imports nothing.
    let mut missing = target.clone();
    missing.id = listener_arn.replace(
        listener_arn.rsplit('/').next().unwrap_or_default(),
        "0000000000000000",
    );
    assert_eq!(
        targets.deploy(&missing, &run.v2).await.unwrap_err().name(),
        "DeployFailed"
    );
}

// ---------------------------------------------------------------------------------------
// CDN

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cdn_passes_the_cdn_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded =
        certops_adapters::Embedded::open(dir.path(), Arc::new(SystemClock)).expect("embedded");
    let cache = embedded.cdn.clone();
    cache.put("shop-cdn", "/index.html", "v1");
    cache.put("failing-cdn", "/index.html", "v1");
    cache.set_failing("failing-cdn", true);
    let cdn = |kind, id: &str| Cdn {
        kind,
        distribution_id: id.into(),
        paths: vec!["/*".into()],
    };
    cdn_contract(
        cache.as_ref(),
        &cdn(CdnKind::Local, "shop-cdn"),
        &cdn(CdnKind::Local, "failing-cdn"),
        &cdn(CdnKind::Cloudfront, "E2QWRUHAPOMQZL"),
        RetryPromise::NewId,
    )
    .await;
    assert_eq!(cache.get("shop-cdn", "/index.html"), None, "purged");
    assert!(
        cache.get("failing-cdn", "/index.html").is_some(),
        "not purged"
    );
}

/// A clock the test moves.
struct ManualClock(Mutex<DateTime<Utc>>);

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn caller_reference(cf: &aws_sdk_cloudfront::Client, distribution: &str, id: &str) -> String {
    cf.get_invalidation()
        .distribution_id(distribution)
        .id(id)
        .send()
        .await
        .expect("get_invalidation")
        .invalidation()
        .and_then(|i| i.invalidation_batch())
        .map(|b| b.caller_reference().to_string())
        .expect("caller reference")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudfront_purger_on_moto_passes_the_cdn_contract() {
    use aws_sdk_cloudfront::types::{
        CustomOriginConfig, DefaultCacheBehavior, DistributionConfig, Origin, OriginProtocolPolicy,
        Origins, ViewerProtocolPolicy,
    };
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let cf = aws_sdk_cloudfront::Client::new(&sdk);
    let config = DistributionConfig::builder()
        .caller_reference("certops-contract")
        .comment("certops contract")
        .enabled(true)
        .origins(
            Origins::builder()
                .quantity(1)
                .items(
                    Origin::builder()
                        .id("shop")
                        .domain_name("shop.contract.test")
                        .custom_origin_config(
                            CustomOriginConfig::builder()
                                .http_port(80)
                                .https_port(443)
                                .origin_protocol_policy(OriginProtocolPolicy::HttpsOnly)
                                .build()
                                .expect("origin config"),
                        )
                        .build()
                        .expect("origin"),
                )
                .build()
                .expect("origins"),
        )
        .default_cache_behavior(
            DefaultCacheBehavior::builder()
                .target_origin_id("shop")
                .viewer_protocol_policy(ViewerProtocolPolicy::RedirectToHttps)
                // AWS's managed "CachingOptimized" policy.
                .cache_policy_id("658327ea-f89d-4fab-a63d-7e88639e58f6")
                .build()
                .expect("cache behavior"),
        )
        .build()
        .expect("distribution config");
    let distribution = cf
        .create_distribution()
        .distribution_config(config)
        .send()
        .await
        .expect("create_distribution")
        .distribution()
        .map(|d| d.id().to_string())
        .expect("distribution id");
    let start = Utc::now();
    let clock = Arc::new(ManualClock(Mutex::new(start)));
    let purger = CloudFrontPurger::new(cf.clone(), clock.clone());
    let cdn = |kind, id: &str| Cdn {
        kind,
        distribution_id: id.into(),
        paths: vec!["/index.html".into(), "/assets/*".into()],
    };
    let shop = cdn(CdnKind::Cloudfront, &distribution);
    let (first, retry) = cdn_contract(
        &purger,
        &shop,
        &cdn(CdnKind::Cloudfront, "ENOSUCHDISTRIBUTION"),
        &cdn(CdnKind::Varnish, "varnish-shop"),
        // CloudFront answers a repeated CallerReference with the first invalidation; moto
        // creates a new one every time, so only the reference this adapter sends can be
        // checked here (below).
        RetryPromise::ByService,
    )
    .await;

    // A retried purge of the same change sends the same CallerReference ...
    let reference = caller_reference(&cf, &distribution, &first).await;
    assert_eq!(
        caller_reference(&cf, &distribution, &retry).await,
        reference
    );
    assert!(reference.starts_with("certops-"), "{reference}");
    // ... a purge after the retry window is a new change ...
    *clock.0.lock().unwrap_or_else(|p| p.into_inner()) = start
        + chrono::Duration::from_std(certops_aws::cloudfront::DEFAULT_RETRY_WINDOW)
            .expect("window");
    let later = purger.purge(&shop).await.expect("later purge");
    assert_ne!(
        caller_reference(&cf, &distribution, &later).await,
        reference
    );
    // ... and a caller that names the change controls it exactly.
    let a = purger
        .purge_with_token(&shop, "exec-a")
        .await
        .expect("purge a");
    let a_again = purger
        .purge_with_token(&shop, "exec-a")
        .await
        .expect("purge a again");
    let b = purger
        .purge_with_token(&shop, "exec-b")
        .await
        .expect("purge b");
    let ra = caller_reference(&cf, &distribution, &a).await;
    assert_eq!(caller_reference(&cf, &distribution, &a_again).await, ra);
    assert_ne!(caller_reference(&cf, &distribution, &b).await, ra);
    assert_eq!(ra, CloudFrontPurger::caller_reference(&shop, "exec-a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_in_another_region_are_reached_through_that_region() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await; // us-east-1, as the functions' own region
    let eu = aws_sdk_acm::Client::from_conf(
        aws_sdk_acm::config::Builder::from(&sdk)
            .region(aws_sdk_acm::config::Region::new("eu-west-1"))
            .build(),
    );
    let (targets, keystore) = aws_targets(&sdk);
    let ca = TestCa::new();
    let arn = import(&eu, &ca, 5).await;
    assert!(arn.contains(":eu-west-1:"), "{arn}");
    let target = Target {
        kind: TargetKind::Acm,
        id: arn.clone(),
        reload: ReloadMethod::None,
    };
    let v1 = ca.issue(DNS, 40);
    let bundle = keystore
        .put_bundle("region-contract/v1", v1.bundle())
        .await
        .expect("store v1");
    targets
        .deploy(&target, &bundle)
        .await
        .expect("deploy to eu-west-1");
    assert_eq!(not_after(&eu, &arn).await, v1.not_after);
    assert_eq!(
        targets.current(&target).await.expect("current"),
        Some(bundle)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_with_another_key_algorithm_is_refused_before_any_change() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let acm = aws_sdk_acm::Client::new(&sdk);
    let (targets, keystore) = aws_targets(&sdk);
    // The certificate in ACM today has an RSA-2048 key.
    let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("rsa key");
    let mut params = rcgen::CertificateParams::new(vec![DNS.to_string()]).expect("params");
    params.not_after = rcgen::date_time_ymd(2030, 1, 1);
    let cert = params.self_signed(&rsa).expect("self-signed");
    let arn = acm
        .import_certificate()
        .certificate(aws_sdk_acm::primitives::Blob::new(cert.pem().into_bytes()))
        .private_key(aws_sdk_acm::primitives::Blob::new(
            rsa.serialize_pem().into_bytes(),
        ))
        .send()
        .await
        .expect("import rsa")
        .certificate_arn()
        .expect("arn")
        .to_string();
    let before = not_after(&acm, &arn).await;
    let target = Target {
        kind: TargetKind::Acm,
        id: arn.clone(),
        reload: ReloadMethod::None,
    };
    // The renewal (the suite's CA issues ECDSA P-256 leaves).
    let ca = TestCa::new();
    let bundle = keystore
        .put_bundle("algo-contract/v1", ca.issue(DNS, 40).bundle())
        .await
        .expect("store");
    let err = targets.deploy(&target, &bundle).await.unwrap_err();
    assert_eq!(err.name(), "DeployFailed");
    assert!(
        err.to_string().contains("RSA_2048") && err.to_string().contains("EC_prime256v1"),
        "{err}"
    );
    assert_eq!(
        not_after(&acm, &arn).await,
        before,
        "ACM still holds the RSA certificate"
    );
}

/// Issue 11 item 3 at plan time: validation asks the ACM target which key algorithm it holds,
/// a renewal that names another is refused with the reason before anything is issued, and one
/// that names none takes the target's (the renew step then generates an RSA-2048 key whose
/// re-import ACM accepts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_type_an_acm_target_holds_is_decided_at_plan_time() {
    use certops_core::{validate, ApprovalPath, CheckName, CheckStatus, Facts, KeyType};
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let acm = aws_sdk_acm::Client::new(&sdk);
    let (targets, keystore) = aws_targets(&sdk);
    let rsa_import = |key: &rcgen::KeyPair, years: i32| {
        let mut params = rcgen::CertificateParams::new(vec![DNS.to_string()]).expect("params");
        params.not_after = rcgen::date_time_ymd(2030 + years, 1, 1);
        (
            params.self_signed(key).expect("self-signed").pem(),
            key.serialize_pem(),
        )
    };
    let old = certops_fn_renew::keys::generate(KeyType::Rsa2048).expect("rsa key");
    let (cert, key) = rsa_import(&old, 0);
    let arn = acm
        .import_certificate()
        .certificate(aws_sdk_acm::primitives::Blob::new(cert.into_bytes()))
        .private_key(aws_sdk_acm::primitives::Blob::new(key.into_bytes()))
        .send()
        .await
        .expect("import rsa")
        .certificate_arn()
        .expect("arn")
        .to_string();
    let target = Target {
        kind: TargetKind::Acm,
        id: arn.clone(),
        reload: ReloadMethod::None,
    };
    let before = not_after(&acm, &arn).await;
    let held = targets.key_algorithm(&target).await.expect("describe");
    assert_eq!(held.as_deref(), Some("RSA_2048"));

    let inventory = |key_type: &str| {
        certops_core::Inventory::from_toml_str(&format!(
            r#"[[certificate]]
id = "shop-acm"
ci = "shop-acm"
common_name = "{DNS}"
environment = "prod"
service_owner = "olivia@example.com"
escalation = ["oncall@example.com"]
change_authority = ["olivia@example.com"]
fallback_cert = "keystore:fallback/shop"
issuer = {{ name = "corp-pki", method = "internal-pki" }}
{key_type}
targets = [{{ kind = "acm", id = "{arn}", reload = "none" }}]
endpoints = [{{ host = "127.0.0.1", port = 443, sni = "{DNS}" }}]
"#
        ))
        .expect("inventory")
    };
    let policy =
        certops_core::Policy::from_toml_str(&certops_tests::world::policy(None)).expect("policy");
    let now = Utc::now();
    let trigger = certops_core::Trigger::Scan(certops_core::ScanFinding {
        ci: "shop-acm".into(),
        observed_expiry: now + chrono::TimeDelta::days(10),
        observed_fingerprint: None,
    });
    let mut facts = Facts {
        keystore_refs: ["keystore:fallback/shop".to_string()].into(),
        ..Facts::default()
    };
    facts
        .target_key_algorithms
        .insert(arn.clone(), held.clone().expect("held"));

    // The inventory asks for ECDSA: refused at plan time, with the reason.
    let refused = validate(
        &inventory("key_type = \"ecdsa-p256\""),
        &policy,
        &trigger,
        &facts,
        now,
    );
    assert_eq!(refused.approval_path, ApprovalPath::Blocked);
    let check = refused.check(CheckName::RenewalPath).expect("check");
    assert_eq!(check.status, CheckStatus::Fail);
    assert!(
        check.reason.contains("RSA_2048") && check.reason.contains("EC_prime256v1"),
        "{}",
        check.reason
    );

    // No key type in the inventory: the plan takes the target's, and the renewal deploys.
    let report = validate(&inventory(""), &policy, &trigger, &facts, now);
    assert_eq!(
        report.check(CheckName::RenewalPath).map(|c| c.status),
        Some(CheckStatus::Pass),
        "{:?}",
        report.checks
    );
    assert_eq!(report.key_type, Some(KeyType::Rsa2048));
    let new = certops_fn_renew::keys::generate(report.key_type.expect("key type")).expect("key");
    let (chain_pem, key_pem) = rsa_import(&new, 1);
    let bundle = keystore
        .put_bundle(
            "algo-plan/v1",
            certops_core::ports::Bundle {
                chain_pem,
                key: certops_core::ports::SecretPem::new(key_pem),
            },
        )
        .await
        .expect("store");
    targets
        .deploy(&target, &bundle)
        .await
        .expect("an RSA-2048 renewal re-imports");
    assert!(
        not_after(&acm, &arn).await > before,
        "ACM holds the renewal"
    );
}
