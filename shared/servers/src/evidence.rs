//! What an adapter saw while deploying or reloading a target (command reports, Runtime API
//! answers), keyed by target id. Each call collects into its own [`Evidence`], which
//! `DeployTarget::deploy_and_reload` returns to the step's audit record, so concurrent
//! executions on one target id never mix. Values are redacted when stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Evidence by target id: one call's collector, or the router's latest-call record.
#[derive(Debug, Clone, Default)]
pub struct Evidence(Arc<Mutex<HashMap<String, Value>>>);

impl Evidence {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Value>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces what is kept for `target_id`.
    pub fn put(&self, target_id: &str, value: Value) {
        self.lock()
            .insert(target_id.to_string(), certops_core::audit::redact(&value));
    }

    /// Adds the fields of `value` (an object) to what is kept for `target_id`.
    pub fn merge(&self, target_id: &str, value: Value) {
        let value = certops_core::audit::redact(&value);
        let mut map = self.lock();
        let entry = map
            .entry(target_id.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
        match (entry.as_object_mut(), value) {
            (Some(into), Value::Object(from)) => into.extend(from),
            (_, other) => *entry = other,
        }
    }

    /// What is kept for `target_id`.
    pub fn get(&self, target_id: &str) -> Option<Value> {
        self.lock().get(target_id).cloned()
    }
}
