//! [`DeployTarget`] for [`TargetKind::Local`]: in-process TLS servers on loopback that
//! hot-swap their certificate.
//!
//! Each endpoint has an *installed* bundle (what `deploy` put in place) and a *serving*
//! bundle (what handshakes see, swapped in by `reload`), like a real server whose files
//! change before it is reloaded. Faults can be injected per target so demos and tests can
//! drive the workflow's rollback paths: a deploy that fails, or a reload that reports
//! success yet keeps serving the old certificate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use certops_core::ports::{Bundle, DeployTarget, Keystore};
use certops_core::{Error, Target, TargetKind};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A failure to inject into one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetFault {
    /// `deploy` fails with [`Error::DeployFailed`].
    DeployFails,
    /// `reload` returns `Ok` but the endpoint keeps serving the old certificate.
    IgnoresReload,
}

/// Serves whatever certificate is current; `reload` replaces it atomically.
#[derive(Debug)]
struct SwapResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl SwapResolver {
    fn swap(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = key;
    }
}

impl ResolvesServerCert for SwapResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

struct Loaded {
    reference: String,
    key: Arc<CertifiedKey>,
}

struct Endpoint {
    addr: SocketAddr,
    resolver: Arc<SwapResolver>,
    installed: Loaded,
    serving: String,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // Open connections get the signal and finish their response; the accept loop stops.
        let _ = self.shutdown.send(true);
        self.task.abort();
    }
}

/// In-process TLS endpoints, one per local target.
pub struct LocalEndpoints {
    keystore: Arc<dyn Keystore>,
    provider: Arc<CryptoProvider>,
    endpoints: Mutex<HashMap<String, Endpoint>>,
    faults: Mutex<HashMap<String, TargetFault>>,
}

impl std::fmt::Debug for LocalEndpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs: HashMap<String, SocketAddr> = self
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.addr))
            .collect();
        f.debug_struct("LocalEndpoints")
            .field("endpoints", &addrs)
            .finish_non_exhaustive()
    }
}

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 28\r\nconnection: close\r\n\r\ncertops local TLS endpoint\r\n";

/// Resolves once shutdown is signalled (or the sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn serve_connection(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    mut shutdown: watch::Receiver<bool>,
) {
    let work = async {
        let mut tls =
            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                _ => return,
            };
        // Read the request (if the client sends one), answer, close.
        let mut buf = [0u8; 1024];
        let _ = tokio::time::timeout(Duration::from_secs(2), tls.read(&mut buf)).await;
        let _ = tls.write_all(RESPONSE).await;
        let _ = tls.shutdown().await;
    };
    tokio::select! {
        _ = work => {}
        _ = stopped(&mut shutdown) => {}
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    mut shutdown: watch::Receiver<bool>,
) {
    let for_connections = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(acceptor.clone(), stream, for_connections.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "local endpoint accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stopped(&mut shutdown) => return,
        }
    }
}

impl LocalEndpoints {
    /// Endpoints loading their bundles from `keystore`.
    pub fn new(keystore: Arc<dyn Keystore>) -> LocalEndpoints {
        LocalEndpoints {
            keystore,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            endpoints: Mutex::new(HashMap::new()),
            faults: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Endpoint>> {
        self.endpoints.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a TLS server for `target_id` on `127.0.0.1:0` serving `initial_bundle_ref`
    /// (installed and serving) and returns its address. Must run inside a tokio runtime.
    /// [`Error::Conflict`] if the target is already running.
    pub async fn start(
        &self,
        target_id: &str,
        initial_bundle_ref: &str,
    ) -> Result<SocketAddr, Error> {
        if self.lock().contains_key(target_id) {
            return Err(Error::Conflict(format!(
                "local endpoint {target_id} is already running"
            )));
        }
        let key = self
            .load(initial_bundle_ref)
            .await
            .map_err(|e| Error::InvalidInput(format!("cannot start {target_id}: {e}")))?;
        let resolver = Arc::new(SwapResolver {
            current: RwLock::new(key.clone()),
        });
        let config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::InvalidInput(format!("TLS configuration: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| Error::Transient(format!("bind local endpoint {target_id}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Transient(format!("local endpoint {target_id} address: {e}")))?;
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(Arc::new(config)),
            rx,
        ));
        let endpoint = Endpoint {
            addr,
            resolver,
            installed: Loaded {
                reference: initial_bundle_ref.to_string(),
                key,
            },
            serving: initial_bundle_ref.to_string(),
            shutdown,
            task,
        };
        let mut endpoints = self.lock();
        if endpoints.contains_key(target_id) {
            // Lost a race with another start; `endpoint` drops and shuts down.
            return Err(Error::Conflict(format!(
                "local endpoint {target_id} is already running"
            )));
        }
        endpoints.insert(target_id.to_string(), endpoint);
        tracing::info!(target = %target_id, %addr, "local TLS endpoint started");
        Ok(addr)
    }

    /// Stops a target's server. `false` if it was not running.
    pub fn stop(&self, target_id: &str) -> bool {
        self.lock().remove(target_id).is_some()
    }

    /// Where a target listens.
    pub fn addr(&self, target_id: &str) -> Option<SocketAddr> {
        self.lock().get(target_id).map(|e| e.addr)
    }

    /// The bundle reference installed on a target (may differ from what it serves until
    /// reload).
    pub fn installed(&self, target_id: &str) -> Option<String> {
        self.lock()
            .get(target_id)
            .map(|e| e.installed.reference.clone())
    }

    /// Injects (or with `None` clears) a fault for a target.
    pub fn set_fault(&self, target_id: &str, fault: Option<TargetFault>) {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        match fault {
            Some(f) => faults.insert(target_id.to_string(), f),
            None => faults.remove(target_id),
        };
    }

    fn fault(&self, target_id: &str) -> Option<TargetFault> {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(target_id)
            .copied()
    }

    /// Loads a bundle and checks that its key matches its leaf. The message never
    /// includes key material.
    async fn load(&self, reference: &str) -> Result<Arc<CertifiedKey>, String> {
        let bundle: Bundle = self
            .keystore
            .get_bundle(reference)
            .await
            .map_err(|e| e.to_string())?;
        let certs = CertificateDer::pem_slice_iter(bundle.chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{reference}: certificate chain does not parse: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{reference}: bundle holds no certificate"));
        }
        let key = PrivateKeyDer::from_pem_slice(bundle.key.expose().as_bytes())
            .map_err(|_| format!("{reference}: private key does not parse"))?;
        let certified = CertifiedKey::from_der(certs, key, &self.provider)
            .map_err(|e| format!("{reference}: key and certificate do not match: {e}"))?;
        Ok(Arc::new(certified))
    }
}

fn local_only(target: &Target) -> Result<(), Error> {
    if target.kind == TargetKind::Local {
        Ok(())
    } else {
        Err(Error::DeployFailed(format!(
            "no adapter for kind {:?} in the embedded runtime (target {})",
            target.kind, target.id
        )))
    }
}

fn not_running(target: &Target) -> Error {
    Error::DeployFailed(format!("no local endpoint {} is running", target.id))
}

#[async_trait]
impl DeployTarget for LocalEndpoints {
    async fn current(&self, target: &Target) -> Result<Option<String>, Error> {
        local_only(target)?;
        Ok(self.lock().get(&target.id).map(|e| e.serving.clone()))
    }

    async fn deploy(&self, target: &Target, bundle_ref: &str) -> Result<(), Error> {
        local_only(target)?;
        if !self.lock().contains_key(&target.id) {
            return Err(not_running(target));
        }
        if self.fault(&target.id) == Some(TargetFault::DeployFails) {
            return Err(Error::DeployFailed(format!(
                "injected deploy failure on {}",
                target.id
            )));
        }
        let key = self
            .load(bundle_ref)
            .await
            .map_err(|e| Error::DeployFailed(format!("{}: {e}", target.id)))?;
        let mut endpoints = self.lock();
        let endpoint = endpoints
            .get_mut(&target.id)
            .ok_or_else(|| not_running(target))?;
        endpoint.installed = Loaded {
            reference: bundle_ref.to_string(),
            key,
        };
        tracing::info!(target = %target.id, bundle = %bundle_ref, "bundle installed on local endpoint");
        Ok(())
    }

    async fn reload(&self, target: &Target) -> Result<(), Error> {
        local_only(target)?;
        let fault = self.fault(&target.id);
        let mut endpoints = self.lock();
        let endpoint = endpoints
            .get_mut(&target.id)
            .ok_or_else(|| not_running(target))?;
        if fault == Some(TargetFault::IgnoresReload) {
            tracing::warn!(target = %target.id, "injected fault: reload ignored, old certificate still served");
            return Ok(());
        }
        endpoint.resolver.swap(endpoint.installed.key.clone());
        endpoint.serving = endpoint.installed.reference.clone();
        tracing::info!(target = %target.id, bundle = %endpoint.serving, "local endpoint reloaded");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local_ca::testing::{make_csr, request, Now};
    use crate::{FileKeystore, LocalCa};
    use certops_core::ports::{Issuer, SecretPem};
    use certops_core::ReloadMethod;
    use rustls::pki_types::ServerName;
    use tokio_rustls::TlsConnector;

    struct Fixture {
        _tmp: tempfile::TempDir,
        ks: Arc<FileKeystore>,
        ca: LocalCa,
        endpoints: LocalEndpoints,
        root: String,
    }

    async fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let ks = Arc::new(FileKeystore::open(&tmp.path().join("keystore")).unwrap());
        let ca = LocalCa::new(ks.clone(), Arc::new(Now));
        let root = ca.root_pem().await.unwrap();
        let endpoints = LocalEndpoints::new(ks.clone());
        Fixture {
            _tmp: tmp,
            ks,
            ca,
            endpoints,
            root,
        }
    }

    /// Issues a certificate for shop.local and stores it as `name`; returns (ref, leaf DER).
    async fn issue(f: &Fixture, name: &str) -> (String, CertificateDer<'static>) {
        let (csr, key) = make_csr(&["shop.local"]);
        let chain =
            f.ca.issue(&request("shop", &["shop.local"], csr))
                .await
                .unwrap();
        let leaf = CertificateDer::pem_slice_iter(chain.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let r =
            f.ks.put_bundle(
                name,
                Bundle {
                    chain_pem: chain,
                    key: SecretPem::new(key),
                },
            )
            .await
            .unwrap();
        (r, leaf)
    }

    /// Handshakes as an outside client trusting only the local root; returns the served leaf
    /// and the HTTP response.
    async fn served_leaf(addr: SocketAddr, root_pem: &str) -> (CertificateDer<'static>, String) {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("shop.local").unwrap(), tcp)
            .await
            .unwrap();
        let leaf = tls.get_ref().1.peer_certificates().unwrap()[0]
            .clone()
            .into_owned();
        tls.write_all(b"GET / HTTP/1.1\r\nhost: shop.local\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        let _ = tls.read_to_string(&mut body).await;
        (leaf, body)
    }

    fn target(id: &str) -> Target {
        Target {
            kind: TargetKind::Local,
            id: id.into(),
            reload: ReloadMethod::HotSwap,
        }
    }

    #[tokio::test]
    async fn deploy_installs_and_reload_swaps_what_handshakes_see() {
        let f = fixture().await;
        let (v1, leaf1) = issue(&f, "shop/v1").await;
        let (v2, leaf2) = issue(&f, "shop/v2").await;
        let addr = f.endpoints.start("web-1", &v1).await.unwrap();
        let t = target("web-1");
        let (seen, body) = served_leaf(addr, &f.root).await;
        assert_eq!(seen, leaf1);
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        assert_eq!(f.endpoints.current(&t).await.unwrap(), Some(v1.clone()));

        f.endpoints.deploy(&t, &v2).await.unwrap();
        assert_eq!(f.endpoints.installed("web-1"), Some(v2.clone()));
        assert_eq!(
            served_leaf(addr, &f.root).await.0,
            leaf1,
            "installed, not yet served"
        );
        assert_eq!(f.endpoints.current(&t).await.unwrap(), Some(v1.clone()));

        f.endpoints.reload(&t).await.unwrap();
        assert_eq!(served_leaf(addr, &f.root).await.0, leaf2);
        assert_eq!(f.endpoints.current(&t).await.unwrap(), Some(v2.clone()));

        // Rollback is deploy + reload of the last-known-good.
        f.endpoints.deploy(&t, &v1).await.unwrap();
        f.endpoints.reload(&t).await.unwrap();
        assert_eq!(served_leaf(addr, &f.root).await.0, leaf1);
    }

    #[tokio::test]
    async fn ignores_reload_keeps_serving_the_old_certificate() {
        let f = fixture().await;
        let (v1, leaf1) = issue(&f, "shop/v1").await;
        let (v2, leaf2) = issue(&f, "shop/v2").await;
        let addr = f.endpoints.start("web-1", &v1).await.unwrap();
        let t = target("web-1");
        f.endpoints
            .set_fault("web-1", Some(TargetFault::IgnoresReload));
        f.endpoints.deploy(&t, &v2).await.unwrap();
        f.endpoints.reload(&t).await.unwrap();
        assert_eq!(served_leaf(addr, &f.root).await.0, leaf1);
        assert_eq!(f.endpoints.current(&t).await.unwrap(), Some(v1));
        f.endpoints.set_fault("web-1", None);
        f.endpoints.reload(&t).await.unwrap();
        assert_eq!(served_leaf(addr, &f.root).await.0, leaf2);
    }

    #[tokio::test]
    async fn deploy_failures_are_deploy_failed() {
        let f = fixture().await;
        let (v1, _) = issue(&f, "shop/v1").await;
        let (v2, _) = issue(&f, "shop/v2").await;
        f.endpoints.start("web-1", &v1).await.unwrap();
        let t = target("web-1");
        f.endpoints
            .set_fault("web-1", Some(TargetFault::DeployFails));
        assert_eq!(
            f.endpoints.deploy(&t, &v2).await.unwrap_err().name(),
            "DeployFailed"
        );
        assert_eq!(f.endpoints.installed("web-1"), Some(v1.clone()));
        f.endpoints.set_fault("web-1", None);
        // Missing bundle, unknown target, other kinds.
        assert_eq!(
            f.endpoints
                .deploy(&t, "keystore:nope")
                .await
                .unwrap_err()
                .name(),
            "DeployFailed"
        );
        assert_eq!(
            f.endpoints
                .deploy(&target("web-9"), &v2)
                .await
                .unwrap_err()
                .name(),
            "DeployFailed"
        );
        assert_eq!(
            f.endpoints
                .reload(&target("web-9"))
                .await
                .unwrap_err()
                .name(),
            "DeployFailed"
        );
        assert_eq!(f.endpoints.current(&target("web-9")).await.unwrap(), None);
        let nginx = Target {
            kind: TargetKind::Nginx,
            id: "web-1".into(),
            reload: ReloadMethod::NginxReload,
        };
        let err = f.endpoints.deploy(&nginx, &v2).await.unwrap_err();
        assert_eq!(err.name(), "DeployFailed");
        assert!(err.to_string().contains("no adapter for kind"), "{err}");
        assert_eq!(
            f.endpoints.start("web-1", &v1).await.unwrap_err().name(),
            "Conflict"
        );
    }

    #[tokio::test]
    async fn a_bundle_whose_key_does_not_match_is_refused_without_quoting_the_key() {
        let f = fixture().await;
        let (v1, _) = issue(&f, "shop/v1").await;
        f.endpoints.start("web-1", &v1).await.unwrap();
        let good = f.ks.get_bundle(&v1).await.unwrap();
        let (_, other_key) = make_csr(&["x.local"]);
        let marker = other_key.lines().nth(1).unwrap().to_string();
        let bad =
            f.ks.put_bundle(
                "shop/bad",
                Bundle {
                    chain_pem: good.chain_pem.clone(),
                    key: SecretPem::new(other_key),
                },
            )
            .await
            .unwrap();
        let err = f
            .endpoints
            .deploy(&target("web-1"), &bad)
            .await
            .unwrap_err();
        assert_eq!(err.name(), "DeployFailed");
        assert!(!err.to_string().contains(&marker), "{err}");
    }

    #[tokio::test]
    async fn dropping_the_endpoints_shuts_the_servers_down() {
        let f = fixture().await;
        let (v1, _) = issue(&f, "shop/v1").await;
        let addr = f.endpoints.start("web-1", &v1).await.unwrap();
        assert!(f.endpoints.stop("web-1"));
        assert!(!f.endpoints.stop("web-1"));
        let addr2 = f.endpoints.start("web-2", &v1).await.unwrap();
        drop(f.endpoints);
        for a in [addr, addr2] {
            let mut refused = false;
            for _ in 0..50 {
                if TcpStream::connect(a).await.is_err() {
                    refused = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(refused, "{a} still accepts connections");
        }
    }
}
