//! [`VaultPki`]: an internal PKI with the HashiCorp Vault / OpenBao PKI secrets engine API.
//!
//! `POST /v1/<mount>/sign/<role>` with the renew step's CSR (the key never leaves certops),
//! the token from a secret reference in the `X-Vault-Token` header, trust anchors from
//! `GET /v1/<mount>/ca/pem`. Errors (`{"errors": [...]}`) map to names: 400 (the role refuses
//! the names, TTL or key) → [`Error::IssuanceFailed`]; 401/403 (missing or bad token, policy)
//! → [`Error::IssuanceFailed`] saying so; 429 → [`Error::RateLimited`]; 5xx, 503 sealed and
//! connection failures → [`Error::IssuerDown`].

use std::sync::Arc;

use async_trait::async_trait;
use certops_core::integrations::{SecretRef, SecretResolver};
use certops_core::ports::{IssueRequest, Issuer};
use certops_core::Error;
use serde::Deserialize;

/// Where and how to reach the PKI.
#[derive(Debug, Clone)]
pub struct VaultPkiConfig {
    /// The issuer's inventory name.
    pub name: String,
    /// Base address (`https://vault:8200`).
    pub address: String,
    /// PKI mount path.
    pub mount: String,
    /// Signing role.
    pub role: String,
    /// The token, by reference.
    pub token: SecretRef,
    /// Namespace header, if any.
    pub namespace: Option<String>,
    /// Requested TTL.
    pub ttl: Option<String>,
}

/// The Vault/OpenBao PKI adapter.
pub struct VaultPki {
    config: VaultPkiConfig,
    client: reqwest::Client,
    secrets: Arc<dyn SecretResolver>,
}

impl std::fmt::Debug for VaultPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultPki")
            .field("name", &self.config.name)
            .field("address", &self.config.address)
            .field("mount", &self.config.mount)
            .field("role", &self.config.role)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Errors {
    #[serde(default)]
    errors: Vec<String>,
}

#[derive(Deserialize)]
struct SignResponse {
    data: SignData,
}

#[derive(Deserialize)]
struct SignData {
    certificate: String,
    #[serde(default)]
    issuing_ca: Option<String>,
    #[serde(default)]
    ca_chain: Option<Vec<String>>,
}

impl VaultPki {
    /// An adapter for `config` over `client`, resolving the token through `secrets`.
    pub fn new(
        config: VaultPkiConfig,
        client: reqwest::Client,
        secrets: Arc<dyn SecretResolver>,
    ) -> VaultPki {
        VaultPki {
            config,
            client,
            secrets,
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/v1/{}/{path}",
            self.config.address.trim_end_matches('/'),
            self.config.mount.trim_matches('/')
        )
    }

    fn unreachable(&self, e: reqwest::Error) -> Error {
        Error::IssuerDown(format!(
            "PKI {} at {}: unreachable: {e}",
            self.config.name, self.config.address
        ))
    }

    async fn failure(&self, what: &str, rsp: reqwest::Response) -> Error {
        let status = rsp.status();
        let errors = rsp
            .json::<Errors>()
            .await
            .map(|e| e.errors.join("; "))
            .unwrap_or_default();
        let name = &self.config.name;
        let text = format!("PKI {name} {what}: HTTP {}: {errors}", status.as_u16());
        match status.as_u16() {
            400 => Error::IssuanceFailed(format!("{text} (the role refused the request)")),
            401 | 403 => Error::IssuanceFailed(format!(
                "{text} (the token is missing, expired or not allowed to use role {})",
                self.config.role
            )),
            429 => Error::RateLimited(text),
            s if s >= 500 => Error::IssuerDown(text),
            _ => Error::IssuanceFailed(text),
        }
    }
}

#[async_trait]
impl Issuer for VaultPki {
    async fn issue(&self, request: &IssueRequest) -> Result<String, Error> {
        crate::csr::der(&request.csr_pem)?;
        let token = self
            .secrets
            .resolve(&self.config.token)
            .await
            .map_err(|e| {
                Error::IssuanceFailed(format!("PKI {}: no token: {e}", self.config.name))
            })?;
        let alt_names: Vec<&str> = request
            .sans
            .iter()
            .filter(|n| **n != request.common_name)
            .map(String::as_str)
            .collect();
        let mut body = serde_json::json!({
            "csr": request.csr_pem,
            "common_name": request.common_name,
            "alt_names": alt_names.join(","),
            "format": "pem",
            "exclude_cn_from_sans": false,
        });
        if let Some(ttl) = &self.config.ttl {
            body["ttl"] = serde_json::Value::String(ttl.clone());
        }
        let mut call = self
            .client
            .post(self.url(&format!("sign/{}", self.config.role)))
            .header("X-Vault-Token", token.as_str())
            .json(&body);
        if let Some(ns) = &self.config.namespace {
            call = call.header("X-Vault-Namespace", ns);
        }
        drop(token);
        let rsp = call.send().await.map_err(|e| self.unreachable(e))?;
        if !rsp.status().is_success() {
            return Err(self.failure("sign", rsp).await);
        }
        let signed: SignResponse = rsp.json().await.map_err(|e| {
            Error::IssuerDown(format!(
                "PKI {} sign: unreadable answer: {e}",
                self.config.name
            ))
        })?;
        let mut chain = signed.data.certificate.trim().to_string();
        chain.push('\n');
        let intermediates = match signed.data.ca_chain {
            Some(list) if !list.is_empty() => list,
            _ => signed.data.issuing_ca.into_iter().collect(),
        };
        for ca in intermediates {
            chain.push_str(ca.trim());
            chain.push('\n');
        }
        Ok(chain)
    }

    async fn trust_anchors_pem(&self) -> Result<Option<String>, Error> {
        let rsp = self
            .client
            .get(self.url("ca/pem"))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !rsp.status().is_success() {
            return Err(self.failure("ca/pem", rsp).await);
        }
        let pem = rsp.text().await.map_err(|e| self.unreachable(e))?;
        Ok((!pem.trim().is_empty()).then_some(pem))
    }
}
