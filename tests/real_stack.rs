//! "It works with real servers", in one command: demo scenario 1 end to end with every real
//! part this project can start here at once, through the embedded stack and the real state
//! machine:
//! - pebble issues the renewal over ACME, its HTTP-01 challenge answered from the webroot the
//!   real nginx serves;
//! - a private nginx and a private HAProxy are the certificate object's two targets;
//! - a private Varnish is purged over its admin port;
//! - the change lives in the ServiceNow emulator, through the real ServiceNow adapter: opened,
//!   approved, closed, with one `evidence.json` attachment.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_asl::ExecutionStatus;
use certops_core::ports::TicketState;
use certops_tests::servers::fingerprint;
use certops_tests::servers::scenarios::{real_world, Edge, WorldOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_1_with_every_real_part_at_once() {
    let world = real_world(WorldOptions {
        edges: vec![Edge::Nginx, Edge::Haproxy],
        second_listener: false,
        varnish_admin: true,
        real_parts: true,
    })
    .await;
    let cached = world.varnish.get_generation("/index.html");
    let before = world.served().await;
    assert_eq!(before.len(), 2);
    assert!(before
        .iter()
        .all(|o| o.fingerprint == fingerprint(&world.initial.chain_pem)));

    let out = world.scan_and_run().await;
    assert_eq!(out.status, ExecutionStatus::Succeeded, "{out:?}");
    assert_eq!(out.ticket_state, Some(TicketState::Closed));
    let renewal = out
        .state
        .as_ref()
        .and_then(|s| s.renewal.clone())
        .expect("renewal");
    for o in world.served().await {
        assert_eq!(
            o.fingerprint, renewal.fingerprint,
            "{} serves the renewed leaf",
            o.address
        );
        assert!(o.chain_valid && o.not_after == renewal.not_after, "{o:?}");
    }
    // Both targets were deployed, in inventory order, and the ban reached Varnish.
    let deploys = world.actions(&out.execution, "deploy+reload").await;
    let text: Vec<String> = deploys.iter().map(|d| d.to_string()).collect();
    assert_eq!(deploys.len(), 2, "{text:?}");
    assert!(
        text[0].contains("edge-nginx") && text[1].contains("edge-haproxy"),
        "{text:?}"
    );
    assert!(world.varnish.admin(&["ban.list"]).contains("req.url ~ ^/"));
    assert!(
        world.varnish.get_generation("/index.html") > cached,
        "the cache was purged"
    );
    // pebble issued the leaf, and answered its HTTP-01 challenge through nginx's webroot.
    let parts = world.parts.as_ref().expect("real parts");
    let served_file = std::fs::read_to_string(&world.nginx.as_ref().expect("nginx").cert_path)
        .expect("nginx's certificate file");
    let leaf = x509_issuer(&served_file);
    assert!(leaf.contains("Pebble"), "issued by pebble: {leaf}");
    let webroot = nginx_webroot(&world);
    assert!(
        std::fs::read_dir(webroot.join(".well-known/acme-challenge"))
            .expect("challenge dir")
            .next()
            .is_none(),
        "the challenge file was cleaned up"
    );
    // The change in ServiceNow: closed, approved by the owner, one evidence.json.
    let number = out
        .state
        .as_ref()
        .and_then(|s| s.validation.as_ref())
        .map(|v| v.ticket.clone())
        .expect("ticket");
    let sn = &parts.servicenow;
    let change = sn.record("change_request", &number).expect("in ServiceNow");
    assert_eq!(change["state"], "3", "{change}");
    assert_eq!(change["approval"], "approved", "{change}");
    let sys_id = change["sys_id"].as_str().expect("sys_id");
    let notes = sn.work_notes(sys_id);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("approved_by=olivia@example.com")),
        "{notes:?}"
    );
    let attachments: Vec<String> = sn
        .attachments(sys_id)
        .iter()
        .map(|a| a["file_name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(attachments, ["evidence.json"]);
    // The files on disk hold the renewed certificate too: a restart keeps it.
    let nginx = world.nginx.as_ref().expect("nginx");
    let haproxy = world.haproxy.as_ref().expect("haproxy");
    for path in [&nginx.cert_path, &haproxy.cert_path] {
        let text = std::fs::read_to_string(path).expect("file");
        assert_eq!(
            fingerprint(&text),
            renewal.fingerprint,
            "{}",
            path.display()
        );
    }
}

fn x509_issuer(chain_pem: &str) -> String {
    let der = first_pem_block(chain_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("leaf");
    cert.issuer().to_string()
}

fn first_pem_block(pem: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
    p.contents
}

fn nginx_webroot(world: &certops_tests::servers::scenarios::RealWorld) -> std::path::PathBuf {
    world
        .nginx
        .as_ref()
        .and_then(|n| n.webroot.clone())
        .expect("nginx webroot")
}
