//! certops-servers: deploy targets and CDN purgers for the servers people actually run,
//! and the routers that pick one by kind.
//!
//! | Kind | Adapter | How |
//! |---|---|---|
//! | `haproxy` target | [`HaproxyTargets`] | Runtime API `set ssl cert` + `commit ssl cert` (abort on refusal), file on disk too |
//! | `nginx` target | [`NginxTargets`] | files swapped atomically, `nginx -t`, `SIGHUP` to the pid in the pid file |
//! | `command` target | [`CommandTargets`] | files with modes/owner, validate + reload commands with deadlines |
//! | `local` target | [`certops_adapters::LocalEndpoints`] | in-process TLS endpoint |
//! | `varnish` CDN | [`VarnishPurger`] | HTTP `PURGE`/`BAN`, or `ban` over the admin port |
//! | `generic-rest` CDN | [`RestPurger`] | one authenticated request, token from a secret reference |
//! | `local` CDN | [`certops_adapters::LocalCdn`] | in-process cache |
//!
//! Each real target's connection comes from the inventory's `[target."<id>"]` table and each
//! real CDN's from `[cdn."<distribution_id>"]` (`certops_core::inventory`), checked when the
//! inventory loads. A kind with no adapter here (ACM, ELBv2, CloudFront: the AWS runtime's)
//! is refused with `DeployFailed` / `PurgeFailed` naming it.
//!
//! Before it changes anything, every target can say what it serves as a keystore reference
//! ([`DeployTarget::current`]); a certificate certops did not deploy is copied into the
//! keystore first (`lkg/<target>/<fingerprint>`), so rollback can always restore it.
//!
//! ```
//! use certops_adapters::Embedded;
//! use certops_core::ports::{DeployTarget, SystemClock};
//! use certops_core::{Inventory, ReloadMethod, Target, TargetKind};
//! use std::sync::Arc;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let embedded = Embedded::open(dir.path(), Arc::new(SystemClock))?;
//! let inventory = Inventory::from_toml_str("")?;
//! let routers = certops_servers::Routers::embedded(&embedded, &inventory)?;
//! // A kind with no adapter here is refused, naming the kind.
//! let acm = Target { kind: TargetKind::Acm, id: "arn:x".into(), reload: ReloadMethod::None };
//! let err = routers.targets.deploy(&acm, "keystore:x").await.unwrap_err();
//! assert_eq!(err.name(), "DeployFailed");
//! assert!(err.to_string().contains("Acm"));
//! # Ok::<(), certops_core::Error>(())
//! # }).unwrap();
//! ```

pub mod bounded_command;
pub mod command_target;
pub mod evidence;
pub mod haproxy;
mod installed_files;
pub mod nginx;
pub mod rest_purge;
pub mod varnish;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use certops_adapters::{Embedded, LocalCdn, LocalEndpoints, LocalSecrets};
use certops_core::integrations::SecretResolver;
use certops_core::inventory::{CdnConnection, TargetConnection};
use certops_core::ports::{CdnPurger, DeployTarget, Keystore};
use certops_core::{Cdn, CdnKind, Error, Inventory, Target, TargetKind};
use serde_json::Value;

pub use command_target::CommandTargets;
pub use evidence::Evidence;
pub use haproxy::HaproxyTargets;
pub use nginx::NginxTargets;
pub use rest_purge::RestPurger;
pub use varnish::VarnishPurger;

/// The `DeployTarget` router: in-process endpoints for `local`, real servers for `nginx`,
/// `haproxy` and `command`, a refusal for anything else.
pub struct ServerTargets {
    local: Arc<LocalEndpoints>,
    connections: BTreeMap<String, TargetConnection>,
    nginx: NginxTargets,
    haproxy: HaproxyTargets,
    commands: CommandTargets,
    /// The latest call's evidence per target id, for [`DeployTarget::evidence`]; the step
    /// handlers use [`DeployTarget::deploy_and_reload`], whose evidence is its call's alone.
    latest: Evidence,
}

enum Route<'a> {
    Local,
    Real(&'a TargetConnection),
}

impl ServerTargets {
    /// A router over `local` endpoints and the real targets `connections` describes.
    pub fn new(
        local: Arc<LocalEndpoints>,
        keystore: Arc<dyn Keystore>,
        connections: BTreeMap<String, TargetConnection>,
    ) -> ServerTargets {
        ServerTargets {
            local,
            connections,
            nginx: NginxTargets::new(keystore.clone()),
            haproxy: HaproxyTargets::new(keystore.clone()),
            commands: CommandTargets::new(keystore),
            latest: Evidence::default(),
        }
    }

    /// Installs `bundle_ref` on a real target, reporting into `evidence`.
    async fn deploy_into(
        &self,
        target: &Target,
        bundle_ref: &str,
        evidence: &Evidence,
    ) -> Result<(), Error> {
        match self.route(target)? {
            Route::Local => self.local.deploy(target, bundle_ref).await,
            Route::Real(TargetConnection::Nginx(c)) => {
                self.nginx.deploy(target, c, bundle_ref, evidence).await
            }
            Route::Real(TargetConnection::Haproxy(c)) => {
                self.haproxy.deploy(target, c, bundle_ref, evidence).await
            }
            Route::Real(TargetConnection::Command(c)) => {
                self.commands.deploy(target, c, bundle_ref, evidence).await
            }
        }
    }

    /// Reloads a real target, reporting into `evidence`.
    async fn reload_into(&self, target: &Target, evidence: &Evidence) -> Result<(), Error> {
        match self.route(target)? {
            Route::Local => self.local.reload(target).await,
            Route::Real(TargetConnection::Nginx(c)) => self.nginx.reload(target, c, evidence).await,
            Route::Real(TargetConnection::Haproxy(c)) => {
                self.haproxy.reload(target, c, evidence).await
            }
            Route::Real(TargetConnection::Command(c)) => {
                self.commands.reload(target, c, evidence).await
            }
        }
    }

    fn route<'a>(&'a self, target: &Target) -> Result<Route<'a>, Error> {
        match target.kind {
            TargetKind::Local => Ok(Route::Local),
            TargetKind::Nginx | TargetKind::Haproxy | TargetKind::Command => {
                match self.connections.get(&target.id) {
                    Some(c) if c.kind() == target.kind => Ok(Route::Real(c)),
                    Some(c) => Err(Error::DeployFailed(format!(
                        "target {} is kind {:?} but its connection is {:?}",
                        target.id,
                        target.kind,
                        c.kind()
                    ))),
                    None => Err(Error::DeployFailed(format!(
                        "target {} (kind {:?}) has no [target.\"{}\"] connection in the inventory",
                        target.id, target.kind, target.id
                    ))),
                }
            }
            other => Err(Error::DeployFailed(format!(
                "no adapter for kind {other:?} in the embedded runtime (target {})",
                target.id
            ))),
        }
    }
}

#[async_trait]
impl DeployTarget for ServerTargets {
    async fn current(&self, target: &Target) -> Result<Option<String>, Error> {
        match self.route(target)? {
            Route::Local => self.local.current(target).await,
            Route::Real(TargetConnection::Nginx(c)) => self.nginx.current(target, c).await,
            Route::Real(TargetConnection::Haproxy(c)) => self.haproxy.current(target, c).await,
            Route::Real(TargetConnection::Command(c)) => self.commands.current(target, c).await,
        }
    }

    async fn deploy(&self, target: &Target, bundle_ref: &str) -> Result<(), Error> {
        let evidence = Evidence::default();
        let result = self.deploy_into(target, bundle_ref, &evidence).await;
        if let Some(v) = evidence.get(&target.id) {
            self.latest.put(&target.id, v);
        }
        result
    }

    async fn reload(&self, target: &Target) -> Result<(), Error> {
        let evidence = Evidence::default();
        let result = self.reload_into(target, &evidence).await;
        if let Some(v) = evidence.get(&target.id) {
            self.latest.merge(&target.id, v);
        }
        result
    }

    async fn evidence(&self, target: &Target) -> Option<Value> {
        self.latest.get(&target.id)
    }

    async fn deploy_and_reload(
        &self,
        target: &Target,
        bundle_ref: &str,
    ) -> (Result<(), Error>, Option<Value>) {
        // This call's own collector: a concurrent execution on the same target id writes
        // into its own, never into this one.
        let evidence = Evidence::default();
        let result = async {
            self.deploy_into(target, bundle_ref, &evidence).await?;
            self.reload_into(target, &evidence).await
        }
        .await;
        let mine = evidence.get(&target.id);
        if let Some(v) = &mine {
            self.latest.put(&target.id, v.clone());
        }
        (result, mine)
    }
}

/// The `CdnPurger` router: the in-process cache for `local`, Varnish and REST purges for
/// `varnish` and `generic-rest`, a refusal for anything else.
pub struct ServerCdn {
    local: Arc<LocalCdn>,
    connections: BTreeMap<String, CdnConnection>,
    varnish: VarnishPurger,
    rest: RestPurger,
}

impl ServerCdn {
    /// A router over the `local` cache and the real CDNs `connections` describes.
    pub fn new(
        local: Arc<LocalCdn>,
        secrets: Arc<dyn SecretResolver>,
        connections: BTreeMap<String, CdnConnection>,
    ) -> Result<ServerCdn, Error> {
        Ok(ServerCdn {
            local,
            connections,
            varnish: VarnishPurger::new()?,
            rest: RestPurger::new(secrets)?,
        })
    }
}

#[async_trait]
impl CdnPurger for ServerCdn {
    async fn purge(&self, cdn: &Cdn) -> Result<String, Error> {
        match cdn.kind {
            CdnKind::Local => self.local.purge(cdn).await,
            CdnKind::Varnish | CdnKind::GenericRest => {
                match (self.connections.get(&cdn.distribution_id), cdn.kind) {
                    (Some(CdnConnection::Varnish(c)), CdnKind::Varnish) => {
                        self.varnish.purge(cdn, c).await
                    }
                    (Some(CdnConnection::GenericRest(c)), CdnKind::GenericRest) => {
                        self.rest.purge(cdn, c).await
                    }
                    (Some(c), kind) => Err(Error::PurgeFailed(format!(
                        "cdn {} is kind {kind:?} but its connection is {:?}",
                        cdn.distribution_id,
                        c.kind()
                    ))),
                    (None, kind) => Err(Error::PurgeFailed(format!(
                        "cdn {} (kind {kind:?}) has no [cdn.\"{}\"] connection in the inventory",
                        cdn.distribution_id, cdn.distribution_id
                    ))),
                }
            }
            other => Err(Error::PurgeFailed(format!(
                "no adapter for CDN kind {other:?} in the embedded runtime (distribution {})",
                cdn.distribution_id
            ))),
        }
    }
}

/// Both routers, as the embedded stack hands them to the step handlers.
pub struct Routers {
    /// Deploy targets by kind.
    pub targets: Arc<ServerTargets>,
    /// CDN purgers by kind.
    pub cdn: Arc<ServerCdn>,
}

impl Routers {
    /// The embedded runtime's routers: the in-process endpoints and cache of `adapters`,
    /// the real servers of `inventory`, secrets resolved from `env:` / `file:`.
    pub fn embedded(adapters: &Embedded, inventory: &Inventory) -> Result<Routers, Error> {
        Ok(Routers {
            targets: Arc::new(ServerTargets::new(
                adapters.endpoints.clone(),
                adapters.keystore.clone(),
                inventory.connections.clone(),
            )),
            cdn: Arc::new(ServerCdn::new(
                adapters.cdn.clone(),
                Arc::new(LocalSecrets),
                inventory.cdn_connections.clone(),
            )?),
        })
    }
}
