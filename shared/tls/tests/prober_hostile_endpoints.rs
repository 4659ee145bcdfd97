//! Every kind of endpoint, healthy or hostile, is classified correctly and within the deadline;
//! a scan of all of them at once holds its deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

mod fixtures;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use certops_tls::{Prober, ProberConfig, Status, Target};
use futures::StreamExt;

use fixtures::suite::Suite;

const DEADLINE: Duration = Duration::from_millis(1500);
const MARGIN: Duration = Duration::from_millis(500);

fn prober(suite: &Suite, concurrency: usize) -> Prober {
    Prober::new(ProberConfig {
        timeout: DEADLINE,
        concurrency,
        trust: suite.trust.clone(),
        ..ProberConfig::default()
    })
    .expect("prober")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_is_classified_within_its_deadline() {
    let suite = Suite::start().await;
    let prober = prober(&suite, 1);
    for case in &suite.cases {
        let target: Target = case.target.parse().expect("target");
        let started = Instant::now();
        let report = prober.probe(target.clone()).await;
        let elapsed = started.elapsed();
        assert_eq!(
            report.status, case.expected,
            "{}: got {} ({:?})",
            case.name, report.status, report.endpoints[0].detail
        );
        assert!(
            elapsed < DEADLINE + MARGIN,
            "{}: took {elapsed:?}",
            case.name
        );
        eprintln!(
            "{:<28} {:<18} {:>5} ms  {:?}",
            case.name,
            report.status,
            elapsed.as_millis(),
            report.endpoints[0].detail
        );
        for e in &report.endpoints {
            assert_eq!(e.target, case.target, "{}", case.name);
            assert_eq!(e.sni, target.sni, "{}", case.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_of_all_at_once_holds_its_deadline() {
    let suite = Suite::start().await;
    let prober = prober(&suite, suite.cases.len());
    let targets: Vec<Target> = suite
        .cases
        .iter()
        .map(|c| c.target.parse().expect("target"))
        .collect();
    let started = Instant::now();
    let reports: Vec<_> = prober.scan(targets).collect().await;
    let elapsed = started.elapsed();
    assert!(elapsed < DEADLINE + MARGIN, "scan took {elapsed:?}");
    assert_eq!(reports.len(), suite.cases.len());
    let by_target: HashMap<_, _> = reports
        .iter()
        .map(|r| (r.target.clone(), r.status))
        .collect();
    for case in &suite.cases {
        assert_eq!(
            by_target.get(&case.target),
            Some(&case.expected),
            "{}",
            case.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_never_turn_a_tarpit_into_a_scan_stall() {
    let suite = Suite::start().await;
    let tarpit = suite
        .cases
        .iter()
        .find(|c| c.name == "tarpit")
        .expect("tarpit");
    let prober = Prober::new(ProberConfig {
        timeout: Duration::from_millis(300),
        retries: 2,
        retry_backoff: Duration::from_millis(50),
        trust: suite.trust.clone(),
        ..ProberConfig::default()
    })
    .expect("prober");
    let started = Instant::now();
    let report = prober
        .probe(tarpit.target.parse::<Target>().expect("target"))
        .await;
    let elapsed = started.elapsed();
    assert_eq!(report.status, Status::Timeout);
    assert_eq!(report.endpoints[0].attempts, 3);
    // Three attempts of 300 ms plus two pauses, and no more.
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(900 + 100 + 400),
        "{elapsed:?}"
    );
}
