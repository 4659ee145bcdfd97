//! Lambda entry point of the `purge` step: the handler in this crate's
//! library, with its ports built from the environment (see `certops-lambda`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    certops_lambda::run(|deps, event| async move { certops_fn_purge::handle(&deps, event).await })
        .await
}
