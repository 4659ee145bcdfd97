//! Test harness shared by the end-to-end tests: a scripted task invoker for
//! conformance fixtures, and helpers to start `certops` processes on free
//! loopback ports and stop them on drop.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

pub mod chat;
pub mod console;
pub mod contract;
pub mod eventually;
pub mod issuers;
pub mod moto;
pub mod process;
pub mod scan_world;
pub mod scripted;
pub mod served;
pub mod servers;
pub mod servicenow;
pub mod world;
