//! The renewal state machine, with its DefinitionSubstitutions applied, passes
//! the npm `asl-validator` (installed by the README's test command into
//! tests/node). The validator checks the document against the States Language
//! schema, every path expression, and the Lambda ARNs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use std::path::Path;
use std::process::Command;

fn validator() -> std::path::PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("node/node_modules/.bin/asl-validator");
    assert!(
        bin.exists(),
        "{} is missing: run `npm install --prefix tests/node` (the README's test command does)",
        bin.display()
    );
    bin
}

#[test]
fn the_renewal_definition_passes_asl_validator() {
    let definition = certops_embedded::stack::definition().expect("substitutions apply");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("cert-renewal.asl.json");
    std::fs::write(&file, &definition).expect("write");
    let out = Command::new(validator())
        .arg("--json-path")
        .arg(&file)
        .output()
        .expect("run asl-validator");
    assert!(
        out.status.success(),
        "asl-validator refused the definition:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn asl_validator_rejects_a_broken_definition() {
    // The check is real: the same validator refuses a dangling Next.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("broken.asl.json");
    std::fs::write(
        &file,
        r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}}"#,
    )
    .expect("write");
    let out = Command::new(validator())
        .arg("--json-path")
        .arg(&file)
        .output()
        .expect("run asl-validator");
    assert!(!out.status.success(), "a dangling Next must be refused");
}

#[test]
fn every_error_name_the_definition_routes_on_is_a_real_one() {
    // Retry/Catch ErrorEquals may only name the core's stable error names,
    // States.* names, or Lambda service errors.
    let v: serde_json::Value =
        serde_json::from_str(certops_embedded::stack::DEFINITION).expect("json");
    let mut names = Vec::new();
    for (_, state) in v["States"].as_object().expect("states") {
        for key in ["Retry", "Catch"] {
            for r in state[key].as_array().into_iter().flatten() {
                for n in r["ErrorEquals"].as_array().into_iter().flatten() {
                    names.push(n.as_str().expect("name").to_string());
                }
            }
        }
    }
    assert!(!names.is_empty());
    for n in names {
        assert!(
            n.starts_with("States.")
                || n.starts_with("Lambda.")
                || certops_core::ERROR_NAMES.contains(&n.as_str()),
            "{n} is not an error any step raises"
        );
    }
}
