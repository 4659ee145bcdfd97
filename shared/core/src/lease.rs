//! The per-certificate renewal lock as a lease: one active renewal per
//! certificate object, held by an execution (its owner) until the owner
//! releases it on any terminal path, or until it expires, when the next
//! renewal takes it over. The lease lasts as long as an execution can run
//! (the state machine's `TimeoutSeconds`), so an expired lease can only
//! belong to an execution that has ended.

use crate::ports::{Store, Table};
use crate::Error;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};

/// How long a lease lasts: the renewal state machine's `TimeoutSeconds` (48 h).
pub const LEASE_SECONDS: i64 = 172_800;

/// The key recording which certificate an execution holds (for releases by execution).
fn owner_key(execution: &str) -> String {
    format!("owner#{execution}")
}

/// When a lease stops being valid (`expires`, or `since` plus the lease for older records).
fn expiry(lease: &Value) -> Option<DateTime<Utc>> {
    let at = |k: &str| {
        lease[k]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    at("expires").or_else(|| at("since").map(|s| s + TimeDelta::seconds(LEASE_SECONDS)))
}

/// Takes the lease on `cert_id` for `execution`: free, already its own, or
/// expired (taken over). Fails with [`Error::Conflict`] while another
/// execution holds a live lease.
pub async fn acquire(
    store: &dyn Store,
    cert_id: &str,
    execution: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let lease = json!({
        "execution": execution,
        "since": now,
        "expires": now + TimeDelta::seconds(LEASE_SECONDS),
    });
    for _ in 0..3 {
        let taken = if store.put_if_absent(Table::Locks, cert_id, &lease).await? {
            true
        } else {
            let Some(holder) = store.get(Table::Locks, cert_id).await? else {
                continue;
            };
            if holder["execution"] == json!(execution) {
                return Ok(());
            }
            if expiry(&holder).is_some_and(|e| e > now) {
                return Err(Error::Conflict(format!(
                    "a renewal of {cert_id} is already running in {}",
                    holder["execution"]
                )));
            }
            // Expired: its owner has ended; take it over.
            store
                .compare_and_swap(Table::Locks, cert_id, Some(&holder), &lease)
                .await?
        };
        if taken {
            let owner = json!({"cert": cert_id});
            if !store
                .put_if_absent(Table::Locks, &owner_key(execution), &owner)
                .await?
            {
                let old = store.get(Table::Locks, &owner_key(execution)).await?;
                store
                    .compare_and_swap(Table::Locks, &owner_key(execution), old.as_ref(), &owner)
                    .await?;
            }
            return Ok(());
        }
    }
    Err(Error::Conflict(format!(
        "the lock on {cert_id} kept changing; try again"
    )))
}

/// Releases the lease on `cert_id` if `execution` holds it. `Ok(true)` when released.
pub async fn release(store: &dyn Store, cert_id: &str, execution: &str) -> Result<bool, Error> {
    let mut released = false;
    if let Some(lease) = store.get(Table::Locks, cert_id).await? {
        if lease["execution"] == json!(execution) {
            released = store.delete_if(Table::Locks, cert_id, &lease).await?;
        }
    }
    if let Some(owner) = store.get(Table::Locks, &owner_key(execution)).await? {
        if owner["cert"] == json!(cert_id) {
            store
                .delete_if(Table::Locks, &owner_key(execution), &owner)
                .await?;
        }
    }
    Ok(released)
}

/// Releases whatever lease `execution` holds: called when an execution ends
/// by any path (success, failure without a Catch, time-out, `StopExecution`).
pub async fn release_for_execution(store: &dyn Store, execution: &str) -> Result<bool, Error> {
    let Some(owner) = store.get(Table::Locks, &owner_key(execution)).await? else {
        return Ok(false);
    };
    match owner["cert"].as_str() {
        Some(cert) => release(store, cert, execution).await,
        None => Ok(false),
    }
}
