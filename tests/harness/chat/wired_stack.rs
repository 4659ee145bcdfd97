//! A certops stack on the embedded default whose chat port is Teams and Slack, pointed at
//! the emulators, with the approver directory in its policy and `POST /teams/messages` and
//! `POST /slack/interactions` served on a loopback port — the same routes `certops serve`
//! mounts, deciding through approval-callback's handler.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use certops_chatops::inbound::{ChatApprovals, ChatDecision, DecisionPath};
use certops_core::integrations::Integrations;
use certops_core::ports::{Clock, Table, Ticket};
use certops_core::{AuditRecord, Trigger};

use super::bot_framework::{self, BotFramework};
use super::slack_api::{self, SlackApi};
use super::Served;
use crate::world::{world_with, TestClock, World};

/// The bot's client secret in the tests.
pub const BOT_SECRET: &str = "bot-client-secret-for-tests";
/// The Slack app's signing secret in the tests.
pub const SIGNING_SECRET: &str = "slack-signing-secret-for-tests";

/// Who is who: (identity, Entra object id, Slack user id).
pub const PEOPLE: &[(&str, &str, &str)] = &[
    ("cab-alice@example.com", "aad-alice-0001", "U0ALICE"),
    ("olivia@example.com", "aad-olivia-0002", "U0OLIVIA"),
    ("mallory@example.com", "aad-mallory-0003", "U0MALLORY"),
];

/// The wired stack and its emulators.
pub struct ChatWorld {
    /// The stack (a world whose change authority is olivia + cab-alice).
    pub world: World,
    /// Microsoft's side.
    pub bot: BotFramework,
    /// Slack's Web API.
    pub slack: SlackApi,
    /// certops' chat routes.
    pub certops: Served,
    /// What serves them (for [`ChatApprovals::sync_cards`]).
    pub approvals: Arc<ChatApprovals>,
    /// The clock Slack's ±300 s window is judged by (pinned).
    pub wall: Arc<TestClock>,
    /// An HTTP client.
    pub http: reqwest::Client,
}

fn secret_file(dir: &Path, name: &str, value: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, value).expect("write secret");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    format!("file:{}", p.display())
}

/// approval-callback's handler as the chat routes' decision path (what `certops serve` uses).
pub fn decision_path() -> DecisionPath {
    Arc::new(|deps, d: ChatDecision| {
        Box::pin(async move {
            certops_fn_approval_callback::handle(
                &deps,
                certops_fn_approval_callback::Callback {
                    approval_id: d.approval_id,
                    approver: d.approver,
                    verdict: d.verdict,
                    comment: None,
                },
            )
            .await
            .map(|decided| decided.status)
        })
    })
}

/// Starts the emulators and a stack wired to them, in `dir`.
pub async fn chat_world(dir: &Path) -> ChatWorld {
    let bot = BotFramework::start(BOT_SECRET).await;
    let slack = SlackApi::start().await;
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).expect("secrets dir");
    let integrations = format!(
        r#"[teams]
app_id = "{app}"
app_password = "{pw}"
token_url = "{token}"
service_url = "{svc}"
conversation_id = "{conv}"
openid_metadata_url = "{meta}"

[slack]
bot_token = "{bt}"
signing_secret = "{ss}"
channel = "{chan}"
api_url = "{api}"
team_id = "{team}"
"#,
        app = bot_framework::APP_ID,
        pw = secret_file(&secrets, "teams.secret", BOT_SECRET),
        token = bot.token_url(),
        svc = bot.service_url(),
        conv = bot_framework::CONVERSATION,
        meta = bot.metadata_url(),
        bt = secret_file(&secrets, "slack-bot.secret", slack_api::BOT_TOKEN),
        ss = secret_file(&secrets, "slack-signing.secret", SIGNING_SECRET),
        chan = slack_api::CHANNEL,
        api = slack.api_url(),
        team = slack_api::TEAM,
    );
    let mut directory = String::new();
    for (id, aad, slack_id) in PEOPLE {
        directory.push_str(&format!(
            "[[approval.directory]]\nidentity = \"{id}\"\nteams = [\"{aad}\"]\nslack = [\"{slack_id}\"]\n"
        ));
    }
    let world = world_with(
        &dir.join("data"),
        None,
        &directory,
        Integrations::from_toml_str(&integrations).expect("integrations"),
    )
    .await;
    let wall = TestClock::now_real();
    let approvals = ChatApprovals::new(
        world.stack.deps.clone(),
        Arc::new(certops_adapters::LocalSecrets),
        decision_path(),
    )
    .expect("chat routes")
    .with_wall_clock(wall.clone());
    let approvals = Arc::new(approvals);
    let certops = Served::start(certops_chatops::routes::router(approvals.clone())).await;
    ChatWorld {
        world,
        bot,
        slack,
        certops,
        approvals,
        wall,
        http: reqwest::Client::new(),
    }
}

impl ChatWorld {
    /// Starts a renewal that needs approval (a scan finding on the prod certificate);
    /// returns the execution.
    pub async fn start_renewal(&self) -> String {
        self.world
            .stack
            .trigger(Trigger::Scan(self.world.finding()))
            .await
            .expect("trigger")
            .execution
    }

    /// Starts a renewal requested through a ServiceNow change opened by `requester`.
    pub async fn start_renewal_requested_by(&self, requester: &str) -> String {
        use certops_core::ports::{Itsm, NewTicket, TicketKind};
        let ticket = self
            .world
            .stack
            .adapters
            .tickets
            .open(NewTicket {
                kind: TicketKind::NormalChange,
                short_description: "renew shop".into(),
                description: "renew".into(),
                ci: "shop-web-prod".into(),
                priority: 3,
                correlation_id: "sn-chg-chat".into(),
                standard_change: None,
            })
            .await
            .expect("ticket");
        let payload = serde_json::json!({"number": ticket.number, "sys_id": "x1", "sys_class_name": "change_request",
            "category": "Certificate", "cmdb_ci": "shop-web-prod", "u_environment": "prod",
            "opened_by": requester, "priority": "3"});
        let trigger = certops_fn_intake::trigger_from_servicenow(&payload).expect("trigger");
        self.world
            .stack
            .trigger(trigger)
            .await
            .expect("start")
            .execution
    }

    /// Waits (polling, with a deadline) until the approval record of `execution` exists and
    /// both platforms have its card; returns the approval id.
    pub async fn wait_for_cards(&self, execution: &str) -> String {
        crate::eventually::eventually_async(
            &format!("approval cards for {execution} on both platforms"),
            Duration::from_secs(60),
            || async move {
                if !self.running(execution) {
                    let info = self
                        .world
                        .stack
                        .engine
                        .describe_execution(execution)
                        .expect("execution");
                    panic!(
                        "{execution} ended ({:?}) without a card: {:?} {:?}",
                        info.status, info.error, info.cause
                    );
                }
                let call = self.bot.calls().into_iter().find(|c| c.method == "POST")?;
                let posted_to_slack = self
                    .slack
                    .calls()
                    .iter()
                    .any(|c| c.method == "chat.postMessage");
                if !posted_to_slack {
                    return None;
                }
                let id = call.activity["attachments"][0]["content"]["actions"][0]["data"]
                    ["approvalId"]
                    .as_str()
                    .expect("approval id on the card")
                    .to_string();
                let rec = self.approval(&id).await;
                // The step audits the request after posting the cards: wait for that too,
                // so tests that count audit records start from a settled trail.
                let audited = self
                    .audit(execution)
                    .await
                    .iter()
                    .any(|r| r.summary["requested"] == id.as_str());
                (rec["execution"] == execution && audited).then_some(id)
            },
        )
        .await
    }

    /// The approval record.
    pub async fn approval(&self, id: &str) -> serde_json::Value {
        self.world
            .stack
            .deps
            .store
            .get(Table::Approvals, id)
            .await
            .expect("store")
            .expect("approval record")
    }

    /// The execution's audit trail.
    pub async fn audit(&self, execution: &str) -> Vec<AuditRecord> {
        self.world
            .stack
            .deps
            .store
            .audit(execution)
            .await
            .expect("audit")
    }

    /// The ticket of an approval.
    pub async fn ticket(&self, approval_id: &str) -> Ticket {
        let rec = self.approval(approval_id).await;
        let number = rec["ticket"].as_str().expect("ticket number").to_string();
        self.world
            .stack
            .deps
            .itsm
            .get(&number)
            .await
            .expect("itsm")
            .expect("ticket")
    }

    /// Asserts that nothing was decided on `approval_id`: the record is pending, the
    /// execution waits, no task success, no approver on the ticket, and — when
    /// `audit_len` is given — not even an audit record was added.
    pub async fn assert_untouched(
        &self,
        execution: &str,
        approval_id: &str,
        audit_len: Option<usize>,
        case: &str,
    ) {
        assert_eq!(
            self.approval(approval_id).await["status"],
            "pending",
            "{case}: approval spent"
        );
        assert!(
            self.running(execution),
            "{case}: execution no longer waiting"
        );
        assert_eq!(self.task_successes(execution), 0, "{case}: task completed");
        let ticket = self.ticket(approval_id).await;
        assert_eq!(
            ticket.approved_by, None,
            "{case}: approver recorded on the ticket"
        );
        let audit = self.audit(execution).await;
        assert!(
            !audit
                .iter()
                .any(|r| r.summary.get("decision").is_some() || r.summary.get("decided").is_some()),
            "{case}: a decision was audited"
        );
        if let Some(n) = audit_len {
            assert_eq!(audit.len(), n, "{case}: something was audited");
        }
    }

    /// cab-alice's click on `platform` (`"slack"` or `"teams"`, as `platform_user`) at or
    /// after `t0` decided `approval_id`: the execution succeeded with one task completion,
    /// the ticket names her, when and where (`platform_name`, the work note's spelling), and
    /// the audit holds her decision and the chat attempt behind it, on an intact chain.
    pub async fn assert_approved_by_alice(
        &self,
        execution: &str,
        approval_id: &str,
        t0: chrono::DateTime<chrono::Utc>,
        (platform, platform_name, platform_user): (&str, &str, &str),
    ) {
        crate::world::succeeded(&self.world.stack, execution, Duration::from_secs(90)).await;
        assert_eq!(self.task_successes(execution), 1);
        let ticket = self.ticket(approval_id).await;
        assert_eq!(ticket.approved_by.as_deref(), Some("cab-alice@example.com"));
        let at = ticket.approved_at.expect("approved_at");
        assert!(at >= t0 && at <= self.now(), "{at}");
        assert!(
            ticket.work_notes.iter().any(|n| n.text.contains(&format!(
                "approved in {platform_name} by cab-alice@example.com"
            )) && n.text.contains(platform_user)),
            "{:?}",
            ticket.work_notes
        );
        let audit = self.audit(execution).await;
        assert!(audit
            .iter()
            .any(|r| r.actor == "approver:cab-alice@example.com"
                && r.summary["decision"] == "approved"));
        assert!(
            audit.iter().any(|r| r.actor == format!("chat:{platform}")
                && r.summary["attempt"]["platformUser"] == platform_user
                && r.summary["attempt"]["platform"] == platform),
            "{audit:?}"
        );
        certops_core::verify_chain(&audit).expect("audit chain");
    }

    /// A replayed decision changed nothing: the task was completed once, and the audit
    /// records added after the first `before` hold the replay's refusal and no second
    /// decision.
    pub async fn assert_replay_refused(&self, execution: &str, before: usize) {
        assert_eq!(
            self.task_successes(execution),
            1,
            "replay completed the task twice"
        );
        let added: Vec<_> = self
            .audit(execution)
            .await
            .into_iter()
            .skip(before)
            .collect();
        assert!(
            added.iter().any(|r| r.summary.get("refused").is_some()),
            "the replay's refusal is audited: {added:?}"
        );
        assert!(
            added.iter().all(|r| r.summary.get("decision").is_none()),
            "a replay records no second decision: {added:?}"
        );
    }

    /// How many times the execution's waiting task was completed successfully.
    pub fn task_successes(&self, execution: &str) -> usize {
        self.world
            .stack
            .engine
            .history(execution)
            .expect("history")
            .iter()
            // Only the approval states wait for a task token; their success is SendTaskSuccess.
            .filter(|e| e.kind.as_str() == "TaskSucceeded")
            .count()
    }

    /// Whether the execution is still running (waiting for approval).
    pub fn running(&self, execution: &str) -> bool {
        self.world
            .stack
            .engine
            .describe_execution(execution)
            .map(|i| i.status == certops_asl::ExecutionStatus::Running)
            .unwrap_or(false)
    }

    /// The domain clock's now.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.world.clock.now()
    }

    /// Posts an activity to `/teams/messages` with `authorization`; returns status and body.
    pub async fn post_teams(
        &self,
        authorization: Option<&str>,
        activity: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .http
            .post(format!("{}/teams/messages", self.certops.base()))
            .header("content-type", "application/json")
            .body(activity.to_string());
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.expect("post");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// Posts a Slack interaction body with the given signature headers.
    pub async fn post_slack(
        &self,
        body: &str,
        timestamp: Option<&str>,
        signature: Option<&str>,
    ) -> u16 {
        let mut req = self
            .http
            .post(format!("{}/slack/interactions", self.certops.base()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string());
        if let Some(t) = timestamp {
            req = req.header("x-slack-request-timestamp", t);
        }
        if let Some(s) = signature {
            req = req.header("x-slack-signature", s);
        }
        req.send().await.expect("post").status().as_u16()
    }

    /// The invoke activity Teams sends when the user with Entra object id `aad` clicks
    /// `verb` on the card of `approval_id`.
    pub fn invoke(&self, aad: &str, verb: &str, approval_id: &str) -> serde_json::Value {
        serde_json::json!({
            "type": "invoke",
            "name": "adaptiveCard/action",
            "id": format!("f:{}", uuid_like()),
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "channelId": "msteams",
            "serviceUrl": self.bot.service_url(),
            "from": {"id": format!("29:{aad}"), "name": aad, "aadObjectId": aad},
            "conversation": {"id": bot_framework::CONVERSATION, "conversationType": "channel"},
            "recipient": {"id": format!("28:{}", bot_framework::APP_ID), "name": "certops"},
            "replyToId": self.bot.calls().first().map(|c| c.activity_id.clone()).unwrap_or_default(),
            "channelData": {"tenant": {"id": "tenant-1"}},
            "value": {"action": {"type": "Action.Execute", "verb": verb, "data": {"approvalId": approval_id, "verb": verb}}, "trigger": "manual"},
        })
    }
}

fn uuid_like() -> String {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).expect("rand");
    hex::encode(b)
}
