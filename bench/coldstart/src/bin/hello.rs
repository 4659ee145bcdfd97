//! The peer of the cold-start benchmark: a minimal hello-world Lambda function
//! on `lambda_runtime` and tokio, the shape of the Rust entry of the public
//! lambda-perf comparison (no SDK, no configuration, no storage).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

async fn hello(_event: LambdaEvent<Value>) -> Result<Value, Error> {
    Ok(json!({"statusCode": 200, "body": "hello world"}))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(hello)).await
}
