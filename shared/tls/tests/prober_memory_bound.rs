//! Many hostile endpoints at once cost bounded memory, and the scan still holds its deadline.
//! (Its own test binary, so the process high-water mark belongs to this scan alone.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

mod fixtures;

use std::time::{Duration, Instant};

use certops_tls::{Prober, ProberConfig, Status, Target};
use futures::StreamExt;

use fixtures::servers::{vm_hwm_kib, vm_rss_kib};
use fixtures::suite::Suite;

/// Copies of the whole suite scanned at once.
const COPIES: usize = 20;
const DEADLINE: Duration = Duration::from_millis(2000);
/// Peak growth allowed over the resident set before the scan (servers included).
const MEMORY_BOUND_KIB: u64 = 32 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_hostile_scan_stays_within_memory_and_deadline() {
    let suite = Suite::start().await;
    // Endpoints only: name resolution goes to the system resolver, which is not under test.
    let targets: Vec<Target> = (0..COPIES)
        .flat_map(|_| {
            suite
                .cases
                .iter()
                .filter(|c| c.expected != Status::DnsFailure)
        })
        .map(|c| c.target.parse::<Target>().expect("target"))
        .collect();
    let n = targets.len();
    let prober = Prober::new(ProberConfig {
        timeout: DEADLINE,
        concurrency: n,
        trust: suite.trust.clone(),
        ..ProberConfig::default()
    })
    .expect("prober");

    let before = vm_rss_kib();
    let started = Instant::now();
    let mut seen = 0;
    let mut mismatches = Vec::new();
    let mut reports = prober.scan(targets);
    while let Some(report) = reports.next().await {
        seen += 1;
        let expected = suite
            .cases
            .iter()
            .find(|c| c.target == report.target)
            .map(|c| c.expected);
        if expected != Some(report.status) {
            mismatches.push((report.target.clone(), report.status, expected));
        }
    }
    let elapsed = started.elapsed();
    let peak = vm_hwm_kib();
    eprintln!("{n} probes in {elapsed:?}; RSS before {before} KiB, peak {peak} KiB");
    assert_eq!(seen, n);
    assert!(mismatches.is_empty(), "{mismatches:?}");
    assert!(
        elapsed < DEADLINE + Duration::from_millis(1000),
        "scan took {elapsed:?}"
    );
    assert!(
        peak.saturating_sub(before) < MEMORY_BOUND_KIB,
        "peak grew by {} KiB",
        peak - before
    );
}
