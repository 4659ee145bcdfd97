//! Purging a real Varnish (Debian package, private instance on loopback, caching a small
//! origin): the CDN contract over HTTP `PURGE`/`BAN` and over the admin port's `ban`; a
//! purge really makes Varnish fetch again; a VCL whose ACL leaves certops out refuses, and
//! that is `PurgeFailed`; a wrong admin secret is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use std::sync::Arc;

use certops_adapters::Embedded;
use certops_core::ports::{CdnPurger, SystemClock};
use certops_core::{Cdn, CdnKind};
use certops_servers::Routers;
use certops_tests::contract::cdn::{cdn_contract, RetryPromise};
use certops_tests::process::free_port;
use certops_tests::servers::cdn_inventory;
use certops_tests::servers::origin::Origin;
use certops_tests::servers::varnish::Varnish;

fn cdn(id: &str, paths: &[&str]) -> Cdn {
    Cdn {
        kind: CdnKind::Varnish,
        distribution_id: id.into(),
        paths: paths.iter().map(|p| p.to_string()).collect(),
    }
}

struct Fixture {
    _origin: Origin,
    varnish: Varnish,
    routers: Routers,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let origin = Origin::start().await;
    let varnish = Varnish::start(origin.port);
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = Embedded::open(dir.path(), Arc::new(SystemClock)).expect("embedded");
    let wrong_secret = dir.path().join("wrong-secret");
    certops_tests::servers::write_private(&wrong_secret, "not the secret\n");
    let connections = format!(
        "{}\n{}\n[cdn.\"varnish-down\"]\nkind = \"varnish\"\nhttp = \"http://127.0.0.1:{}\"\ntimeout_seconds = 5\n\n\
         [cdn.\"varnish-wrong-secret\"]\nkind = \"varnish\"\nadmin = \"127.0.0.1:{}\"\nsecret_file = \"{}\"\n",
        varnish.http_connection_toml("varnish-http"),
        varnish.admin_connection_toml("varnish-admin"),
        free_port(),
        varnish.admin_port,
        wrong_secret.display()
    );
    let routers = Routers::embedded(
        &embedded,
        &cdn_inventory(
            "varnish",
            &[
                "varnish-http",
                "varnish-admin",
                "varnish-down",
                "varnish-wrong-secret",
            ],
            &connections,
        ),
    )
    .expect("routers");
    Fixture {
        _origin: origin,
        varnish,
        routers,
        _dir: dir,
    }
}

fn cloudfront() -> Cdn {
    Cdn {
        kind: CdnKind::Cloudfront,
        distribution_id: "E2QWRUHAPOMQZL".into(),
        paths: vec!["/*".into()],
    }
}

/// Caches `path`, purges with `cdn`, and checks Varnish fetched it again afterwards.
async fn purge_refetches(f: &Fixture, path: &str, cdn: &Cdn) {
    let first = f.varnish.get_generation(path);
    assert_eq!(f.varnish.get_generation(path), first, "{path} is cached");
    f.routers.cdn.purge(cdn).await.expect("purge");
    // Bans are evaluated on the next lookup; purges remove at once.
    let after = f.varnish.get_generation(path);
    assert!(
        after > first,
        "{path} served from cache after the purge ({after} vs {first})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cdn_contract_holds_over_http_purge_and_the_admin_port() {
    let f = fixture().await;
    for id in ["varnish-http", "varnish-admin"] {
        cdn_contract(
            f.routers.cdn.as_ref(),
            &cdn(id, &["/index.html", "/static/*"]),
            &cdn("varnish-down", &["/*"]),
            &cloudfront(),
            RetryPromise::NewId,
        )
        .await;
    }
    let err = f
        .routers
        .cdn
        .purge(&cdn("varnish-wrong-secret", &["/*"]))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "PurgeFailed");
    assert!(err.to_string().contains("authentication"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_and_bans_make_varnish_fetch_again() {
    let f = fixture().await;
    purge_refetches(&f, "/index.html", &cdn("varnish-http", &["/index.html"])).await;
    purge_refetches(&f, "/static/app.js", &cdn("varnish-http", &["/static/*"])).await;
    purge_refetches(&f, "/index.html", &cdn("varnish-admin", &["/index.html"])).await;
    purge_refetches(&f, "/static/app.css", &cdn("varnish-admin", &["/static/*"])).await;
    // A path not named stays cached.
    let kept = f.varnish.get_generation("/kept");
    f.routers
        .cdn
        .purge(&cdn("varnish-admin", &["/static/*"]))
        .await
        .expect("purge");
    assert_eq!(f.varnish.get_generation("/kept"), kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vcl_that_refuses_certops_is_purge_failed() {
    let f = fixture().await;
    let cached = f.varnish.get_generation("/index.html");
    f.varnish.refuse_purges();
    for paths in [&["/index.html"][..], &["/static/*"][..]] {
        let err = f
            .routers
            .cdn
            .purge(&cdn("varnish-http", paths))
            .await
            .unwrap_err();
        assert_eq!(err.name(), "PurgeFailed");
        assert!(err.to_string().contains("405"), "{err}");
    }
    assert_eq!(
        f.varnish.get_generation("/index.html"),
        cached,
        "nothing purged"
    );
    f.varnish.allow_purges();
    f.routers
        .cdn
        .purge(&cdn("varnish-http", &["/index.html"]))
        .await
        .expect("allowed again");
}
