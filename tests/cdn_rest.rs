//! The generic authenticated REST purge against a purge API on loopback that checks its
//! token the way CDN APIs do (401 without the right one, 202 with an invalidation id): the
//! CDN contract; the token comes from a `file:` secret reference and never shows in an
//! error; an unexpected status is `PurgeFailed`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use certops_adapters::Embedded;
use certops_core::ports::{CdnPurger, SystemClock};
use certops_core::{Cdn, CdnKind};
use certops_servers::Routers;
use certops_tests::contract::cdn::{cdn_contract, RetryPromise};
use certops_tests::servers::cdn_inventory;
use serde_json::{json, Value};

const TOKEN: &str = "purge-token-7f3a9c1e";

#[derive(Clone, Default)]
struct Api {
    purges: Arc<Mutex<Vec<Value>>>,
}

async fn purge(
    State(api): State<Api>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let auth = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Token {TOKEN}")) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "unauthorized"})),
        );
    }
    let mut purges = api.purges.lock().expect("lock");
    purges.push(body);
    let id = format!("inv-{}", purges.len());
    (StatusCode::ACCEPTED, Json(json!({"id": id})))
}

async fn start_api() -> (u16, Api, tokio::task::JoinHandle<()>) {
    let api = Api::default();
    let app = Router::new()
        .route("/v1/purge", post(purge))
        .route(
            "/v1/broken",
            post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, api, task)
}

fn cdn(id: &str) -> Cdn {
    Cdn {
        kind: CdnKind::GenericRest,
        distribution_id: id.into(),
        paths: vec!["/index.html".into(), "/static/*".into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cdn_contract_holds_for_an_authenticated_rest_purge() {
    let (port, api, task) = start_api().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    certops_tests::servers::write_private(&token, &format!("{TOKEN}\n"));
    let wrong = dir.path().join("wrong");
    certops_tests::servers::write_private(&wrong, "not-the-token\n");
    let mut text = String::new();
    let base = format!("http://127.0.0.1:{port}/v1");
    let conn = |id: &str, path: &str, secret: &std::path::Path| {
        format!(
            "[cdn.\"{id}\"]\nkind = \"generic-rest\"\nurl = \"{base}/{path}\"\nheader = \"x-api-key\"\ntoken_prefix = \"Token \"\ntoken = \"file:{}\"\nexpected_status = 202\n\n",
            secret.display()
        )
    };
    text.push_str(&conn("rest-ok", "purge", &token));
    text.push_str(&conn("rest-wrong-token", "purge", &wrong));
    text.push_str(&conn("rest-broken", "broken", &token));
    let inventory = cdn_inventory(
        "generic-rest",
        &["rest-ok", "rest-wrong-token", "rest-broken"],
        &text,
    );
    let embedded =
        Embedded::open(&dir.path().join("state"), Arc::new(SystemClock)).expect("embedded");
    let routers = Routers::embedded(&embedded, &inventory).expect("routers");

    let (first, again) = cdn_contract(
        routers.cdn.as_ref(),
        &cdn("rest-ok"),
        &cdn("rest-broken"),
        &Cdn {
            kind: CdnKind::Cloudfront,
            distribution_id: "E2QWRUHAPOMQZL".into(),
            paths: vec!["/*".into()],
        },
        RetryPromise::NewId,
    )
    .await;
    assert_eq!(
        (first.as_str(), again.as_str()),
        ("inv-1", "inv-2"),
        "the API's ids come back"
    );
    let purges = api.purges.lock().expect("lock").clone();
    assert_eq!(
        purges[0],
        json!({"distribution": "rest-ok", "paths": ["/index.html", "/static/*"]})
    );

    let err = routers
        .cdn
        .purge(&cdn("rest-wrong-token"))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "PurgeFailed");
    let msg = err.to_string();
    assert!(msg.contains("401") && msg.contains("expected 202"), "{msg}");
    assert!(
        !msg.contains("not-the-token") && !msg.contains(TOKEN),
        "{msg}"
    );
    task.abort();
}
