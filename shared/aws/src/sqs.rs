//! [`Queue`] over SQS: logical queue names ("intake", "scan") map to queue URLs; each
//! queue's dead-letter queue is its own `RedrivePolicy` (`maxReceiveCount`), set where the
//! queue is created (the template), so a message received that many times without being
//! deleted moves there on its next receive.
//!
//! Bodies are JSON. A received body that is not JSON is reported as an error naming the
//! message id and left in the queue (hidden for the visibility timeout), so its receive
//! count climbs until SQS moves it to the dead-letter queue; it is never deleted silently.
//! The other messages of that batch are released at once (visibility 0), so a poison
//! message delays them by no more than one call.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use aws_sdk_sqs::Client;
use certops_core::ports::{Message, Queue};
use certops_core::Error;
use serde_json::Value;

use crate::sdk_error::sdk_error;

/// The SDK this adapter is built on, re-exported so tools and tests build matching clients
/// (for example to create queues on an emulator).
pub use aws_sdk_sqs;

/// Environment variable holding the intake queue's URL.
pub const INTAKE_QUEUE_URL_ENV: &str = "CERTOPS_INTAKE_QUEUE_URL";
/// Environment variable holding the scan queue's URL.
pub const SCAN_QUEUE_URL_ENV: &str = "CERTOPS_SCAN_QUEUE_URL";

/// The logical queues the workflow uses and the variables naming their URLs.
const KNOWN_QUEUES: [(&str, &str); 2] = [
    ("intake", INTAKE_QUEUE_URL_ENV),
    ("scan", SCAN_QUEUE_URL_ENV),
];

/// SQS returns at most this many messages per `ReceiveMessage`.
pub const MAX_PER_RECEIVE: usize = 10;
/// The longest visibility timeout SQS accepts (12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// The SQS-backed [`Queue`].
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    urls: BTreeMap<String, String>,
    wait: Duration,
}

impl SqsQueue {
    /// Queues named by `urls` (logical name → queue URL), with a client built from `sdk`.
    /// Receives short-poll (see [`SqsQueue::with_wait_time`]).
    pub fn new(
        sdk: &aws_config::SdkConfig,
        urls: impl IntoIterator<Item = (String, String)>,
    ) -> SqsQueue {
        SqsQueue {
            client: Client::new(sdk),
            urls: urls.into_iter().collect(),
            wait: Duration::ZERO,
        }
    }

    /// The queues "intake" and "scan" from `CERTOPS_INTAKE_QUEUE_URL` and
    /// `CERTOPS_SCAN_QUEUE_URL`, those that are set: each function is given only the queues
    /// it sends to, and using one it was not given fails naming the variable.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> SqsQueue {
        let mut urls = BTreeMap::new();
        for (queue, var) in KNOWN_QUEUES {
            if let Some(url) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
                urls.insert(queue.to_string(), url);
            }
        }
        SqsQueue::new(sdk, urls)
    }

    /// Long-polls: a receive waits up to `wait` (whole seconds, at most 20) for a message
    /// when the queue is empty.
    pub fn with_wait_time(mut self, wait: Duration) -> SqsQueue {
        self.wait = wait.min(Duration::from_secs(20));
        self
    }

    /// The URL of logical `queue`; [`Error::InvalidInput`] naming the known queues when it is
    /// not configured.
    pub fn url(&self, queue: &str) -> Result<&str, Error> {
        self.urls.get(queue).map(String::as_str).ok_or_else(|| {
            if let Some((_, var)) = KNOWN_QUEUES.iter().find(|(q, _)| *q == queue) {
                return Error::InvalidInput(format!(
                    "queue \"{queue}\": {var} is not set for this function"
                ));
            }
            Error::InvalidInput(format!(
                "unknown queue \"{queue}\"; configured queues: {}",
                self.urls.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The SQS client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Makes `receipts` visible again at once (best effort: a failure only delays them).
    async fn release(&self, queue: &str, url: &str, receipts: &[String]) {
        for receipt in receipts {
            let result = self
                .client
                .change_message_visibility()
                .queue_url(url)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await;
            if let Err(e) = result {
                let e = sdk_error("SQS ChangeMessageVisibility", queue, e);
                tracing::warn!(error = %e, "could not release a message received with a poison one");
            }
        }
    }
}

/// The logical queue → URL map from [`INTAKE_QUEUE_URL_ENV`] and [`SCAN_QUEUE_URL_ENV`],
/// read through `get`; fails with [`Error::InvalidInput`] naming every missing variable.
pub fn urls_from_vars(
    get: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, Error> {
    let mut urls = BTreeMap::new();
    let mut missing = Vec::new();
    for (queue, var) in KNOWN_QUEUES {
        match get(var).filter(|v| !v.trim().is_empty()) {
            Some(url) => {
                urls.insert(queue.to_string(), url);
            }
            None => missing.push(var),
        }
    }
    if missing.is_empty() {
        Ok(urls)
    } else {
        Err(Error::InvalidInput(format!(
            "the SQS queue needs the environment variable(s) {} (queue URLs)",
            missing.join(", ")
        )))
    }
}

/// Whole seconds for SQS, rounded up so a message is never hidden for less than asked.
fn visibility_seconds(visibility: Duration) -> Result<i32, Error> {
    if visibility > MAX_VISIBILITY {
        return Err(Error::InvalidInput(format!(
            "visibility timeout {} s exceeds SQS's maximum of {} s",
            visibility.as_secs(),
            MAX_VISIBILITY.as_secs()
        )));
    }
    let secs = visibility.as_secs() + u64::from(visibility.subsec_nanos() > 0);
    i32::try_from(secs).map_err(|_| Error::InvalidInput("visibility timeout out of range".into()))
}

fn count_attr(
    attributes: Option<&std::collections::HashMap<QueueAttributeName, String>>,
    name: &QueueAttributeName,
) -> usize {
    attributes
        .and_then(|a| a.get(name))
        .and_then(|n| n.parse().ok())
        .unwrap_or_default()
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, queue: &str, body: &Value) -> Result<String, Error> {
        let url = self.url(queue)?;
        let text = serde_json::to_string(body)
            .map_err(|e| Error::InvalidInput(format!("message body not serializable: {e}")))?;
        let out = self
            .client
            .send_message()
            .queue_url(url)
            .message_body(text)
            .send()
            .await
            .map_err(|e| sdk_error("SQS SendMessage", queue, e))?;
        out.message_id()
            .map(str::to_string)
            .ok_or_else(|| Error::Transient(format!("SQS SendMessage on {queue}: no message id")))
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Message>, Error> {
        let url = self.url(queue)?;
        let visibility = visibility_seconds(visibility)?;
        let wait = i32::try_from(self.wait.as_secs()).unwrap_or(20);
        let mut out = Vec::new();
        let mut poison = Vec::new();
        while out.len() + poison.len() < max {
            let want = (max - out.len() - poison.len()).min(MAX_PER_RECEIVE);
            let got = self
                .client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(i32::try_from(want).unwrap_or(10))
                .visibility_timeout(visibility)
                .wait_time_seconds(wait)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send()
                .await
                .map_err(|e| sdk_error("SQS ReceiveMessage", queue, e))?;
            let messages = got.messages();
            let last_call = messages.is_empty() || visibility == 0;
            for m in messages {
                let (Some(id), Some(receipt)) = (m.message_id(), m.receipt_handle()) else {
                    return Err(Error::Transient(format!(
                        "SQS ReceiveMessage on {queue}: message without id or receipt handle"
                    )));
                };
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse().ok())
                    // It was just received, so at least once.
                    .unwrap_or(1);
                match serde_json::from_str(m.body().unwrap_or_default()) {
                    Ok(body) => out.push(Message {
                        id: id.to_string(),
                        receipt: receipt.to_string(),
                        body,
                        receive_count,
                    }),
                    Err(_) => poison.push(id.to_string()),
                }
            }
            if last_call {
                // Empty: nothing more to get. Visibility 0: the next call would return the
                // same messages again.
                break;
            }
        }
        if poison.is_empty() {
            return Ok(out);
        }
        let receipts: Vec<String> = out.into_iter().map(|m| m.receipt).collect();
        self.release(queue, url, &receipts).await;
        tracing::warn!(%queue, messages = ?poison, "received message bodies that are not JSON");
        Err(Error::InvalidInput(format!(
            "message(s) {} in queue {queue} have a body that is not JSON; left in the queue, \
             they move to its dead-letter queue after maxReceiveCount receives",
            poison.join(", ")
        )))
    }

    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), Error> {
        let url = self.url(queue)?;
        let result = self
            .client
            .delete_message()
            .queue_url(url)
            .receipt_handle(receipt)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_receipt_handle_is_invalid()) =>
            {
                Err(Error::Conflict(format!(
                    "receipt is not valid for a message in {queue} (malformed, or the message is gone)"
                )))
            }
            Err(e) => Err(sdk_error("SQS DeleteMessage", queue, e)),
        }
    }

    async fn depth(&self, queue: &str) -> Result<usize, Error> {
        let url = self.url(queue)?;
        let names = [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ];
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| sdk_error("SQS GetQueueAttributes", queue, e))?;
        Ok(names.iter().map(|n| count_attr(out.attributes(), n)).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_rounds_up_to_whole_seconds_and_is_capped() {
        assert_eq!(visibility_seconds(Duration::ZERO), Ok(0));
        assert_eq!(visibility_seconds(Duration::from_millis(1500)), Ok(2));
        assert_eq!(visibility_seconds(Duration::from_secs(30)), Ok(30));
        assert_eq!(
            visibility_seconds(MAX_VISIBILITY + Duration::from_secs(1))
                .unwrap_err()
                .name(),
            "InvalidInput"
        );
    }

    #[test]
    fn a_queue_the_function_was_not_given_names_its_variable() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let urls = BTreeMap::from([(
            "intake".to_string(),
            "http://127.0.0.1:1/123456789012/certops-intake".to_string(),
        )]);
        let q = SqsQueue::new(&sdk, urls);
        assert!(q.url("intake").is_ok());
        let e = q.url("scan").unwrap_err();
        assert!(e.to_string().contains(SCAN_QUEUE_URL_ENV), "{e}");
        assert!(q
            .url("other")
            .unwrap_err()
            .to_string()
            .contains("unknown queue"));
    }

    #[test]
    fn missing_queue_variables_are_named() {
        let err = urls_from_vars(|_| None).unwrap_err();
        assert!(err.to_string().contains(INTAKE_QUEUE_URL_ENV));
        assert!(err.to_string().contains(SCAN_QUEUE_URL_ENV));
        let urls = urls_from_vars(|n| Some(format!("https://sqs/{n}"))).unwrap();
        assert_eq!(urls.keys().collect::<Vec<_>>(), ["intake", "scan"]);
    }
}
