//! certops-adapters: the embedded adapters, one implementation of each port of
//! [`certops_core::ports`] for running on one machine with no cloud.
//!
//! | Port | Adapter | Backing |
//! |---|---|---|
//! | `Store` | [`SqliteStore`] | `certops.db` (key/value + append-only audit chain) |
//! | `Queue` | [`SqliteQueue`] | `certops.db` (visibility timeout, dead-letter queue) |
//! | `Itsm` | [`TicketBook`] | `certops.db` (INC/CHG numbers, idempotent by correlation id) |
//! | `Chat` | [`LocalChat`] | `certops.db` (approval-card inbox, notifications) |
//! | `Issuer` | [`LocalCa`] | root + intermediate (rcgen) kept in the keystore |
//! | `Keystore` | [`FileKeystore`] | `keystore/` (0700), one 0600 file per bundle |
//! | `DeployTarget` | [`LocalEndpoints`] | in-process TLS servers on 127.0.0.1 |
//! | `CdnPurger` | [`LocalCdn`] | in-process cache |
//! | `Workflow` | [`EngineWorkflow`] | [`certops_asl::Engine`] |
//! | `TokenSealer` | [`AesGcmSealer`] | `token.key` (0600), AES-256-GCM |
//!
//! [`Embedded::open`] builds all of them over one data directory (the workflow needs an
//! engine and a state machine, so it is built separately with [`EngineWorkflow::new`]), and
//! [`Embedded::deps`] hands them to the handlers as `Deps`. The configuration (inventory,
//! policy, runbook, integrations) is read and parsed in one place, [`config_files`].
//! Fault injection for demos and tests: [`LocalCa::set_fault`], [`LocalEndpoints::set_fault`],
//! [`LocalCdn::set_failing`].
//!
//! ```
//! use certops_adapters::Embedded;
//! use certops_core::ports::{Itsm, NewTicket, Store, SystemClock, Table, TicketKind, TokenSealer};
//! use serde_json::json;
//! use std::sync::Arc;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let embedded = Embedded::open(dir.path(), Arc::new(SystemClock))?;
//!
//! // One active renewal per certificate: a conditional write.
//! assert!(embedded.store.put_if_absent(Table::Locks, "shop-www", &json!({"execution": "e1"})).await?);
//! assert!(!embedded.store.put_if_absent(Table::Locks, "shop-www", &json!({"execution": "e2"})).await?);
//!
//! // One ticket per trigger.
//! let ticket = NewTicket {
//!     kind: TicketKind::NormalChange,
//!     short_description: "Renew shop.example.com".into(),
//!     description: "expires in 12 days".into(),
//!     ci: "shop-www".into(),
//!     priority: 2,
//!     correlation_id: "scan:shop-www:2026-12-01".into(),
//!     standard_change: None,
//! };
//! let first = embedded.tickets.open(ticket.clone()).await?;
//! assert_eq!(first.number, "CHG0030001");
//! assert_eq!(embedded.tickets.open(ticket).await?.number, first.number);
//!
//! // Task tokens are stored sealed.
//! let sealed = embedded.sealer.seal("task-token")?;
//! assert_eq!(embedded.sealer.open(&sealed)?, "task-token");
//! # Ok::<(), certops_core::Error>(())
//! # }).unwrap();
//! ```

pub mod config_files;
pub mod engine_workflow;
pub mod file_keystore;
pub mod fixtures;
pub mod key_file;
pub mod local_ca;
pub mod local_cdn;
pub mod local_chat;
pub mod local_db;
pub mod local_secrets;
pub mod sqlite_queue;
pub mod sqlite_store;
pub mod ticket_book;
pub mod tls_endpoints;
pub mod tls_prober;
pub mod token_sealer;

use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use certops_core::ports::{Clock, Config, Deps, Prober, Workflow};
use certops_core::Error;

pub use config_files::{example_config, ConfigFiles, ConfigTexts};
pub use engine_workflow::EngineWorkflow;
pub use file_keystore::FileKeystore;
pub use local_ca::{IssuerFault, LocalCa};
pub use local_cdn::{CachedEntry, LocalCdn, PurgeRecord};
pub use local_chat::{LocalChat, Notification};
pub use local_db::LocalDb;
pub use local_secrets::LocalSecrets;
pub use sqlite_queue::{dead_letter_queue, SqliteQueue, DEFAULT_MAX_RECEIVES};
pub use sqlite_store::SqliteStore;
pub use ticket_book::TicketBook;
pub use tls_endpoints::{LocalEndpoints, TargetFault};
pub use tls_prober::TlsProber;
pub use token_sealer::AesGcmSealer;

/// The database file inside the data directory.
pub const DB_FILE: &str = "certops.db";
/// The keystore directory inside the data directory.
pub const KEYSTORE_DIR: &str = "keystore";
/// The token-sealing key file inside the data directory.
pub const TOKEN_KEY_FILE: &str = "token.key";
/// The audit key file in the data directory: the HMAC key of the audit chains' anchored
/// heads (0600, generated on first use).
pub const AUDIT_KEY_FILE: &str = "audit.key";

/// Every embedded adapter over one data directory. Each field is an `Arc` of the concrete
/// adapter, so it can be handed to `Deps` as an `Arc<dyn Port>` and still be used for
/// inspection and fault injection.
#[derive(Clone)]
pub struct Embedded {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The time every adapter reads.
    pub clock: Arc<dyn Clock>,
    /// The shared SQLite database.
    pub db: LocalDb,
    /// Store and audit.
    pub store: Arc<SqliteStore>,
    /// Queues (dead-letter after [`DEFAULT_MAX_RECEIVES`]).
    pub queue: Arc<SqliteQueue>,
    /// The local ticket book (ITSM).
    pub tickets: Arc<TicketBook>,
    /// The local approval inbox (chat).
    pub chat: Arc<LocalChat>,
    /// The local CA (issuer).
    pub ca: Arc<LocalCa>,
    /// The file keystore.
    pub keystore: Arc<FileKeystore>,
    /// The in-process TLS endpoints (deploy targets).
    pub endpoints: Arc<LocalEndpoints>,
    /// The in-process CDN cache.
    pub cdn: Arc<LocalCdn>,
    /// Task-token sealing.
    pub sealer: Arc<AesGcmSealer>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("data_dir", &self.data_dir)
            .field("db", &self.db)
            .field("keystore", &self.keystore)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl Embedded {
    /// Opens (creating as needed, mode 0700) `data_dir` with `certops.db`, `keystore/` and
    /// `token.key`, and builds every adapter over it. Safe to call again on the same
    /// directory: everything persisted is picked up.
    pub fn open(data_dir: &Path, clock: Arc<dyn Clock>) -> Result<Embedded, Error> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|e| {
                Error::Transient(format!("create data directory {}: {e}", data_dir.display()))
            })?;
        fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700)).map_err(|e| {
            Error::Transient(format!(
                "set data directory mode {}: {e}",
                data_dir.display()
            ))
        })?;
        let db = LocalDb::open(&data_dir.join(DB_FILE))?;
        let keystore = Arc::new(FileKeystore::open(&data_dir.join(KEYSTORE_DIR))?);
        let sealer = Arc::new(AesGcmSealer::open(&data_dir.join(TOKEN_KEY_FILE))?);
        Ok(Embedded {
            data_dir: data_dir.to_path_buf(),
            store: Arc::new(SqliteStore::new(db.clone(), audit_key(data_dir)?)),
            queue: Arc::new(SqliteQueue::new(
                db.clone(),
                clock.clone(),
                DEFAULT_MAX_RECEIVES,
            )),
            tickets: Arc::new(TicketBook::new(db.clone(), clock.clone())),
            chat: Arc::new(LocalChat::new(db.clone(), clock.clone())),
            ca: Arc::new(LocalCa::new(keystore.clone(), clock.clone())),
            endpoints: Arc::new(LocalEndpoints::new(keystore.clone())),
            cdn: Arc::new(LocalCdn::new()),
            keystore,
            sealer,
            db,
            clock,
        })
    }

    /// The ports over these adapters, with the configuration, the workflow and the prober
    /// given: the one wiring every embedded runtime starts from. `certops serve`, the
    /// functions' embedded backend and the tests then replace the ports their integrations
    /// configure (ServiceNow, chat, issuers, real servers) with struct update syntax.
    pub fn deps(
        &self,
        config: Arc<Config>,
        workflow: Arc<dyn Workflow>,
        prober: Arc<dyn Prober>,
    ) -> Deps {
        Deps {
            config,
            clock: self.clock.clone(),
            store: self.store.clone(),
            queue: self.queue.clone(),
            itsm: self.tickets.clone(),
            chat: self.chat.clone(),
            issuer: self.ca.clone(),
            keystore: self.keystore.clone(),
            targets: self.endpoints.clone(),
            cdn: self.cdn.clone(),
            prober,
            workflow,
            sealer: self.sealer.clone(),
        }
    }

    /// Pre-provisions the fallback certificate of certificate object `cert_id`: a fresh
    /// key, a certificate for `names` (the first is its common name) from the local CA
    /// acting as the internal PKI, both stored under keystore `reference`. Returns the
    /// stored reference, as an inventory's `fallback_cert` names it.
    pub async fn provision_fallback(
        &self,
        reference: &str,
        cert_id: &str,
        names: &[&str],
    ) -> Result<String, Error> {
        use certops_core::ports::{Bundle, IssueRequest, Issuer, Keystore, SecretPem};
        let generation = |e: rcgen::Error| {
            Error::InvalidInput(format!("fallback certificate for {cert_id}: {e}"))
        };
        let Some(common_name) = names.first() else {
            return Err(Error::InvalidInput(format!(
                "fallback certificate for {cert_id}: no name given"
            )));
        };
        let key = rcgen::KeyPair::generate().map_err(generation)?;
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .map_err(generation)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, *common_name);
        let csr_pem = params
            .serialize_request(&key)
            .and_then(|c| c.pem())
            .map_err(generation)?;
        let chain_pem = self
            .ca
            .issue(&IssueRequest {
                cert_id: cert_id.into(),
                issuer: certops_core::Issuer {
                    name: "corp-pki".into(),
                    method: certops_core::RenewalMethod::InternalPki,
                    registered_domain: None,
                },
                csr_pem,
                common_name: common_name.to_string(),
                sans: names.iter().map(|n| n.to_string()).collect(),
                replaces: None,
            })
            .await?;
        self.keystore
            .put_bundle(
                reference,
                Bundle {
                    chain_pem,
                    key: SecretPem::new(key.serialize_pem()),
                },
            )
            .await
    }
}

/// The audit key of the data directory ([`AUDIT_KEY_FILE`]), generated on first use.
pub fn audit_key(data_dir: &Path) -> Result<certops_core::AuditKey, Error> {
    let bytes = key_file::load_or_create(&data_dir.join(AUDIT_KEY_FILE), "audit key")?;
    certops_core::AuditKey::new(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local_ca::testing::{make_csr, request};
    use certops_core::ports::{
        Bundle, CdnPurger, DeployTarget, Issuer, Keystore, Queue, SecretPem, Store, SystemClock,
        Table, TokenSealer,
    };
    use certops_core::{Cdn, CdnKind, ReloadMethod, Target, TargetKind};
    use serde_json::json;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn a_provisioned_fallback_is_a_ca_issued_bundle_for_its_names() {
        let dir = tempfile::tempdir().unwrap();
        let e = Embedded::open(dir.path(), Arc::new(SystemClock)).unwrap();
        let reference = e
            .provision_fallback(
                "fallback/shop",
                "shop",
                &["shop.example.com", "www.shop.example.com"],
            )
            .await
            .unwrap();
        let bundle = e.keystore.get_bundle(&reference).await.unwrap();
        assert_eq!(
            crate::local_ca::testing::leaf_sans(&bundle.chain_pem),
            ["DNSName(shop.example.com)", "DNSName(www.shop.example.com)"]
        );
        assert!(bundle.key.expose().contains("PRIVATE KEY"));
        let err = e
            .provision_fallback("fallback/none", "none", &[])
            .await
            .unwrap_err();
        assert_eq!(err.name(), "InvalidInput");
    }

    #[tokio::test]
    async fn a_typed_record_that_does_not_parse_is_corrupt_state() {
        use certops_core::ports::StoreExt;
        let dir = tempfile::tempdir().unwrap();
        let e = Embedded::open(dir.path(), Arc::new(SystemClock)).unwrap();
        e.store
            .put_if_absent(Table::RenewalInfo, "shop", &json!({"not": "a window"}))
            .await
            .unwrap();
        let err = certops_core::renewal_info::load(e.store.as_ref(), "shop")
            .await
            .unwrap_err();
        assert_eq!(err.name(), "Corrupt", "{err}");
        assert!(err.to_string().contains("renewal-info/shop"), "{err}");
        let missing: Option<serde_json::Value> =
            e.store.get_as(Table::RenewalInfo, "none").await.unwrap();
        assert_eq!(missing, None);
    }

    #[tokio::test]
    async fn open_lays_out_the_data_directory_with_tight_modes_and_reopens() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let e = Embedded::open(&dir, Arc::new(SystemClock)).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(KEYSTORE_DIR)), 0o700);
        assert_eq!(mode(&dir.join(TOKEN_KEY_FILE)), 0o600);
        assert!(dir.join(DB_FILE).is_file());
        e.store
            .put_if_absent(Table::Triggers, "t1", &json!(1))
            .await
            .unwrap();
        e.queue.send("intake", &json!({"n": 1})).await.unwrap();
        let sealed = e.sealer.seal("tok").unwrap();
        let root = e.ca.root_pem().await.unwrap();
        drop(e);

        let e = Embedded::open(&dir, Arc::new(SystemClock)).unwrap();
        assert_eq!(
            e.store.get(Table::Triggers, "t1").await.unwrap(),
            Some(json!(1))
        );
        assert_eq!(e.queue.depth("intake").await.unwrap(), 1);
        assert_eq!(e.sealer.open(&sealed).unwrap(), "tok");
        assert_eq!(e.ca.root_pem().await.unwrap(), root, "the CA persists");
    }

    #[tokio::test]
    async fn the_adapters_work_together_renew_deploy_reload_purge() {
        let tmp = tempfile::tempdir().unwrap();
        let e = Embedded::open(tmp.path(), Arc::new(SystemClock)).unwrap();
        let mut refs = Vec::new();
        for v in ["v1", "v2"] {
            let (csr, key) = make_csr(&["shop.local"]);
            let chain =
                e.ca.issue(&request("shop", &["shop.local"], csr))
                    .await
                    .unwrap();
            let name = format!("shop/{v}");
            refs.push(
                e.keystore
                    .put_bundle(
                        &name,
                        Bundle {
                            chain_pem: chain,
                            key: SecretPem::new(key),
                        },
                    )
                    .await
                    .unwrap(),
            );
        }
        e.endpoints.start("web-1", &refs[0]).await.unwrap();
        let target = Target {
            kind: TargetKind::Local,
            id: "web-1".into(),
            reload: ReloadMethod::HotSwap,
        };
        e.endpoints.deploy(&target, &refs[1]).await.unwrap();
        e.endpoints.reload(&target).await.unwrap();
        assert_eq!(
            e.endpoints.current(&target).await.unwrap(),
            Some(refs[1].clone())
        );
        e.cdn.put("shop-cdn", "/index.html", "old");
        let cdn = Cdn {
            kind: CdnKind::Local,
            distribution_id: "shop-cdn".into(),
            paths: vec!["/*".into()],
        };
        e.cdn.purge(&cdn).await.unwrap();
        assert_eq!(e.cdn.get("shop-cdn", "/index.html"), None);
    }
}
