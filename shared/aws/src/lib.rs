//! AWS adapters for the certops ports. Every client is built from one
//! `aws_config::SdkConfig`, so `AWS_ENDPOINT_URL` (or an explicit endpoint in
//! tests) points the same production code at AWS or at an emulator.
//!
//! | Port | Adapter | Module |
//! |---|---|---|
//! | Store | DynamoDB (conditional writes, transactions, TTL) | [`dynamo`] |
//! | Queue | SQS (visibility, dead-letter queue) | [`sqs`] |
//! | Workflow | Step Functions | [`sfn`] |
//! | Keystore | Secrets Manager | [`secrets`] |
//! | DeployTarget | ACM re-import, ELBv2 listener certificate, dispatched by kind | [`acm`], [`elb`], [`targets`] |
//! | CdnPurger | CloudFront invalidation | [`cloudfront`] |

pub mod acm;
pub mod cloudfront;
pub mod dynamo;
pub mod elb;
pub mod sdk_error;
pub mod secret_resolver;
pub mod secrets;
pub mod sfn;
pub mod sqs;
pub mod targets;
