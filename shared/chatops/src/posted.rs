//! What the Store's chat-messages table holds per platform and approval: the card as it was
//! posted and where it was posted (Slack's channel and `ts`, Teams' service URL,
//! conversation and activity), read the same way by both adapters.

use certops_core::ports::ApprovalCard;
use certops_core::ports::{Store, Table};
use certops_core::Error;
use serde_json::Value;

/// A posted card's record.
pub(crate) struct Posted {
    /// The card as posted; [`Error::Corrupt`] when the stored card does not parse.
    pub card: Result<ApprovalCard, Error>,
    /// The whole record, with the platform's own reference fields.
    pub record: Value,
}

/// The record of the card `platform` (`"slack"`, `"teams"`) posted for `approval_id`, if any.
pub(crate) async fn load(
    store: &dyn Store,
    platform: &str,
    approval_id: &str,
) -> Result<Option<Posted>, Error> {
    let Some(record) = store
        .get(Table::ChatMessages, &format!("{platform}:{approval_id}"))
        .await?
    else {
        return Ok(None);
    };
    let card = serde_json::from_value(record["card"].clone()).map_err(|e| {
        Error::Corrupt(format!(
            "the {platform} card stored for {approval_id} does not parse: {e}"
        ))
    });
    Ok(Some(Posted { card, record }))
}
