//! The certificate inventory: every certificate object certops may touch, keyed by CI.
//!
//! Targets, endpoints and CDN properties come only from here — never from a ticket's free
//! text. The file format is documented in `runbooks/README.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::audit::find_secret;
use crate::integrations::SecretRef;
use crate::Error;

/// How a certificate is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RenewalMethod {
    /// An ACME CA (e.g. Let's Encrypt); subject to rate limits.
    Acme,
    /// The organisation's internal PKI.
    InternalPki,
    /// Issued and installed by a vendor; certops never renews these itself.
    VendorManaged,
}

impl RenewalMethod {
    /// The name used in files and reports (`acme`, `internal-pki`, `vendor-managed`).
    pub fn as_str(self) -> &'static str {
        match self {
            RenewalMethod::Acme => "acme",
            RenewalMethod::InternalPki => "internal-pki",
            RenewalMethod::VendorManaged => "vendor-managed",
        }
    }
}

impl fmt::Display for RenewalMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The environment a certificate object lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Production.
    Prod,
    /// Staging / pre-production.
    Staging,
    /// Development.
    Dev,
}

impl Environment {
    /// The name used in files and reports (`prod`, `staging`, `dev`).
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Prod => "prod",
            Environment::Staging => "staging",
            Environment::Dev => "dev",
        }
    }

    /// Maps an ITSM environment name to an [`Environment`], or `None` if it is not one of the
    /// fixed spellings. Case-insensitive; `production` and `development` are accepted because
    /// ServiceNow spells them that way. Anything else is unknown — never guessed.
    pub fn from_itsm(name: &str) -> Option<Environment> {
        match name.trim().to_ascii_lowercase().as_str() {
            "prod" | "production" => Some(Environment::Prod),
            "staging" => Some(Environment::Staging),
            "dev" | "development" => Some(Environment::Dev),
            _ => None,
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who issues the certificate and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issuer {
    /// The issuer's configured name (e.g. `letsencrypt-prod`, `corp-pki`), resolved by adapters.
    pub name: String,
    /// The renewal method.
    pub method: RenewalMethod,
    /// The registered domain ACME rate limits count against (required for `acme`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_domain: Option<String>,
}

/// What kind of termination point a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// A cloud load balancer listener (e.g. ELBv2).
    LoadBalancer,
    /// nginx: certificate files plus `nginx -t` and reload.
    Nginx,
    /// HAProxy through its Runtime API.
    Haproxy,
    /// AWS Certificate Manager (import).
    Acm,
    /// A generic REST endpoint that accepts a certificate.
    GenericRest,
    /// The embedded runtime's in-process TLS endpoint.
    Local,
    /// Any host with a validate and a reload command (Apache, Envoy, Postfix, a keystore
    /// tool…): files written atomically, then the commands run. Needs a
    /// `[target."<id>"]` connection table.
    Command,
}

/// How a target picks up a new certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReloadMethod {
    /// `nginx -t` then `nginx -s reload`.
    NginxReload,
    /// HAProxy Runtime API `set ssl cert` + `commit ssl cert`.
    HaproxyRuntimeApi,
    /// Point the load balancer listener at the new certificate.
    ListenerUpdate,
    /// A REST call to the target.
    RestCall,
    /// Hot swap inside the process (embedded runtime).
    HotSwap,
    /// Nothing to do: the target picks the certificate up by itself (e.g. ACM re-import).
    None,
    /// The reload command of a `command` target.
    Command,
}

/// A termination point the certificate is deployed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The kind of termination point.
    pub kind: TargetKind,
    /// The target's identifier for its adapter (ARN, host name, backend name, …).
    pub id: String,
    /// How the target is reloaded after deploy.
    pub reload: ReloadMethod,
}

/// What kind of CDN fronts the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CdnKind {
    /// Amazon CloudFront invalidation.
    Cloudfront,
    /// Varnish PURGE/BAN.
    Varnish,
    /// A generic REST purge endpoint.
    GenericRest,
    /// The embedded runtime's in-process cache.
    Local,
}

/// The CDN in front of the service and what to purge after deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cdn {
    /// The kind of CDN.
    pub kind: CdnKind,
    /// The distribution (or service) identifier.
    pub distribution_id: String,
    /// The paths to purge.
    pub paths: Vec<String>,
}

/// An endpoint that must serve the new certificate for the renewal to count as done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Host name or address to connect to.
    pub host: String,
    /// TCP port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The SNI name to send.
    pub sni: String,
}

fn default_port() -> u16 {
    443
}

/// One certificate object: everything needed to renew, deploy and verify one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertObject {
    /// Stable identifier of the certificate object (e.g. `shop-www-prod`).
    pub id: String,
    /// The ServiceNow configuration item name tickets refer to.
    pub ci: String,
    /// The CI's ServiceNow `sys_id`, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_sys_id: Option<String>,
    /// The subject common name.
    pub common_name: String,
    /// Subject alternative names (DNS names).
    #[serde(default)]
    pub sans: BTreeSet<String>,
    /// Issuer and renewal method.
    pub issuer: Issuer,
    /// The environment.
    pub environment: Environment,
    /// The accountable service owner (identity or group); validation fails without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_owner: Option<String>,
    /// Escalation path, first contact first; validation fails when empty.
    #[serde(default)]
    pub escalation: Vec<String>,
    /// Identities allowed to approve normal changes to this certificate.
    #[serde(default)]
    pub change_authority: Vec<String>,
    /// Termination points, in deploy order.
    pub targets: Vec<Target>,
    /// The CDN in front of the service, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdn: Option<Cdn>,
    /// Endpoints to verify from outside after deploy.
    pub endpoints: Vec<Endpoint>,
    /// Keystore reference of a pre-provisioned fallback certificate — a reference, never a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_cert: Option<String>,
    /// The SHA-256 fingerprint of the certificate expected to be served now, if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_fingerprint: Option<String>,
}

impl CertObject {
    /// Whether `ci` names this object, by CI name or by `sys_id` (exact match).
    pub fn matches_ci(&self, ci: &str) -> bool {
        self.ci == ci || self.ci_sys_id.as_deref() == Some(ci)
    }

    /// Checks the entry's own consistency; errors name the field.
    fn check(&self) -> Result<(), String> {
        let blank = |s: &str| s.trim().is_empty();
        if blank(&self.id) {
            return Err("field `id` is empty".into());
        }
        if blank(&self.ci) {
            return Err("field `ci` is empty".into());
        }
        if blank(&self.common_name) {
            return Err("field `common_name` is empty".into());
        }
        if self.sans.iter().any(|s| blank(s)) {
            return Err("field `sans` contains an empty name".into());
        }
        if blank(&self.issuer.name) {
            return Err("field `issuer.name` is empty".into());
        }
        if self.issuer.method == RenewalMethod::Acme
            && self.issuer.registered_domain.as_deref().is_none_or(blank)
        {
            return Err(
                "field `issuer.registered_domain` is required when `issuer.method` is \"acme\""
                    .into(),
            );
        }
        if self.targets.is_empty() {
            return Err("field `targets` is empty".into());
        }
        for (i, target) in self.targets.iter().enumerate() {
            if blank(&target.id) {
                return Err(format!("field `targets[{i}].id` is empty"));
            }
        }
        if let Some(cdn) = &self.cdn {
            if blank(&cdn.distribution_id) {
                return Err("field `cdn.distribution_id` is empty".into());
            }
            if cdn.paths.is_empty() {
                return Err("field `cdn.paths` is empty".into());
            }
        }
        if self.endpoints.is_empty() {
            return Err("field `endpoints` is empty".into());
        }
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            if blank(&endpoint.host) || blank(&endpoint.sni) {
                return Err(format!("field `endpoints[{i}]` needs `host` and `sni`"));
            }
            if endpoint.port == 0 {
                return Err(format!("field `endpoints[{i}].port` is 0"));
            }
        }
        if let Some(reference) = &self.fallback_cert {
            if blank(reference) {
                return Err("field `fallback_cert` is empty".into());
            }
            if find_secret(reference).is_some() {
                return Err(
                    "field `fallback_cert` must be a keystore reference, not key material".into(),
                );
            }
        }
        Ok(())
    }
}

/// The parsed inventory: certificate objects in file order, and how certops reaches the
/// real termination points and caches they name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inventory {
    /// The certificate objects.
    pub certificates: Vec<CertObject>,
    /// Connection of each real target, by target id (`[target."<id>"]` tables).
    pub connections: BTreeMap<String, TargetConnection>,
    /// Connection of each real CDN, by distribution id (`[cdn."<distribution_id>"]` tables).
    pub cdn_connections: BTreeMap<String, CdnConnection>,
}

impl Inventory {
    /// Parses an inventory file (`[[certificate]]` tables).
    ///
    /// Rejects unknown fields, missing required fields, inconsistent entries and duplicate
    /// ids, CI names or `sys_id`s; the error names the entry and the field.
    pub fn from_toml_str(text: &str) -> Result<Inventory, Error> {
        let invalid = |msg: String| Error::InvalidInput(format!("inventory: {msg}"));
        let mut table: toml::Table = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if let Some(key) = table
            .keys()
            .find(|k| !["certificate", "target", "cdn"].contains(&k.as_str()))
        {
            return Err(invalid(format!(
                "unknown top-level key `{key}` (expected `[[certificate]]`, `[target.\"<id>\"]` or `[cdn.\"<id>\"]`)"
            )));
        }
        let connections: BTreeMap<String, TargetConnection> =
            connection_tables(table.remove("target"), "target")?;
        let cdn_connections: BTreeMap<String, CdnConnection> =
            connection_tables(table.remove("cdn"), "cdn")?;
        let entries = match table.remove("certificate") {
            None => Vec::new(),
            Some(toml::Value::Array(entries)) => entries,
            Some(_) => return Err(invalid("`certificate` must be an array of tables".into())),
        };
        let mut certificates: Vec<CertObject> = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let label = match entry.get("id").and_then(toml::Value::as_str) {
                Some(id) => format!("certificate[{index}] (id \"{id}\")"),
                None => format!("certificate[{index}]"),
            };
            let cert: CertObject = entry
                .try_into()
                .map_err(|e: toml::de::Error| invalid(format!("{label}: {}", e.message())))?;
            cert.check()
                .map_err(|msg| invalid(format!("{label}: {msg}")))?;
            for earlier in &certificates {
                let clash = if earlier.id == cert.id {
                    Some(("id", cert.id.as_str()))
                } else if earlier.ci == cert.ci {
                    Some(("ci", cert.ci.as_str()))
                } else if cert.ci_sys_id.is_some() && earlier.ci_sys_id == cert.ci_sys_id {
                    Some(("ci_sys_id", cert.ci_sys_id.as_deref().unwrap_or_default()))
                } else {
                    None
                };
                if let Some((field, value)) = clash {
                    return Err(invalid(format!(
                        "{label}: duplicate `{field}` \"{value}\" (already used by \"{}\")",
                        earlier.id
                    )));
                }
            }
            certificates.push(cert);
        }
        check_connections(&certificates, &connections, &cdn_connections).map_err(invalid)?;
        Ok(Inventory {
            certificates,
            connections,
            cdn_connections,
        })
    }

    /// The certificate object a CI name or `sys_id` resolves to, if any.
    pub fn find_by_ci(&self, ci: &str) -> Option<&CertObject> {
        self.certificates.iter().find(|c| c.matches_ci(ci))
    }

    /// The certificate object with this id, if any.
    pub fn get(&self, id: &str) -> Option<&CertObject> {
        self.certificates.iter().find(|c| c.id == id)
    }
}

/// Reads the `[target."<id>"]` or `[cdn."<id>"]` tables; errors name the table.
fn connection_tables<T: serde::de::DeserializeOwned>(
    value: Option<toml::Value>,
    name: &str,
) -> Result<BTreeMap<String, T>, Error> {
    let invalid = |msg: String| Error::InvalidInput(format!("inventory: {msg}"));
    let Some(value) = value else {
        return Ok(BTreeMap::new());
    };
    let toml::Value::Table(tables) = value else {
        return Err(invalid(format!(
            "`{name}` must be tables keyed by id (`[{name}.\"<id>\"]`)"
        )));
    };
    let mut out = BTreeMap::new();
    for (id, table) in tables {
        let parsed: T = table
            .try_into()
            .map_err(|e: toml::de::Error| invalid(format!("[{name}.\"{id}\"]: {}", e.message())))?;
        out.insert(id, parsed);
    }
    Ok(out)
}

/// Cross-checks connection tables against the certificate objects: every table is used,
/// its kind matches the target (or CDN) that names it, its fields are well-formed, and a
/// `command` target has one.
fn check_connections(
    certificates: &[CertObject],
    connections: &BTreeMap<String, TargetConnection>,
    cdn_connections: &BTreeMap<String, CdnConnection>,
) -> Result<(), String> {
    for cert in certificates {
        for (i, target) in cert.targets.iter().enumerate() {
            // A real server is reached only through its connection table: no table, no target.
            if matches!(
                target.kind,
                TargetKind::Nginx | TargetKind::Haproxy | TargetKind::Command
            ) && !connections.contains_key(&target.id)
            {
                return Err(format!(
                    "certificate \"{}\": `targets[{i}]` (kind {:?}) needs a [target.\"{}\"] table",
                    cert.id, target.kind, target.id
                ));
            }
            if target.kind == TargetKind::Command {
                let reload = ReloadMethod::Command;
                if target.reload != reload {
                    return Err(format!(
                        "certificate \"{}\": `targets[{i}].reload` must be {reload:?} for kind {:?}",
                        cert.id, target.kind
                    ));
                }
            }
        }
    }
    for cert in certificates {
        if let Some(cdn) = &cert.cdn {
            if matches!(cdn.kind, CdnKind::Varnish | CdnKind::GenericRest)
                && !cdn_connections.contains_key(&cdn.distribution_id)
            {
                return Err(format!(
                    "certificate \"{}\": `cdn` (kind {:?}) needs a [cdn.\"{}\"] table",
                    cert.id, cdn.kind, cdn.distribution_id
                ));
            }
        }
    }
    for (id, connection) in connections {
        connection
            .check()
            .map_err(|msg| format!("[target.\"{id}\"]: {msg}"))?;
        let users: Vec<&Target> = certificates
            .iter()
            .flat_map(|c| c.targets.iter())
            .filter(|t| &t.id == id)
            .collect();
        if users.is_empty() {
            return Err(format!(
                "[target.\"{id}\"]: no certificate has a target with this id"
            ));
        }
        if let Some(t) = users.iter().find(|t| t.kind != connection.kind()) {
            return Err(format!(
                "[target.\"{id}\"]: kind {:?} does not match the target's kind {:?}",
                connection.kind(),
                t.kind
            ));
        }
    }
    for (id, connection) in cdn_connections {
        connection
            .check()
            .map_err(|msg| format!("[cdn.\"{id}\"]: {msg}"))?;
        let users: Vec<&Cdn> = certificates
            .iter()
            .filter_map(|c| c.cdn.as_ref())
            .filter(|c| &c.distribution_id == id)
            .collect();
        if users.is_empty() {
            return Err(format!(
                "[cdn.\"{id}\"]: no certificate has a cdn with this distribution_id"
            ));
        }
        if let Some(c) = users.iter().find(|c| c.kind != connection.kind()) {
            return Err(format!(
                "[cdn.\"{id}\"]: kind {:?} does not match the cdn's kind {:?}",
                connection.kind(),
                c.kind
            ));
        }
    }
    Ok(())
}

fn default_timeout_seconds() -> u64 {
    30
}

fn default_nginx_binary() -> String {
    "nginx".into()
}

fn default_cert_mode() -> String {
    "0644".into()
}

fn default_key_mode() -> String {
    "0600".into()
}

fn default_purge_method() -> String {
    "POST".into()
}

fn default_auth_header() -> String {
    "Authorization".into()
}

fn default_expected_status() -> u16 {
    200
}

fn check_absolute(field: &str, path: &std::path::Path) -> Result<(), String> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(format!(
            "field `{field}` must be an absolute path, got {}",
            path.display()
        ))
    }
}

fn check_timeout(seconds: u64) -> Result<(), String> {
    if (1..=3600).contains(&seconds) {
        Ok(())
    } else {
        Err(format!(
            "field `timeout_seconds` must be 1..=3600, got {seconds}"
        ))
    }
}

fn check_argv(field: &str, argv: &[String], required: bool) -> Result<(), String> {
    if required && argv.is_empty() {
        return Err(format!("field `{field}` names no command"));
    }
    if argv.iter().any(|a| a.is_empty()) {
        return Err(format!("field `{field}` has an empty argument"));
    }
    if let Some(first) = argv.first() {
        if first.contains(char::is_whitespace) {
            return Err(format!(
                "field `{field}` is an argument list (`[\"apachectl\", \"graceful\"]`), not a shell line"
            ));
        }
    }
    Ok(())
}

/// Parses a file mode written in octal (`"0640"`).
pub fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("file mode {text:?} is not an octal mode like \"0640\""))
}

/// Where an HAProxy Runtime API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminSocket {
    /// `unix:/path/to/admin.sock`.
    Unix(PathBuf),
    /// `tcp:host:port`.
    Tcp(String),
}

impl AdminSocket {
    /// Parses `unix:/abs/path` or `tcp:host:port`.
    pub fn parse(text: &str) -> Result<AdminSocket, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            check_absolute("socket", &path)?;
            return Ok(AdminSocket::Unix(path));
        }
        if let Some(addr) = text.strip_prefix("tcp:") {
            let ok = addr.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if ok {
                return Ok(AdminSocket::Tcp(addr.to_string()));
            }
        }
        Err(format!(
            "field `socket` must be `unix:/absolute/path` or `tcp:host:port`, got {text:?}"
        ))
    }
}

/// How certops reaches one real termination point (`[target."<id>"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TargetConnection {
    /// nginx: certificate and key files, `nginx -t`, reload by signal.
    Nginx(NginxConnection),
    /// HAProxy: the Runtime API on its admin socket, plus the file on disk.
    Haproxy(HaproxyConnection),
    /// Any host with a validate and a reload command.
    Command(CommandConnection),
}

impl TargetConnection {
    /// The target kind this connection is for.
    pub fn kind(&self) -> TargetKind {
        match self {
            TargetConnection::Nginx(_) => TargetKind::Nginx,
            TargetConnection::Haproxy(_) => TargetKind::Haproxy,
            TargetConnection::Command(_) => TargetKind::Command,
        }
    }

    fn check(&self) -> Result<(), String> {
        match self {
            TargetConnection::Nginx(n) => {
                check_absolute("cert_path", &n.cert_path)?;
                check_absolute("key_path", &n.key_path)?;
                check_absolute("pid_file", &n.pid_file)?;
                if let Some(c) = &n.config {
                    check_absolute("config", c)?;
                }
                if n.cert_path == n.key_path {
                    return Err("fields `cert_path` and `key_path` name the same file".into());
                }
                check_argv("binary", std::slice::from_ref(&n.binary), true)?;
                check_timeout(n.timeout_seconds)
            }
            TargetConnection::Haproxy(h) => {
                AdminSocket::parse(&h.socket)?;
                check_absolute("cert_path", &h.cert_path)?;
                if let Some(list) = &h.crt_list {
                    check_absolute("crt_list", list)?;
                }
                check_timeout(h.timeout_seconds)
            }
            TargetConnection::Command(c) => {
                check_absolute("cert_path", &c.cert_path)?;
                if let Some(k) = &c.key_path {
                    check_absolute("key_path", k)?;
                    if k == &c.cert_path {
                        return Err("fields `cert_path` and `key_path` name the same file".into());
                    }
                }
                parse_mode(&c.cert_mode)?;
                let key_mode = parse_mode(&c.key_mode)?;
                if key_mode & 0o007 != 0 {
                    return Err(format!(
                        "field `key_mode` {:?} lets anyone read the private key",
                        c.key_mode
                    ));
                }
                for (field, v) in [("owner", &c.owner), ("group", &c.group)] {
                    if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                        return Err(format!("field `{field}` is empty"));
                    }
                }
                check_argv("validate", &c.validate, false)?;
                check_argv("reload", &c.reload, true)?;
                check_timeout(c.timeout_seconds)
            }
        }
    }
}

/// `[target."<id>"] kind = "nginx"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NginxConnection {
    /// The certificate chain file the nginx configuration names (`ssl_certificate`).
    pub cert_path: PathBuf,
    /// The key file (`ssl_certificate_key`).
    pub key_path: PathBuf,
    /// The master process's pid file (`pid`); reload is SIGHUP to that pid.
    pub pid_file: PathBuf,
    /// The nginx binary for `nginx -t` (default `nginx` on `PATH`).
    #[serde(default = "default_nginx_binary")]
    pub binary: String,
    /// The configuration file (`nginx -t -c <config>`); default: nginx's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
    /// Deadline of `nginx -t`, seconds (default 30).
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
}

/// `[target."<id>"] kind = "haproxy"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaproxyConnection {
    /// The Runtime API: `unix:/run/haproxy/admin.sock` or `tcp:127.0.0.1:9999`.
    pub socket: String,
    /// The certificate's path as HAProxy knows it (`crt` / crt-list entry); the combined
    /// chain + key PEM is written there too, so a restart keeps it.
    pub cert_path: PathBuf,
    /// The crt-list a new certificate path is added to (`add ssl crt-list`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crt_list: Option<PathBuf>,
    /// Deadline of each Runtime API command, seconds (default 30).
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
}

/// `[target."<id>"] kind = "command"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConnection {
    /// Where the chain goes.
    pub cert_path: PathBuf,
    /// Where the key goes; absent: appended to the chain file (one combined PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_path: Option<PathBuf>,
    /// Mode of the chain file, octal (default `"0644"`).
    #[serde(default = "default_cert_mode")]
    pub cert_mode: String,
    /// Mode of the key file, octal, never world-readable (default `"0600"`).
    #[serde(default = "default_key_mode")]
    pub key_mode: String,
    /// Owner of both files (user name or uid); default: unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Group of both files (group name or gid); default: unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Checks the configuration with the new files in place (argv, no shell); a failure
    /// restores the previous files. Empty: no check.
    #[serde(default)]
    pub validate: Vec<String>,
    /// Makes the service load the files (argv, no shell).
    pub reload: Vec<String>,
    /// Deadline of each command, seconds (default 30); the command is killed at it.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
}

/// How certops reaches one real CDN or cache (`[cdn."<distribution_id>"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CdnConnection {
    /// Varnish: HTTP `PURGE`/`BAN` to a listener, or `ban` over the admin port.
    Varnish(VarnishConnection),
    /// A CDN with an authenticated REST purge API.
    GenericRest(RestPurgeConnection),
}

impl CdnConnection {
    /// The CDN kind this connection is for.
    pub fn kind(&self) -> CdnKind {
        match self {
            CdnConnection::Varnish(_) => CdnKind::Varnish,
            CdnConnection::GenericRest(_) => CdnKind::GenericRest,
        }
    }

    fn check(&self) -> Result<(), String> {
        match self {
            CdnConnection::Varnish(v) => {
                match (&v.http, &v.admin) {
                    (Some(_), Some(_)) | (None, None) => {
                        return Err("exactly one of `http` and `admin` is required".into())
                    }
                    (Some(url), None) => {
                        if !url.starts_with("http://") {
                            return Err(format!(
                                "field `http` must be an http:// URL of a Varnish listener, got {url:?}"
                            ));
                        }
                    }
                    (None, Some(addr)) => {
                        if !addr
                            .rsplit_once(':')
                            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
                        {
                            return Err(format!("field `admin` must be host:port, got {addr:?}"));
                        }
                        match &v.secret_file {
                            Some(p) => check_absolute("secret_file", p)?,
                            None => {
                                return Err("field `secret_file` is required with `admin`".into())
                            }
                        }
                    }
                }
                check_timeout(v.timeout_seconds)
            }
            CdnConnection::GenericRest(r) => {
                if !(r.url.starts_with("https://") || r.url.starts_with("http://")) {
                    return Err(format!(
                        "field `url` must be an http(s) URL, got {:?}",
                        r.url
                    ));
                }
                if !["POST", "PUT", "DELETE", "PURGE"].contains(&r.method.as_str()) {
                    return Err(format!(
                        "field `method` must be POST, PUT, DELETE or PURGE, got {:?}",
                        r.method
                    ));
                }
                if r.header.trim().is_empty() || r.header.contains(char::is_whitespace) {
                    return Err(format!(
                        "field `header` is not a header name: {:?}",
                        r.header
                    ));
                }
                if !(100..=599).contains(&r.expected_status) {
                    return Err(format!(
                        "field `expected_status` must be an HTTP status, got {}",
                        r.expected_status
                    ));
                }
                check_timeout(r.timeout_seconds)
            }
        }
    }
}

/// `[cdn."<distribution_id>"] kind = "varnish"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VarnishConnection {
    /// A Varnish HTTP listener (`http://127.0.0.1:6081`) whose VCL lets certops `PURGE`
    /// (exact paths) and `BAN` (paths ending in `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// The Varnish admin port (`127.0.0.1:6082`, `varnishd -T`); paths become `ban`s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    /// The admin secret file (`varnishd -S`), required with `admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// The `Host` the purges name: the host the objects are cached under (HTTP `PURGE`
    /// removes one host's object); with `admin`, bans are restricted to it. Default: the
    /// listener's address (HTTP), every host (admin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Deadline of each request, seconds (default 30).
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
}

/// `[cdn."<distribution_id>"] kind = "generic-rest"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestPurgeConnection {
    /// The purge endpoint; the body is `{"distribution": …, "paths": […]}`.
    pub url: String,
    /// The method (default `POST`).
    #[serde(default = "default_purge_method")]
    pub method: String,
    /// The header carrying the token (default `Authorization`).
    #[serde(default = "default_auth_header")]
    pub header: String,
    /// Written before the token in the header (e.g. `"Bearer "`).
    #[serde(default)]
    pub token_prefix: String,
    /// Where the token lives (`env:NAME`, `file:/abs/path`, a Secrets Manager ARN).
    pub token: SecretRef,
    /// The status a successful purge answers with (default 200).
    #[serde(default = "default_expected_status")]
    pub expected_status: u16,
    /// Deadline of the request, seconds (default 30).
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"
[[certificate]]
id = "shop-www-prod"
ci = "shop-web-prod"
ci_sys_id = "9d385017c611228701d22104cc95c371"
common_name = "www.shop.example.com"
sans = ["shop.example.com", "www.shop.example.com"]
environment = "prod"
service_owner = "team-shop"
escalation = ["oncall-shop"]
change_authority = ["carol@example.com"]
issuer = { name = "letsencrypt", method = "acme", registered_domain = "example.com" }
targets = [{ kind = "local", id = "web-01", reload = "hot-swap" }]
endpoints = [{ host = "www.shop.example.com", sni = "www.shop.example.com" }]
fallback_cert = "keystore:fallback/shop-www"
"#;

    #[test]
    fn a_certificate_object_parses_and_resolves_by_ci_name_or_sys_id() {
        let inv = Inventory::from_toml_str(ONE).unwrap();
        let cert = inv.find_by_ci("shop-web-prod").unwrap();
        assert_eq!(cert.id, "shop-www-prod");
        assert_eq!(cert.endpoints[0].port, 443);
        assert_eq!(
            inv.find_by_ci("9d385017c611228701d22104cc95c371")
                .unwrap()
                .id,
            "shop-www-prod"
        );
        assert!(inv.find_by_ci("shop-web").is_none());
        assert_eq!(inv.get("shop-www-prod").unwrap().ci, "shop-web-prod");
    }

    #[test]
    fn unknown_field_is_rejected_naming_entry_and_field() {
        let text = ONE.replace(
            "environment = \"prod\"",
            "environment = \"prod\"\nowner = \"x\"",
        );
        let err = Inventory::from_toml_str(&text).unwrap_err().to_string();
        assert!(
            err.contains("certificate[0] (id \"shop-www-prod\")"),
            "{err}"
        );
        assert!(err.contains("unknown field `owner`"), "{err}");
    }

    #[test]
    fn unknown_renewal_method_is_rejected() {
        let text = ONE.replace("method = \"acme\"", "method = \"manual\"");
        let err = Inventory::from_toml_str(&text).unwrap_err().to_string();
        assert!(err.contains("manual"), "{err}");
    }

    #[test]
    fn missing_required_field_is_rejected() {
        let text = ONE.replace("common_name = \"www.shop.example.com\"\n", "");
        let err = Inventory::from_toml_str(&text).unwrap_err().to_string();
        assert!(err.contains("common_name"), "{err}");
    }

    #[test]
    fn acme_needs_a_registered_domain() {
        let text = ONE.replace(", registered_domain = \"example.com\"", "");
        let err = Inventory::from_toml_str(&text).unwrap_err().to_string();
        assert!(err.contains("issuer.registered_domain"), "{err}");
    }

    #[test]
    fn duplicates_are_rejected() {
        let twice = format!("{ONE}{ONE}");
        let err = Inventory::from_toml_str(&twice).unwrap_err().to_string();
        assert!(err.contains("certificate[1]"), "{err}");
        assert!(err.contains("duplicate `id`"), "{err}");

        let same_ci = format!("{ONE}{}", ONE.replace("shop-www-prod", "shop-www-2"));
        let err = Inventory::from_toml_str(&same_ci).unwrap_err().to_string();
        assert!(err.contains("duplicate `ci`"), "{err}");
    }

    #[test]
    fn fallback_must_be_a_reference_not_a_key() {
        let text = ONE.replace(
            "\"keystore:fallback/shop-www\"",
            &format!(
                "\"-----BEGIN {k}-----\\nMIIE\\n-----END {k}-----\"",
                k = ["PRIVATE", "KEY"].join(" ")
            ),
        );
        let err = Inventory::from_toml_str(&text).unwrap_err().to_string();
        assert!(err.contains("fallback_cert"), "{err}");
        assert!(!err.contains("MIIE"), "{err}");
    }

    #[test]
    fn unknown_top_level_key_and_bad_syntax_are_invalid_input() {
        let err = Inventory::from_toml_str("certs = []").unwrap_err();
        assert_eq!(err.name(), "InvalidInput");
        assert!(err.to_string().contains("certs"));
        assert_eq!(
            Inventory::from_toml_str("[[certificate]\n")
                .unwrap_err()
                .name(),
            "InvalidInput"
        );
    }

    #[test]
    fn itsm_environment_names_map_without_guessing() {
        assert_eq!(
            Environment::from_itsm("Production"),
            Some(Environment::Prod)
        );
        assert_eq!(Environment::from_itsm("dev"), Some(Environment::Dev));
        assert_eq!(Environment::from_itsm("prd"), None);
        assert_eq!(Environment::from_itsm(""), None);
    }

    const REAL: &str = r#"
[[certificate]]
id = "shop"
ci = "shop-web"
common_name = "shop.example.com"
environment = "prod"
issuer = { name = "corp-pki", method = "internal-pki" }
targets = [
  { kind = "nginx", id = "web-01", reload = "nginx-reload" },
  { kind = "haproxy", id = "lb-01", reload = "haproxy-runtime-api" },
  { kind = "command", id = "apache-01", reload = "command" },
]
cdn = { kind = "varnish", distribution_id = "varnish-1", paths = ["/*"] }
endpoints = [{ host = "127.0.0.1", port = 8443, sni = "shop.example.com" }]

[target."web-01"]
kind = "nginx"
cert_path = "/etc/nginx/tls/shop.crt"
key_path = "/etc/nginx/tls/shop.key"
pid_file = "/run/nginx.pid"

[target."lb-01"]
kind = "haproxy"
socket = "unix:/run/haproxy/admin.sock"
cert_path = "/etc/haproxy/certs/shop.pem"

[target."apache-01"]
kind = "command"
cert_path = "/etc/apache2/tls/shop.crt"
key_path = "/etc/apache2/tls/shop.key"
key_mode = "0640"
group = "ssl-cert"
validate = ["apachectl", "configtest"]
reload = ["apachectl", "graceful"]
timeout_seconds = 20

[cdn."varnish-1"]
kind = "varnish"
admin = "127.0.0.1:6082"
secret_file = "/etc/varnish/secret"
"#;

    #[test]
    fn connection_tables_parse_with_defaults() {
        let inv = Inventory::from_toml_str(REAL).unwrap();
        match &inv.connections["web-01"] {
            TargetConnection::Nginx(n) => {
                assert_eq!(n.binary, "nginx");
                assert_eq!(n.timeout_seconds, 30);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(inv.connections["lb-01"].kind(), TargetKind::Haproxy);
        match &inv.connections["apache-01"] {
            TargetConnection::Command(c) => {
                assert_eq!(c.reload, ["apachectl", "graceful"]);
                assert_eq!(c.cert_mode, "0644");
                assert_eq!(parse_mode(&c.key_mode), Ok(0o640));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(inv.cdn_connections["varnish-1"].kind(), CdnKind::Varnish);
    }

    #[test]
    fn bad_connection_tables_are_refused_naming_table_and_field() {
        let cases = [
            (
                "socket = \"unix:/run/haproxy/admin.sock\"",
                "socket = \"/run/admin.sock\"",
                "socket",
            ),
            (
                "pid_file = \"/run/nginx.pid\"",
                "pid_file = \"nginx.pid\"",
                "pid_file",
            ),
            (
                "reload = [\"apachectl\", \"graceful\"]",
                "reload = [\"apachectl graceful\"]",
                "not a shell line",
            ),
            (
                "reload = [\"apachectl\", \"graceful\"]",
                "reload = []",
                "reload",
            ),
            ("key_mode = \"0640\"", "key_mode = \"0644\"", "key_mode"),
            (
                "timeout_seconds = 20",
                "timeout_seconds = 0",
                "timeout_seconds",
            ),
            ("secret_file = \"/etc/varnish/secret\"", "", "secret_file"),
            (
                "pid_file = \"/run/nginx.pid\"",
                "pid_file = \"/run/nginx.pid\"\nshell = \"rm -rf /\"",
                "unknown field `shell`",
            ),
            (
                "[target.\"lb-01\"]\nkind = \"haproxy\"",
                "[target.\"lb-01\"]\nkind = \"nginx\"",
                "lb-01",
            ),
            (
                "[target.\"lb-01\"]",
                "[target.\"lb-02\"]\nkind = \"haproxy\"\nsocket = \"unix:/x.sock\"\ncert_path = \"/x.pem\"\n\n[target.\"lb-01\"]",
                "no certificate has a target",
            ),
            (
                "[target.\"apache-01\"]",
                "[target.\"apache-02\"]",
                "needs a [target.\"apache-01\"]",
            ),
            (
                "id = \"apache-01\", reload = \"command\"",
                "id = \"apache-01\", reload = \"none\"",
                "reload",
            ),
            (
                "[cdn.\"varnish-1\"]\nkind = \"varnish\"",
                "[cdn.\"varnish-1\"]\nkind = \"generic-rest\"",
                "varnish-1",
            ),
            (
                "[target.\"web-01\"]",
                "[target.\"web-09\"]",
                "needs a [target.\"web-01\"]",
            ),
            (
                "[cdn.\"varnish-1\"]",
                "[cdn.\"varnish-2\"]",
                "needs a [cdn.\"varnish-1\"]",
            ),
        ];
        for (from, to, want) in cases {
            assert!(REAL.contains(from), "{from}");
            let err = Inventory::from_toml_str(&REAL.replace(from, to))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{from} -> {to}: {err}");
        }
    }

    #[test]
    fn kinds_without_a_real_server_still_load_without_a_connection_table() {
        let inv = Inventory::from_toml_str(ONE).unwrap();
        assert!(inv.connections.is_empty());
    }

    #[test]
    fn a_real_server_kind_without_its_connection_table_is_refused_at_load() {
        // No free-text targets: nginx, haproxy, varnish and generic-rest are reachable only
        // through their connection table, so an entry without one does not load at all.
        for (kind, reload, want) in [
            ("nginx", "nginx-reload", "[target.\"web-01\"]"),
            ("haproxy", "haproxy-runtime-api", "[target.\"web-01\"]"),
            ("command", "command", "[target.\"web-01\"]"),
        ] {
            let text = ONE.replace(
                "{ kind = \"local\", id = \"web-01\", reload = \"hot-swap\" }",
                &format!("{{ kind = \"{kind}\", id = \"web-01\", reload = \"{reload}\" }}"),
            );
            assert_ne!(text, ONE);
            let err = Inventory::from_toml_str(&text).unwrap_err();
            assert_eq!(err.name(), "InvalidInput");
            assert!(err.to_string().contains(want), "{kind}: {err}");
        }
        for kind in ["varnish", "generic-rest"] {
            let text = format!(
                "{ONE}cdn = {{ kind = \"{kind}\", distribution_id = \"edge-1\", paths = [\"/*\"] }}\n"
            );
            let err = Inventory::from_toml_str(&text).unwrap_err();
            assert!(
                err.to_string().contains("needs a [cdn.\"edge-1\"]"),
                "{kind}: {err}"
            );
        }
    }
}
