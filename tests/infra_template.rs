//! The SAM template (`infra/template.yaml`) checked by real tools, each shown to bite:
//!
//! 1. `cfn-lint` is clean (no errors, no warnings);
//! 2. aws-sam-translator transforms it offline;
//! 3. `asl-validator` accepts the definition with the template's substitutions applied;
//! 4. functions match the crates in `functions/`, and `${…}` placeholders match
//!    `DefinitionSubstitutions`;
//! 5. least privilege over the transformed template (`infra/checks/iam.py`);
//! 6. the transformed stack is created in moto and inspected through the services' APIs.
//!
//! The checks live in `infra/checks/` (Python, run with `python3`); cfn-lint,
//! aws-sam-translator, moto and boto3 come from PyPI and asl-validator from npm, all installed
//! by the README's test command. A missing tool fails the test with the command that installs
//! it. Negative cases run the same checks on a copy of the repository layout (workspace
//! manifest, function manifests, definition, template) with one deliberate fault.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_tests::moto::Moto;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PIP_HINT: &str =
    "python3 -m pip install cfn-lint aws-sam-translator 'moto[server]' boto3 (scripts/test-all.sh does)";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

fn template() -> PathBuf {
    repo().join("infra/template.yaml")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `python3 infra/checks <args>`.
fn checks(args: &[&str]) -> Output {
    let out = Command::new("python3")
        .arg(repo().join("infra/checks"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("python3 is required by the template checks ({e}); {PIP_HINT}"));
    let all = text(&out);
    assert!(
        !all.contains("ModuleNotFoundError"),
        "a Python package the template checks need is missing:\n{all}\ninstall it with {PIP_HINT}"
    );
    out
}

/// Runs a check that must pass; returns its JSON report.
fn passes(args: &[&str]) -> Value {
    let out = checks(args);
    let all = text(&out);
    assert!(
        out.status.success(),
        "`checks {}` failed:\n{all}",
        args.join(" ")
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout
        .rsplit_once("\n}\n")
        .map(|(body, _)| format!("{body}\n}}"))
        .unwrap_or_default();
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("report is not JSON ({e}):\n{all}"))
}

/// Runs a check that must fail, naming `expect` among its problems.
fn fails(args: &[&str], expect: &str) {
    let out = checks(args);
    let all = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "`checks {}` should have failed:\n{all}",
        args.join(" ")
    );
    assert!(
        all.lines()
            .any(|l| l.starts_with("FAIL ") && l.contains(expect)),
        "`checks {}` failed, but not with {expect:?}:\n{all}",
        args.join(" ")
    );
}

/// A copy of the repository layout the checks read, with the template and definition
/// passed through `edit_template` / `edit_definition`.
struct MiniRepo {
    dir: tempfile::TempDir,
}

impl MiniRepo {
    fn new(
        edit_template: impl Fn(&str) -> String,
        edit_definition: impl Fn(&str) -> String,
    ) -> MiniRepo {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let src = repo();
        std::fs::copy(src.join("Cargo.toml"), root.join("Cargo.toml")).expect("workspace manifest");
        for entry in std::fs::read_dir(src.join("functions")).expect("functions/") {
            let entry = entry.expect("entry");
            let manifest = entry.path().join("Cargo.toml");
            if manifest.is_file() {
                let to = root.join("functions").join(entry.file_name());
                std::fs::create_dir_all(&to).expect("mkdir");
                std::fs::copy(&manifest, to.join("Cargo.toml")).expect("copy manifest");
            }
        }
        std::fs::create_dir_all(root.join("statemachines")).expect("mkdir");
        std::fs::create_dir_all(root.join("infra")).expect("mkdir");
        let definition = std::fs::read_to_string(src.join("statemachines/cert-renewal.asl.json"))
            .expect("definition");
        std::fs::write(
            root.join("statemachines/cert-renewal.asl.json"),
            edit_definition(&definition),
        )
        .expect("write definition");
        std::fs::copy(
            src.join("infra/samconfig.toml"),
            root.join("infra/samconfig.toml"),
        )
        .expect("copy samconfig.toml");
        let template = std::fs::read_to_string(template()).expect("template");
        let edited = edit_template(&template);
        std::fs::write(root.join("infra/template.yaml"), edited).expect("write template");
        MiniRepo { dir }
    }

    /// The template with one text replacement (which must apply).
    fn with_template(from: &str, to: &str) -> MiniRepo {
        let (from, to) = (from.to_string(), to.to_string());
        MiniRepo::new(
            move |t| {
                assert!(
                    t.contains(&from),
                    "the template no longer contains {from:?}"
                );
                t.replacen(&from, &to, 1)
            },
            |d| d.to_string(),
        )
    }

    fn template(&self) -> String {
        self.dir
            .path()
            .join("infra/template.yaml")
            .display()
            .to_string()
    }

    /// Replaces `from` by `to` in a file of the copy (the replacement must apply).
    fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.dir.path().join(file);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains(from), "{file} no longer contains {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).expect("write");
    }

    fn add_crate(&self, name: &str, binary: &str) {
        let dir = self.dir.path().join("functions").join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("Cargo.toml"),
            format!(
                "[package]\nname = \"certops-fn-{name}\"\nversion = \"0.1.0\"\n\n[[bin]]\nname = \"{binary}\"\npath = \"src/main.rs\"\n"
            ),
        )
        .expect("write manifest");
    }
}

// ------------------------------------------------------------------ 1. cfn-lint

fn cfn_lint(path: &str) -> Output {
    Command::new("cfn-lint")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cfn-lint is required ({e}); install it with {PIP_HINT}"))
}

#[test]
fn cfn_lint_is_clean_on_the_template() {
    let out = cfn_lint(&template().display().to_string());
    let all = text(&out);
    assert!(out.status.success(), "cfn-lint reported problems:\n{all}");
    assert!(all.trim().is_empty(), "cfn-lint printed findings:\n{all}");
}

#[test]
fn cfn_lint_fails_on_an_error_and_on_a_warning() {
    // Error: Lambda's smallest memory size is 128 MB (E3034).
    let error = MiniRepo::with_template(
        "MemorySize: 256\n      Timeout: 25",
        "MemorySize: 64\n      Timeout: 25",
    );
    let out = cfn_lint(&error.template());
    assert!(
        !out.status.success(),
        "cfn-lint accepted MemorySize 64:\n{}",
        text(&out)
    );
    assert!(text(&out).contains("E3034"), "{}", text(&out));
    // Warning only: a DependsOn that a GetAtt already implies (W3005) also fails the check.
    let warning = MiniRepo::with_template(
        "  PurgeRole:\n    Type: AWS::IAM::Role\n",
        "  PurgeRole:\n    Type: AWS::IAM::Role\n    DependsOn: PurgeLogGroup\n",
    );
    let out = cfn_lint(&warning.template());
    assert!(
        !out.status.success(),
        "cfn-lint accepted a redundant DependsOn:\n{}",
        text(&out)
    );
    assert!(text(&out).contains("W3005"), "{}", text(&out));
}

// ------------------------------------------------------------------ 2. transform

#[test]
fn sam_translator_transforms_the_template() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_file = dir.path().join("transformed.json");
    let report = passes(&[
        "transform",
        &template().display().to_string(),
        &out_file.display().to_string(),
    ]);
    let count = report["resources"].as_u64().expect("count");
    eprintln!("transformed resources: {count}\n{:#}", report["by_type"]);
    for (kind, n) in [
        ("AWS::Lambda::Function", 12),
        ("AWS::DynamoDB::Table", 3),
        ("AWS::SQS::Queue", 5),
        ("AWS::StepFunctions::StateMachine", 1),
        ("AWS::StepFunctions::StateMachineAlias", 1),
        ("AWS::Scheduler::Schedule", 2),
        ("AWS::Lambda::EventSourceMapping", 2),
        ("AWS::SecretsManager::Secret", 9),
        ("AWS::CloudWatch::Alarm", 6),
    ] {
        assert_eq!(
            report["by_type"][kind], n,
            "{kind} in {:#}",
            report["by_type"]
        );
    }
    // The scheduled event reaches the scan handler as the EventBridge event it parses.
    let transformed: Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).expect("read")).expect("json");
    let schedule_on = |function: &str| {
        transformed["Resources"]
            .as_object()
            .expect("resources")
            .values()
            .find(|r| {
                r["Type"] == "AWS::Scheduler::Schedule"
                    && r["Properties"]["Target"]["Arn"]
                        .to_string()
                        .contains(function)
            })
            .unwrap_or_else(|| panic!("a schedule on {function}"))
            .clone()
    };
    let schedule = schedule_on("ScanFunction");
    let input = schedule["Properties"]["Target"]["Input"]["Fn::Sub"]
        .as_str()
        .expect("Input is an Fn::Sub string")
        .replace("${AWS::AccountId}", "123456789012")
        .replace("${AWS::Region}", "us-east-1")
        .replace(
            "<aws.scheduler.execution-id>",
            "0b4cfa4c-6a4e-4d2c-9d7c-3f1e2a9b8c7d",
        )
        .replace("<aws.scheduler.scheduled-time>", "2025-01-01T06:00:00Z")
        .replace(
            "<aws.scheduler.schedule-arn>",
            "arn:aws:scheduler:us-east-1:123456789012:schedule/default/certops-daily-scan",
        );
    let event: aws_lambda_events::eventbridge::EventBridgeEvent<Value> =
        serde_json::from_str(&input).expect("the schedule's Input parses as an EventBridge event");
    assert_eq!(
        event.id.as_deref(),
        Some("0b4cfa4c-6a4e-4d2c-9d7c-3f1e2a9b8c7d")
    );
    assert_eq!(
        schedule["Properties"]["ScheduleExpressionTimezone"]["Ref"],
        "ScanTimezone"
    );
    // The chat card refresh: every minute, the chat-approval function, with the scheduled
    // event its handler dispatches on (certops_fn_chat_approval::handle_event).
    let refresh = schedule_on("ChatApprovalFunction");
    assert_eq!(
        refresh["Properties"]["ScheduleExpression"],
        "rate(1 minute)"
    );
    let input = refresh["Properties"]["Target"]["Input"]["Fn::Sub"]
        .as_str()
        .expect("Input is an Fn::Sub string")
        .replace("${AWS::AccountId}", "123456789012")
        .replace("${AWS::Region}", "us-east-1");
    let event: Value = serde_json::from_str(&input).expect("the refresh's Input is JSON");
    assert_eq!(event["detail-type"], "Scheduled Event");
}

#[test]
fn a_card_refresh_that_is_not_every_minute_or_another_schedule_fails() {
    let bad = MiniRepo::with_template(
        "ScheduleExpression: rate(1 minute)",
        "ScheduleExpression: rate(1 hour)",
    );
    fails(
        &["hardening", &bad.template()],
        "the chat card refresh must run every minute",
    );
}

#[test]
fn sam_translator_refuses_an_unknown_event_type() {
    let bad = MiniRepo::with_template("Type: ScheduleV2", "Type: ScheduleV9");
    fails(&["transform", &bad.template()], "the SAM transform failed");
}

// ------------------------------------------------------------------ 3. asl-validator

fn asl_validator(file: &Path) -> Output {
    let bin = repo().join("tests/node/node_modules/.bin/asl-validator");
    assert!(
        bin.exists(),
        "{} is missing: run `npm install --prefix tests/node` (the README's test command does)",
        bin.display()
    );
    Command::new(bin)
        .arg("--json-path")
        .arg(file)
        .output()
        .expect("run asl-validator")
}

#[test]
fn asl_validator_accepts_the_definition_as_deployed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("deployed.asl.json");
    let report = passes(&[
        "render",
        &template().display().to_string(),
        &file.display().to_string(),
    ]);
    let subs = report["substitutions"].as_object().expect("substitutions");
    assert_eq!(subs.len(), 8, "{subs:?}");
    for (key, arn) in subs {
        let arn = arn.as_str().unwrap_or_default();
        assert!(
            arn.starts_with("arn:aws:lambda:us-east-1:123456789012:function:")
                && arn.ends_with(":1"),
            "{key} renders as {arn}, not a Lambda version ARN"
        );
    }
    let rendered = std::fs::read_to_string(&file).expect("read");
    assert!(!rendered.contains("${"), "placeholders left:\n{rendered}");
    let out = asl_validator(&file);
    assert!(
        out.status.success(),
        "asl-validator refused the deployed definition:\n{}",
        text(&out)
    );
}

#[test]
fn asl_validator_refuses_a_substitution_that_is_no_function() {
    let bad = MiniRepo::with_template(
        "ValidateFunctionArn: !Ref ValidateFunction.Version",
        "ValidateFunctionArn: !Ref StateTable",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("deployed.asl.json");
    passes(&["render", &bad.template(), &file.display().to_string()]);
    let out = asl_validator(&file);
    assert!(
        !out.status.success(),
        "asl-validator accepted a table name as a Task resource"
    );
    assert!(
        text(&out).contains("/States/Validate/Resource"),
        "{}",
        text(&out)
    );
}

// ------------------------------------------------------------------ 4. consistency

#[test]
fn functions_match_the_crates_and_placeholders_match_substitutions() {
    let report = passes(&["consistency", &template().display().to_string()]);
    let functions = report["functions"].as_object().expect("functions");
    let crates = std::fs::read_dir(repo().join("functions"))
        .expect("functions/")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().join("Cargo.toml").is_file())
        })
        .count();
    assert_eq!(functions.len(), crates, "{functions:?}");
    assert_eq!(
        report["placeholders"]["CertRenewalStateMachine"]
            .as_array()
            .map(Vec::len),
        Some(8)
    );
}

#[test]
fn a_crate_missing_from_the_template_fails() {
    let mini = MiniRepo::new(|t| t.to_string(), |d| d.to_string());
    mini.add_crate("notify", "certops-notify");
    fails(
        &["consistency", &mini.template()],
        "functions/notify (binary certops-notify) is not deployed",
    );
}

#[test]
fn a_function_naming_no_crate_fails() {
    let bad = MiniRepo::with_template("Binary: certops-purge", "Binary: certops-prune");
    fails(
        &["consistency", &bad.template()],
        "binary certops-prune is built by no crate",
    );
}

#[test]
fn a_function_on_another_runtime_fails() {
    let bad = MiniRepo::with_template("Architectures: [arm64]", "Architectures: [x86_64]");
    fails(
        &["consistency", &bad.template()],
        "Architectures is ['x86_64']",
    );
}

#[test]
fn an_undefined_placeholder_fails() {
    let mini = MiniRepo::new(
        |t| t.to_string(),
        |d| {
            d.replacen(
                "\"Resource\": \"${PurgeFunctionArn}\"",
                "\"Resource\": \"${CdnFunctionArn}\"",
                1,
            )
        },
    );
    fails(
        &["consistency", &mini.template()],
        "${CdnFunctionArn} in cert-renewal.asl.json has no DefinitionSubstitutions entry",
    );
    fails(
        &["consistency", &mini.template()],
        "DefinitionSubstitutions.PurgeFunctionArn is used nowhere",
    );
}

#[test]
fn samconfig_overrides_must_name_template_parameters() {
    let mini = MiniRepo::new(|t| t.to_string(), |d| d.to_string());
    mini.edit("infra/samconfig.toml", "ScanTimezone=", "ScanTimeZone=");
    fails(
        &["consistency", &mini.template()],
        "override ScanTimeZone is no template parameter",
    );
    mini.edit(
        "infra/samconfig.toml",
        "resolve_s3 = true",
        "resolve_s3 = false",
    );
    fails(
        &["consistency", &mini.template()],
        "resolve_s3 must be true",
    );
}

// ------------------------------------------------------------------ 5. IAM

#[test]
fn iam_is_least_privilege() {
    let report = passes(&["iam", &template().display().to_string()]);
    let stars = report["star_resources"].as_array().expect("list");
    eprintln!("'*' resources, each allow-listed:\n{stars:#?}");
    assert!(!stars.is_empty());
}

#[test]
fn the_star_allow_list_holds_only_actions_aws_authorises_on_no_resource() {
    passes(&["allowlist"]);
}

#[test]
fn a_wildcard_action_fails() {
    let bad = MiniRepo::with_template("Action: cloudfront:CreateInvalidation\n", "Action: \"*\"\n");
    fails(&["iam", &bad.template()], "wildcard action '*'");
    let bad = MiniRepo::with_template(
        "Action: [dynamodb:GetItem, dynamodb:DeleteItem]",
        "Action: dynamodb:*",
    );
    fails(&["iam", &bad.template()], "wildcard action 'dynamodb:*'");
}

#[test]
fn a_star_resource_for_an_action_that_names_resources_fails() {
    let bad = MiniRepo::with_template(
        "Action: [dynamodb:GetItem, dynamodb:DeleteItem]\n                Resource: !GetAtt StateTable.Arn",
        "Action: [dynamodb:GetItem, dynamodb:DeleteItem]\n                Resource: \"*\"",
    );
    fails(
        &["iam", &bad.template()],
        "dynamodb:deleteitem on resource '*'",
    );
}

#[test]
fn completing_tasks_from_another_role_fails() {
    let bad = MiniRepo::with_template(
        "Action: secretsmanager:GetSecretValue\n                Resource: !Sub arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${KeystorePrefix}*\n              - Effect: Allow\n                Action: secretsmanager:GetSecretValue\n                Resource: !Ref ItsmSecret",
        "Action: secretsmanager:GetSecretValue\n                Resource: !Sub arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${KeystorePrefix}*\n              - Effect: Allow\n                Action: states:SendTaskSuccess\n                Resource: \"*\"",
    );
    fails(
        &["iam", &bad.template()],
        "states:sendtasksuccess granted to DeployRole; only the approval-callback role",
    );
}

#[test]
fn a_state_machine_role_invoking_an_unnamed_function_fails() {
    let bad = MiniRepo::with_template(
        "- !Sub ${RollbackFunction.Arn}:*",
        "- !Sub ${RollbackFunction.Arn}:*\n                  - !Sub ${IntakeFunction.Arn}:*",
    );
    fails(
        &["iam", &bad.template()],
        "may invoke IntakeFunction, which CertRenewalStateMachine's definition never names",
    );
}

#[test]
fn a_managed_policy_fails() {
    let bad = MiniRepo::with_template(
        "Description: certops verify - audit only; the handshakes need no AWS permission.",
        "Description: certops verify - audit only; the handshakes need no AWS permission.\n      ManagedPolicyArns: [arn:aws:iam::aws:policy/AdministratorAccess]",
    );
    fails(
        &["iam", &bad.template()],
        "VerifyRole: attaches managed policies",
    );
}

// ------------------------------------------------------------------ 6. moto

#[test]
fn the_stack_is_created_in_moto() {
    let moto = Moto::start();
    let report = passes(&["moto", &template().display().to_string(), &moto.url()]);
    eprintln!("moto stack:\n{report:#}");
    let made = report["by_type"].as_object().expect("by_type");
    for kind in [
        "AWS::DynamoDB::Table",
        "AWS::SQS::Queue",
        "AWS::StepFunctions::StateMachine",
        "AWS::Lambda::Function",
        "AWS::Lambda::EventSourceMapping",
        "AWS::IAM::Role",
    ] {
        assert!(made.contains_key(kind), "{kind} not created: {made:?}");
    }
    let via_api: Vec<&str> = report["created_via_api"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(via_api.contains(&"ScanFunctionDailyScan"), "{via_api:?}");
    assert!(via_api.contains(&"ScanDeadMansSwitchAlarm"), "{via_api:?}");
}

#[test]
fn moto_inspection_fails_on_a_queue_without_its_dead_letter_queue() {
    let moto = Moto::start();
    let bad = MiniRepo::with_template(
        "      RedrivePolicy:\n        deadLetterTargetArn: !GetAtt ScanDeadLetterQueue.Arn",
        "      RedrivePolicy:\n        deadLetterTargetArn: !GetAtt IntakeDeadLetterQueue.Arn",
    );
    fails(
        &["moto", &bad.template(), &moto.url()],
        "ScanQueue: RedrivePolicy",
    );
}

// ------------------------------------------------------------------ 7. a first deploy does no harm

#[test]
fn a_first_deploy_does_no_harm() {
    let report = passes(&["hardening", &template().display().to_string()]);
    eprintln!("hardening:\n{report:#}");
    // The ITSM secret goes where the ITSM port is called (the ServiceNow adapter runs).
    let itsm: Vec<&str> = report["itsm_secret"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(itsm.contains(&"ItsmUpdateFunction"), "{itsm:?}");
    assert!(!itsm.contains(&"RollbackFunction"), "{itsm:?}");
}

#[test]
fn the_scan_schedule_enabled_from_the_first_deploy_fails() {
    let bad = MiniRepo::with_template(
        "    Default: DISABLED\n    AllowedValues: [DISABLED, ENABLED]",
        "    Default: ENABLED\n    AllowedValues: [DISABLED, ENABLED]",
    );
    fails(
        &["hardening", &bad.template()],
        "State must come from a parameter whose default is DISABLED",
    );
    let bad = MiniRepo::with_template(
        "        CERTOPS_CONFIG_ARN: !Ref ConfigurationSecret\n",
        "        CERTOPS_CONFIG_ARN: !Ref ConfigurationSecret\n        CERTOPS_ALLOW_STAND_INS: \"1\"\n",
    );
    fails(&["hardening", &bad.template()], "CERTOPS_ALLOW_STAND_INS");
}

#[test]
fn a_state_table_grant_without_leading_keys_fails() {
    let bad = MiniRepo::with_template(
        "                Condition:\n                  ForAllValues:StringLike:\n                    dynamodb:LeadingKeys: [\"triggers#*\"]\n",
        "",
    );
    fails(
        &["hardening", &bad.template()],
        "IntakeRole.intake statement 3: dynamodb:getitem, dynamodb:putitem on the state table without a dynamodb:LeadingKeys condition",
    );
    let bad = MiniRepo::with_template(
        "dynamodb:LeadingKeys: [\"locks#*\"]",
        "dynamodb:LeadingKeys: [\"locks#*\", \"audit-head#*\"]",
    );
    fails(&["hardening", &bad.template()], "grants audit-head keys");
    let bad = MiniRepo::with_template(
        "Action: [dynamodb:GetItem, dynamodb:Query, dynamodb:PutItem]\n                Resource: !GetAtt AuditTable.Arn",
        "Action: [dynamodb:GetItem, dynamodb:Query, dynamodb:PutItem, dynamodb:DeleteItem]\n                Resource: !GetAtt AuditTable.Arn",
    );
    fails(
        &["hardening", &bad.template()],
        "dynamodb:deleteitem on the audit table",
    );
}

#[test]
fn an_untagged_acm_import_grant_fails() {
    let bad = MiniRepo::with_template(
        "                Condition:\n                  StringEquals:\n                    aws:RequestTag/certops:managed: \"true\"\n",
        "",
    );
    fails(
        &["hardening", &bad.template()],
        "without an aws:ResourceTag/certops:managed or aws:RequestTag/certops:managed condition",
    );
    let bad = MiniRepo::with_template(
        "              - Effect: Allow\n                Action: acm:ListCertificates\n                Resource: \"*\"",
        "              - Effect: Allow\n                Action: [acm:ListCertificates, acm:ImportCertificate]\n                Resource: \"*\"",
    );
    fails(
        &["iam", &bad.template()],
        "acm:importcertificate on resource '*'",
    );
}

#[test]
fn the_itsm_secret_where_no_itsm_call_is_made_fails() {
    let bad = MiniRepo::with_template(
        "          CERTOPS_KEYSTORE_PREFIX: !Ref KeystorePrefix\n\n  ScanFunction:",
        "          CERTOPS_KEYSTORE_PREFIX: !Ref KeystorePrefix\n          CERTOPS_ITSM_SECRET_ARN: !Ref ItsmSecret\n\n  ScanFunction:",
    );
    // The copy has no sources; point it at the real crates so the check sees the handlers.
    std::fs::remove_dir_all(bad.dir.path().join("functions")).expect("rm");
    std::os::unix::fs::symlink(repo().join("functions"), bad.dir.path().join("functions"))
        .expect("symlink");
    fails(
        &["hardening", &bad.template()],
        "RollbackFunction: gets the ITSM secret, but its handler never calls the ITSM port",
    );
}

#[test]
fn configuration_only_changes_that_publish_no_version_fail() {
    let bad = MiniRepo::with_template("    AutoPublishAliasAllProperties: true\n", "");
    fails(
        &["hardening", &bad.template()],
        "AutoPublishAliasAllProperties must be true",
    );
}

#[test]
fn a_shared_unnamed_or_undead_lettered_schedule_fails() {
    let bad = MiniRepo::with_template("            Name: !Sub ${AWS::StackName}-daily-scan\n", "");
    fails(
        &["hardening", &bad.template()],
        "Name must include the stack name",
    );
    let bad = MiniRepo::with_template(
        "            DeadLetterConfig:\n              Arn: !GetAtt ScanFailureQueue.Arn\n",
        "",
    );
    fails(
        &["hardening", &bad.template()],
        "the schedule has no dead-letter queue",
    );
    let bad = MiniRepo::with_template(
        "        DestinationConfig:\n          OnFailure:\n            Type: SQS\n            Destination: !GetAtt ScanFailureQueue.Arn",
        "        MaximumEventAgeInSeconds: 3600",
    );
    fails(
        &["hardening", &bad.template()],
        "has no on-failure destination",
    );
}

#[test]
fn api_timeouts_receive_counts_and_redrive_allow_policies_are_checked() {
    let bad = MiniRepo::with_template("      Timeout: 25\n", "      Timeout: 30\n");
    fails(
        &["hardening", &bad.template()],
        "IntakeFunction: Timeout 30 must stay below",
    );
    let bad = MiniRepo::with_template(
        "        maxReceiveCount: 5\n\n  ScanFailureQueue:",
        "        maxReceiveCount: 3\n\n  ScanFailureQueue:",
    );
    fails(
        &["hardening", &bad.template()],
        "ScanQueue: maxReceiveCount 3 is below 5",
    );
    let bad = MiniRepo::with_template(
        "      RedriveAllowPolicy:\n        redrivePermission: byQueue\n        sourceQueueArns: [!Sub \"arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${AWS::StackName}-scan\"]\n",
        "",
    );
    fails(
        &["hardening", &bad.template()],
        "ScanDeadLetterQueue: a dead-letter queue without a RedriveAllowPolicy",
    );
}

#[test]
fn an_unencrypted_or_unpublishable_alarm_topic_fails() {
    let bad = MiniRepo::with_template("      KmsMasterKeyId: !Ref AlarmTopicKey\n", "");
    fails(
        &["hardening", &bad.template()],
        "AlarmTopic: not encrypted with a customer-managed key",
    );
    let bad = MiniRepo::with_template(
        "Principal: {Service: cloudwatch.amazonaws.com}",
        "Principal: {Service: events.amazonaws.com}",
    );
    fails(
        &["hardening", &bad.template()],
        "its key's policy does not let CloudWatch publish",
    );
}
