//! Contract suites: one per port, each a plain async function that takes any
//! implementation of the port. The same suite runs against the embedded
//! adapter and against the AWS adapter on moto server; both must pass it.

pub mod cdn;
pub mod deploy;
pub mod issuer;
pub mod itsm;
pub mod keystore;
pub mod queue;
pub mod store;
pub mod workflow;
