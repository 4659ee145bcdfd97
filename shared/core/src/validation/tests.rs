//! Unit tests of validation: each check passing and failing, the approval path decided, the
//! idempotency keys, and the stable serialised names.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};

use super::*;
use crate::inventory::{Inventory, KeyType};
use crate::plan::Plan;
use crate::policy::Policy;
use crate::runbook::Runbook;

const INVENTORY: &str = include_str!("../../../../runbooks/inventory.toml");
const POLICY: &str = include_str!("../../../../runbooks/policy.toml");
const RUNBOOK: &str = include_str!("../../../../runbooks/cert-renewal.runbook.toml");

/// Tuesday 2026-12-01 10:00 UTC = 11:00 in Berlin: inside the prod window.
fn tuesday() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap()
}

/// Saturday 2026-12-05 10:00 UTC: outside the prod and staging windows.
fn saturday() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap()
}

fn inventory() -> Inventory {
    Inventory::from_toml_str(INVENTORY).unwrap()
}

fn policy() -> Policy {
    Policy::from_toml_str(POLICY).unwrap()
}

fn facts() -> Facts {
    Facts {
        current_expiry: None,
        recent_issuances: [("example.com".to_string(), 3)].into(),
        keystore_refs: inventory()
            .certificates
            .iter()
            .filter_map(|c| c.fallback_cert.clone())
            .collect(),
        acme: None,
        target_key_algorithms: BTreeMap::new(),
        renewal_window: None,
    }
}

fn scan(ci: &str, expires_in: TimeDelta, now: DateTime<Utc>) -> Trigger {
    Trigger::Scan(ScanFinding {
        ci: ci.into(),
        observed_expiry: now + expires_in,
        observed_fingerprint: None,
    })
}

fn ticket(ci: &str, environment: &str) -> Trigger {
    Trigger::Ticket(TicketTrigger {
        number: "INC0012345".into(),
        sys_id: "46d44a23a9fe1981014de1c831fbcf6d".into(),
        ticket_type: TicketType::Incident,
        category: "Certificate".into(),
        ci: ci.into(),
        environment: Some(environment.into()),
        requested_by: "dave@example.com".into(),
        priority: "2 - High".into(),
    })
}

fn run(trigger: &Trigger, facts: &Facts, now: DateTime<Utc>) -> ValidationReport {
    validate(&inventory(), &policy(), trigger, facts, now)
}

fn status(report: &ValidationReport, name: CheckName) -> CheckStatus {
    report.check(name).unwrap().status
}

fn reason(report: &ValidationReport, name: CheckName) -> &str {
    &report.check(name).unwrap().reason
}

#[test]
fn planned_renewal_inside_the_window_is_a_normal_change_with_every_check_passing() {
    let report = run(
        &scan("shop-web-prod", TimeDelta::days(20), tuesday()),
        &facts(),
        tuesday(),
    );
    assert_eq!(report.approval_path, ApprovalPath::Normal);
    assert_eq!(report.cert_id.as_deref(), Some("shop-www-prod"));
    assert_eq!(report.policy_version, "2026.12.1");
    let names: Vec<CheckName> = report.checks.iter().map(|c| c.name).collect();
    assert_eq!(names, CheckName::ALL);
    assert!(
        report.checks.iter().all(|c| c.status == CheckStatus::Pass),
        "{:#?}",
        report.checks
    );
    assert!(!report.use_fallback && !report.rate_limit_risk);
}

fn holding(pairs: &[(&str, &str)]) -> Facts {
    let mut f = facts();
    for (id, alg) in pairs {
        f.target_key_algorithms
            .insert((*id).to_string(), (*alg).to_string());
    }
    f
}

#[test]
fn a_renewal_takes_the_key_type_its_reimport_targets_hold() {
    let f = holding(&[("web-01.shop.internal", "RSA_2048")]);
    let report = run(
        &scan("shop-web-prod", TimeDelta::days(20), tuesday()),
        &f,
        tuesday(),
    );
    assert_eq!(report.approval_path, ApprovalPath::Normal);
    assert_eq!(report.key_type, Some(KeyType::Rsa2048));
    assert!(reason(&report, CheckName::RenewalPath).contains("RSA_2048 key"));
    let cert = inventory().get("shop-www-prod").unwrap().clone();
    let plan = crate::Plan::build(
        crate::RunbookRef {
            id: "r".into(),
            version: "1".into(),
            sha256: "00".repeat(32),
        },
        &cert,
        &report,
        None,
        None,
    )
    .unwrap();
    assert_eq!(plan.key_type, Some(KeyType::Rsa2048), "the plan carries it");
    // With no constraint the plan names no key type (its hash is what it was).
    let free = run(
        &scan("shop-web-prod", TimeDelta::days(20), tuesday()),
        &facts(),
        tuesday(),
    );
    assert_eq!(free.key_type, None);
}

#[test]
fn a_key_type_a_reimport_cannot_take_is_refused_at_plan_time_with_the_reason() {
    let trigger = scan("shop-web-prod", TimeDelta::days(20), tuesday());
    // The inventory asks for ECDSA P-256, the target holds RSA 2048.
    let mut inv = inventory();
    for c in &mut inv.certificates {
        c.key_type = Some(KeyType::EcdsaP256);
    }
    let f = holding(&[("web-01.shop.internal", "RSA_2048")]);
    let report = validate(&inv, &policy(), &trigger, &f, tuesday());
    assert_eq!(report.approval_path, ApprovalPath::Blocked);
    assert_eq!(status(&report, CheckName::RenewalPath), CheckStatus::Fail);
    let why = reason(&report, CheckName::RenewalPath);
    assert!(
        why.contains("EC_prime256v1") && why.contains("RSA_2048") && why.contains("re-import"),
        "{why}"
    );
    assert!(report.clone().into_result().is_err());
    // Two targets holding different key types.
    let f = holding(&[
        ("web-01.shop.internal", "RSA_2048"),
        ("web-02.shop.internal", "EC_prime256v1"),
    ]);
    let report = run(&trigger, &f, tuesday());
    assert_eq!(report.approval_path, ApprovalPath::Blocked);
    assert!(reason(&report, CheckName::RenewalPath).contains("different key types"));
    // A key type certops cannot generate.
    let f = holding(&[("web-02.shop.internal", "RSA_1024")]);
    let report = run(&trigger, &f, tuesday());
    assert_eq!(status(&report, CheckName::RenewalPath), CheckStatus::Fail);
    assert!(reason(&report, CheckName::RenewalPath).contains("RSA_1024"));
    // The same key type as the inventory's passes.
    let f = holding(&[("web-01.shop.internal", "EC_prime256v1")]);
    let report = validate(&inv, &policy(), &trigger, &f, tuesday());
    assert_eq!(report.approval_path, ApprovalPath::Normal);
    assert_eq!(report.key_type, Some(KeyType::EcdsaP256));
}

#[test]
fn a_renewal_inside_the_cas_window_is_due_beyond_the_threshold() {
    let trigger = scan("shop-web-prod", TimeDelta::days(60), tuesday());
    assert_eq!(
        run(&trigger, &facts(), tuesday()).approval_path,
        ApprovalPath::Blocked
    );
    let window = |start: DateTime<Utc>| crate::ports::RenewalWindow {
        certificate_id: "aki.serial".into(),
        start,
        end: start + TimeDelta::days(2),
        next_check: tuesday() + TimeDelta::hours(6),
        explanation_url: Some("https://ca.example/incident".into()),
    };
    let mut f = facts();
    f.renewal_window = Some(window(tuesday() - TimeDelta::hours(1)));
    let report = run(&trigger, &f, tuesday());
    assert_eq!(
        report.approval_path,
        ApprovalPath::Normal,
        "{:#?}",
        report.checks
    );
    let why = reason(&report, CheckName::RenewalDue);
    assert!(
        why.contains("renewal window (ARI)") && why.contains("ca.example"),
        "{why}"
    );
    // A window that has not opened leaves the threshold in charge.
    f.renewal_window = Some(window(tuesday() + TimeDelta::days(1)));
    assert_eq!(
        run(&trigger, &f, tuesday()).approval_path,
        ApprovalPath::Blocked
    );
}

#[test]
fn unknown_ci_is_blocked_and_nothing_else_is_guessed() {
    let report = run(
        &scan("shop-web", TimeDelta::days(20), tuesday()),
        &facts(),
        tuesday(),
    );
    assert_eq!(report.approval_path, ApprovalPath::Blocked);
    assert_eq!(report.cert_id, None);
    assert_eq!(status(&report, CheckName::CiKnown), CheckStatus::Fail);
    assert!(reason(&report, CheckName::CiKnown).contains("\"shop-web\""));
    assert_eq!(report.checks.len(), CheckName::ALL.len());
    assert!(report.checks[1..]
        .iter()
        .all(|c| c.status == CheckStatus::Skipped));
    let err = report.into_result().unwrap_err();
    assert_eq!(err.name(), "Blocked");
    assert!(
        err.to_string().contains("ci-known: CI \"shop-web\""),
        "{err}"
    );
}

#[test]
fn environment_mismatch_is_blocked() {
    let facts = Facts {
        current_expiry: Some(tuesday() + TimeDelta::days(10)),
        ..facts()
    };
    let report = run(&ticket("shop-web-prod", "staging"), &facts, tuesday());
    assert_eq!(report.approval_path, ApprovalPath::Blocked);
    assert_eq!(status(&report, CheckName::Environment), CheckStatus::Fail);
    assert!(reason(&report, CheckName::Environment).contains("mismatch"));

    let report = run(&ticket("shop-web-prod", "Production"), &facts, tuesday());
    assert_eq!(report.approval_path, ApprovalPath::Normal);
}

#[test]
fn unknown_or_missing_ticket_environment_is_blocked() {
    let facts = Facts {
        current_expiry: Some(tuesday() + TimeDelta::days(10)),
        ..facts()
    };
    let report = run(&ticket("shop-web-prod", "prod-eu"), &facts, tuesday());
    assert_eq!(status(&report, CheckName::Environment), CheckStatus::Fail);
    let Trigger::Ticket(mut t) = ticket("shop-web-prod", "prod") else {
        unreachable!()
    };
    t.environment = None;
    let report = run(&Trigger::Ticket(t), &facts, tuesday());
    assert_eq!(report.approval_path, ApprovalPath::Blocked);
}

#[test]
fn ticket_outside_the_certificate_category_is_blocked() {
    let Trigger::Ticket(mut t) = ticket("shop-web-prod", "prod") else {
        unreachable!()
    };
    t.category = "Network".into();
    let facts = Facts {
        current_expiry: Some(tuesday() + TimeDelta::days(10)),
        ..facts()
    };
    let report = run(&Trigger::Ticket(t), &facts, tuesday());
    assert_eq!(
        status(&report, CheckName::TicketCategory),
        CheckStatus::Fail
    );
    assert_eq!(report.approval_path, ApprovalPath::Blocked);
}

#[test]
fn out_of_window_normal_change_is_blocked_naming_the_window() {
    let report = run(
        &scan("shop-web-prod", TimeDelta::days(20), saturday()),
        &facts(),
        saturday(),
    );
    assert_eq!(report.approval_path, ApprovalPath::Blocked);
    assert_eq!(status(&report, CheckName::ChangeWindow), CheckStatus::Fail);
    let why = reason(&report, CheckName::ChangeWindow);
    assert!(
        why.contains("outside the prod window (Tue,Wed,Thu 09:00-16:00 Europe/Berlin)"),
        "{why}"
    );
    assert!(why.contains("Sat 2026-12-05 11:00 CET"), "{why}");
}

#[test]
fn freeze_blocks_a_normal_change_naming_the_freeze() {
    // Tuesday 2026-12-22 10:00 Berlin: weekday and hour fit, but year-end freeze.
    let now = Utc.with_ymd_and_hms(2026, 12, 22, 9, 0, 0).unwrap();
    let report = run(
        &scan("shop-web-prod", TimeDelta::days(20), now),
        &facts(),
        now,
    );
    assert_eq!(report.approval_path, ApprovalPath::Blocked);
    assert!(reason(&report, CheckName::ChangeWindow).contains("freeze \"year-end\""));
}

#[test]
fn emergency_when_expiring_within_24_hours_bypasses_the_window_flagged() {
    let report = run(
        &scan("shop-web-prod", TimeDelta::hours(23), saturday()),
        &facts(),
        saturday(),
    );
    assert_eq!(report.approval_path, ApprovalPath::Emergency);
    assert_eq!(
        status(&report, CheckName::ChangeWindow),
        CheckStatus::Bypassed
    );
    assert!(reason(&report, CheckName::ChangeWindow).contains("emergency bypasses"));
}

#[test]
fn emergency_when_already_expired() {
    let report = run(
        &scan("shop-web-prod", TimeDelta::hours(-3), tuesday()),
        &facts(),
        tuesday(),
    );
    assert_eq!(report.approval_path, ApprovalPath::Emergency);
    assert!(reason(&report, CheckName::RenewalDue).contains("already expired"));
}

#[test]
fn twenty_five_hours_left_is_not_an_emergency() {
    let report = run(
        &scan("shop-web-prod", TimeDelta::hours(25), tuesday()),
        &facts(),
        tuesday(),
    );
    assert_eq!(report.approval_path, ApprovalPath::Normal);
}

#[test]
fn vendor_managed_is_blocked_with_raise_with_vendor() {
    let report = run(
        &scan("payments-gateway-prod", TimeDelta::days(5), tuesday()),
        &facts(),
        tuesday(),
    );
    assert_eq!(report.approval_path, ApprovalPath::Blocked);
    assert_eq!(status(&report, CheckName::RenewalPath), CheckStatus::Fail);
    assert_eq!(
        reason(&report, CheckName::RenewalPath),
        "vendor-managed: raise with vendor"
    );
}

#[test]
fn exhausted_acme_budget_is_a_rate_limit_risk_taking_the_fallback_on_emergency_approval() {
    let mut facts = facts();
    facts.recent_issuances.insert("example.com".into(), 40);
    let report = run(
        &scan("shop-web-prod", TimeDelta::days(20), tuesday()),
        &facts,
        tuesday(),
    );
    assert!(report.rate_limit_risk);
    assert!(report.use_fallback);
    assert_eq!(status(&report, CheckName::RateLimit), CheckStatus::Bypassed);
    assert!(reason(&report, CheckName::RateLimit).contains("rate-limit risk: 40"));
    assert_eq!(report.approval_path, ApprovalPath::Emergency);
}

#[test]
fn fallback_stays_pre_approved_when_a_standard_change_covers_it() {
    let mut facts = facts();
    facts.recent_issuances.insert("example.com".into(), 45);
    let report = run(
        &scan("docs-site-dev", TimeDelta::days(20), tuesday()),
        &facts,
        tuesday(),
    );
    assert!(report.use_fallback);
    assert_eq!(report.approval_path, ApprovalPath::PreApproved);
}

#[test]
fn exhausted_acme_budget_without_fallback_is_blocked() {
    let mut facts = facts();
    facts.recent_issuances.insert("example.com".into(), 40);
    facts.keystore_refs.clear();
    let report = run(
        &scan("shop-web-prod", TimeDelta::days(20), tuesday()),
        &facts,
        tuesday(),
    );
    assert!(report.rate_limit_risk);
    assert!(!report.use_fallback);
    assert_eq!(status(&report, CheckName::RateLimit), CheckStatus::Fail);
    assert_eq!(report.approval_path, ApprovalPath::Blocked);
}

#[test]
fn the_ledger_retry_after_duplicates_and_orders_are_each_a_rate_limit_risk() {
    use crate::acme_ledger::AcmeUsage;
    let now = tuesday();
    let cases = [
        (
            AcmeUsage {
                retry_after: Some(now + TimeDelta::minutes(30)),
                ..AcmeUsage::default()
            },
            "Retry-After",
        ),
        (
            AcmeUsage {
                duplicates_this_week: 4,
                ..AcmeUsage::default()
            },
            "exact name set",
        ),
        (
            AcmeUsage {
                orders_last_3_hours: 290,
                ..AcmeUsage::default()
            },
            "new orders",
        ),
    ];
    for (usage, words) in cases {
        let mut facts = facts();
        facts.acme = Some(usage);
        let report = run(
            &scan("shop-web-prod", TimeDelta::days(20), now),
            &facts,
            now,
        );
        assert!(report.rate_limit_risk, "{words}");
        assert_eq!(status(&report, CheckName::RateLimit), CheckStatus::Bypassed);
        assert!(
            reason(&report, CheckName::RateLimit).contains(words),
            "{words}"
        );
    }
    // Within every budget, and a Retry-After already passed: no risk.
    let mut facts = facts();
    facts.acme = Some(AcmeUsage {
        certificates_this_week: 3,
        duplicates_this_week: 3,
        orders_last_3_hours: 289,
        retry_after: Some(now - TimeDelta::minutes(1)),
    });
    let report = run(
        &scan("shop-web-prod", TimeDelta::days(20), now),
        &facts,
        now,
    );
    assert!(!report.rate_limit_risk);
    assert_eq!(status(&report, CheckName::RateLimit), CheckStatus::Pass);
}

#[test]
fn the_last_certificate_within_budget_is_no_risk() {
    let mut facts = facts();
    // Budget 50 - 10 = 40: with 39 issued, one more is the 40th.
    facts.recent_issuances.insert("example.com".into(), 39);
    let report = run(
        &scan("shop-web-prod", TimeDelta::days(20), tuesday()),
        &facts,
        tuesday(),
    );
    assert!(!report.rate_limit_risk);
    assert_eq!(status(&report, CheckName::RateLimit), CheckStatus::Pass);
    assert_eq!(report.approval_path, ApprovalPath::Normal);
}

#[test]
fn idempotency_key_is_stable_per_trigger_and_execution_name_safe() {
    let t = ticket("shop-web-prod", "prod");
    assert_eq!(
        t.idempotency_key(),
        "ticket-inc-46d44a23a9fe1981014de1c831fbcf6d"
    );
    let a = scan("shop web/prod", TimeDelta::days(20), tuesday());
    let b = scan("shop web/prod", TimeDelta::days(20), tuesday());
    let later = scan("shop web/prod", TimeDelta::days(21), tuesday());
    assert_eq!(a.idempotency_key(), b.idempotency_key());
    assert_ne!(a.idempotency_key(), later.idempotency_key());
    let key = a.idempotency_key();
    assert!(key.starts_with("scan-shop-web-prod-"), "{key}");
    let long = scan(&"x".repeat(200), TimeDelta::days(1), tuesday()).idempotency_key();
    for key in [key, long] {
        assert!(key.len() <= 80);
        assert!(key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}

#[test]
fn ticket_keys_are_lossless_over_table_and_sys_id() {
    let with = |number: &str, sys_id: &str, ty: TicketType| {
        let Trigger::Ticket(mut t) = ticket("shop-web-prod", "prod") else {
            unreachable!()
        };
        t.number = number.into();
        t.sys_id = sys_id.into();
        t.ticket_type = ty;
        Trigger::Ticket(t).idempotency_key()
    };
    // Numbers that a character substitution would merge are distinct tickets.
    let keys: BTreeSet<String> = [
        ("INC/0090201", "a1"),
        ("INC.0090201", "a2"),
        ("INC 0090201", "a3"),
        ("INC:0090201", "a4"),
    ]
    .iter()
    .map(|(n, s)| with(n, s, TicketType::Incident))
    .collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    // sys_ids that differ only past 72 characters, or only in unsafe characters.
    let long_a = format!("{}a", "x".repeat(100));
    let long_b = format!("{}b", "x".repeat(100));
    let distinct = [
        with("INC1", &long_a, TicketType::Incident),
        with("INC1", &long_b, TicketType::Incident),
        with("INC1", "ab/c", TicketType::Incident),
        with("INC1", "ab.c", TicketType::Incident),
        with("INC1", "abc", TicketType::Incident),
        with("INC1", "abc", TicketType::Change),
    ];
    let set: BTreeSet<&String> = distinct.iter().collect();
    assert_eq!(set.len(), distinct.len(), "{distinct:?}");
    for key in &distinct {
        assert!(key.len() <= 80, "{key}");
        assert!(key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
    // The same ticket always gets the same key, whatever its number says.
    assert_eq!(
        with("INC1", "abc", TicketType::Incident),
        with("INC2", "abc", TicketType::Incident)
    );
}

#[test]
fn unknown_issuance_count_is_blocked_not_assumed_zero() {
    let mut facts = facts();
    facts.recent_issuances.clear();
    let report = run(
        &scan("shop-web-prod", TimeDelta::days(20), tuesday()),
        &facts,
        tuesday(),
    );
    assert_eq!(status(&report, CheckName::RateLimit), CheckStatus::Fail);
    assert_eq!(report.approval_path, ApprovalPath::Blocked);
}

#[test]
fn missing_fallback_fails_its_check() {
    let mut facts = facts();
    facts
        .keystore_refs
        .remove("keystore:fallback/shop-www-prod");
    let report = run(
        &scan("shop-web-prod", TimeDelta::days(20), tuesday()),
        &facts,
        tuesday(),
    );
    assert_eq!(status(&report, CheckName::FallbackCert), CheckStatus::Fail);
    assert!(reason(&report, CheckName::FallbackCert).contains("not in the keystore"));
    assert_eq!(report.approval_path, ApprovalPath::Blocked);
}

#[test]
fn missing_owner_or_escalation_is_blocked() {
    let text = INVENTORY.replacen("service_owner = \"team-shop@example.com\"\n", "", 1);
    let inventory = Inventory::from_toml_str(&text).unwrap();
    let report = validate(
        &inventory,
        &policy(),
        &scan("shop-web-prod", TimeDelta::days(20), tuesday()),
        &facts(),
        tuesday(),
    );
    assert_eq!(status(&report, CheckName::Ownership), CheckStatus::Fail);
    assert_eq!(reason(&report, CheckName::Ownership), "no service owner");
    assert_eq!(report.approval_path, ApprovalPath::Blocked);
}

#[test]
fn expiry_unknown_is_blocked() {
    let report = run(&ticket("shop-web-prod", "prod"), &facts(), tuesday());
    assert_eq!(status(&report, CheckName::ExpiryKnown), CheckStatus::Fail);
    assert_eq!(report.approval_path, ApprovalPath::Blocked);
}

#[test]
fn scan_finding_not_yet_due_is_blocked_but_a_ticket_may_ask_early() {
    let report = run(
        &scan("shop-web-prod", TimeDelta::days(80), tuesday()),
        &facts(),
        tuesday(),
    );
    assert_eq!(status(&report, CheckName::RenewalDue), CheckStatus::Fail);
    assert!(reason(&report, CheckName::RenewalDue).starts_with("not due"));

    let facts = Facts {
        current_expiry: Some(tuesday() + TimeDelta::days(80)),
        ..facts()
    };
    let report = run(&ticket("shop-web-prod", "prod"), &facts, tuesday());
    assert_eq!(status(&report, CheckName::RenewalDue), CheckStatus::Pass);
    assert_eq!(report.approval_path, ApprovalPath::Normal);
}

#[test]
fn served_fingerprint_other_than_expected_is_blocked() {
    let now = tuesday();
    let mk = |fp: &str| {
        Trigger::Scan(ScanFinding {
            ci: "shop-web-prod".into(),
            observed_expiry: now + TimeDelta::days(20),
            observed_fingerprint: Some(fp.into()),
        })
    };
    let report = run(&mk("sha256:00"), &facts(), now);
    assert_eq!(status(&report, CheckName::Fingerprint), CheckStatus::Fail);
    let same = "5F:1C:4B:2B:9A:0E:7D:36:C8:E2:F4:A1:B7:D9:C0:E3:F6:A8:B2:C4:D6:E8:F0:A1:B3:C5:D7:E9:F1:A2:B3:C4";
    let report = run(&mk(same), &facts(), now);
    assert_eq!(status(&report, CheckName::Fingerprint), CheckStatus::Pass);
}

#[test]
fn a_malformed_fingerprint_fails_its_check_saying_which_and_why() {
    let now = tuesday();
    let scan_serving = |fp: &str| {
        Trigger::Scan(ScanFinding {
            ci: "shop-web-prod".into(),
            observed_expiry: now + TimeDelta::days(20),
            observed_fingerprint: Some(fp.into()),
        })
    };
    let report = run(&scan_serving("sha256:00"), &facts(), now);
    assert_eq!(status(&report, CheckName::Fingerprint), CheckStatus::Fail);
    let why = reason(&report, CheckName::Fingerprint);
    assert!(
        why.contains("served fingerprint") && why.contains("2 hex digits"),
        "{why}"
    );

    let mut inventory = inventory();
    for cert in &mut inventory.certificates {
        cert.expected_fingerprint = Some("not-a-fingerprint".into());
    }
    let served = "5f1c4b2b9a0e7d36c8e2f4a1b7d9c0e3f6a8b2c4d6e8f0a1b3c5d7e9f1a2b3c4";
    let report = validate(&inventory, &policy(), &scan_serving(served), &facts(), now);
    assert_eq!(status(&report, CheckName::Fingerprint), CheckStatus::Fail);
    let why = reason(&report, CheckName::Fingerprint);
    assert!(why.contains("inventory's expected fingerprint"), "{why}");
}

#[test]
fn standard_change_in_window_is_pre_approved() {
    let report = run(
        &scan("api-gateway-staging", TimeDelta::days(20), tuesday()),
        &facts(),
        tuesday(),
    );
    assert_eq!(report.approval_path, ApprovalPath::PreApproved);
    assert_eq!(
        report.standard_change.as_deref(),
        Some("STD-CERT-NONPROD: certificate renewal outside production")
    );
    // Pre-approved is still bound to the window.
    let report = run(
        &scan("api-gateway-staging", TimeDelta::days(20), saturday()),
        &facts(),
        saturday(),
    );
    assert_eq!(report.approval_path, ApprovalPath::Blocked);
}

#[test]
fn blocked_report_yields_no_plan_and_a_passing_one_yields_a_bound_plan() {
    let runbook = Runbook::from_toml_str(RUNBOOK).unwrap();
    let inventory = inventory();
    let cert = inventory.get("shop-www-prod").unwrap();
    let blocked = run(
        &scan("shop-web-prod", TimeDelta::days(20), saturday()),
        &facts(),
        saturday(),
    );
    let err = Plan::build(runbook.reference(), cert, &blocked, None, None).unwrap_err();
    assert_eq!(err.name(), "Blocked");

    let report = run(
        &ticket("shop-web-prod", "prod"),
        &Facts {
            current_expiry: Some(tuesday() + TimeDelta::days(9)),
            ..facts()
        },
        tuesday(),
    );
    let plan = Plan::build(runbook.reference(), cert, &report, Some("INC0012345"), None).unwrap();
    assert_eq!(plan.targets, cert.targets);
    assert_eq!(plan.endpoints, cert.endpoints);
    assert_eq!(plan.ticket.as_deref(), Some("INC0012345"));
    assert_eq!(plan.runbook.sha256, runbook.content_sha256);
    assert_eq!(plan.approval_path, ApprovalPath::Normal);

    let other = inventory.get("docs-dev").unwrap();
    assert_eq!(
        Plan::build(runbook.reference(), other, &report, None, None)
            .unwrap_err()
            .name(),
        "InvalidInput"
    );
}

#[test]
fn the_example_files_parse_and_validate() {
    let inventory = inventory();
    assert_eq!(inventory.certificates.len(), 4);
    let policy = policy();
    let facts = facts();
    let now = tuesday();
    let expected = [
        ("shop-web-prod", ApprovalPath::Normal),
        ("api-gateway-staging", ApprovalPath::PreApproved),
        ("payments-gateway-prod", ApprovalPath::Blocked),
        ("docs-site-dev", ApprovalPath::PreApproved),
    ];
    for (ci, path) in expected {
        let report = validate(
            &inventory,
            &policy,
            &scan(ci, TimeDelta::days(20), now),
            &facts,
            now,
        );
        assert_eq!(report.approval_path, path, "{ci}: {:#?}", report.checks);
    }
    Runbook::from_toml_str(RUNBOOK).unwrap();
}

#[test]
fn report_and_trigger_serialise_with_stable_names() {
    let report = run(
        &scan("shop-web-prod", TimeDelta::hours(2), tuesday()),
        &facts(),
        tuesday(),
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["approval_path"], "emergency");
    assert_eq!(json["checks"][0]["name"], "ci-known");
    assert_eq!(json["checks"][0]["status"], "pass");

    let trigger: Trigger = serde_json::from_value(serde_json::json!({
        "source": "ticket", "number": "CHG0034567", "sys_id": "x", "type": "change",
        "category": "Certificate", "ci": "shop-web-prod", "environment": "prod",
        "requested_by": "dave@example.com", "priority": "3 - Moderate"
    }))
    .unwrap();
    assert_eq!(trigger.ticket_number(), Some("CHG0034567"));
    assert_eq!(trigger.requested_by(), "dave@example.com");
    assert_eq!(
        scan("x", TimeDelta::zero(), tuesday()).requested_by(),
        SCANNER_IDENTITY
    );
}
