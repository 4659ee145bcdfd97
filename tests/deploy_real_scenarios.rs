//! Demo scenarios 1, 4 and 5 on real servers — a private nginx and a private HAProxy, each
//! behind a private Varnish — through the embedded stack and the real state machine:
//!
//! 1. a planned renewal is deployed, the renewed leaf is served (a real handshake proves
//!    it), the cache is purged, the change is closed;
//! 4. a second listener the deploy does not reach keeps serving the old leaf, so
//!    verification fails, rollback restores last-known-good on the target, and a handshake
//!    on every endpoint proves the old leaf is back;
//! 5. Varnish refuses the purges: on-call is notified, the ticket is "Mitigating", and
//!    verification still passes.
//!
//! Plus: the admin socket gone → `DeployFailed`, and rollback has nothing to restore and
//! does not touch the target.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_asl::ExecutionStatus;
use certops_core::ports::TicketState;
use certops_tests::servers::fingerprint;
use certops_tests::servers::scenarios::{real_world, Edge, RealWorld, WorldOptions};

fn options(edge: Edge) -> WorldOptions {
    WorldOptions {
        edges: vec![edge],
        second_listener: false,
        varnish_admin: false,
        real_parts: false,
    }
}

async fn scenario_1(world: &RealWorld) {
    let cached = world.varnish.get_generation("/index.html");
    let before = world.served().await;
    assert_eq!(before[0].fingerprint, fingerprint(&world.initial.chain_pem));
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
        assert_eq!(o.not_after, renewal.not_after);
        assert!(o.chain_valid, "{o:?}");
        assert!(o.not_after > before[0].not_after);
    }
    assert!(
        world.varnish.get_generation("/index.html") > cached,
        "the cache was purged"
    );
    // The deploy's audit record carries the target's evidence.
    let deploys = world.actions(&out.execution, "deploy+reload").await;
    assert!(!deploys.is_empty());
    assert!(
        deploys
            .iter()
            .all(|d| d.to_string().contains("\"result\":\"ok\"")),
        "{deploys:?}"
    );
    assert!(
        deploys.iter().all(|d| !d["summary"]["evidence"].is_null()),
        "{deploys:?}"
    );
}

async fn scenario_4(world: &RealWorld) {
    let initial = fingerprint(&world.initial.chain_pem);
    let out = world.scan_and_run().await;
    assert_eq!(out.status, ExecutionStatus::Failed, "{out:?}");
    assert_eq!(out.error.as_deref(), Some("RolledBack"), "{out:?}");
    assert_eq!(out.ticket_state, Some(TicketState::Canceled));
    let restores = world.actions(&out.execution, "restore+reload").await;
    assert_eq!(restores.len(), 1, "{restores:?}");
    assert!(
        restores[0].to_string().contains("\"result\":\"ok\""),
        "{restores:?}"
    );
    // Every endpoint — the one deployed to and the one never reached — serves the old leaf.
    for o in world.served().await {
        assert_eq!(o.fingerprint, initial, "{} after rollback", o.address);
    }
    let revalidate = world.actions(&out.execution, "revalidate").await;
    assert_eq!(revalidate.len(), 1);
    assert_eq!(
        revalidate[0]["summary"]["wrong"],
        serde_json::json!([]),
        "{revalidate:?}"
    );
}

async fn scenario_5(world: &RealWorld) {
    world.varnish.refuse_purges();
    let notified = world
        .stack
        .adapters
        .chat
        .notifications()
        .expect("chat")
        .len();
    let out = world.scan_and_run().await;
    world.varnish.allow_purges();
    assert_eq!(out.status, ExecutionStatus::Succeeded, "{out:?}");
    assert_eq!(out.ticket_state, Some(TicketState::Mitigating));
    assert!(
        world
            .stack
            .adapters
            .chat
            .notifications()
            .expect("chat")
            .len()
            > notified,
        "on-call notified"
    );
    let purges = world.actions(&out.execution, "purge").await;
    assert!(!purges.is_empty());
    assert!(
        purges.iter().all(|p| p.to_string().contains("PurgeFailed")),
        "{purges:?}"
    );
    let renewal = out
        .state
        .as_ref()
        .and_then(|s| s.renewal.clone())
        .expect("renewal");
    for o in world.served().await {
        assert_eq!(
            o.fingerprint, renewal.fingerprint,
            "verification passed on {}",
            o.address
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_1_renews_and_serves_on_nginx() {
    scenario_1(&real_world(options(Edge::Nginx)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_1_renews_and_serves_on_haproxy() {
    scenario_1(&real_world(options(Edge::Haproxy)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_4_rolls_back_nginx_when_a_listener_keeps_the_old_leaf() {
    let world = real_world(WorldOptions {
        second_listener: true,
        ..options(Edge::Nginx)
    })
    .await;
    scenario_4(&world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_4_rolls_back_haproxy_when_a_frontend_keeps_the_old_leaf() {
    let world = real_world(WorldOptions {
        second_listener: true,
        ..options(Edge::Haproxy)
    })
    .await;
    scenario_4(&world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_5_purge_refused_by_varnish_mitigating_on_nginx() {
    scenario_5(&real_world(options(Edge::Nginx)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_5_purge_refused_by_varnish_mitigating_on_haproxy() {
    scenario_5(&real_world(options(Edge::Haproxy)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_socket_gone_is_deploy_failed_and_rollback_touches_nothing() {
    let world = real_world(options(Edge::Haproxy)).await;
    let haproxy = world.haproxy.as_ref().expect("haproxy");
    let file_before = std::fs::read(&haproxy.cert_path).expect("file");
    std::fs::remove_file(&haproxy.socket).expect("remove socket");
    let out = world.scan_and_run().await;
    assert_eq!(out.status, ExecutionStatus::Failed, "{out:?}");
    let deploy_error = out
        .state
        .as_ref()
        .and_then(|s| s.deploy_error.clone())
        .expect("deploy error");
    assert_eq!(deploy_error.error, "DeployFailed", "{deploy_error:?}");
    assert!(
        deploy_error.cause.contains("admin socket"),
        "{deploy_error:?}"
    );
    assert!(
        world
            .actions(&out.execution, "restore+reload")
            .await
            .is_empty(),
        "rollback not attempted on the target"
    );
    assert_eq!(
        std::fs::read(&haproxy.cert_path).expect("file"),
        file_before
    );
    assert_eq!(
        world.served().await[0].fingerprint,
        fingerprint(&world.initial.chain_pem)
    );
}
