//! Scheduling: what the engine does after each advance of an execution
//! (register its timers and task tokens, persist its progress, queue its
//! invocations, continue a run that yielded its slice), the timer task that
//! fires due timers, and the crash tests' fault injection.

use super::task::{Dispatch, TaskRequest};
use super::{Core, Engine, Inner};
use crate::machine::{Effects, Env, ExecutionStatus, TimerKind};
use rand::rngs::StdRng;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use tokio::sync::Notify;

/// How many times (1 ms each) a yielded execution lets blocked callers go
/// first before it takes its next slice regardless.
const MAX_DEFERRALS: u32 = 50;

/// Bytes of state payload an execution records per hold of the engine lock.
const SLICE_BYTES: usize = 1 << 20;

impl Drop for Inner {
    fn drop(&mut self) {
        // Wake the timer task so it sees the engine is gone and ends.
        self.timers_changed.notify_one();
    }
}

/// The engine's timer task: fires due timers, then sleeps until the next
/// deadline or until new timers are set; ends once the engine is dropped.
pub(super) async fn timer_loop(weak: Weak<Inner>, changed: Arc<Notify>) {
    loop {
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let sleep_until = {
            let Some(inner) = weak.upgrade() else { return };
            let engine = Engine { inner };
            let next = engine.fire_due();
            engine.flush();
            next.map(|ms| engine.inner.clock.instant_at(ms))
        };
        match sleep_until {
            Some(at) => {
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            None => notified.await,
        }
    }
}

/// The shared copy of an execution's ARN (the `executions` key), or a new
/// one for an execution that is not (or no longer) registered.
fn shared_arn(core: &Core, arn: &str) -> Arc<str> {
    core.executions
        .get_key_value(arn)
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| Arc::from(arn))
}

/// The environment variable of the crash tests' fault injection: set to `<n>`,
/// the process aborts right after the transaction that persisted its n-th
/// state boundary (a `…StateEntered` or `…StateExited` event) commits.
pub const CRASH_AFTER_BOUNDARY_ENV: &str = "CERTOPS_CRASH_AFTER_BOUNDARY";

/// Fault injection for the crash tests: with `CERTOPS_CRASH_AFTER_BOUNDARY=<n>` in the
/// environment, the process aborts (no unwinding, no cleanup: as `kill -9` would leave it)
/// right after the transaction that persisted its n-th state boundary (a `…StateEntered` or
/// `…StateExited` event) commits. Unset, this is one cached lookup per save.
fn crash_point(events: &[crate::history::HistoryEvent]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    static SEEN: AtomicU64 = AtomicU64::new(0);
    let Some(limit) = *LIMIT.get_or_init(|| {
        std::env::var(CRASH_AFTER_BOUNDARY_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
    }) else {
        return;
    };
    let boundaries = events
        .iter()
        .filter(|e| {
            let kind = e.kind.as_str();
            kind.ends_with("StateEntered") || kind.ends_with("StateExited")
        })
        .count() as u64;
    if boundaries > 0 && SEEN.fetch_add(boundaries, Ordering::SeqCst) + boundaries >= limit {
        eprintln!("{CRASH_AFTER_BOUNDARY_ENV}={limit}: aborting after state boundary {limit}");
        std::process::abort();
    }
}

impl Engine {
    /// An advance's environment, carrying the engine's quotas.
    pub(super) fn env<'a>(&self, now: i64, rng: &'a mut StdRng) -> Env<'a> {
        let mut env = Env::new(now, rng);
        env.history_limit = self.inner.opts.max_history_events;
        env.slice = self.inner.opts.transitions_per_slice.max(1);
        env.slice_bytes = SLICE_BYTES;
        env
    }

    /// Registers effects, persists the execution's progress and dispatches invocations.
    pub(super) fn after(&self, core: &mut Core, arn: &str, effects: Effects) {
        // Durable engines record each invocation so a restart can repeat the
        // ones that never completed; the in-memory state does not keep them.
        let invoked = if core.store.is_some() {
            effects.invocations.clone()
        } else {
            Vec::new()
        };
        self.apply_effects(core, arn, effects);
        let Some(slot) = core.executions.get_mut(arn) else {
            return;
        };
        let events = std::mem::take(&mut slot.exec.pending_events);
        let finished = slot.exec.status != ExecutionStatus::Running;
        if !finished && slot.exec.has_runnable() && !slot.continuing {
            // The run yielded with work left: continue after others had their turn.
            slot.continuing = true;
            self.schedule_continue(shared_arn(core, arn));
        }
        let Some(slot) = core.executions.get_mut(arn) else {
            return;
        };
        if finished {
            slot.exec.compact();
            for t in std::mem::take(&mut slot.tokens) {
                core.tokens.remove(&t);
            }
        }
        let Some(slot) = core.executions.get_mut(arn) else {
            return;
        };
        match core.store.as_mut() {
            Some(store) => {
                let definition = (!slot.saved).then(|| slot.definition.clone());
                match store.save_execution(&slot.exec, definition.as_deref(), &events, &invoked) {
                    Ok(()) => {
                        slot.saved = true;
                        crash_point(&events);
                    }
                    Err(e) => {
                        tracing::error!(execution = arn, error = %e, "could not persist execution progress")
                    }
                }
            }
            None => {
                let key = shared_arn(core, arn);
                if !events.is_empty() {
                    // Hand the whole buffer over instead of copying it event by event.
                    core.history.entry(key).or_default().push(events);
                }
            }
        }
        if finished {
            if let Some(tx) = &core.finished_tx {
                let _ = tx.send(arn.to_string());
            }
            self.inner.finished.notify_waiters();
        }
    }

    /// Queues the next slice of a yielded execution's run behind the tasks
    /// already waiting on the runtime.
    fn schedule_continue(&self, arn: Arc<str>) {
        let weak = Arc::downgrade(&self.inner);
        self.inner.runtime.spawn(async move {
            tokio::task::yield_now().await;
            // Callers blocked on the lock (the API, callbacks, other
            // executions) go first; a std mutex would let this task barge.
            let mut deferred = 0;
            while deferred < MAX_DEFERRALS
                && weak
                    .upgrade()
                    .is_some_and(|i| i.waiting.load(Ordering::SeqCst) > 0)
            {
                deferred += 1;
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            if let Some(inner) = weak.upgrade() {
                let engine = Engine { inner };
                engine.continue_run(&arn);
                engine.flush();
            }
        });
    }

    /// Runs the next slice of a yielded execution.
    fn continue_run(&self, arn: &str) {
        let now = self.inner.clock.now_ms();
        let mut core = self.lock();
        let Core {
            executions, rng, ..
        } = &mut *core;
        let Some(slot) = executions.get_mut(arn) else {
            return;
        };
        slot.continuing = false;
        if slot.exec.status != ExecutionStatus::Running {
            return;
        }
        let mut env = self.env(now, rng);
        let def = slot.def.clone();
        slot.exec.run(&def, &mut env);
        let effects = env.effects;
        self.after(&mut core, arn, effects);
    }

    pub(super) fn apply_effects(&self, core: &mut Core, arn: &str, effects: Effects) {
        let mut timers_changed = false;
        // The execution's shared ARN for every timer, token and dispatch.
        let shared = shared_arn(core, arn);
        for t in effects.timers {
            core.timer_seq += 1;
            let key = (t.at_ms, core.timer_seq);
            core.timers.insert(key, (shared.clone(), t));
            timers_changed = true;
        }
        for (token, frame, seq) in effects.tokens {
            if let Some(slot) = core.executions.get_mut(arn) {
                slot.tokens.push(token.clone());
            }
            core.tokens.insert(token, (shared.clone(), frame, seq));
        }
        for inv in effects.invocations {
            let (frame, seq) = (inv.frame, inv.seq);
            let req = TaskRequest {
                execution_arn: arn.to_string(),
                state_name: inv.state_name,
                resource: inv.resource,
                function: inv.function,
                payload: inv.payload,
                task_token: inv.token,
            };
            let fut = self.inner.invoker.invoke(req);
            core.outbox.push(Dispatch {
                arn: shared.clone(),
                frame,
                seq,
                fut,
            });
        }
        if timers_changed {
            self.inner.timers_changed.notify_one();
        }
    }

    /// Fires due timers; returns the next deadline.
    fn fire_due(&self) -> Option<i64> {
        let now = self.inner.clock.now_ms();
        let mut core = self.lock();
        loop {
            let (&key, _) = core.timers.iter().next()?;
            if key.0 > now {
                return Some(key.0);
            }
            let Some((arn, timer)) = core.timers.remove(&key) else {
                continue;
            };
            let Core {
                executions, rng, ..
            } = &mut *core;
            let Some(slot) = executions.get_mut(&*arn) else {
                continue;
            };
            if slot.exec.status != ExecutionStatus::Running {
                continue;
            }
            let mut env = self.env(now, rng);
            let def = slot.def.clone();
            slot.exec.on_timer(&def, timer, &mut env);
            let effects = env.effects;
            self.after(&mut core, &arn, effects);
            if timer.kind == TimerKind::Execution {
                self.inner.finished.notify_waiters();
            }
        }
    }
}
