// Drives the system chromium (headless, through playwright-core) against the
// certops web console. Every check throws on failure; the process exits 1 with
// the reasons, 0 when everything held. With SCREENSHOT_DIR set it also saves a
// PNG of every page there.
//
// Environment: CONSOLE_URL (http://127.0.0.1:PORT/console), APPROVER and
// APPROVER_PASSWORD (in the change authority), REQUESTER and REQUESTER_PASSWORD
// (who opened the waiting ticket), WAITING_EXECUTION (its name),
// ROLLBACK_EXECUTION (demo scenario 4), EXECUTIONS (every demo execution name,
// comma-separated), FORBIDDEN (comma-separated strings no page may contain).
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const base = env("CONSOLE_URL");
const origin = new URL(base).origin;
const approver = env("APPROVER");
const requester = env("REQUESTER");
const waiting = env("WAITING_EXECUTION");
const rolledBack = env("ROLLBACK_EXECUTION");
const executions = env("EXECUTIONS").split(",").filter(Boolean);
const forbidden = (process.env.FORBIDDEN || "").split(",").filter(Boolean);
const shots = process.env.SCREENSHOT_DIR || "";
if (shots) mkdirSync(shots, { recursive: true });

const failures = [];
const passed = [];
function check(cond, what) {
  if (cond) passed.push(what);
  else failures.push(what);
}

const profile = mkdtempSync(join(tmpdir(), "certops-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  viewport: { width: 1440, height: 900 },
  acceptDownloads: true,
});

// Problems seen by the page: console errors, page errors, failed requests,
// HTTP errors, and any request that leaves the console's origin.
function watch(page) {
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on("request", (r) => { if (!r.url().startsWith(origin)) problems.push(`request off the console's origin: ${r.url()}`); });
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`); });
  return problems;
}

// A fresh page with no cookies: a new visitor (the profile itself is fresh, --user-data-dir).
async function newPage() {
  await context.clearCookies();
  const page = await context.newPage();
  return { page, problems: watch(page), close: () => page.close() };
}

async function signIn(page, user, password) {
  await page.goto(`${base}/login`);
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", password);
  await Promise.all([page.waitForURL(`${base}/executions`), page.click("button[type=submit]")]);
}

async function signOut(page) {
  await Promise.all([page.waitForURL(`${base}/login`), page.click("form.signout button")]);
}

async function noSecrets(page, what) {
  const html = await page.content();
  const leaked = forbidden.filter((s) => html.includes(s));
  check(leaked.length === 0, `${what}: no secret on the page${leaked.length ? ` (found ${leaked.length})` : ""}`);
  check(!html.includes("PRIVATE KEY") && !html.includes("$argon2"), `${what}: no private key or password hash on the page`);
}

/// Loads a page and checks it loaded cleanly.
async function cleanLoad(s, path, what, shot) {
  s.problems.length = 0;
  const resp = await s.page.goto(`${base}${path}`);
  await s.page.waitForLoadState("networkidle");
  check(resp && resp.status() === 200, `${what}: HTTP 200 (got ${resp && resp.status()})`);
  check(s.problems.length === 0, `${what}: no console error, failed request or error response${s.problems.length ? ": " + s.problems.join("; ") : ""}`);
  await noSecrets(s.page, what);
  if (shots && shot) await s.page.screenshot({ path: join(shots, `${shot}.png`), fullPage: true });
}

const enc = encodeURIComponent;
try {
  // 1. Without a session every page and every POST is refused.
  {
    const s = await newPage();
    for (const p of ["/executions", `/executions/${enc(rolledBack)}`, "/approvals", "/certificates", "/scans", `/executions/${enc(rolledBack)}/evidence`]) {
      const r = await s.page.goto(`${base}${p}`);
      const html = await s.page.content();
      check(r.status() === 401 && html.includes('action="/console/login"') && !html.includes(rolledBack),
        `without a session ${p} is refused with the sign-in form (HTTP ${r.status()})`);
      const j = await s.page.evaluate(async (u) => { const x = await fetch(u, { headers: { Accept: "application/json" } }); return { status: x.status, body: await x.text() }; }, `${base}${p}`);
      check(j.status === 401 && !j.body.includes(rolledBack), `without a session ${p} as JSON is refused (HTTP ${j.status})`);
    }
    const post = await s.page.evaluate(async (u) => (await fetch(u, { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" }, body: "verdict=approve" })).status, `${base}/approvals/APR-ANY`);
    check(post === 401, `without a session a decision POST is refused (HTTP ${post})`);
    if (shots) { await s.page.goto(`${base}/login`); await s.page.screenshot({ path: join(shots, "sign-in.png") }); }
    // A wrong password is refused, and the sign-in form's POST needs its CSRF token.
    s.problems.length = 0;
    await s.page.goto(`${base}/login`);
    await s.page.fill("input[name=username]", approver);
    await s.page.fill("input[name=password]", "not-the-password");
    const [wrong] = await Promise.all([s.page.waitForNavigation(), s.page.click("button[type=submit]")]);
    check(wrong.status() === 401 && (await s.page.content()).includes("Wrong account or password"), "a wrong password is refused");
    const noToken = await s.page.evaluate(async ([u, user]) => (await fetch(u, { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: `username=${encodeURIComponent(user)}&password=x` })).status, [`${base}/login`, approver]);
    check(noToken === 403, `sign-in without the form's CSRF token is refused (HTTP ${noToken})`);
    await s.close();
  }

  // 2. The requester may not approve their own change: refused with its reason, in the browser.
  {
    const s = await newPage();
    await signIn(s.page, requester, env("REQUESTER_PASSWORD"));
    await s.page.goto(`${base}/approvals`);
    const card = s.page.locator("article.approval").filter({ hasText: waiting });
    check(await card.count() === 1, "the requester (also in the change authority) sees the waiting approval");
    await Promise.all([s.page.waitForNavigation(), card.locator("button.approve").click()]);
    const result = (await s.page.locator("#decision-result").textContent()) || "";
    check(result.includes("SelfApproval") && result.includes(`${requester} requested this change`), `self-approval is refused with its reason: "${result.trim()}"`);
    check(await s.page.locator("article.approval").filter({ hasText: waiting }).count() === 1, "after the refusal the approval is still waiting");
    if (shots) await s.page.screenshot({ path: join(shots, "approvals-self-approval-refused.png"), fullPage: true });
    await signOut(s.page);
    await s.close();
  }

  // 3. Signed in as the approver: every page loads cleanly.
  const s = await newPage();
  await signIn(s.page, approver, env("APPROVER_PASSWORD"));
  await cleanLoad(s, "/executions", "Executions", "executions");
  const rows = await s.page.locator("#executions tbody tr[data-execution]").count();
  check(rows === executions.length + 1, `Executions lists the demo's ${executions.length} executions and the waiting one (${rows})`);
  const started = await s.page.locator("#executions tbody tr[data-execution] td:nth-child(2)").allTextContents();
  check(started.every((t, i) => i === 0 || started[i - 1] >= t), "Executions: newest first");
  await cleanLoad(s, "/executions?status=FAILED", "Executions filtered by status", null);
  const failedRows = await s.page.locator("#executions tbody tr[data-execution]").evaluateAll((rs) => rs.map((r) => r.getAttribute("data-status")));
  check(failedRows.length >= 2 && failedRows.every((x) => x === "FAILED"), `the status filter shows only FAILED executions (${failedRows.join(",")})`);
  await cleanLoad(s, `/executions?q=${enc("cart-web")}`, "Executions searched by certificate", null);
  const found = await s.page.locator("#executions tbody tr[data-execution]").evaluateAll((rs) => rs.map((r) => r.getAttribute("data-execution")));
  check(found.length === 1 && found[0] === rolledBack, `search by certificate finds scenario 4 (${found.join(",")})`);
  for (const e of executions) {
    await cleanLoad(s, `/executions/${enc(e)}`, `Execution ${e}`, e === rolledBack ? "execution-rollback" : null);
    check(await s.page.locator("#audit-verdict").textContent() === "verified", `Execution ${e}: its audit chain verifies`);
  }
  // Scenario 4's graph: Verify failed, Rollback taken.
  await cleanLoad(s, `/executions/${enc(rolledBack)}`, "Scenario 4", null);
  const cls = async (st) => (await s.page.locator(`svg.graph g.node[data-state="${st}"]`).getAttribute("class")) || "";
  check((await cls("Verify")).split(" ").includes("failed"), `scenario 4: Verify is marked failed (${await cls("Verify")})`);
  check((await cls("Rollback")).split(" ").includes("taken"), `scenario 4: Rollback is taken (${await cls("Rollback")})`);
  check(!(await cls("CloseTicket")).split(" ").includes("taken"), "scenario 4: CloseTicket is not taken");
  check(await s.page.locator('svg.graph path.edge.taken[data-from="Verify"][data-to="Rollback"]').count() === 1, "scenario 4: the Verify → Rollback edge is lit");
  check((await cls("AwaitPropagation")).split(" ").includes("taken"), `scenario 4: the propagation wait before re-verifying is taken (${await cls("AwaitPropagation")})`);
  // Clicking a state selects its events in the history.
  await s.page.locator('svg.graph g.node[data-state="Rollback"]').click();
  const hl = await s.page.locator("#history tr.hl").evaluateAll((rs) => rs.map((r) => r.getAttribute("data-state")));
  check(hl.length > 0 && hl.every((x) => x === "Rollback"), "selecting a state in the graph highlights its history events");
  if (shots) await s.page.locator("section.graph-pane").screenshot({ path: join(shots, "execution-rollback-graph.png") });
  // Expandable input/output.
  const det = s.page.locator("#history details").first();
  await det.locator("summary").click();
  check(await det.evaluate((d) => d.open), "a history event's input/output expands");
  // The evidence bundle downloads.
  const [download] = await Promise.all([s.page.waitForEvent("download"), s.page.click("a[download]")]);
  const path = await download.path();
  const { readFileSync } = await import("node:fs");
  const bundle = JSON.parse(readFileSync(path, "utf8"));
  check(bundle.kind === "certops-evidence-bundle" && bundle.audit.verified === true && bundle.history.length > 0, "the evidence bundle downloads with history and a verified audit chain");
  check(!forbidden.some((f) => JSON.stringify(bundle).includes(f)), "the evidence bundle holds no secret");
  await cleanLoad(s, "/certificates", "Certificates", "certificates");
  check(await s.page.locator("svg.timeline rect.bar").count() >= 1, "Certificates: the expiry timeline has bars");
  check(await s.page.locator("#certificates tbody tr[data-cert]").count() === 5, "Certificates: the demo's 5 certificate objects");
  await cleanLoad(s, "/scans", "Scans", "scans");
  check(await s.page.locator("article.scan").count() >= 1, "Scans: the scheduled scan is listed");
  // JSON answers carry the same data.
  const asJson = await s.page.evaluate(async (u) => (await fetch(u, { headers: { Accept: "application/json" } })).json(), `${base}/executions/${enc(rolledBack)}`);
  check(asJson.execution.name === rolledBack && asJson.path.states.some((x) => x.name === "Verify" && x.failed), "the execution page answers JSON with the same data");

  // 4. CSRF: a decision POST without (or with a wrong) token is refused, and decides nothing.
  await cleanLoad(s, "/approvals", "Approvals", "approvals");
  const card = s.page.locator("article.approval").filter({ hasText: waiting });
  check(await card.count() === 1, "the approver sees the waiting approval with its plan");
  check((await card.textContent()).includes("What changes") && (await card.textContent()).includes("Plan hash"), "the approval shows the plan and what changes");
  const action = await card.locator("form.decide").getAttribute("action");
  for (const body of ["verdict=approve&comment=x", "verdict=approve&csrf=0000&comment=x"]) {
    const st = await s.page.evaluate(async ([u, b]) => (await fetch(u, { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" }, body: b })).status, [`${origin}${action}`, body]);
    check(st === 403, `a decision POST ${body.includes("csrf") ? "with a wrong" : "without the"} CSRF token is refused (HTTP ${st})`);
  }
  await s.page.reload();
  check(await s.page.locator("article.approval").filter({ hasText: waiting }).count() === 1, "after the refused POSTs the approval still waits");

  // 5. Approve in the browser: the waiting execution completes, the ticket shows the approver.
  // A second tab shows the waiting execution; it refreshes by itself when the execution moves on.
  const watcher = await context.newPage();
  const watcherProblems = watch(watcher);
  await watcher.goto(`${base}/executions/${enc(waiting)}`);
  check((await watcher.locator("body").getAttribute("data-live")) !== null, "a running execution's page is live");
  check((await watcher.locator("h1 .pill").textContent()) === "RUNNING", "the waiting execution shows RUNNING");
  check((await watcher.locator('svg.graph g.node[data-state="RequestApproval"]').getAttribute("class")).includes("current"), "the graph marks the state the execution waits in");
  s.problems.length = 0;
  await card.locator("input[name=comment]").fill("approved in the browser test");
  await Promise.all([s.page.waitForNavigation(), card.locator("button.approve").click()]);
  const done = (await s.page.locator("#decision-result").textContent()) || "";
  check(done.includes("approved") && done.includes(approver), `the browser approval is accepted: "${done.trim()}"`);
  check(s.problems.length === 0, `the decision loads cleanly${s.problems.length ? ": " + s.problems.join("; ") : ""}`);
  // Poll the execution (JSON, same session) until it leaves RUNNING, with a deadline.
  const deadline = Date.now() + 60000;
  let status = "RUNNING";
  while (Date.now() < deadline) {
    const j = await s.page.evaluate(async (u) => (await fetch(u, { headers: { Accept: "application/json" } })).json(), `${base}/executions/${enc(waiting)}`);
    status = j.execution.status;
    if (status !== "RUNNING") break;
    await s.page.waitForTimeout(200);
  }
  await s.page.goto(`${base}/executions/${enc(waiting)}`);
  // The watching tab reloaded itself (live refresh), without anyone touching it.
  await watcher.waitForFunction(() => document.querySelector("h1 .pill")?.textContent !== "RUNNING", null, { timeout: 30000 })
    .then(() => check(true, "the open execution page refreshed itself when the execution moved on"))
    .catch(() => check(false, "the open execution page refreshed itself when the execution moved on"));
  check(watcherProblems.length === 0, `the live page had no console error or failed request${watcherProblems.length ? ": " + watcherProblems.join("; ") : ""}`);
  await watcher.close();
  check(status === "SUCCEEDED", `the approved execution completed: renewed, deployed to nginx, verified (${status})`);
  const approvedBy = (await s.page.locator(".approved-by").textContent().catch(() => "")) || "";
  check(approvedBy === approver, `the ticket shows the signed-in approver (${approvedBy})`);
  check((await cls("RecordApproval")).split(" ").includes("taken"), "the approved execution went past RecordApproval");
  const ex = await s.page.evaluate(async (u) => (await fetch(u, { headers: { Accept: "application/json" } })).json(), `${base}/executions/${enc(waiting)}`);
  check(ex.ticket && ex.ticket.approved_by === approver, "the ticket (JSON) records the approver");
  check(ex.audit.verified && ex.audit.records.some((r) => r.actor === `approver:${approver}`), "the audit chain records the decision by the signed-in approver");
  if (shots) await s.page.screenshot({ path: join(shots, "execution-approved-in-browser.png"), fullPage: true });
  await s.close();
} catch (e) {
  failures.push(`unexpected: ${e.stack || e}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
for (const p of passed) console.log(`ok   ${p}`);
for (const f of failures) console.log(`FAIL ${f}`);
console.log(`${passed.length} checks passed, ${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
