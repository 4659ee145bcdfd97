//! The embedded default: the same state machine definition and the same step
//! handlers as on AWS, running on one machine with no cloud — the local ASL
//! engine, SQLite, a local CA, in-process TLS endpoints, a local ticket book
//! and chat inbox.
//!
//! - [`stack`]: [`stack::Stack`] wires them over one data directory;
//! - [`demo`]: the six scenarios `certops demo` runs and checks;
//!
//! The always-open policy the demo, the benchmarks and the tests share is
//! `certops_adapters::fixtures`.

pub mod demo;
pub mod stack;

/// The outside-in prober (re-exported from the adapters).
pub mod prober {
    pub use certops_adapters::TlsProber;
}
pub use certops_adapters::{example_config, ConfigFiles};
pub use stack::{Stack, StackOptions};
