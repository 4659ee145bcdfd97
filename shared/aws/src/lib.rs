//! AWS adapters for the certops ports. Every client is built from one
//! `aws_config::SdkConfig`, so `AWS_ENDPOINT_URL` (or an explicit endpoint in
//! tests) points the same production code at AWS or at an emulator.
