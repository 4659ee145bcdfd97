//! The local Step Functions API driven by Python's boto3 (installed by the
//! README's test command). A missing python3 or boto3 fails this test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_tests::process::{api_credentials, start_serve};
use std::path::Path;
use std::process::Command;

#[test]
fn boto3_drives_the_local_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_serve(dir.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/sfn_boto3_check.py");
    let (akid, secret) = api_credentials(dir.path(), "operator");
    let out = Command::new("python3")
        .arg(&script)
        .arg(server.url())
        .env("CERTOPS_API_ACCESS_KEY_ID", akid)
        .env("CERTOPS_API_SECRET_ACCESS_KEY", secret)
        .output()
        .expect("python3 must be installed (the README's test command installs boto3 with pip)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "boto3 checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("boto3: all checks passed"), "{stdout}");
}
