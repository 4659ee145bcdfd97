//! The embedded default: the same state machine definition and the same step
//! handlers as on AWS, running on one machine with no cloud — the local ASL
//! engine, SQLite, a local CA, in-process TLS endpoints, a local ticket book
//! and chat inbox. [`stack::Stack`] wires them; [`demo`] runs the scenarios.

pub mod demo;
pub mod prober;
pub mod stack;

pub use stack::{ConfigFiles, Stack, StackOptions};
