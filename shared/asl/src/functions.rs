//! In-process Lambda functions: a [`TaskInvoker`] that resolves a Task's
//! `FunctionName` (a name or a Lambda ARN, with or without a qualifier) to a
//! registered handler, as the embedded runtime's stand-in for Lambda.

use crate::engine::{BoxFuture, TaskInvoker, TaskRequest};
use crate::machine::StatesError;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A handler: the function's event in, its result or `(errorType, message)` out.
pub type Handler = Arc<dyn Fn(Value) -> BoxFuture<Result<Value, StatesError>> + Send + Sync>;

/// Registered functions by name.
#[derive(Default, Clone)]
pub struct FunctionRegistry {
    functions: Arc<RwLock<HashMap<String, Handler>>>,
}

/// The function name inside a Lambda ARN or name (`arn:aws:lambda:r:a:function:NAME[:qualifier]`).
pub fn function_name(name_or_arn: &str) -> &str {
    match name_or_arn.strip_prefix("arn:aws:lambda:") {
        Some(rest) => {
            let mut parts = rest.splitn(5, ':');
            let _region = parts.next();
            let _account = parts.next();
            let _kind = parts.next();
            parts.next().unwrap_or(name_or_arn)
        }
        None => name_or_arn.split(':').next().unwrap_or(name_or_arn),
    }
}

impl FunctionRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with the built-in utility functions: `echo` (returns its
    /// event) and `noop` (returns `{}`; useful before a callback).
    pub fn with_builtins() -> Self {
        let r = Self::new();
        r.register("echo", |event| async move { Ok(event) });
        r.register("noop", |_event| async move { Ok(json!({})) });
        r
    }

    /// Registers (or replaces) a function.
    pub fn register<F, Fut>(&self, name: &str, f: F)
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Value, StatesError>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |v| Box::pin(f(v)));
        if let Ok(mut m) = self.functions.write() {
            m.insert(name.to_string(), handler);
        }
    }

    /// Names of the registered functions, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .functions
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl TaskInvoker for FunctionRegistry {
    fn invoke(&self, request: TaskRequest) -> BoxFuture<Result<Value, StatesError>> {
        let Some(target) = request.function.clone() else {
            let resource = request.resource.clone();
            return Box::pin(async move {
                Err(StatesError::new(
                    "States.TaskFailed",
                    format!("the local engine runs Lambda tasks only; resource '{resource}' is not supported"),
                ))
            });
        };
        let name = function_name(&target).to_string();
        let handler = self
            .functions
            .read()
            .ok()
            .and_then(|m| m.get(&name).cloned());
        match handler {
            Some(h) => h(request.payload),
            None => Box::pin(async move {
                Err(StatesError::new(
                    "Lambda.ResourceNotFoundException",
                    format!("Function not found: {target}"),
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_taken_from_arns() {
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:123456789012:function:renew"),
            "renew"
        );
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:123456789012:function:renew:live"),
            "renew"
        );
        assert_eq!(function_name("renew"), "renew");
        assert_eq!(function_name("renew:3"), "renew");
    }

    #[tokio::test]
    async fn unknown_functions_fail_like_lambda() {
        let r = FunctionRegistry::with_builtins();
        let req = |f: &str| TaskRequest {
            execution_arn: "e".into(),
            state_name: "S".into(),
            resource: "arn:aws:states:::lambda:invoke".into(),
            function: Some(f.into()),
            payload: json!({"a": 1}),
            task_token: None,
        };
        assert_eq!(r.invoke(req("echo")).await.unwrap(), json!({"a": 1}));
        let e = r.invoke(req("missing")).await.unwrap_err();
        assert_eq!(e.error, "Lambda.ResourceNotFoundException");
    }
}
