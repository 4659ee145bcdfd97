//! "It works with real servers", in one command: demo scenario 1 end to end with every real
//! part this project can start here at once — a private nginx and a private HAProxy as the
//! certificate object's two targets, a private Varnish purged over its admin port — through
//! the embedded stack and the real state machine.
//!
//! The issuer (pebble, issue 14) and ITSM (the ServiceNow emulator, issue 12) join through
//! [`real_stack_integrations`]: the hook returns their `integrations.toml` tables once those
//! harnesses exist; until then the local CA and the local ticket book stand in.

use certops_asl::ExecutionStatus;
use certops_core::ports::TicketState;
use certops_tests::servers::fingerprint;
use certops_tests::servers::scenarios::{real_stack_integrations, real_world, Edge, WorldOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_1_with_every_real_part_at_once() {
    let world = real_world(WorldOptions {
        edges: vec![Edge::Nginx, Edge::Haproxy],
        second_listener: false,
        varnish_admin: true,
        integrations: real_stack_integrations(),
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
