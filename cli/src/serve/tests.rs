//! In-process route tests of `certops serve`'s router (axum `oneshot`, no server, no port):
//! every route answers, and every route refuses a caller without its credential. The
//! Step Functions API is signed by the AWS SDK's own SigV4 signer (`aws-sigv4`), so the
//! check is against the real client's dialect. One test in `tests/` still starts the binary.

use super::*;
use crate::console::ConsoleOptions;
use axum::body::Body;
use axum::http::Request;
use certops_core::ports::{Clock, SystemClock};
use certops_embedded::StackOptions;
use tower::ServiceExt as _;

const WEBHOOK_SECRET: &[u8] = b"in-process webhook secret";
const APPROVAL_SECRET: &[u8] = b"in-process approval secret";

struct Fixture {
    _dir: tempfile::TempDir,
    app: Router,
    credentials: ApiCredentials,
    /// The governed state machine's ARN.
    governed: String,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let stack = Stack::open(StackOptions {
        data_dir: dir.path().to_path_buf(),
        config: certops_embedded::example_config().expect("example configuration"),
        clock,
        probe_timeout: Duration::from_secs(1),
    })
    .await
    .expect("stack");
    let credentials = ApiCredentials::load_or_create(dir.path()).expect("credentials");
    let governed = stack
        .engine
        .state_machine_arn(certops_embedded::stack::STATE_MACHINE);
    let app = router(
        Arc::new(stack),
        Secrets {
            webhook: WEBHOOK_SECRET.to_vec(),
            approval: APPROVAL_SECRET.to_vec(),
        },
        credentials.clone(),
        ConsoleOptions {
            data_dir: dir.path().to_path_buf(),
            tls: false,
        },
    );
    Fixture {
        _dir: dir,
        app,
        credentials,
        governed,
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(app: &Router, req: Request<Body>) -> Answer {
    let resp = app.clone().oneshot(req).await.expect("router answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn error_type(a: &Answer) -> &str {
    a.headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// A Step Functions API request signed by `principal` with the AWS SDK's SigV4 signer.
fn signed_api_request(
    credentials: &ApiCredentials,
    principal: &str,
    operation: &str,
    body: &str,
) -> Request<Body> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let p = credentials
        .principals
        .iter()
        .find(|p| p.name == principal)
        .expect("principal");
    let identity = aws_credential_types::Credentials::new(
        &p.access_key_id,
        &p.secret_access_key,
        None,
        None,
        "test",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("states")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .expect("signing parameters")
        .into();
    let target = format!("{}{operation}", api::TARGET_PREFIX);
    let headers = [
        ("host", "127.0.0.1:8083"),
        ("content-type", JSON_10),
        ("x-amz-target", target.as_str()),
    ];
    let signable = SignableRequest::new(
        "POST",
        "http://127.0.0.1:8083/",
        headers.iter().copied(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .expect("signable request");
    let (instructions, _) = sign(signable, &params).expect("signed").into_parts();
    let mut builder = Request::post("/");
    for (k, v) in headers {
        builder = builder.header(k, v);
    }
    for (k, v) in instructions.headers() {
        builder = builder.header(k, v);
    }
    builder.body(Body::from(body.to_string())).expect("request")
}

fn webhook_body(number: &str) -> String {
    format!(
        r#"{{"record": {{"number": "{number}", "sys_id": "sys-{number}", "sys_class_name": "incident", "category": "Certificate",
        "cmdb_ci": {{"display_value": "shop-web-prod"}}, "u_environment": "prod", "opened_by": {{"display_value": "sam@example.com"}}, "priority": "3"}}}}"#
    )
}

fn webhook(body: &str, secret: &[u8]) -> Request<Body> {
    let ts = chrono::Utc::now().timestamp();
    Request::post("/webhooks/servicenow")
        .header("content-type", "application/json")
        .header(certops_fn_intake::TIMESTAMP_HEADER, ts.to_string())
        .header(
            certops_fn_intake::SIGNATURE_HEADER,
            certops_core::signature::sign_webhook(secret, ts, body.as_bytes()),
        )
        .body(Body::from(body.to_string()))
        .expect("request")
}

#[tokio::test]
async fn health_answers_without_credentials() {
    let f = fixture().await;
    let a = send(
        &f.app,
        Request::get("/health").body(Body::empty()).expect("req"),
    )
    .await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "ok"));
}

#[tokio::test]
async fn the_step_functions_api_needs_a_sigv4_signature_of_a_known_principal() {
    let f = fixture().await;
    let unsigned = Request::post("/")
        .header("content-type", JSON_10)
        .header("x-amz-target", "AWSStepFunctions.ListStateMachines")
        .body(Body::from("{}"))
        .expect("req");
    let a = send(&f.app, unsigned).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert_eq!(error_type(&a), "MissingAuthenticationToken");

    // Signed by the AWS SDK's signer as the operator: the engine answers.
    let ok = signed_api_request(
        &f.credentials,
        api_auth::OPERATOR,
        "ListStateMachines",
        "{}",
    );
    let a = send(&f.app, ok).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let v: Value = serde_json::from_str(&a.body).expect("JSON");
    let names: Vec<&str> = v["stateMachines"]
        .as_array()
        .expect("stateMachines")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert!(
        names.contains(&certops_embedded::stack::STATE_MACHINE),
        "{names:?}"
    );

    // The same request with its body changed after signing is refused.
    let mut tampered = signed_api_request(
        &f.credentials,
        api_auth::OPERATOR,
        "ListStateMachines",
        "{}",
    );
    *tampered.body_mut() = Body::from(r#"{"maxResults": 1}"#);
    let a = send(&f.app, tampered).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert_eq!(error_type(&a), "InvalidSignatureException");

    // A signature by a key the server never issued.
    let stranger = ApiCredentials {
        principals: vec![api_auth::Principal {
            name: api_auth::OPERATOR.into(),
            access_key_id: "CERTOPSSTRANGER0000".into(),
            secret_access_key: "not a key of this server".into(),
        }],
    };
    let a = send(
        &f.app,
        signed_api_request(&stranger, api_auth::OPERATOR, "ListStateMachines", "{}"),
    )
    .await;
    assert_eq!(error_type(&a), "UnrecognizedClientException", "{}", a.body);
}

#[tokio::test]
async fn no_principal_starts_the_governed_machine_without_signed_trigger_input() {
    let f = fixture().await;
    let body = json!({"stateMachineArn": f.governed, "input": "{}"}).to_string();
    for principal in [api_auth::OPERATOR, api_auth::APPROVAL_CALLBACK] {
        let req = signed_api_request(&f.credentials, principal, "StartExecution", &body);
        let a = send(&f.app, req).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{principal}: {}", a.body);
        assert_eq!(error_type(&a), "AccessDeniedException", "{principal}");
    }
    // Nor may anyone replace the governed definition through the API.
    let body = json!({"stateMachineArn": f.governed, "definition": "{}"}).to_string();
    let req = signed_api_request(
        &f.credentials,
        api_auth::OPERATOR,
        "UpdateStateMachine",
        &body,
    );
    assert_eq!(
        error_type(&send(&f.app, req).await),
        "AccessDeniedException"
    );
}

#[tokio::test]
async fn a_signed_webhook_starts_one_execution_and_a_forged_one_none() {
    let f = fixture().await;
    let body = webhook_body("INC0099001");
    let forged = send(&f.app, webhook(&body, b"not the ServiceNow secret")).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED, "{}", forged.body);

    let first = send(&f.app, webhook(&body, WEBHOOK_SECRET)).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    let started: Value = serde_json::from_str(&first.body).expect("JSON");
    let execution = started["execution"]
        .as_str()
        .expect("execution")
        .to_string();

    // The same ticket delivered again (ServiceNow retries) names the same execution.
    let again = send(&f.app, webhook(&body, WEBHOOK_SECRET)).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    let dup: Value = serde_json::from_str(&again.body).expect("JSON");
    assert_eq!(
        (dup["execution"].as_str(), dup["duplicate"].as_bool()),
        (Some(execution.as_str()), Some(true))
    );
}

#[tokio::test]
async fn an_approval_callback_signed_with_another_secret_is_refused() {
    let f = fixture().await;
    let body = r#"{"approver": "olivia@example.com", "verdict": "approve"}"#;
    let ts = chrono::Utc::now().timestamp();
    for secret in [WEBHOOK_SECRET, b"made up".as_slice()] {
        let req = Request::post("/approvals/APR-0001")
            .header("content-type", "application/json")
            .header(certops_core::signature::TIMESTAMP_HEADER, ts.to_string())
            .header(
                certops_core::signature::HEADER,
                certops_core::signature::sign_approval(secret, ts, "APR-0001", body.as_bytes()),
            )
            .body(Body::from(body))
            .expect("req");
        let a = send(&f.app, req).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    }
}

#[tokio::test]
async fn the_console_is_nested_and_asks_for_a_sign_in() {
    let f = fixture().await;
    let a = send(
        &f.app,
        Request::get("/console/login")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains("<form"), "{}", a.body);
    let a = send(
        &f.app,
        Request::get("/console/approvals")
            .header("accept", "application/json")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
}

#[tokio::test]
async fn chat_routes_are_absent_when_no_platform_is_configured() {
    let f = fixture().await;
    for path in [
        certops_chatops::routes::TEAMS_PATH,
        certops_chatops::routes::SLACK_PATH,
    ] {
        let a = send(
            &f.app,
            Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .expect("req"),
        )
        .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}: {}", a.body);
    }
}
