//! The versioned renewal policy: thresholds, change windows, standard changes, approval
//! time-outs and ACME rate-limit budgets, and the [`ApprovalPath`]s they tell apart. The file
//! format is documented in `runbooks/README.md`.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, NaiveTime, TimeDelta, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::inventory::{CertObject, Environment, RenewalMethod, TargetKind};
use crate::Error;

/// The whole policy file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The policy version; recorded in every validation report and plan.
    pub version: String,
    /// When a renewal is due and when it is an emergency.
    pub renewal: RenewalThresholds,
    /// Change windows per environment. An environment without a window never gets a
    /// normal or pre-approved change.
    #[serde(default)]
    pub windows: BTreeMap<Environment, ChangeWindow>,
    /// Approval groups and time-outs.
    pub approval: ApprovalPolicy,
    /// Changes pre-approved as standard changes.
    #[serde(default)]
    pub standard_changes: Vec<StandardChange>,
    /// ACME rate-limit budget.
    pub acme: AcmeBudget,
    /// How long verification gives a change to propagate (`[verify]`; defaults when absent).
    #[serde(default)]
    pub verify: VerifySchedule,
}

/// How a change gets approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalPath {
    /// Not allowed to run.
    Blocked,
    /// A pre-approved standard change: runs without asking.
    PreApproved,
    /// A normal change: the certificate's change authority approves, inside the window.
    Normal,
    /// An emergency change (expires in < 24 h or expired): the ECAB approves; the window is
    /// bypassed and flagged.
    Emergency,
}

impl ApprovalPath {
    /// The name used in files, reports and Step Functions `Choice` states.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalPath::Blocked => "blocked",
            ApprovalPath::PreApproved => "pre-approved",
            ApprovalPath::Normal => "normal",
            ApprovalPath::Emergency => "emergency",
        }
    }
}

impl fmt::Display for ApprovalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest approval time-out, minutes: the renewal definition's 48 h `TimeoutSeconds`.
pub const MAX_APPROVAL_MINUTES: u32 = 48 * 60;

/// How long verification gives a deployed certificate to propagate before the old one
/// still being served means the change failed: a first wait of `interval_seconds`, each
/// next one `backoff_percent`/100 times longer up to `max_interval_seconds`, and at most
/// `max_attempts` verifications in all. The defaults (30 s, 10 attempts, ×1.5, 300 s cap)
/// give a load balancer or CDN about 25 minutes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySchedule {
    /// The first wait, seconds.
    #[serde(default = "default_verify_interval")]
    pub interval_seconds: u64,
    /// Verifications in all (the first included).
    #[serde(default = "default_verify_attempts")]
    pub max_attempts: u32,
    /// Growth of each wait over the previous one, in percent (100: constant).
    #[serde(default = "default_verify_backoff")]
    pub backoff_percent: u32,
    /// The longest single wait, seconds.
    #[serde(default = "default_verify_max_interval")]
    pub max_interval_seconds: u64,
}

fn default_verify_interval() -> u64 {
    30
}
fn default_verify_attempts() -> u32 {
    10
}
fn default_verify_backoff() -> u32 {
    150
}
fn default_verify_max_interval() -> u64 {
    300
}

impl Default for VerifySchedule {
    fn default() -> Self {
        VerifySchedule {
            interval_seconds: default_verify_interval(),
            max_attempts: default_verify_attempts(),
            backoff_percent: default_verify_backoff(),
            max_interval_seconds: default_verify_max_interval(),
        }
    }
}

impl VerifySchedule {
    /// The wait before verification number `attempt + 1`, after `attempt` (1-based) saw the
    /// old certificate; `None` when that was the last attempt.
    pub fn wait_after(&self, attempt: u32) -> Option<u64> {
        if attempt == 0 || attempt >= self.max_attempts {
            return None;
        }
        let mut wait = self.interval_seconds as f64;
        for _ in 1..attempt {
            wait *= f64::from(self.backoff_percent) / 100.0;
        }
        Some((wait.round() as u64).min(self.max_interval_seconds).max(1))
    }

    /// The total time given to propagation, seconds.
    pub fn total_seconds(&self) -> u64 {
        (1..self.max_attempts)
            .filter_map(|a| self.wait_after(a))
            .sum()
    }
}

/// When a certificate is due for renewal, and when renewal is an emergency.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewalThresholds {
    /// A planned renewal is due when the certificate expires within this many days.
    pub planned_threshold_days: u32,
    /// Renewal is an emergency when the certificate expires within this many hours (or has
    /// expired). Defaults to 24.
    #[serde(default = "default_emergency_hours")]
    pub emergency_threshold_hours: u32,
}

fn default_emergency_hours() -> u32 {
    24
}

/// A weekly change window in a time zone, with freeze periods that close it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "ChangeWindowFile")]
pub struct ChangeWindow {
    /// The IANA time zone the days and hours are in.
    pub timezone: Tz,
    /// Days of the week the window is open.
    pub days: Vec<Weekday>,
    /// Opening time (inclusive), local.
    pub start: NaiveTime,
    /// Closing time (exclusive), local.
    pub end: NaiveTime,
    /// Freeze periods during which the window is closed.
    pub freezes: Vec<Freeze>,
}

/// A period during which no normal or standard change may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freeze {
    /// Name shown in reasons (e.g. `year-end`).
    pub name: String,
    /// Start (inclusive).
    pub start: DateTime<Utc>,
    /// End (exclusive).
    pub end: DateTime<Utc>,
}

/// Whether a change window is open at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowState {
    /// Open.
    Open,
    /// Closed: outside the weekly days/hours.
    Closed,
    /// Closed by the named freeze.
    Frozen(String),
}

impl ChangeWindow {
    /// Whether the window is open at `now`.
    pub fn state_at(&self, now: DateTime<Utc>) -> WindowState {
        if let Some(freeze) = self.freezes.iter().find(|f| f.start <= now && now < f.end) {
            return WindowState::Frozen(freeze.name.clone());
        }
        let local = now.with_timezone(&self.timezone);
        let time = local.time();
        if self.days.contains(&local.weekday()) && self.start <= time && time < self.end {
            WindowState::Open
        } else {
            WindowState::Closed
        }
    }

    /// A human description, e.g. `Tue,Wed,Thu 09:00-16:00 Europe/Berlin`.
    pub fn describe(&self) -> String {
        let days: Vec<String> = self.days.iter().map(|d| d.to_string()).collect();
        format!(
            "{} {}-{} {}",
            days.join(","),
            self.start.format("%H:%M"),
            self.end.format("%H:%M"),
            self.timezone.name()
        )
    }
}

/// A rule that makes matching renewals pre-approved standard changes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardChange {
    /// Name of the standard change (shown in reports; e.g. the ServiceNow template).
    pub name: String,
    /// Environments it covers.
    pub environments: Vec<Environment>,
    /// Renewal methods it covers.
    pub methods: Vec<RenewalMethod>,
    /// Issuer names it covers; empty means any.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Target kinds it covers (every target must be one); empty means any.
    #[serde(default)]
    pub target_kinds: Vec<TargetKind>,
    /// Whether it also covers switching to the fallback certificate. Defaults to false:
    /// a fallback switch then needs emergency approval.
    #[serde(default)]
    pub covers_fallback: bool,
}

impl StandardChange {
    /// Whether this rule covers a renewal of `cert` (with or without the fallback).
    pub fn covers(&self, cert: &CertObject, use_fallback: bool) -> bool {
        self.environments.contains(&cert.environment)
            && self.methods.contains(&cert.issuer.method)
            && (self.issuers.is_empty() || self.issuers.contains(&cert.issuer.name))
            && (self.target_kinds.is_empty()
                || cert
                    .targets
                    .iter()
                    .all(|t| self.target_kinds.contains(&t.kind)))
            && (!use_fallback || self.covers_fallback)
    }
}

/// Who approves what, and how long an approval request stays open.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalPolicy {
    /// The emergency change advisory board: the identities allowed to approve emergencies.
    pub ecab: Vec<String>,
    /// Time-outs per approval path.
    pub timeouts: ApprovalTimeouts,
    /// The approver directory: which Teams and Slack users (and other id forms) are which
    /// person. Chat decisions are attributed only through it. Empty by default.
    #[serde(default)]
    pub directory: Vec<DirectoryEntry>,
}

/// One person in the approver directory, under every id form they appear with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryEntry {
    /// The identity approvals name (as in `change_authority` and `ecab`), e.g. an e-mail.
    pub identity: String,
    /// Microsoft Teams: the user's Entra ID (AAD) object ids, as the verified activity's
    /// `from.aadObjectId` carries them.
    #[serde(default)]
    pub teams: Vec<String>,
    /// Slack: user ids (`U…`/`W…`), as the verified interaction's `user.id` carries them.
    #[serde(default)]
    pub slack: Vec<String>,
    /// Other forms of the same person (a UPN, a second e-mail, an ITSM user name), so
    /// separation of duties sees through them.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// A chat platform whose user ids the directory maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatPlatform {
    /// Microsoft Teams (Entra object id).
    Teams,
    /// Slack (user id).
    Slack,
}

impl DirectoryEntry {
    fn forms(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.identity)
            .chain(&self.teams)
            .chain(&self.slack)
            .chain(&self.aliases)
    }
}

/// Approval time-outs per path, in minutes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalTimeouts {
    /// How long a pre-approved standard change stays valid before it must start.
    pub standard_minutes: u32,
    /// How long a normal change approval request stays open / an approval stays valid.
    pub normal_minutes: u32,
    /// How long an emergency approval request stays open / an approval stays valid.
    pub emergency_minutes: u32,
}

/// ACME rate-limit budget (Let's Encrypt counts certificates per registered domain per week).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeBudget {
    /// The CA's limit: new certificates per registered domain per rolling week.
    pub certificates_per_registered_domain_per_week: u32,
    /// How many of those certops keeps in reserve and never spends.
    pub safety_margin: u32,
    /// The CA's limit on certificates with the same set of names per rolling week
    /// (default 5, Let's Encrypt's published limit).
    #[serde(default = "default_duplicates_per_week")]
    pub duplicate_certificates_per_week: u32,
    /// The CA's limit on new orders per account per rolling three hours (default 300, Let's
    /// Encrypt's published limit).
    #[serde(default = "default_orders_per_3_hours")]
    pub new_orders_per_account_per_3_hours: u32,
}

fn default_duplicates_per_week() -> u32 {
    5
}

fn default_orders_per_3_hours() -> u32 {
    300
}

impl AcmeBudget {
    /// How many certificates per registered domain per week certops may spend.
    pub fn usable(&self) -> u32 {
        self.certificates_per_registered_domain_per_week
            .saturating_sub(self.safety_margin)
    }

    /// How many duplicate certificates per week certops may spend: the limit less one in
    /// reserve (a duplicate limit is small, so the whole safety margin would leave nothing).
    pub fn usable_duplicates(&self) -> u32 {
        self.duplicate_certificates_per_week.saturating_sub(1)
    }

    /// How many new orders per account per three hours certops may spend: the limit less the
    /// safety margin.
    pub fn usable_orders(&self) -> u32 {
        self.new_orders_per_account_per_3_hours
            .saturating_sub(self.safety_margin)
    }
}

impl Policy {
    /// Parses and checks a policy file; errors name the field.
    pub fn from_toml_str(text: &str) -> Result<Policy, Error> {
        let invalid = |msg: String| Error::InvalidInput(format!("policy: {msg}"));
        let policy: Policy = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if policy.version.trim().is_empty() {
            return Err(invalid("field `version` is empty".into()));
        }
        if policy.renewal.planned_threshold_days == 0 {
            return Err(invalid(
                "field `renewal.planned_threshold_days` must be > 0".into(),
            ));
        }
        if policy.approval.ecab.iter().all(|id| id.trim().is_empty()) {
            return Err(invalid("field `approval.ecab` is empty".into()));
        }
        let t = &policy.approval.timeouts;
        if t.standard_minutes == 0 || t.normal_minutes == 0 || t.emergency_minutes == 0 {
            return Err(invalid("fields `approval.timeouts.*` must be > 0".into()));
        }
        // An approval wait longer than the definition's 48 h execution time-out would be a
        // TimeoutSecondsPath value Step Functions refuses with an uncatchable States.Runtime.
        if [t.standard_minutes, t.normal_minutes, t.emergency_minutes]
            .iter()
            .any(|m| *m > MAX_APPROVAL_MINUTES)
        {
            return Err(invalid(format!(
                "fields `approval.timeouts.*` must be at most {MAX_APPROVAL_MINUTES} minutes (the \
                 execution's 48 h limit)"
            )));
        }
        let v = &policy.verify;
        if v.interval_seconds == 0 || v.max_attempts == 0 || v.backoff_percent < 100 {
            return Err(invalid(
                "fields `verify.interval_seconds` and `verify.max_attempts` must be > 0 and \
                 `verify.backoff_percent` at least 100"
                    .into(),
            ));
        }
        if policy.acme.usable() == 0 {
            return Err(invalid(
                "field `acme.safety_margin` leaves no usable budget".into(),
            ));
        }
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for entry in &policy.approval.directory {
            if entry.identity.trim().is_empty() {
                return Err(invalid(
                    "approval.directory: an entry has an empty `identity`".into(),
                ));
            }
            for form in entry.forms() {
                let key = form.trim().to_ascii_lowercase();
                match seen.insert(key, entry.identity.as_str()) {
                    Some(other) if !other.eq_ignore_ascii_case(&entry.identity) => {
                        return Err(invalid(format!(
                            "approval.directory: \"{form}\" is listed for both \"{other}\" and \"{}\"",
                            entry.identity
                        )))
                    }
                    _ => {}
                }
            }
        }
        for (i, rule) in policy.standard_changes.iter().enumerate() {
            if rule.environments.is_empty() || rule.methods.is_empty() {
                return Err(invalid(format!(
                    "standard_changes[{i}] (\"{}\"): `environments` and `methods` must not be empty",
                    rule.name
                )));
            }
            if rule.methods.contains(&RenewalMethod::VendorManaged) {
                return Err(invalid(format!(
                    "standard_changes[{i}] (\"{}\"): vendor-managed renewals cannot be standard changes",
                    rule.name
                )));
            }
        }
        Ok(policy)
    }

    /// The approval time-out of a path; `None` for `blocked`.
    pub fn approval_timeout(&self, path: ApprovalPath) -> Option<TimeDelta> {
        let t = &self.approval.timeouts;
        let minutes = match path {
            ApprovalPath::Blocked => return None,
            ApprovalPath::PreApproved => t.standard_minutes,
            ApprovalPath::Normal => t.normal_minutes,
            ApprovalPath::Emergency => t.emergency_minutes,
        };
        Some(TimeDelta::minutes(i64::from(minutes)))
    }

    /// The identities allowed to approve a change of `cert` on `path`: the certificate's
    /// change authority for normal changes, the ECAB for emergencies, nobody otherwise.
    pub fn approvers(&self, cert: &CertObject, path: ApprovalPath) -> Vec<String> {
        match path {
            ApprovalPath::Normal => cert.change_authority.clone(),
            ApprovalPath::Emergency => self.approval.ecab.clone(),
            ApprovalPath::Blocked | ApprovalPath::PreApproved => Vec::new(),
        }
    }

    /// The identity of the `platform` user `user_id`, from the approver directory; `None`
    /// for a user the directory does not list.
    pub fn identity_for(&self, platform: ChatPlatform, user_id: &str) -> Option<&str> {
        let user_id = user_id.trim();
        if user_id.is_empty() {
            return None;
        }
        self.approval
            .directory
            .iter()
            .find(|e| {
                let ids = match platform {
                    ChatPlatform::Teams => &e.teams,
                    ChatPlatform::Slack => &e.slack,
                };
                ids.iter().any(|id| id.trim().eq_ignore_ascii_case(user_id))
            })
            .map(|e| e.identity.as_str())
    }

    /// The directory identity behind any of a person's id forms (platform ids, aliases);
    /// `id` itself when the directory does not list it.
    pub fn canonical_identity(&self, id: &str) -> String {
        let needle = id.trim();
        self.approval
            .directory
            .iter()
            .find(|e| e.forms().any(|f| f.trim().eq_ignore_ascii_case(needle)))
            .map(|e| e.identity.clone())
            .unwrap_or_else(|| id.to_string())
    }

    /// The first standard change that covers `cert`, if any.
    pub fn standard_change_for(
        &self,
        cert: &CertObject,
        use_fallback: bool,
    ) -> Option<&StandardChange> {
        self.standard_changes
            .iter()
            .find(|rule| rule.covers(cert, use_fallback))
    }
}

/// The change window as written in the file, before checking.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeWindowFile {
    timezone: String,
    days: Vec<Weekday>,
    start: NaiveTime,
    end: NaiveTime,
    #[serde(default)]
    freeze: Vec<FreezeFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FreezeFile {
    name: String,
    start: DateText,
    end: DateText,
}

/// A TOML offset date-time, written bare or as a quoted RFC 3339 string.
#[derive(Deserialize)]
#[serde(untagged)]
enum DateText {
    Native(toml::value::Datetime),
    Text(String),
}

impl DateText {
    fn parse(&self, field: &str) -> Result<DateTime<Utc>, String> {
        let text = match self {
            DateText::Native(dt) => dt.to_string(),
            DateText::Text(s) => s.clone(),
        };
        DateTime::parse_from_rfc3339(&text)
            .map(|dt| dt.with_timezone(&Utc))
            .map_err(|e| {
                format!("freeze `{field}` \"{text}\" is not an RFC 3339 date-time with offset: {e}")
            })
    }
}

impl TryFrom<ChangeWindowFile> for ChangeWindow {
    type Error = String;

    fn try_from(file: ChangeWindowFile) -> Result<Self, Self::Error> {
        let timezone: Tz = file
            .timezone
            .parse()
            .map_err(|_| format!("unknown IANA time zone \"{}\"", file.timezone))?;
        if file.days.is_empty() {
            return Err("`days` is empty".into());
        }
        if file.start >= file.end {
            return Err(format!(
                "`start` {} must be before `end` {}",
                file.start.format("%H:%M"),
                file.end.format("%H:%M")
            ));
        }
        let mut freezes = Vec::with_capacity(file.freeze.len());
        for f in file.freeze {
            let start = f.start.parse("start")?;
            let end = f.end.parse("end")?;
            if start >= end {
                return Err(format!(
                    "freeze \"{}\": `start` must be before `end`",
                    f.name
                ));
            }
            freezes.push(Freeze {
                name: f.name,
                start,
                end,
            });
        }
        Ok(ChangeWindow {
            timezone,
            days: file.days,
            start: file.start,
            end: file.end,
            freezes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) const POLICY: &str = r#"
version = "2026.12.1"

[renewal]
planned_threshold_days = 30

[windows.prod]
timezone = "Europe/Berlin"
days = ["tue", "wed", "thu"]
start = "09:00"
end = "16:00"
freeze = [{ name = "year-end", start = 2026-12-21T00:00:00+01:00, end = "2027-01-04T00:00:00+01:00" }]

[approval]
ecab = ["erin@example.com"]
timeouts = { standard_minutes = 60, normal_minutes = 1440, emergency_minutes = 30 }

[[standard_changes]]
name = "acme renewal in staging"
environments = ["staging"]
methods = ["acme"]

[acme]
certificates_per_registered_domain_per_week = 50
safety_margin = 10
"#;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn policy_parses_with_version_thresholds_and_budget() {
        let p = Policy::from_toml_str(POLICY).unwrap();
        assert_eq!(p.version, "2026.12.1");
        assert_eq!(p.renewal.emergency_threshold_hours, 24);
        assert_eq!(p.acme.usable(), 40);
        assert_eq!(
            p.approval_timeout(ApprovalPath::Emergency),
            Some(TimeDelta::minutes(30))
        );
        assert_eq!(p.approval_timeout(ApprovalPath::Blocked), None);
    }

    #[test]
    fn window_is_evaluated_in_its_own_time_zone() {
        let p = Policy::from_toml_str(POLICY).unwrap();
        let w = &p.windows[&Environment::Prod];
        // Tuesday 2026-12-01 08:30 UTC is 09:30 in Berlin (CET, +01:00): open.
        assert_eq!(w.state_at(utc(2026, 12, 1, 8, 30)), WindowState::Open);
        // 07:30 UTC is 08:30 in Berlin: closed although 09:00 UTC-ish thinking would say so.
        assert_eq!(w.state_at(utc(2026, 12, 1, 7, 30)), WindowState::Closed);
        // 15:00 UTC is 16:00 Berlin: end is exclusive.
        assert_eq!(w.state_at(utc(2026, 12, 1, 15, 0)), WindowState::Closed);
        // Saturday.
        assert_eq!(w.state_at(utc(2026, 12, 5, 10, 0)), WindowState::Closed);
        assert_eq!(w.describe(), "Tue,Wed,Thu 09:00-16:00 Europe/Berlin");
    }

    #[test]
    fn freeze_closes_the_window() {
        let p = Policy::from_toml_str(POLICY).unwrap();
        let w = &p.windows[&Environment::Prod];
        // Tuesday 2026-12-22 10:00 Berlin, inside the year-end freeze.
        assert_eq!(
            w.state_at(utc(2026, 12, 22, 9, 0)),
            WindowState::Frozen("year-end".into())
        );
    }

    #[test]
    fn unknown_time_zone_and_unknown_field_are_rejected() {
        let bad_tz = POLICY.replace("Europe/Berlin", "Europe/Atlantis");
        let err = Policy::from_toml_str(&bad_tz).unwrap_err().to_string();
        assert!(err.contains("Europe/Atlantis"), "{err}");

        let extra = POLICY.replace("safety_margin = 10", "safety_margin = 10\nburst = 3");
        let err = Policy::from_toml_str(&extra).unwrap_err().to_string();
        assert!(err.contains("unknown field `burst`"), "{err}");
    }

    #[test]
    fn freeze_without_offset_is_rejected() {
        let text = POLICY.replace("2026-12-21T00:00:00+01:00", "2026-12-21T00:00:00");
        let err = Policy::from_toml_str(&text).unwrap_err().to_string();
        assert!(err.contains("RFC 3339"), "{err}");
    }

    #[test]
    fn directory_maps_platform_ids_and_aliases_to_one_identity() {
        let text = format!(
            "{POLICY}\n[[approval.directory]]\nidentity = \"carol@example.com\"\nteams = [\"aad-carol\"]\nslack = [\"U0CAROL\"]\naliases = [\"carol.c@corp.example\"]\n"
        );
        let p = Policy::from_toml_str(&text).unwrap();
        assert_eq!(
            p.identity_for(ChatPlatform::Teams, "AAD-carol"),
            Some("carol@example.com")
        );
        assert_eq!(
            p.identity_for(ChatPlatform::Slack, "U0CAROL"),
            Some("carol@example.com")
        );
        // A Slack id is not a Teams id, and unknown users map to nobody.
        assert_eq!(p.identity_for(ChatPlatform::Teams, "U0CAROL"), None);
        assert_eq!(p.identity_for(ChatPlatform::Slack, "U0MALLORY"), None);
        assert_eq!(
            p.canonical_identity("carol.c@corp.example"),
            "carol@example.com"
        );
        assert_eq!(p.canonical_identity("u0carol"), "carol@example.com");
        assert_eq!(p.canonical_identity("dave@example.com"), "dave@example.com");

        let twice = format!("{text}\n[[approval.directory]]\nidentity = \"mallory@example.com\"\nslack = [\"U0CAROL\"]\n");
        let err = Policy::from_toml_str(&twice).unwrap_err().to_string();
        assert!(err.contains("U0CAROL"), "{err}");
    }

    #[test]
    fn vendor_managed_cannot_be_a_standard_change() {
        let text = POLICY.replace("methods = [\"acme\"]", "methods = [\"vendor-managed\"]");
        let err = Policy::from_toml_str(&text).unwrap_err().to_string();
        assert!(err.contains("vendor-managed"), "{err}");
    }

    #[test]
    fn verification_gives_propagation_minutes_by_default() {
        let v = VerifySchedule::default();
        assert_eq!(v.wait_after(1), Some(30));
        assert_eq!(v.wait_after(2), Some(45));
        assert_eq!(v.wait_after(9), Some(300), "capped");
        assert_eq!(v.wait_after(10), None, "the tenth attempt is the last");
        assert!(v.total_seconds() >= 10 * 60, "{} s", v.total_seconds());
        let quick = VerifySchedule {
            interval_seconds: 1,
            max_attempts: 3,
            backoff_percent: 100,
            max_interval_seconds: 1,
        };
        assert_eq!(
            (
                quick.wait_after(1),
                quick.wait_after(2),
                quick.wait_after(3)
            ),
            (Some(1), Some(1), None)
        );
    }

    #[test]
    fn an_approval_time_out_beyond_the_execution_limit_is_refused() {
        let text = include_str!("../../../runbooks/policy.toml");
        assert!(Policy::from_toml_str(text).is_ok());
        let bad = text.replacen("normal_minutes = 1440", "normal_minutes = 4320", 1);
        assert_ne!(bad, text);
        let e = Policy::from_toml_str(&bad).unwrap_err();
        assert!(e.to_string().contains("at most 2880 minutes"), "{e}");
    }
}
