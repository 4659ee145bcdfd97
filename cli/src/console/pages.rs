//! The console's HTML, rendered on the server with `maud` (templates checked
//! at compile time, every interpolation escaped). No inline script or style:
//! the strict Content-Security-Policy allows only the console's own assets.

use super::graph;
use super::views::{
    Approvals, Certificates, EndpointProbe, ExecutionDetail, ExecutionList, ExecutionRow, Scans,
};
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

/// Which tab is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// Executions (list and one).
    Executions,
    /// Approvals.
    Approvals,
    /// Certificates.
    Certificates,
    /// Scans.
    Scans,
}

/// Who is signed in, for the frame.
pub struct Viewer<'a> {
    /// Account name.
    pub user: &'a str,
    /// CSRF token for forms.
    pub csrf: &'a str,
}

/// Percent-encodes a path segment.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn duration(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h {:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

fn status_pill(status: &str) -> Markup {
    html! { span class={"pill s-" (status.to_lowercase())} { (status) } }
}

/// The frame every signed-in page shares.
pub fn frame(title: &str, tab: Tab, viewer: &Viewer, live: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · certops" }
                link rel="icon" href="/console/assets/favicon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body data-live=[live] {
                header class="top" {
                    a class="brand" href="/console/executions" { "certops" }
                    nav {
                        a href="/console/executions" class=[(tab == Tab::Executions).then_some("on")] { "Executions" }
                        a href="/console/approvals" class=[(tab == Tab::Approvals).then_some("on")] { "Approvals" }
                        a href="/console/certificates" class=[(tab == Tab::Certificates).then_some("on")] { "Certificates" }
                        a href="/console/scans" class=[(tab == Tab::Scans).then_some("on")] { "Scans" }
                    }
                    form class="signout" method="post" action="/console/logout" {
                        span class="who" { "Signed in as " strong { (viewer.user) } }
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        button type="submit" { "Sign out" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The sign-in page (also the answer to any page without a session).
pub fn login(csrf: &str, message: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Sign in · certops" }
                link rel="icon" href="/console/assets/favicon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body class="signin" {
                form class="card signin-form" method="post" action="/console/login" {
                    h1 { "certops console" }
                    p class="muted" { "Sign in with a local account (" code { "certops user add NAME" } ")." }
                    @if let Some(m) = message { p class="alert" role="alert" { (m) } }
                    input type="hidden" name="csrf" value=(csrf);
                    label { "Account" input type="text" name="username" autocomplete="username" required autofocus; }
                    label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                    button type="submit" { "Sign in" }
                }
            }
        }
    }
}

/// A page that only says why something was refused.
pub fn refused(title: &str, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { (title) " · certops" }
                link rel="icon" href="/console/assets/favicon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/console/assets/console.css"; }
            body class="signin" { div class="card" { h1 { (title) } p class="alert" role="alert" { (message) } p { a href="/console/executions" { "Back to the console" } } } }
        }
    }
}

fn execution_link(r: &ExecutionRow) -> String {
    format!("/console/executions/{}", seg(&r.name))
}

/// The Executions page.
pub fn executions(list: &ExecutionList) -> Markup {
    let statuses = ["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"];
    let q = list.q.clone().unwrap_or_default();
    let query = |page: usize| {
        let mut parts = vec![format!("page={page}")];
        if let Some(s) = &list.status {
            parts.push(format!("status={}", seg(s)));
        }
        if let Some(q) = &list.q {
            parts.push(format!("q={}", seg(q)));
        }
        format!("/console/executions?{}", parts.join("&"))
    };
    html! {
        h1 { "Executions" }
        form class="filters" method="get" action="/console/executions" {
            label { "Status "
                select name="status" {
                    option value="" selected[list.status.is_none()] { "any" }
                    @for s in statuses { option value=(s) selected[list.status.as_deref() == Some(s)] { (s) } }
                }
            }
            label { "Search " input type="search" name="q" value=(q) placeholder="ticket, certificate or name"; }
            button type="submit" { "Filter" }
            span class="muted" { (list.total) " execution(s)" }
        }
        table class="list" id="executions" {
            thead { tr { th { "Status" } th { "Started" } th { "Duration" } th { "Ticket" } th { "Certificate" } th { "Path" } th { "Outcome" } th { "Execution" } } }
            tbody {
                @for r in &list.executions {
                    tr data-execution=(r.name) data-status=(r.status) {
                        td { (status_pill(&r.status)) }
                        td { (when(&r.started)) }
                        td { (duration(r.duration_ms)) }
                        td { (r.ticket.clone().unwrap_or_else(|| "-".into())) }
                        td { (r.certificate.clone().unwrap_or_else(|| "-".into())) }
                        td { (r.path.clone().unwrap_or_else(|| "-".into())) }
                        td { (r.outcome) }
                        td class="name" { a href=(execution_link(r)) { (r.name) } }
                    }
                }
                @if list.executions.is_empty() { tr { td colspan="8" class="muted" { "No execution matches." } } }
            }
        }
        nav class="pager" {
            @if list.page > 1 { a href=(query(list.page - 1)) rel="prev" { "← newer" } }
            span { "page " (list.page) " of " (list.pages) }
            @if list.page < list.pages { a href=(query(list.page + 1)) rel="next" { "older →" } }
        }
    }
}

fn pretty(v: &serde_json::Value) -> String {
    let v = match v {
        serde_json::Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| v.clone()),
        other => other.clone(),
    };
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// The One-execution page.
pub fn execution(d: &ExecutionDetail, def: &graph::Definition, layout: &graph::Layout) -> Markup {
    let e = &d.execution;
    html! {
        p class="crumbs" { a href="/console/executions" { "Executions" } " / " (e.name) }
        h1 { (status_pill(&e.status)) " " (e.name) }
        dl class="facts" {
            dt { "Outcome" } dd { (e.outcome) }
            dt { "Started" } dd { (when(&e.started)) }
            dt { "Duration" } dd { (duration(e.duration_ms)) }
            dt { "Ticket" } dd { (e.ticket.clone().unwrap_or_else(|| "-".into()))
                @if let Some(t) = &d.ticket { " [" (format!("{:?}", t.state)) "]"
                    @if let Some(a) = &t.approved_by { " · approved by " strong class="approved-by" { (a) } } } }
            dt { "Certificate" } dd { (e.certificate.clone().unwrap_or_else(|| "-".into())) }
            dt { "Path" } dd { (e.path.clone().unwrap_or_else(|| "-".into())) }
            @if let Some(err) = &d.error { dt { "Error" } dd class="bad" { (err) ": " (d.cause.clone().unwrap_or_default()) } }
            dt { "Evidence" } dd { a href=(d.evidence_url) download { "Download the evidence bundle (JSON)" } }
        }
        div class="split" {
            section class="graph-pane" {
                h2 { "State machine" }
                p class="legend" { span class="k taken" { "taken" } span class="k failed" { "failed" } span class="k current" { "running" } span class="k" { "not taken" } }
                div class="graph-wrap" { (graph::svg(def, layout, &d.path)) }
                h3 { "Time per state" }
                table class="list compact" id="durations" {
                    thead { tr { th { "State" } th { "Entered" } th { "Retries" } th { "Time" } th { "Result" } } }
                    tbody {
                        @for s in &d.path.states {
                            tr data-state=(s.name) {
                                td { (s.name) } td { (s.entered) } td { (s.retries) } td { (duration(s.duration_ms)) }
                                td { @if s.failed { span class="bad" { "failed: " (s.error.clone().unwrap_or_default()) } } @else if s.current { "running" } @else { "ok" } }
                            }
                        }
                    }
                }
            }
            section class="history-pane" {
                h2 { "Event history" }
                p class="muted" { (d.events.len()) " events, as GetExecutionHistory returns them. Select a state in the graph to find its events." }
                table class="list compact" id="history" {
                    thead { tr { th { "ID" } th { "Type" } th { "State" } th { "Details" } } }
                    tbody {
                        @for ev in &d.events {
                            @let ty = ev.event["type"].as_str().unwrap_or_default();
                            tr data-state=[ev.state.as_deref()] class=[ty.contains("Failed").then_some("bad")] {
                                td { (ev.event["id"]) }
                                td { (ty) }
                                td { (ev.state.clone().unwrap_or_default()) }
                                td {
                                    @if let Some(obj) = ev.event.as_object() {
                                        @for (k, v) in obj {
                                            @if k.ends_with("EventDetails") {
                                                @if let Some(det) = v.as_object() {
                                                    @for (dk, dv) in det {
                                                        @if dk == "input" || dk == "output" || dk == "cause" || dk == "parameters" {
                                                            details { summary { (dk) } pre { (pretty(dv)) } }
                                                        } @else if !dk.ends_with("Details") {
                                                            div class="kv" { span class="k" { (dk) } " " (dv.as_str().map(str::to_string).unwrap_or_else(|| dv.to_string())) }
                                                        }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Audit chain "
                @if d.audit.verified { span class="pill s-succeeded" id="audit-verdict" { "verified" } }
                @else { span class="pill s-failed" id="audit-verdict" { "BROKEN" } } }
            @if let Some(p) = &d.audit.problem { p class="alert" { (p) } }
            table class="list compact" id="audit" {
                thead { tr { th { "#" } th { "At" } th { "Kind" } th { "Actor" } th { "Summary" } th { "Hash" } } }
                tbody {
                    @for r in &d.audit.records {
                        tr {
                            td { (r.seq) } td { (when(&r.at)) }
                            td { (serde_json::to_value(r.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()) }
                            td { (r.actor) }
                            td { details { summary { "summary" } pre { (pretty(&r.summary)) } } }
                            td class="mono" title=(r.hash) { (r.hash.get(..12).unwrap_or(&r.hash)) "…" }
                        }
                    }
                }
            }
        }
    }
}

/// The Approvals page; `notice` says what the last decision did (or why it was refused).
pub fn approvals(a: &Approvals, viewer: &Viewer, notice: Option<(bool, &str)>) -> Markup {
    html! {
        h1 { "Approvals" }
        p class="muted" { "Changes waiting for " strong { (a.user) } ". Your decision goes through the same checks as a Teams or Slack card: separation of duties, change authority, expiry, plan hash, single use." }
        @if let Some((ok, text)) = notice {
            p class=(if ok { "notice" } else { "alert" }) role="alert" id="decision-result" { (text) }
        }
        @if a.pending.is_empty() { p class="card muted" id="nothing-pending" { "Nothing waits for you." } }
        @for p in &a.pending {
            article class="card approval" data-approval=(p.approval_id) {
                h2 { (p.cert) " " span class={"pill path-" (p.path)} { (p.path) @if p.fallback { " · fallback" } } }
                p { (p.summary) }
                dl class="facts" {
                    dt { "Approval" } dd class="mono" { (p.approval_id) }
                    dt { "Ticket" } dd { (p.ticket) }
                    dt { "Execution" } dd { @if let Some(n) = &p.execution_name { a href={"/console/executions/" (seg(n))} { (n) } } @else { (p.execution) } }
                    dt { "Requested by" } dd { (p.requested_by) }
                    dt { "Approvers" } dd { (p.approvers.join(", ")) }
                    dt { "Expires" } dd { (when(&p.expires_at)) }
                    dt { "Plan hash" } dd class="mono" { (p.plan_hash) }
                    @if let Some(plan) = &p.plan {
                        dt { "Environment" } dd { (plan["environment"].as_str().unwrap_or("-")) }
                        dt { "Window" } dd { (p.window.clone().unwrap_or_else(|| "none".into())) }
                        dt { "SANs" } dd { (plan["sans"].as_array().map(|s| s.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                        dt { "Targets" } dd { (plan["targets"].as_array().map(|s| s.iter().filter_map(|x| x["id"].as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                        dt { "Issuer" } dd { (plan["issuer"]["name"].as_str().unwrap_or("-")) " (" (plan["issuer"]["method"].as_str().unwrap_or("-")) ")" }
                        dt { "Runbook" } dd { (plan["runbook"]["id"].as_str().unwrap_or("-")) " " (plan["runbook"]["version"].as_str().unwrap_or("")) }
                    }
                }
                h3 { "What changes" }
                table class="list compact" {
                    thead { tr { th { "" } th { "Now (served)" } th { "After" } } }
                    tbody { @for c in &p.changes { tr { td { (c.field) } td { (c.now) } td { (c.after) } } } }
                }
                @if let Some(plan) = &p.plan { details { summary { "The exact plan" } pre { (pretty(plan)) } } }
                form class="decide" method="post" action={"/console/approvals/" (seg(&p.approval_id))} {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    label { "Comment " input type="text" name="comment" maxlength="500" placeholder="optional, goes on the record"; }
                    button type="submit" name="verdict" value="approve" class="approve" { "Approve as " (a.user) }
                    button type="submit" name="verdict" value="reject" class="reject" { "Reject" }
                }
            }
        }
    }
}

fn probe_cell(p: &EndpointProbe) -> Markup {
    html! {
        div class="probe" {
            span class="mono" { (p.endpoint) } " "
            @match (&p.status, &p.error) {
                (Some(s), _) => { span class={"pill s-" (if s == "ok" { "succeeded" } else { "failed" })} { (s) }
                    " " span class="mono" { (p.fingerprint.as_deref().and_then(|f| f.get(..16)).unwrap_or("")) "…" }
                    " chain " (if p.chain_valid == Some(true) { "valid" } else { "INVALID" }) }
                (None, Some(e)) => { span class="bad" { (e) } }
                (None, None) => { span class="muted" { "not scanned yet" } }
            }
            @if let Some(t) = &p.observed_at { " " span class="muted" { "(" (when(t)) ")" } }
        }
    }
}

/// The Certificates page with its expiry timeline.
pub fn certificates(c: &Certificates) -> Markup {
    html! {
        h1 { "Certificates" }
        h2 { "Expiry timeline" }
        (timeline(c))
        table class="list" id="certificates" {
            thead { tr { th { "Certificate" } th { "Days to expiry" } th { "Owner" } th { "Env" } th { "Issuer" } th { "Targets" } th { "Last probe per endpoint" } } }
            tbody {
                @for r in &c.certificates {
                    tr data-cert=(r.id) {
                        td { strong { (r.id) } br; span class="muted" { (r.common_name) } }
                        td {
                            @match r.days_to_expiry {
                                Some(d) => { span class=(if d < 0 { "bad" } else if d < 14 { "warn" } else { "" }) { (d) " d" } br; span class="muted" { "scan " (r.scanned_at.as_ref().map(when).unwrap_or_default()) } }
                                None => { span class="muted" { "no expiry from the latest scan" }
                                    @if let Some(v) = &r.last_verified_expiry { br; span { "last verified: " (v.format("%Y-%m-%d")) " (" ((*v - c.now).num_days()) " d)" } } }
                            }
                        }
                        td { (r.owner.clone().unwrap_or_else(|| "-".into())) }
                        td { (r.environment) }
                        td { (r.issuer) }
                        td { (r.targets.join(", ")) }
                        td { @for p in &r.endpoints { (probe_cell(p)) } }
                    }
                }
            }
        }
    }
}

/// An SVG timeline: one row per certificate, a bar from now to its expiry
/// (latest scan, or the last verified expiry drawn hollow), 0–120 days.
fn timeline(c: &Certificates) -> Markup {
    let span_days = 120.0;
    let (left, right, row_h) = (180.0, 20.0, 22.0);
    let width = 900.0;
    let plot = width - left - right;
    let height = 30.0 + row_h * c.certificates.len() as f64 + 10.0;
    let x_of = |days: f64| left + plot * (days.clamp(-10.0, span_days) + 10.0) / (span_days + 10.0);
    html! {
        svg class="timeline" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="Expiry timeline"
            viewBox={"0 0 " (width) " " (height)} width=(width) height=(height) {
            @for d in [0, 14, 30, 60, 90, 120] {
                line class="tick" x1=(x_of(d as f64)) x2=(x_of(d as f64)) y1="18" y2=(height - 6.0) {}
                text class="tick-label" x=(x_of(d as f64)) y="12" text-anchor="middle" { (d) " d" }
            }
            @for (i, r) in c.certificates.iter().enumerate() {
                @let y = 24.0 + row_h * i as f64;
                text class="row-label" x=(left - 8.0) y=(y + 12.0) text-anchor="end" { (r.id) }
                @let known = r.expires_at.map(|e| (e, true)).or(r.last_verified_expiry.map(|e| (e, false)));
                @if let Some((e, scanned)) = known {
                    @let days = (e - c.now).num_hours() as f64 / 24.0;
                    @let x0 = x_of(0.0);
                    @let x1 = x_of(days);
                    rect class=(bar_class(scanned, days))
                        x=(x0.min(x1)) y=(y) width=((x1 - x0).abs().max(2.0)) height=(row_h - 6.0) rx="3" {
                        title { (r.id) ": " (e.format("%Y-%m-%d %H:%M")) " (" (format!("{days:.1}")) " days" (if scanned { ", latest scan" } else { ", last verified by an execution" }) ")" }
                    }
                } @else {
                    text class="muted" x=(left + 4.0) y=(y + 12.0) { "unknown" }
                }
            }
        }
    }
}

fn bar_class(scanned: bool, days: f64) -> String {
    let mut c = String::from("bar");
    if !scanned {
        c.push_str(" hollow");
    }
    if days < 0.0 {
        c.push_str(" expired");
    } else if days < 14.0 {
        c.push_str(" soon");
    }
    c
}

/// The Scans page.
pub fn scans(s: &Scans) -> Markup {
    html! {
        h1 { "Scans" }
        p class="muted" { "The latest scheduled expiry scans (" code { "certops serve --scan-every" } "): what each found and which workflows it started." }
        @if s.scans.is_empty() { p class="card muted" { "No scheduled scan has run yet." } }
        @for r in &s.scans {
            article class="card scan" {
                h2 { (when(&r.started_at)) " "
                    @if r.error.is_some() { span class="pill s-failed" { "failed" } } @else { span class="pill s-succeeded" { "done" } } }
                p { (r.objects) " certificate object(s), " (r.observations) " endpoint observation(s), " (r.findings.len()) " finding(s), "
                    (r.workflows.iter().filter(|w| !w.duplicate).count()) " workflow(s) started; took " (duration((r.finished_at - r.started_at).num_milliseconds())) "." }
                @if let Some(e) = &r.error { p class="alert" { (e) } }
                @if !r.findings.is_empty() {
                    table class="list compact" {
                        thead { tr { th { "CI" } th { "Observed expiry" } th { "Fingerprint" } th { "Workflow" } } }
                        tbody {
                            @for f in &r.findings {
                                @let w = r.workflows.iter().find(|w| w.ci == f.ci);
                                tr {
                                    td { (f.ci) } td { (when(&f.observed_expiry)) }
                                    td class="mono" { (f.observed_fingerprint.as_deref().and_then(|x| x.get(..16)).unwrap_or("-")) }
                                    td { @match w {
                                        Some(w) => { a href={"/console/executions/" (seg(w.execution.rsplit(':').next().unwrap_or(&w.execution)))} { (w.execution.rsplit(':').next().unwrap_or(&w.execution)) } @if w.duplicate { " (already started)" } }
                                        None => { span class="bad" { "not started" } }
                                    } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
