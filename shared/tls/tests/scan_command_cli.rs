//! `certops scan` (cli/src/scan.rs, compiled here against this crate): arguments, output and
//! Nagios exit codes against loopback endpoints.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

mod fixtures;

#[allow(dead_code)]
#[path = "../../../cli/src/scan.rs"]
mod scan;

use clap::Parser;

use fixtures::pki::{Ca, VALID};
use fixtures::servers;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    scan: scan::ScanArgs,
}

fn args(argv: &[&str]) -> scan::ScanArgs {
    let mut full = vec!["certops-scan"];
    full.extend_from_slice(argv);
    Cli::try_parse_from(full).expect("arguments").scan
}

async fn run(argv: &[&str]) -> (i32, String) {
    let mut out = Vec::new();
    let code = scan::run_to(args(argv), &mut out).await.expect("scan runs");
    (code, String::from_utf8(out).expect("utf-8"))
}

struct Fleet {
    _servers: Vec<servers::Endpoint>,
    ok: String,
    warn: String,
    crit: String,
    mismatch: String,
    bundle: tempfile::NamedTempFile,
}

async fn fleet() -> Fleet {
    let root = Ca::root("scan root", VALID);
    let inter = root.intermediate("scan intermediate", VALID);
    let serve = |leaf: fixtures::pki::Leaf| {
        let chain = vec![leaf.der.clone(), inter.der.clone()];
        async move { servers::tls(chain, leaf.private_key()).await }
    };
    let ok = serve(inter.leaf(&["ok.example.test"], VALID)).await;
    let warn = serve(inter.leaf(&["warn.example.test"], (-80, 20))).await;
    let crit = serve(inter.leaf(&["crit.example.test"], (-80, 3))).await;
    let mismatch = serve(inter.leaf(&["other.example.test"], VALID)).await;
    let bundle = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(bundle.path(), &root.pem).expect("write bundle");
    Fleet {
        ok: ok.target("ok.example.test"),
        warn: warn.target("warn.example.test"),
        crit: crit.target("crit.example.test"),
        mismatch: mismatch.target("mismatch.example.test"),
        bundle,
        _servers: vec![ok, warn, crit, mismatch],
    }
}

#[tokio::test]
async fn exit_codes_follow_nagios() {
    let f = fleet().await;
    let ca = f.bundle.path().to_str().expect("path").to_owned();
    let base = ["--ca-bundle", ca.as_str(), "--timeout", "2s"];
    let with = |targets: &[&str]| -> Vec<String> {
        base.iter().chain(targets).map(|s| s.to_string()).collect()
    };
    let code = |v: Vec<String>| async move {
        run(&v.iter().map(String::as_str).collect::<Vec<_>>())
            .await
            .0
    };
    assert_eq!(code(with(&[&f.ok])).await, 0);
    assert_eq!(
        code(with(&[&f.ok, &f.warn])).await,
        1,
        "20 days left: warning"
    );
    assert_eq!(
        code(with(&[&f.ok, &f.warn, &f.crit])).await,
        2,
        "3 days left: critical"
    );
    let closed = servers::closed_port().await.to_string();
    assert_eq!(
        code(with(&[&f.ok, &f.warn, &closed])).await,
        3,
        "unknown beats warning"
    );
    assert_eq!(
        code(with(&[&closed, &f.mismatch])).await,
        2,
        "critical beats unknown"
    );
    // Without the bundle, the private chain is untrusted.
    assert_eq!(run(&["--timeout", "2s", &f.ok]).await.0, 2);
}

#[tokio::test]
async fn json_prints_one_object_per_endpoint() {
    let f = fleet().await;
    let ca = f.bundle.path().to_str().expect("path");
    let (code, out) = run(&["--json", "--ca-bundle", ca, &f.ok, &f.mismatch]).await;
    assert_eq!(code, 2);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    let status_of = |t: &str| {
        lines
            .iter()
            .find(|l| l["target"] == t)
            .map(|l| l["status"].clone())
    };
    assert_eq!(status_of(&f.ok), Some("ok".into()));
    assert_eq!(status_of(&f.mismatch), Some("name-mismatch".into()));
    assert!(lines
        .iter()
        .all(|l| l["sni"].is_string() && l["address"].is_string()));
}

#[tokio::test]
async fn the_table_lists_targets_in_order_with_a_verdict() {
    let f = fleet().await;
    let dir = tempfile::tempdir().expect("dir");
    let list = dir.path().join("targets.txt");
    std::fs::write(
        &list,
        format!("# fleet\n{}\n\n{}  # soon\n{}\n", f.warn, f.ok, f.warn),
    )
    .expect("write");
    let ca = f.bundle.path().to_str().expect("path");
    let (code, out) = run(&[
        "--ca-bundle",
        ca,
        "--file",
        list.to_str().expect("path"),
        "--crit-days",
        "10",
    ])
    .await;
    eprintln!("{out}");
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("STATUS") && lines[0].contains("DAYS"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("expiring") && lines[1].contains(&f.warn),
        "{out}"
    );
    assert!(
        lines[2].starts_with("ok") && lines[2].contains(&f.ok),
        "{out}"
    );
    assert!(lines[2].contains("scan intermediate"), "{out}");
    assert!(
        out.contains("WARNING: 2 endpoints: 1 ok, 1 expiring"),
        "{out}"
    );
}

async fn fail(argv: &[&str]) -> String {
    scan::run_to(args(argv), &mut Vec::new())
        .await
        .expect_err("must fail")
        .to_string()
}

#[tokio::test]
async fn bad_input_is_a_clear_error_not_a_panic() {
    assert!(fail(&[]).await.contains("no targets"));
    assert!(fail(&["host:99999"]).await.contains("bad target"));
    assert!(fail(&["--file", "/nonexistent/targets"])
        .await
        .contains("/nonexistent/targets"));
    assert!(fail(&["--ca-bundle", "/nonexistent/ca.pem", "a.example"])
        .await
        .contains("/nonexistent/ca.pem"));
    assert!(
        fail(&["--warn-days", "5", "--crit-days", "10", "a.example"])
            .await
            .contains("--crit-days")
    );
    assert!(fail(&["--no-default-roots", "a.example"])
        .await
        .contains("--ca-bundle"));
    let cli = |argv: &[&str]| {
        Cli::try_parse_from(std::iter::once("x").chain(argv.iter().copied())).is_err()
    };
    assert!(cli(&["--timeout", "soon", "a.example"]));
    assert!(cli(&["--concurrency", "0", "a.example"]));
    assert!(cli(&["--retries", "-1", "a.example"]));
}

#[test]
fn the_scan_future_can_be_spawned() {
    fn assert_send<T: Send>(_: &T) {}
    let future = scan::run(args(&["a.example"]));
    assert_send(&future);
}
