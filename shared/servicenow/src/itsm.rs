//! [`ServiceNowItsm`]: the [`Itsm`] port on a ServiceNow instance.
//!
//! - Incidents through the Table API; changes opened through the Change Management API
//!   (`/api/sn_chg_rest/change/normal|emergency`, `/change/standard/{template}`) and moved
//!   only along the transitions the instance offers (`/change/{sys_id}/nextstates`), one
//!   step at a time; an approval is recorded through `/change/{sys_id}/approvals`.
//! - Pre-approved renewals are opened from the standard change template named like the
//!   policy's standard change, looked up through `/change/standard/template`.
//! - Idempotent: `open` looks the trigger's correlation id up before creating (opens of one
//!   trigger take turns in a process; across processes the earliest record stands and a
//!   later one is canceled and its correlation id moved aside); every work
//!   note ends in a marker line `[certops:<digest> by=<author> …]` and a note whose digest
//!   is already on the record is not written again; an attachment whose file name is
//!   already on the record is not uploaded again. A write that may have landed before a
//!   timeout is checked for before it is retried, so an outage never duplicates a note.
//! - The marker also carries what ServiceNow has no field for: certops's `Mitigating`
//!   (the record shows In Progress / Implement plus the note saying why) and the approver's
//!   identity and decision time.

use std::time::Duration;

use async_trait::async_trait;
use certops_core::ports::{
    Attachment, Itsm, NewTicket, Ticket, TicketKind, TicketState, TicketUpdate, WorkNote,
};
use certops_core::{check_no_secrets, Error};
use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::http::{Call, Http};
use crate::states::StateMap;

/// What the adapter writes where an instance's choices differ.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// State values per table.
    pub states: StateMap,
    /// Resolution code when certops resolves an incident.
    pub incident_close_code: String,
    /// Close code when certops closes a change.
    pub change_close_code: String,
    /// Close notes on resolve/close.
    pub close_notes: String,
    /// The standard change template (sys_id) a standard change naming no template is
    /// opened from; a named one is looked up by its name.
    pub standard_change_template: Option<String>,
    /// How many times a write that may not have landed is checked and tried again.
    pub write_attempts: u32,
    /// Pause between those tries.
    pub write_backoff: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            states: StateMap::default(),
            incident_close_code: "Solution provided".into(),
            change_close_code: "successful".into(),
            close_notes: "Successful".into(),
            standard_change_template: None,
            write_attempts: 4,
            write_backoff: Duration::from_millis(500),
        }
    }
}

/// The ServiceNow adapter.
#[derive(Debug)]
pub struct ServiceNowItsm {
    http: Http,
    cfg: Behaviour,
    /// Standard change template sys_ids by template name, as looked up.
    templates: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// One open at a time per correlation id in this process (see [`Itsm::open`]).
    opening: tokio::sync::Mutex<
        std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>,
    >,
}

const INCIDENT: &str = "incident";
const CHANGE: &str = "change_request";
const FIELDS: &str = "sys_id,number,sys_class_name,state,type,approval,short_description,description,cmdb_ci,priority,correlation_id,category,u_environment,opened_by";

/// A record as read with `sysparm_display_value=all`.
#[derive(Debug, Clone)]
struct Rec {
    table: &'static str,
    v: Value,
}

fn field_value(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("value")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn field_display(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::Object(o) => o
            .get("display_value")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => field_value(v, k),
    }
}

impl Rec {
    fn val(&self, k: &str) -> String {
        field_value(&self.v, k)
    }
    fn disp(&self, k: &str) -> String {
        field_display(&self.v, k)
    }
    fn sys_id(&self) -> String {
        self.val("sys_id")
    }
}

/// ServiceNow escapes a caret inside an encoded-query value by doubling it.
fn q(value: &str) -> String {
    value.replace('^', "^^")
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|n| n.and_utc())
}

/// The marker line closing every certops work note.
#[derive(Debug, Clone, Default, PartialEq)]
struct Marker {
    digest: String,
    author: String,
    state: Option<String>,
    approved_by: Option<String>,
    approved_at: Option<DateTime<Utc>>,
}

fn token_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_whitespace() || c == ']' {
                '_'
            } else {
                c
            }
        })
        .collect()
}

fn state_name(s: TicketState) -> &'static str {
    match s {
        TicketState::New => "new",
        TicketState::Assess => "assess",
        TicketState::Scheduled => "scheduled",
        TicketState::Implement => "implement",
        TicketState::Mitigating => "mitigating",
        TicketState::Closed => "closed",
        TicketState::Resolved => "resolved",
        TicketState::Canceled => "canceled",
    }
}

impl Marker {
    fn digest_of(author: &str, text: &str) -> String {
        let mut h = sha2::Sha256::new();
        h.update(author.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        hex::encode(h.finalize())[..16].to_string()
    }

    fn line(&self) -> String {
        let mut s = format!("[certops:{} by={}", self.digest, token_safe(&self.author));
        if let Some(st) = &self.state {
            s.push_str(&format!(" state={st}"));
        }
        if let Some(a) = &self.approved_by {
            s.push_str(&format!(" approved_by={}", token_safe(a)));
        }
        if let Some(t) = &self.approved_at {
            s.push_str(&format!(" approved_at={}", t.to_rfc3339()));
        }
        s.push(']');
        s
    }

    /// Splits a journal entry into its text and marker.
    fn split(entry: &str) -> (String, Option<Marker>) {
        let trimmed = entry.trim_end();
        let (text, last) = match trimmed.rsplit_once('\n') {
            Some((t, l)) => (t.to_string(), l),
            None => (String::new(), trimmed),
        };
        let Some(inner) = last
            .trim()
            .strip_prefix("[certops:")
            .and_then(|r| r.strip_suffix(']'))
        else {
            return (entry.to_string(), None);
        };
        let mut parts = inner.split(' ');
        let mut m = Marker {
            digest: parts.next().unwrap_or_default().to_string(),
            ..Marker::default()
        };
        for p in parts {
            match p.split_once('=') {
                Some(("by", v)) => m.author = v.to_string(),
                Some(("state", v)) => m.state = Some(v.to_string()),
                Some(("approved_by", v)) => m.approved_by = Some(v.to_string()),
                Some(("approved_at", v)) => {
                    m.approved_at = DateTime::parse_from_rfc3339(v)
                        .ok()
                        .map(|t| t.with_timezone(&Utc))
                }
                _ => {}
            }
        }
        (text, Some(m))
    }
}

struct Journal {
    text: String,
    at: DateTime<Utc>,
    created_by: String,
    marker: Option<Marker>,
}

impl ServiceNowItsm {
    /// The adapter over an instance client.
    pub fn new(http: Http, cfg: Behaviour) -> ServiceNowItsm {
        ServiceNowItsm {
            http,
            cfg,
            templates: Default::default(),
            opening: Default::default(),
        }
    }

    /// The sys_id of the active standard change template called `name`, through the
    /// Change Management API (`GET /api/sn_chg_rest/change/standard/template` with
    /// `sysparm_query=active=true^name=<name>`); cached for the adapter's life.
    pub async fn standard_template(&self, name: &str) -> Result<String, Error> {
        if let Some(id) = self
            .templates
            .lock()
            .ok()
            .and_then(|m| m.get(name).cloned())
        {
            return Ok(id);
        }
        let v = self
            .http
            .json(&Call::get(
                "/api/sn_chg_rest/change/standard/template",
                vec![
                    ("sysparm_query", format!("active=true^name={}", q(name))),
                    ("sysparm_limit", "2".into()),
                ],
            ))
            .await?;
        let found: Vec<String> = v["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| field_value(r, "sys_id"))
                    .filter(|id| !id.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let id = match found.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(Error::NotFound(format!(
                    "ServiceNow has no active standard change template named '{name}' (the policy's standard change); publish it or rename the policy's [[standard_changes]] entry"
                )))
            }
            _ => {
                return Err(Error::InvalidInput(format!(
                    "ServiceNow has more than one active standard change template named '{name}'; template names must be unique"
                )))
            }
        };
        if let Ok(mut m) = self.templates.lock() {
            m.insert(name.to_string(), id.clone());
        }
        Ok(id)
    }

    fn tables_for(number: &str) -> &'static [&'static str] {
        if number.starts_with("INC") {
            &[INCIDENT]
        } else if number.starts_with("CHG") {
            &[CHANGE]
        } else {
            &[INCIDENT, CHANGE]
        }
    }

    async fn query_one(&self, table: &'static str, query: String) -> Result<Option<Rec>, Error> {
        let v = self
            .http
            .json(&Call::get(
                format!("/api/now/table/{table}"),
                vec![
                    ("sysparm_query", query),
                    ("sysparm_limit", "1".into()),
                    ("sysparm_display_value", "all".into()),
                    ("sysparm_exclude_reference_link", "true".into()),
                    ("sysparm_fields", FIELDS.into()),
                ],
            ))
            .await?;
        Ok(v["result"].as_array().and_then(|a| a.first()).map(|r| Rec {
            table,
            v: r.clone(),
        }))
    }

    async fn find(&self, number: &str) -> Result<Option<Rec>, Error> {
        for table in Self::tables_for(number) {
            if let Some(r) = self
                .query_one(table, format!("number={}", q(number)))
                .await?
            {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    async fn must_find(&self, number: &str) -> Result<Rec, Error> {
        self.find(number)
            .await?
            .ok_or_else(|| Error::NotFound(format!("ServiceNow has no record {number} (deleted?)")))
    }

    async fn find_by_correlation(&self, correlation_id: &str) -> Result<Option<Rec>, Error> {
        for table in [INCIDENT, CHANGE] {
            let query = format!("correlation_id={}^ORDERBYsys_created_on", q(correlation_id));
            if let Some(r) = self.query_one(table, query).await? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// The record opened for `correlation_id`: the earliest created. Any later one (a
    /// concurrent open in another process) is canceled with a note naming the record that
    /// stands, and its correlation id is moved aside in the same write, so every caller
    /// and every later lookup finds one record.
    async fn settle_duplicates(&self, correlation_id: &str) -> Result<Option<Rec>, Error> {
        for table in [INCIDENT, CHANGE] {
            let v = self
                .http
                .json(&Call::get(
                    format!("/api/now/table/{table}"),
                    vec![
                        (
                            "sysparm_query",
                            format!(
                                "correlation_id={}^ORDERBYsys_created_on^ORDERBYnumber",
                                q(correlation_id)
                            ),
                        ),
                        ("sysparm_limit", "20".into()),
                        ("sysparm_display_value", "all".into()),
                        ("sysparm_exclude_reference_link", "true".into()),
                        ("sysparm_fields", FIELDS.into()),
                    ],
                ))
                .await?;
            let recs: Vec<Rec> = v["result"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| Rec {
                            table,
                            v: r.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let Some((keep, later)) = recs.split_first() else {
                continue;
            };
            for dup in later {
                self.retire_duplicate(dup, keep, correlation_id).await?;
            }
            return Ok(Some(keep.clone()));
        }
        Ok(None)
    }

    async fn retire_duplicate(
        &self,
        dup: &Rec,
        keep: &Rec,
        correlation_id: &str,
    ) -> Result<(), Error> {
        let sys_id = dup.sys_id();
        let standing = keep.val("number");
        tracing::warn!(duplicate = %dup.val("number"), %standing, correlation_id, "a concurrent open created a second record; canceling it");
        if dup.table == CHANGE {
            let canceled = self.cfg.states.change_request.canceled;
            if let Err(e) = self.walk_change(&sys_id, canceled).await {
                // The other process may have canceled it between our read and our write.
                if e.is_retryable() || self.change_state_now(&sys_id).await?.0 != canceled {
                    return Err(e);
                }
            }
        } else {
            self.set_incident_state(dup, self.cfg.states.incident.canceled)
                .await?;
        }
        let path = format!("/api/now/table/{}/{sys_id}", dup.table);
        let body = json!({
            "correlation_id": format!("{correlation_id}#duplicate-of-{standing}"),
            "work_notes": format!(
                "certops: canceled — opened concurrently for the same trigger ({correlation_id}) as {standing}, which is the record certops works on."
            ),
        });
        self.write_once(
            "retire duplicate",
            || async {
                let v = self
                    .http
                    .json(&Call::get(
                        path.clone(),
                        vec![("sysparm_fields", "correlation_id".into())],
                    ))
                    .await?;
                Ok(field_value(&v["result"], "correlation_id") != correlation_id)
            },
            || async {
                self.http
                    .send(&Call::write(Method::PATCH, path.clone(), body.clone()))
                    .await
            },
        )
        .await?;
        Ok(())
    }

    async fn journal(&self, sys_id: &str) -> Result<Vec<Journal>, Error> {
        let v = self
            .http
            .json(&Call::get(
                "/api/now/table/sys_journal_field",
                vec![
                    (
                        "sysparm_query",
                        format!("element_id={sys_id}^element=work_notes^ORDERBYsys_created_on"),
                    ),
                    (
                        "sysparm_fields",
                        "value,sys_created_on,sys_created_by".into(),
                    ),
                ],
            ))
            .await?;
        Ok(v["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|j| {
                        let (text, marker) = Marker::split(&field_value(j, "value"));
                        Journal {
                            text,
                            at: parse_time(&field_value(j, "sys_created_on"))
                                .unwrap_or_else(Utc::now),
                            created_by: field_value(j, "sys_created_by"),
                            marker,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn attachment_list(&self, sys_id: &str, name: Option<&str>) -> Result<Vec<Value>, Error> {
        let mut query = format!("table_sys_id={sys_id}");
        if let Some(n) = name {
            query.push_str(&format!("^file_name={}", q(n)));
        }
        query.push_str("^ORDERBYsys_created_on");
        let v = self
            .http
            .json(&Call::get(
                "/api/now/attachment",
                vec![("sysparm_query", query)],
            ))
            .await?;
        Ok(v["result"].as_array().cloned().unwrap_or_default())
    }

    async fn ticket(&self, rec: &Rec) -> Result<Ticket, Error> {
        let sys_id = rec.sys_id();
        let journal = self.journal(&sys_id).await?;
        let mut attachments = Vec::new();
        for a in self.attachment_list(&sys_id, None).await? {
            let id = field_value(&a, "sys_id");
            let bytes = self
                .http
                .send(&Call::get(format!("/api/now/attachment/{id}/file"), vec![]))
                .await?
                .body;
            let content = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            attachments.push(Attachment {
                name: field_value(&a, "file_name"),
                content,
            });
        }
        let kind = match (rec.table, rec.val("type").as_str()) {
            (INCIDENT, _) => TicketKind::Incident,
            (_, "emergency") => TicketKind::EmergencyChange,
            (_, "standard") => TicketKind::StandardChange,
            _ => TicketKind::NormalChange,
        };
        let code: i32 = rec.val("state").parse().unwrap_or(i32::MIN);
        let m = &self.cfg.states;
        let mut state = if rec.table == INCIDENT {
            m.incident_state(code)
        } else {
            m.change_state(code)
        }
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "{} is in state {code}, which the [servicenow.states] map does not name",
                rec.val("number")
            ))
        })?;
        let last_state = journal
            .iter()
            .rev()
            .find_map(|j| j.marker.as_ref().and_then(|m| m.state.clone()));
        let mitigating_code = if rec.table == INCIDENT {
            m.incident_value(TicketState::Mitigating)
        } else {
            m.change_value(TicketState::Mitigating)
        };
        if code == mitigating_code && last_state.as_deref() == Some("mitigating") {
            state = TicketState::Mitigating;
        }
        let approval = journal
            .iter()
            .rev()
            .find_map(|j| j.marker.as_ref().filter(|m| m.approved_by.is_some()));
        Ok(Ticket {
            number: rec.val("number"),
            kind,
            short_description: rec.val("short_description"),
            description: rec.val("description"),
            ci: rec.disp("cmdb_ci"),
            priority: rec.val("priority").parse().unwrap_or(4),
            state,
            correlation_id: rec.val("correlation_id"),
            work_notes: journal
                .iter()
                .map(|j| WorkNote {
                    at: j.at,
                    author: j
                        .marker
                        .as_ref()
                        .map(|m| m.author.clone())
                        .unwrap_or_else(|| j.created_by.clone()),
                    text: j.text.clone(),
                })
                .collect(),
            attachments,
            approved_by: approval.and_then(|m| m.approved_by.clone()),
            approved_at: approval.and_then(|m| m.approved_at),
        })
    }

    /// Tries a write that may land even when its answer is lost: checks `landed` first
    /// and after every transient failure, so the write happens at most once.
    async fn write_once<L, LF, W, WF, T>(
        &self,
        what: &str,
        landed: L,
        write: W,
    ) -> Result<Option<T>, Error>
    where
        L: Fn() -> LF,
        LF: std::future::Future<Output = Result<bool, Error>>,
        W: Fn() -> WF,
        WF: std::future::Future<Output = Result<T, Error>>,
    {
        let mut last = None;
        for attempt in 0..self.cfg.write_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(self.cfg.write_backoff.saturating_mul(attempt)).await;
            }
            match landed().await {
                Ok(true) => return Ok(None),
                Ok(false) => {}
                Err(e) if e.is_retryable() => {
                    last = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            }
            match write().await {
                Ok(t) => return Ok(Some(t)),
                Err(e) if e.is_retryable() => {
                    tracing::warn!(what, error = %e, "ServiceNow write unconfirmed; checking before retrying");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Transient(format!("ServiceNow {what}: no attempt made"))))
    }

    async fn create(&self, t: &NewTicket) -> Result<(), Error> {
        let (impact, urgency) = match t.priority {
            0 | 1 => (1, 1),
            2 => (1, 2),
            3 => (2, 2),
            4 => (2, 3),
            _ => (3, 3),
        };
        let body = json!({
            "short_description": t.short_description,
            "description": t.description,
            "cmdb_ci": t.ci,
            "impact": impact.to_string(),
            "urgency": urgency.to_string(),
            "correlation_id": t.correlation_id,
            "correlation_display": "certops",
        });
        let path = match t.kind {
            TicketKind::Incident => "/api/now/table/incident".to_string(),
            TicketKind::NormalChange => "/api/sn_chg_rest/change/normal".to_string(),
            TicketKind::EmergencyChange => "/api/sn_chg_rest/change/emergency".to_string(),
            TicketKind::StandardChange => {
                let tpl = match (&t.standard_change, &self.cfg.standard_change_template) {
                    (Some(name), _) => self.standard_template(name).await?,
                    (None, Some(sys_id)) => sys_id.clone(),
                    (None, None) => {
                        return Err(Error::InvalidInput(
                            "a pre-approved renewal names no standard change (the policy's [[standard_changes]] name is the ServiceNow template's name), and [servicenow] standard_change_template is not set".into(),
                        ))
                    }
                };
                format!("/api/sn_chg_rest/change/standard/{tpl}")
            }
        };
        self.http
            .send(&Call::write(Method::POST, path, body))
            .await?;
        Ok(())
    }

    async fn add_note(&self, rec: &Rec, text: String) -> Result<(), Error> {
        let sys_id = rec.sys_id();
        let digest = Marker::split(&text).1.map(|m| m.digest).unwrap_or_default();
        self.write_once(
            "work note",
            || async {
                Ok(self
                    .journal(&sys_id)
                    .await?
                    .iter()
                    .any(|j| j.marker.as_ref().map(|m| m.digest.as_str()) == Some(digest.as_str())))
            },
            || {
                let body = json!({"work_notes": text});
                let path = format!("/api/now/table/{}/{sys_id}", rec.table);
                async move {
                    self.http
                        .send(&Call::write(Method::PATCH, path, body))
                        .await
                }
            },
        )
        .await?;
        Ok(())
    }

    async fn attach(&self, rec: &Rec, a: &Attachment) -> Result<(), Error> {
        let sys_id = rec.sys_id();
        let bytes = serde_json::to_vec_pretty(&a.content)
            .map_err(|e| Error::InvalidInput(format!("attachment {}: {e}", a.name)))?;
        self.write_once(
            "attachment",
            || async {
                Ok(!self
                    .attachment_list(&sys_id, Some(&a.name))
                    .await?
                    .is_empty())
            },
            || async {
                self.http
                    .send(&Call {
                        method: Method::POST,
                        path: "/api/now/attachment/file".into(),
                        query: vec![
                            ("table_name", rec.table.to_string()),
                            ("table_sys_id", sys_id.clone()),
                            ("file_name", a.name.clone()),
                        ],
                        json: None,
                        raw: Some((bytes.clone(), "application/json".into())),
                        idempotent: false,
                    })
                    .await
            },
        )
        .await?;
        Ok(())
    }

    async fn change_state_now(&self, sys_id: &str) -> Result<(i32, String), Error> {
        let v = self
            .http
            .json(&Call::get(
                format!("/api/now/table/{CHANGE}/{sys_id}"),
                vec![("sysparm_fields", "state,approval,type".into())],
            ))
            .await?;
        let r = &v["result"];
        Ok((
            field_value(r, "state").parse().unwrap_or(i32::MIN),
            field_value(r, "approval"),
        ))
    }

    /// Moves a change towards `target` one offered transition at a time.
    async fn walk_change(&self, sys_id: &str, target: i32) -> Result<(), Error> {
        let m = &self.cfg.states;
        let c = &m.change_request;
        for _ in 0..12 {
            let (cur, approval) = self.change_state_now(sys_id).await?;
            if cur == target {
                return Ok(());
            }
            let v = self
                .http
                .json(&Call::get(
                    format!("/api/sn_chg_rest/change/{sys_id}/nextstates"),
                    vec![],
                ))
                .await?;
            let v = &v["result"];
            let available: Vec<i32> = v["available_states"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| {
                            s.as_str()
                                .and_then(|s| s.parse().ok())
                                .or_else(|| s.as_i64().map(|n| n as i32))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let next = if available.contains(&target) {
                Some(target)
            } else {
                match (m.change_rank(cur), m.change_rank(target)) {
                    (Some(from), Some(to)) => available
                        .iter()
                        .copied()
                        .filter_map(|s| m.change_rank(s).map(|r| (r, s)))
                        .filter(|(r, _)| *r > from && *r <= to)
                        .max()
                        .map(|(_, s)| s),
                    _ => None,
                }
            };
            let Some(next) = next else {
                if cur == c.authorize && approval != "approved" {
                    return Err(Error::InvalidInput(format!(
                        "change {sys_id} waits for approval in ServiceNow; certops records approvals before scheduling"
                    )));
                }
                return Err(Error::InvalidInput(format!(
                    "ServiceNow offers no transition from state {cur} towards {target} (available: {available:?})"
                )));
            };
            let mut body = json!({"state": next.to_string()});
            if next == c.closed {
                body["close_code"] = json!(self.cfg.change_close_code);
                body["close_notes"] = json!(self.cfg.close_notes);
            }
            let mut call = Call::write(
                Method::PATCH,
                format!("/api/sn_chg_rest/change/{sys_id}"),
                body,
            );
            // Setting a state the record already has is a no-op: safe to repeat.
            call.idempotent = true;
            self.http.send(&call).await?;
        }
        Err(Error::InvalidInput(format!(
            "change {sys_id} did not reach state {target} within 12 transitions"
        )))
    }

    async fn approve_change(
        &self,
        rec: &Rec,
        approver: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<(), Error> {
        let sys_id = rec.sys_id();
        if rec.val("type") == "standard" {
            return Ok(());
        }
        let (_, approval) = self.change_state_now(&sys_id).await?;
        if approval == "approved" {
            return Ok(());
        }
        self.walk_change(&sys_id, self.cfg.states.change_request.authorize)
            .await?;
        let comments = format!(
            "Approved by {approver}{} in certops (recorded by the integration user).",
            at.map(|t| format!(" at {}", t.to_rfc3339()))
                .unwrap_or_default()
        );
        self.write_once(
            "approval",
            || async { Ok(self.change_state_now(&sys_id).await?.1 == "approved") },
            || async {
                self.http
                    .send(&Call::write(
                        Method::PATCH,
                        format!("/api/sn_chg_rest/change/{sys_id}/approvals"),
                        json!({"state": "approved", "comments": comments}),
                    ))
                    .await
            },
        )
        .await?;
        Ok(())
    }

    async fn set_incident_state(&self, rec: &Rec, target: i32) -> Result<(), Error> {
        let i = &self.cfg.states.incident;
        let mut body = json!({"state": target.to_string()});
        if target == i.resolved || target == i.closed {
            body["close_code"] = json!(self.cfg.incident_close_code);
            body["close_notes"] = json!(self.cfg.close_notes);
        }
        let mut call = Call::write(
            Method::PATCH,
            format!("/api/now/table/{INCIDENT}/{}", rec.sys_id()),
            body,
        );
        call.idempotent = true;
        self.http.send(&call).await?;
        Ok(())
    }

    /// The user a reference names, as an identity certops compares (email, else user name).
    async fn user_identity(&self, sys_id: &str, display: &str) -> String {
        if sys_id.len() != 32 {
            return display.to_string();
        }
        let v = self
            .http
            .json(&Call::get(
                format!("/api/now/table/sys_user/{sys_id}"),
                vec![("sysparm_fields", "email,user_name".into())],
            ))
            .await;
        match v {
            Ok(v) => {
                let r = &v["result"];
                [field_value(r, "email"), field_value(r, "user_name")]
                    .into_iter()
                    .find(|s| !s.is_empty())
                    .unwrap_or_else(|| display.to_string())
            }
            Err(_) => display.to_string(),
        }
    }
}

fn refuse_secrets<T: serde::Serialize>(value: &T, root: &str) -> Result<(), Error> {
    let json = serde_json::to_value(value)
        .map_err(|e| Error::InvalidInput(format!("not serializable: {e}")))?;
    check_no_secrets(&json, root)
}

#[async_trait]
impl Itsm for ServiceNowItsm {
    async fn open(&self, ticket: NewTicket) -> Result<Ticket, Error> {
        if ticket.correlation_id.trim().is_empty() {
            return Err(Error::InvalidInput(
                "a ticket needs a correlation id".into(),
            ));
        }
        refuse_secrets(&ticket, "ticket")?;
        let cid = ticket.correlation_id.clone();
        // In this process, opens of one trigger take turns: the second finds the first's
        // record instead of racing it.
        let gate = self
            .opening
            .lock()
            .await
            .entry(cid.clone())
            .or_default()
            .clone();
        let held = gate.lock().await;
        let opened = self
            .write_once(
                "open",
                || async { Ok(self.find_by_correlation(&cid).await?.is_some()) },
                || self.create(&ticket),
            )
            .await;
        // Across processes ServiceNow has no conditional create, so a concurrent open may
        // have created a second record: the earliest stands, later ones are retired.
        let settled = match opened {
            Ok(_) => self.settle_duplicates(&cid).await,
            Err(e) => Err(e),
        };
        drop(held);
        {
            let mut m = self.opening.lock().await;
            if std::sync::Arc::strong_count(&gate) <= 2 {
                m.remove(&cid);
            }
        }
        let rec = settled?
            .ok_or_else(|| Error::Transient(format!("the record for {cid} is not readable yet")))?;
        let t = self.ticket(&rec).await?;
        tracing::info!(number = %t.number, ci = %t.ci, "ServiceNow record opened or found");
        Ok(t)
    }

    async fn get(&self, number: &str) -> Result<Option<Ticket>, Error> {
        match self.find(number).await? {
            Some(rec) => Ok(Some(self.ticket(&rec).await?)),
            None => Ok(None),
        }
    }

    async fn update(
        &self,
        number: &str,
        author: &str,
        update: TicketUpdate,
    ) -> Result<Ticket, Error> {
        refuse_secrets(&update, "update")?;
        refuse_secrets(&author, "author")?;
        let rec = self.must_find(number).await?;
        if let Some(a) = &update.attachment {
            self.attach(&rec, a).await?;
        }
        if let (Some(approver), CHANGE) = (&update.approved_by, rec.table) {
            self.approve_change(&rec, approver, update.approved_at)
                .await?;
        }
        let note = match (&update.work_note, update.state) {
            (Some(n), _) => Some(n.clone()),
            (None, Some(TicketState::Mitigating)) => Some(
                "certops: Mitigating — the change is in place but needs a human to finish it; see the notes above.".to_string(),
            ),
            (None, _) if update.approved_by.is_some() => Some("certops: approval recorded.".to_string()),
            _ => None,
        };
        if let Some(text) = note {
            let marker = Marker {
                digest: Marker::digest_of(author, &text),
                author: author.to_string(),
                state: update.state.map(|s| state_name(s).to_string()),
                approved_by: update.approved_by.clone(),
                approved_at: update.approved_at,
            };
            self.add_note(&rec, format!("{text}\n{}", marker.line()))
                .await?;
        }
        if let Some(s) = update.state {
            let m = &self.cfg.states;
            if rec.table == INCIDENT {
                let target = m.incident_value(s);
                if rec.val("state").parse::<i32>().ok() != Some(target) {
                    self.set_incident_state(&rec, target).await?;
                }
            } else if let Some(target) = m.change_value_for(&rec.val("type"), s) {
                self.walk_change(&rec.sys_id(), target).await?;
            }
        }
        let rec = self.must_find(number).await?;
        self.ticket(&rec).await
    }

    async fn read_record(&self, number: &str) -> Result<Option<Value>, Error> {
        let Some(rec) = self.find(number).await? else {
            return Ok(None);
        };
        let opened_by = self
            .user_identity(&rec.val("opened_by"), &rec.disp("opened_by"))
            .await;
        let class = match rec.val("sys_class_name") {
            c if c.is_empty() => rec.table.to_string(),
            c => c,
        };
        Ok(Some(json!({
            "number": rec.val("number"),
            "sys_id": rec.sys_id(),
            "sys_class_name": class,
            "category": rec.val("category"),
            "cmdb_ci": rec.disp("cmdb_ci"),
            "u_environment": Some(rec.val("u_environment")).filter(|e| !e.is_empty()),
            "priority": rec.val("priority"),
            "opened_by": opened_by,
            "correlation_id": rec.val("correlation_id"),
            "short_description": rec.val("short_description"),
            "state": rec.val("state"),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_through_a_journal_entry() {
        let at = DateTime::parse_from_rfc3339("2026-12-07T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let m = Marker {
            digest: Marker::digest_of("step:itsm-update", "Approved by dana"),
            author: "step:itsm-update".into(),
            state: Some("scheduled".into()),
            approved_by: Some("dana@example.com".into()),
            approved_at: Some(at),
        };
        let entry = format!("Approved by dana\nsecond line\n{}", m.line());
        let (text, parsed) = Marker::split(&entry);
        assert_eq!(text, "Approved by dana\nsecond line");
        assert_eq!(parsed, Some(m));
        let (text, none) = Marker::split("a note a human wrote");
        assert_eq!((text.as_str(), none), ("a note a human wrote", None));
    }

    #[test]
    fn query_values_escape_carets() {
        assert_eq!(q("scan:a^b"), "scan:a^^b");
    }
}
