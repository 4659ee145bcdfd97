//! A private nginx: two TLS listeners on loopback, each with its own certificate and key
//! files, so a test can deploy to one and leave the other serving the old leaf (demo
//! scenario 4). Optionally a plain-HTTP listener serves a webroot, so ACME's HTTP-01
//! challenge is answered by the termination point itself (`/.well-known/acme-challenge/`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::contract::keystore::Issued;
use crate::process::free_port;

use super::{accepts, loopback, require, write_private, ProcessGroup};

/// A running nginx.
pub struct Nginx {
    /// The main listener's port (the one certops deploys to).
    pub port: u16,
    /// A second listener with its own files (the one a deploy does not reach).
    pub port2: u16,
    /// The main listener's certificate chain file.
    pub cert_path: PathBuf,
    /// The main listener's key file.
    pub key_path: PathBuf,
    /// The second listener's certificate chain file.
    pub cert2_path: PathBuf,
    /// The second listener's key file.
    pub key2_path: PathBuf,
    /// The master's pid file.
    pub pid_file: PathBuf,
    /// The configuration file.
    pub config: PathBuf,
    /// The nginx binary.
    pub binary: PathBuf,
    /// The webroot the plain-HTTP listener serves, if started with one.
    pub webroot: Option<PathBuf>,
    process: ProcessGroup,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx serving `initial` on both listeners.
    pub fn start(initial: &Issued) -> Nginx {
        Nginx::start_with_webroot(initial, None)
    }

    /// Starts nginx serving `initial` on both listeners and, with `http_port`, a webroot
    /// (world-readable, as nginx's workers need) on `127.0.0.1:<http_port>` over plain HTTP.
    pub fn start_with_webroot(initial: &Issued, http_port: Option<u16>) -> Nginx {
        let binary = require("nginx", "nginx");
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for sub in ["tls", "tmp", "logs"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        let (port, port2) = (free_port(), free_port());
        let cert_path = d.join("tls/shop.crt");
        let key_path = d.join("tls/shop.key");
        let cert2_path = d.join("tls/shop-b.crt");
        let key2_path = d.join("tls/shop-b.key");
        for (c, k) in [(&cert_path, &key_path), (&cert2_path, &key2_path)] {
            std::fs::write(c, &initial.chain_pem).expect("cert");
            write_private(k, &initial.key_pem);
        }
        let pid_file = d.join("nginx.pid");
        let config = d.join("nginx.conf");
        let t = d.join("tmp");
        let server = |port: u16, cert: &PathBuf, key: &PathBuf, name: &str| {
            format!(
                "  server {{\n    listen 127.0.0.1:{port} ssl;\n    server_name _;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    location / {{ return 200 \"nginx {name}\\n\"; }}\n  }}\n",
                cert.display(),
                key.display()
            )
        };
        let webroot = http_port.map(|_| d.join("webroot"));
        let mut plain = String::new();
        if let (Some(port), Some(root)) = (http_port, &webroot) {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(root).expect("webroot");
            for p in [d, root.as_path()] {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod webroot");
            }
            plain = format!(
                "  server {{\n    listen 127.0.0.1:{port};\n    server_name _;\n    root {};\n    location /.well-known/acme-challenge/ {{ default_type text/plain; }}\n    location / {{ return 404; }}\n  }}\n",
                root.display()
            );
        }
        let conf = format!(
            "pid {pid};\nerror_log {log} info;\nworker_processes 1;\nevents {{ worker_connections 256; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n  fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n{a}{b}{plain}}}\n",
            pid = pid_file.display(),
            log = d.join("logs/error.log").display(),
            t = t.display(),
            a = server(port, &cert_path, &key_path, "a"),
            b = server(port2, &cert2_path, &key2_path, "b"),
        );
        std::fs::write(&config, conf).expect("nginx.conf");
        let mut cmd = Command::new(&binary);
        cmd.arg("-e")
            .arg(d.join("logs/early.log"))
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(&config)
            .args(["-g", "daemon off;"]);
        let mut process = ProcessGroup::spawn("nginx", cmd, &d.join("logs/stdout.log"));
        let pid = pid_file.clone();
        process.wait_until(Duration::from_secs(20), || {
            pid.exists()
                && accepts(loopback(port))
                && accepts(loopback(port2))
                && http_port.is_none_or(|p| accepts(loopback(p)))
        });
        Nginx {
            port,
            port2,
            cert_path,
            key_path,
            cert2_path,
            key2_path,
            pid_file,
            config,
            binary,
            webroot,
            process,
            _dir: dir,
        }
    }

    /// The `[target."<id>"]` table for the main listener.
    pub fn connection_toml(&self, id: &str) -> String {
        format!(
            "[target.\"{id}\"]\nkind = \"nginx\"\ncert_path = \"{}\"\nkey_path = \"{}\"\npid_file = \"{}\"\nbinary = \"{}\"\nconfig = \"{}\"\ntimeout_seconds = 20\n",
            self.cert_path.display(),
            self.key_path.display(),
            self.pid_file.display(),
            self.binary.display(),
            self.config.display()
        )
    }

    /// The master's pid.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The error log (for failure messages).
    pub fn log(&self) -> String {
        let logs = self._dir.path().join("logs/error.log");
        format!(
            "{}\n{}",
            std::fs::read_to_string(logs).unwrap_or_default(),
            self.process.log()
        )
    }
}

/// What a private nginx serves, for the deploy contract: the chain its certificate file
/// holds, once a fresh handshake (checked against `root_pem`) sees it — nginx serves its
/// files' contents after the reload has gone through.
pub struct NginxServed<'a>(pub &'a Nginx, pub &'a str);

impl crate::contract::deploy::ServedCertificate for NginxServed<'_> {
    async fn served(&self, _target: &certops_core::Target) -> (String, i64) {
        let on_disk = std::fs::read_to_string(&self.0.cert_path).expect("cert file");
        let o = super::observe_until(
            self.0.port,
            self.1,
            &super::fingerprint(&on_disk),
            Duration::from_secs(10),
        )
        .await;
        (o.fingerprint, o.not_after.timestamp())
    }
}
