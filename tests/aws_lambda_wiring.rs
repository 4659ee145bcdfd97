//! The Lambda wiring on the AWS backend: `certops_lambda::deps_from_env()` with
//! `CERTOPS_BACKEND=aws` and the template's environment contract, pointed at a moto server
//! through `AWS_ENDPOINT_URL` only. Intake's SQS path then writes its trigger to DynamoDB and
//! starts one Step Functions execution per finding however often the finding is delivered;
//! the token sealer and the webhook key come from Secrets Manager by ARN; audit records land
//! in the audit table with their chain head.
//!
//! Before any of that: on the AWS backend the configuration comes from the configuration
//! secret (its version in every plan's policy version), and while the ITSM, chat and issuer
//! ports have no real adapter no renewal starts and those ports refuse; only
//! `CERTOPS_ALLOW_STAND_INS=1` (emulators) keeps the embedded stand-ins.
//!
//! This binary holds one test because it sets process environment variables.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use certops_aws::dynamo::aws_sdk_dynamodb::types::AttributeValue;
use certops_aws::dynamo::{aws_sdk_dynamodb, Tables};
use certops_aws::secrets::aws_sdk_secretsmanager;
use certops_aws::sqs::aws_sdk_sqs;
use certops_core::validation::{ScanFinding, Trigger};
use certops_lambda::{Backend, EnvSecret};
use certops_tests::contract::store::entry;
use certops_tests::moto::{create_contract_tables, Moto};
use chrono::{TimeZone, Utc};
use serde_json::json;

const ROLE: &str = "arn:aws:iam::123456789012:role/certops-state-machine";

fn sqs_event(id: &str, body: &serde_json::Value) -> SqsEvent {
    SqsEvent {
        records: vec![SqsMessage {
            message_id: Some(id.to_string()),
            body: Some(body.to_string()),
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_deps_on_the_aws_backend_drive_dynamodb_sqs_step_functions_and_secrets() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;

    // What the stack would create.
    let Tables {
        state,
        approvals,
        audit,
    } = create_contract_tables(&aws_sdk_dynamodb::Client::new(&sdk), "wiring").await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let intake_url = sqs
        .create_queue()
        .queue_name("certops-intake")
        .send()
        .await
        .expect("create intake queue")
        .queue_url
        .expect("queue url");
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let definition = json!({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": true}}});
    let state_machine = sfn
        .create_state_machine()
        .name("certops-cert-renewal")
        .definition(definition.to_string())
        .role_arn(ROLE)
        .send()
        .await
        .expect("create state machine")
        .state_machine_arn;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let mut arns = Vec::new();
    for (name, value) in [
        (
            "certops/sealing-key",
            "a-sealing-seed-of-more-than-thirty-two-characters",
        ),
        ("certops/servicenow-webhook", "servicenow-hmac-key"),
        (
            "certops/audit-key",
            "an-audit-key-of-more-than-thirty-two-characters",
        ),
    ] {
        let arn = secrets
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .expect("create secret")
            .arn
            .expect("secret arn");
        arns.push(arn);
    }
    let data = tempfile::tempdir().expect("temp dir");
    let config_doc = json!({
        "inventory": include_str!("../runbooks/inventory.toml"),
        "policy": include_str!("../runbooks/policy.toml"),
    });
    let config = secrets
        .create_secret()
        .name("certops/configuration")
        .secret_string(r#"{"configured": false}"#)
        .send()
        .await
        .expect("create configuration secret");
    let config_arn = config.arn.expect("arn");

    // The function's environment, as the template sets it (plus moto's endpoint and dummy
    // credentials where AWS would supply a role).
    for (k, v) in [
        ("CERTOPS_BACKEND", "aws"),
        ("AWS_ENDPOINT_URL", moto.url().as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("CERTOPS_STATE_TABLE", state.as_str()),
        ("CERTOPS_APPROVALS_TABLE", approvals.as_str()),
        ("CERTOPS_AUDIT_TABLE", audit.as_str()),
        ("CERTOPS_INTAKE_QUEUE_URL", intake_url.as_str()),
        ("CERTOPS_STATE_MACHINE_ARN", state_machine.as_str()),
        ("CERTOPS_SEALING_KEY_ARN", arns[0].as_str()),
        ("CERTOPS_AUDIT_KEY_ARN", arns[2].as_str()),
        ("CERTOPS_WEBHOOK_SECRET_ARN", arns[1].as_str()),
        ("CERTOPS_DATA_DIR", &data.path().display().to_string()),
    ] {
        std::env::set_var(k, v);
    }
    std::env::remove_var("CERTOPS_WEBHOOK_SECRET");
    std::env::remove_var("CERTOPS_CONFIG_DIR");
    std::env::remove_var("CERTOPS_ALLOW_STAND_INS");
    assert_eq!(Backend::from_env().unwrap(), Backend::Aws);

    // No configuration: the function refuses to start rather than use the example
    // inventory compiled into it.
    std::env::remove_var("CERTOPS_CONFIG_ARN");
    let Err(e) = certops_lambda::deps_from_env().await else {
        panic!("the AWS backend started without a configuration");
    };
    assert!(e.to_string().contains("CERTOPS_CONFIG_ARN"), "{e}");
    // The stack's placeholder: still refused, saying what to put there.
    std::env::set_var("CERTOPS_CONFIG_ARN", &config_arn);
    let Err(e) = certops_lambda::deps_from_env().await else {
        panic!("the AWS backend started on the placeholder configuration");
    };
    assert!(
        e.to_string().contains("does not hold the configuration"),
        "{e}"
    );
    let version = secrets
        .put_secret_value()
        .secret_id(&config_arn)
        .secret_string(config_doc.to_string())
        .send()
        .await
        .expect("put configuration")
        .version_id
        .expect("version id");

    // Configured, but ITSM, chat and issuer have no real adapter: nothing starts, and
    // none of those ports acts.
    let guarded = certops_lambda::deps_from_env()
        .await
        .expect("deps from env");
    assert!(
        guarded
            .config
            .policy
            .version
            .ends_with(&format!("+config.{version}")),
        "the configuration version is part of the policy version every plan records: {}",
        guarded.config.policy.version
    );
    let finding = ScanFinding {
        ci: "shop-web-prod".into(),
        observed_expiry: Utc.with_ymd_and_hms(2026, 12, 20, 0, 0, 0).unwrap(),
        observed_fingerprint: Some("ab".repeat(32)),
    };
    let refused = guarded
        .workflow
        .start("refused-1", &json!({}))
        .await
        .expect_err("no renewal starts beside stand-ins");
    let text = refused.to_string();
    assert!(
        text.contains("ITSM") && text.contains("chat") && text.contains("issuer"),
        "{text}"
    );
    let out = certops_fn_intake::handle_sqs(
        &guarded,
        sqs_event("m-0", &serde_json::to_value(&finding).unwrap()),
    )
    .await;
    assert_eq!(
        out.batch_item_failures.len(),
        1,
        "intake reports the finding as failed"
    );
    let request = certops_core::ports::IssueRequest {
        cert_id: "shop-web-prod".into(),
        issuer: guarded
            .config
            .inventory
            .find_by_ci("shop-web-prod")
            .expect("example cert")
            .issuer
            .clone(),
        csr_pem: String::new(),
        common_name: "shop.example.com".into(),
        sans: vec![],
        replaces: None,
    };
    assert_eq!(
        guarded.issuer.issue(&request).await.unwrap_err().name(),
        "Misconfigured"
    );
    assert!(guarded.itsm.get("CHG0030001").await.is_err());
    assert!(guarded.chat.notify("oncall", "x").await.is_err());
    assert!(sfn
        .list_executions()
        .state_machine_arn(&state_machine)
        .send()
        .await
        .expect("list executions")
        .executions
        .is_empty());

    // With the stand-ins explicitly allowed (emulators only), the rest of the wiring.
    std::env::set_var("CERTOPS_ALLOW_STAND_INS", "1");
    let deps = certops_lambda::deps_from_env()
        .await
        .expect("deps from env");

    // Intake: the same finding delivered twice gives one trigger and one execution.
    let key = Trigger::Scan(finding.clone()).idempotency_key();
    let body = serde_json::to_value(&finding).unwrap();
    for delivery in ["m-1", "m-2"] {
        let out = certops_fn_intake::handle_sqs(&deps, sqs_event(delivery, &body)).await;
        assert!(
            out.batch_item_failures.is_empty(),
            "delivery {delivery} failed: {:?}",
            out.batch_item_failures
        );
    }
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let trigger = ddb
        .get_item()
        .table_name(&state)
        .key("pk", AttributeValue::S(format!("triggers#{key}")))
        .send()
        .await
        .expect("get trigger")
        .item
        .expect("the trigger is in the state table");
    assert!(trigger.contains_key("ttl"), "triggers expire through TTL");
    let executions = sfn
        .list_executions()
        .state_machine_arn(&state_machine)
        .send()
        .await
        .expect("list executions")
        .executions;
    let names: Vec<&str> = executions.iter().map(|e| e.name()).collect();
    assert_eq!(names, [key.as_str()], "one execution, named by the trigger");

    // The queue port sends to the intake queue's URL.
    let id = deps
        .queue
        .send("intake", &json!({"ci": "shop-web-prod"}))
        .await
        .expect("send");
    assert!(!id.is_empty());
    assert_eq!(deps.queue.depth("intake").await.unwrap(), 1);

    // Token sealing with the key derived from the Secrets Manager secret.
    let token = "AAAAKgAAAAIAAAAAAAAAAQ-waiting-task";
    let sealed = deps.sealer.seal(token).expect("seal");
    assert!(!sealed.contains("waiting-task"));
    assert_eq!(deps.sealer.open(&sealed).unwrap(), token);

    // The webhook key by ARN.
    let webhook = EnvSecret::from_env("CERTOPS_WEBHOOK_SECRET");
    assert_eq!(
        webhook.get().await.unwrap().as_slice(),
        b"servicenow-hmac-key"
    );
    assert!(!format!("{webhook:?}").contains("hmac"));

    // Audit records go to the audit table; the chain verifies.
    let execution = format!("exec-{key}");
    for (n, step) in ["intake", "validate"].into_iter().enumerate() {
        let summary = json!({"step": step, "ci": "shop-web-prod"});
        deps.store
            .append_audit(&execution, entry(n as u32, summary))
            .await
            .expect("append audit");
    }
    let records = deps.store.audit(&execution).await.unwrap();
    assert_eq!(records.len(), 2);
    certops_core::verify_chain(&records).expect("chain verifies");
    // The head is anchored with the key read from CERTOPS_AUDIT_KEY_ARN.
    let head = deps.store.audit_head(&execution).await.unwrap();
    let key =
        certops_core::AuditKey::new(b"an-audit-key-of-more-than-thirty-two-characters".to_vec())
            .unwrap();
    certops_core::verify_anchored(&execution, &records, head.as_ref(), &key)
        .expect("anchored with the key from Secrets Manager");
    let rows = ddb
        .query()
        .table_name(&audit)
        .key_condition_expression("execution = :e AND seq >= :first")
        .expression_attribute_values(":e", AttributeValue::S(execution.clone()))
        .expression_attribute_values(":first", AttributeValue::N("0".into()))
        .send()
        .await
        .expect("query audit")
        .count;
    assert_eq!(rows, 2);
}
