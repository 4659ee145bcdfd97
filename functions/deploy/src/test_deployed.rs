//! The starting point of the `verify`, `rollback` and `itsm-update` unit tests (each
//! includes this file with `#[path]`): the real `validate`, `renew` and `deploy` steps run
//! in turn on the shared test world. It lives beside `deploy`, which each of them already
//! tests against.

use crate::test_world::World;
use certops_core::workflow::StepEvent;

/// Validated, renewed and deployed: the endpoint serves the new certificate, unless a
/// fault set on the target keeps it from reloading.
pub async fn deployed(w: &World, exec: &str) -> StepEvent {
    let mut event = w.validated(exec).await;
    event.state.renewal = Some(
        certops_fn_renew::handle(&w.deps, event.clone())
            .await
            .unwrap(),
    );
    event.state.deployment = Some(
        certops_fn_deploy::handle(&w.deps, event.clone())
            .await
            .unwrap(),
    );
    event
}
