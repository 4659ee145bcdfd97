//! What the fuzz targets share: the ports a handler is given ([`stub_deps`]),
//! so the HTTP handlers run end to end on fuzzed requests without a server.
//!
//! Each target lives in `fuzz_targets/<name>.rs` with its seeds in
//! `corpus/<name>/`; `scripts/fuzz.sh` runs them.

pub mod stub_deps;
