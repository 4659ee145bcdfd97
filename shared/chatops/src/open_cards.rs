//! The index of cards still showing live buttons (store table `chat_messages`, key
//! `open`), so cards whose approval expired or was decided elsewhere (`certops approve`,
//! the generic signed callback) can be found and updated: the Store port has no scan.
//! Every change is a compare-and-swap, retried on contention.

use certops_core::ports::{Store, Table};
use certops_core::Error;
use serde_json::{json, Value};

const KEY: &str = "open";

async fn change(store: &dyn Store, f: impl Fn(&mut Vec<String>)) -> Result<(), Error> {
    for _ in 0..20 {
        let current = store.get(Table::ChatMessages, KEY).await?;
        let mut ids: Vec<String> = current
            .as_ref()
            .and_then(|v| serde_json::from_value(v["ids"].clone()).ok())
            .unwrap_or_default();
        let before = ids.clone();
        f(&mut ids);
        if ids == before {
            return Ok(());
        }
        let new: Value = json!({ "ids": ids });
        let written = match &current {
            Some(c) => {
                store
                    .compare_and_swap(Table::ChatMessages, KEY, Some(c), &new)
                    .await?
            }
            None => store.put_if_absent(Table::ChatMessages, KEY, &new).await?,
        };
        if written {
            return Ok(());
        }
    }
    Err(Error::Transient("the open-card index is contended".into()))
}

/// Adds an approval id.
pub async fn add(store: &dyn Store, id: &str) -> Result<(), Error> {
    change(store, |ids| {
        if !ids.iter().any(|i| i == id) {
            ids.push(id.to_string());
        }
    })
    .await
}

/// Removes an approval id.
pub async fn remove(store: &dyn Store, id: &str) -> Result<(), Error> {
    change(store, |ids| ids.retain(|i| i != id)).await
}

/// The approval ids whose cards are open.
pub async fn list(store: &dyn Store) -> Result<Vec<String>, Error> {
    Ok(store
        .get(Table::ChatMessages, KEY)
        .await?
        .and_then(|v| serde_json::from_value(v["ids"].clone()).ok())
        .unwrap_or_default())
}
