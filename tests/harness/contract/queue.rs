//! The [`Queue`] contract: send / receive / delete / depth, visibility timeouts and
//! redelivery with a growing receive count, the dead-letter queue after `max_receives`
//! receives, and bodies that are not JSON reported instead of dropped.
//!
//! A backend supplies a [`QueueBackend`]: the queue under test, its dead-letter queue under
//! the logical name [`DLQ`], a way to let time pass (a clock step for the embedded queue,
//! a real sleep for SQS) and a way to put a raw, non-JSON body in the queue, which the
//! port itself cannot send. [`run_all`] runs every case on a fresh backend.

use certops_core::ports::Queue;
use serde_json::json;
use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

/// The logical queue every case uses.
pub const QUEUE: &str = "intake";
/// The logical name under which the backend exposes [`QUEUE`]'s dead-letter queue.
pub const DLQ: &str = "intake-dlq";
/// The visibility timeout the cases use: short, so the suite stays quick.
pub const VISIBILITY: Duration = Duration::from_secs(1);
/// How long a case lets pass for [`VISIBILITY`] to run out.
pub const PAST_VISIBILITY: Duration = Duration::from_millis(1150);

/// What a backend supplies to the suite.
pub trait QueueBackend: Send + Sync {
    /// The queue under test, serving [`QUEUE`] and [`DLQ`], both empty.
    fn queue(&self) -> &dyn Queue;
    /// Receives after which a message moves to [`DLQ`] (SQS's `maxReceiveCount`).
    fn max_receives(&self) -> u32;
    /// Lets `by` pass for the queue's visibility timeouts.
    fn pass(&self, by: Duration) -> impl Future<Output = ()> + Send;
    /// Puts `body` (not JSON) in `queue` as a message, bypassing the port; returns its id.
    fn send_raw(&self, queue: &str, body: &str) -> impl Future<Output = String> + Send;
}

/// Every case, in order, each on a backend from `fresh`.
pub async fn run_all<B, F, Fut>(fresh: F)
where
    B: QueueBackend,
    F: Fn(&'static str) -> Fut,
    Fut: Future<Output = B>,
{
    macro_rules! case {
        ($name:ident) => {{
            eprintln!("queue contract: {}", stringify!($name));
            $name(&fresh(stringify!($name)).await).await;
        }};
    }
    case!(send_receive_delete_and_depth);
    case!(receive_more_than_ten_at_once);
    case!(visibility_timeout_hides_then_redelivers);
    case!(zero_visibility_returns_each_message_once_per_receive);
    case!(dead_letter_after_max_receives);
    case!(bogus_receipt_and_empty_name_are_errors);
    case!(non_json_body_is_an_error_and_is_not_dropped);
}

fn ids(messages: &[certops_core::ports::Message]) -> BTreeSet<String> {
    messages.iter().map(|m| m.id.clone()).collect()
}

/// Sent messages are received once each with their body and id, in-flight messages count
/// in the depth, deleted ones do not.
pub async fn send_receive_delete_and_depth(b: &impl QueueBackend) {
    let q = b.queue();
    assert_eq!(q.depth(QUEUE).await.unwrap(), 0);
    assert!(q.receive(QUEUE, 10, VISIBILITY).await.unwrap().is_empty());
    let mut sent = BTreeSet::new();
    for n in 0..3 {
        sent.insert(q.send(QUEUE, &json!({"ci": "shop", "n": n})).await.unwrap());
    }
    assert_eq!(sent.len(), 3, "ids are distinct");
    assert_eq!(q.depth(QUEUE).await.unwrap(), 3);
    let first = q.receive(QUEUE, 1, VISIBILITY).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].receive_count, 1);
    assert_eq!(first[0].body["ci"], "shop");
    let rest = q.receive(QUEUE, 10, VISIBILITY).await.unwrap();
    assert_eq!(rest.len(), 2);
    let mut all = first.clone();
    all.extend(rest);
    assert_eq!(ids(&all), sent, "each message received once");
    let ns: BTreeSet<u64> = all.iter().filter_map(|m| m.body["n"].as_u64()).collect();
    assert_eq!(ns, BTreeSet::from([0, 1, 2]), "bodies intact");
    assert!(q.receive(QUEUE, 10, VISIBILITY).await.unwrap().is_empty());
    assert_eq!(q.depth(QUEUE).await.unwrap(), 3, "in flight still counts");
    for m in &all {
        q.delete(QUEUE, &m.receipt).await.unwrap();
    }
    assert_eq!(q.depth(QUEUE).await.unwrap(), 0);
    assert_eq!(q.depth(DLQ).await.unwrap(), 0);
}

/// `receive` with `max` above SQS's per-call limit of 10 still returns up to `max`.
pub async fn receive_more_than_ten_at_once(b: &impl QueueBackend) {
    let q = b.queue();
    for n in 0..13 {
        q.send(QUEUE, &json!({"n": n})).await.unwrap();
    }
    let got = q.receive(QUEUE, 13, VISIBILITY).await.unwrap();
    assert_eq!(got.len(), 13);
    assert_eq!(ids(&got).len(), 13);
    assert!(q.receive(QUEUE, 20, VISIBILITY).await.unwrap().is_empty());
    assert!(q.receive(QUEUE, 0, VISIBILITY).await.unwrap().is_empty());
    for m in &got {
        q.delete(QUEUE, &m.receipt).await.unwrap();
    }
    assert_eq!(q.depth(QUEUE).await.unwrap(), 0);
}

/// A received, undeleted message is invisible until its visibility timeout passes, then
/// comes back with a higher receive count and a new receipt that deletes it.
pub async fn visibility_timeout_hides_then_redelivers(b: &impl QueueBackend) {
    let q = b.queue();
    let id = q.send(QUEUE, &json!({"retry": "me"})).await.unwrap();
    let got = q.receive(QUEUE, 10, VISIBILITY).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].id.as_str(), got[0].receive_count), (id.as_str(), 1));
    assert!(
        q.receive(QUEUE, 10, VISIBILITY).await.unwrap().is_empty(),
        "hidden while in flight"
    );
    b.pass(PAST_VISIBILITY).await;
    let again = q.receive(QUEUE, 10, VISIBILITY).await.unwrap();
    assert_eq!(again.len(), 1, "visible again after the timeout");
    assert_eq!(again[0].id, id);
    assert_eq!(again[0].receive_count, 2);
    assert_eq!(again[0].body, json!({"retry": "me"}));
    assert_ne!(
        again[0].receipt, got[0].receipt,
        "a new receipt per receive"
    );
    q.delete(QUEUE, &again[0].receipt).await.unwrap();
    assert_eq!(q.depth(QUEUE).await.unwrap(), 0);
    b.pass(PAST_VISIBILITY).await;
    assert!(
        q.receive(QUEUE, 10, VISIBILITY).await.unwrap().is_empty(),
        "deleted for good"
    );
}

/// With a zero visibility timeout a message is visible again at once: one receive still
/// returns it only once, and the next receive returns it again.
pub async fn zero_visibility_returns_each_message_once_per_receive(b: &impl QueueBackend) {
    let q = b.queue();
    q.send(QUEUE, &json!({"a": 1})).await.unwrap();
    q.send(QUEUE, &json!({"b": 2})).await.unwrap();
    let first = q.receive(QUEUE, 20, Duration::ZERO).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(ids(&first).len(), 2, "no duplicates within one receive");
    let second = q.receive(QUEUE, 20, Duration::ZERO).await.unwrap();
    assert_eq!(ids(&second), ids(&first));
    assert!(second.iter().all(|m| m.receive_count == 2));
    for m in &second {
        q.delete(QUEUE, &m.receipt).await.unwrap();
    }
    assert_eq!(q.depth(QUEUE).await.unwrap(), 0);
}

/// A message received `max_receives` times without being deleted is not delivered again:
/// it is in the dead-letter queue, body intact.
pub async fn dead_letter_after_max_receives(b: &impl QueueBackend) {
    let q = b.queue();
    let max = b.max_receives();
    assert!(max >= 1);
    q.send(QUEUE, &json!({"poison": true})).await.unwrap();
    for n in 1..=max {
        let got = q.receive(QUEUE, 1, VISIBILITY).await.unwrap();
        assert_eq!(got.len(), 1, "receive {n} of {max}");
        assert_eq!(got[0].receive_count, n);
        b.pass(PAST_VISIBILITY).await;
    }
    assert!(q.receive(QUEUE, 10, VISIBILITY).await.unwrap().is_empty());
    assert_eq!(q.depth(QUEUE).await.unwrap(), 0);
    assert_eq!(q.depth(DLQ).await.unwrap(), 1);
    let dead = q.receive(DLQ, 10, VISIBILITY).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, json!({"poison": true}));
    q.delete(DLQ, &dead[0].receipt).await.unwrap();
    assert_eq!(q.depth(DLQ).await.unwrap(), 0);
}

/// Deleting with a receipt that was never issued is a `Conflict`; an empty queue name is
/// `InvalidInput` for every operation.
pub async fn bogus_receipt_and_empty_name_are_errors(b: &impl QueueBackend) {
    let q = b.queue();
    let err = q.delete(QUEUE, "not-a-receipt").await.unwrap_err();
    assert_eq!(err.name(), "Conflict", "{err}");
    assert_eq!(
        q.send("", &json!(1)).await.unwrap_err().name(),
        "InvalidInput"
    );
    assert_eq!(
        q.receive("", 1, VISIBILITY).await.unwrap_err().name(),
        "InvalidInput"
    );
}

/// A body that is not JSON makes `receive` fail with an error naming the message instead of
/// dropping or mangling it; a good message received with it is given back at once and is not
/// lost; the bad one counts as received, so it reaches the dead-letter queue in time.
pub async fn non_json_body_is_an_error_and_is_not_dropped(b: &impl QueueBackend) {
    let q = b.queue();
    let good = q.send(QUEUE, &json!({"good": 1})).await.unwrap();
    let bad = b.send_raw(QUEUE, "this is {not json").await;
    assert_ne!(good, bad);
    let err = q.receive(QUEUE, 10, VISIBILITY).await;
    let err = match err {
        Err(e) => e,
        Ok(m) => panic!("a body that is not JSON must not pass as a message: {m:?}"),
    };
    assert!(
        err.to_string().contains(&bad),
        "the error names {bad}: {err}"
    );
    assert!(
        !err.to_string().contains("not json"),
        "and does not echo the body"
    );
    assert_eq!(q.depth(QUEUE).await.unwrap(), 2, "nothing dropped");
    assert_eq!(q.depth(DLQ).await.unwrap(), 0);
    // The good message is handed out (alone) while the bad one is hidden.
    let got = q.receive(QUEUE, 10, VISIBILITY).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].id.as_str(), &got[0].body),
        (good.as_str(), &json!({"good": 1}))
    );
    q.delete(QUEUE, &got[0].receipt).await.unwrap();
    // Receive after receive, the bad one ends in the dead-letter queue.
    for _ in 0..=b.max_receives() + 1 {
        b.pass(VISIBILITY + Duration::from_millis(150)).await;
        if q.depth(DLQ).await.unwrap() == 1 {
            break;
        }
        let _ = q.receive(QUEUE, 10, VISIBILITY).await;
    }
    assert_eq!(q.depth(DLQ).await.unwrap(), 1, "dead-lettered");
    assert_eq!(q.depth(QUEUE).await.unwrap(), 0);
}
