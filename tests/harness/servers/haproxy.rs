//! A private HAProxy: a TLS frontend whose certificate certops replaces through the Runtime
//! API, a second frontend with its own certificate file (one a deploy does not reach), a
//! third whose certificates come from a crt-list (for new certificate paths), an admin
//! socket on a UNIX path and on a loopback TCP port.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::contract::keystore::Issued;
use crate::process::free_port;

use super::{accepts, loopback, require, write_private, ProcessGroup};

/// A running HAProxy.
pub struct Haproxy {
    /// The main frontend's port.
    pub port: u16,
    /// The second frontend's port.
    pub port2: u16,
    /// The crt-list frontend's port.
    pub port3: u16,
    /// The main frontend's combined PEM (chain + key).
    pub cert_path: PathBuf,
    /// The second frontend's combined PEM.
    pub cert2_path: PathBuf,
    /// The crt-list file of the third frontend.
    pub crt_list: PathBuf,
    /// The admin socket (UNIX).
    pub socket: PathBuf,
    /// The admin socket's TCP port on loopback.
    pub admin_port: u16,
    /// The temporary directory (new certificate paths go here).
    pub dir: PathBuf,
    process: ProcessGroup,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts HAProxy serving `initial` on every frontend.
    pub fn start(initial: &Issued) -> Haproxy {
        let binary = require("haproxy", "haproxy");
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let (port, port2, port3, admin_port) = (free_port(), free_port(), free_port(), free_port());
        let combined = format!("{}{}", initial.chain_pem, initial.key_pem);
        let cert_path = d.join("shop.pem");
        let cert2_path = d.join("shop-b.pem");
        let listed = d.join("listed.pem");
        for p in [&cert_path, &cert2_path, &listed] {
            write_private(p, &combined);
        }
        let crt_list = d.join("crt-list.txt");
        std::fs::write(&crt_list, format!("{}\n", listed.display())).expect("crt-list");
        let socket = d.join("admin.sock");
        let config = d.join("haproxy.cfg");
        let frontend = |name: &str, port: u16, crt: String| {
            format!(
                "frontend {name}\n  bind 127.0.0.1:{port} ssl {crt}\n  http-request return status 200 content-type text/plain string \"haproxy {name}\"\n"
            )
        };
        let cfg = format!(
            "global\n  stats socket {sock} mode 600 level admin\n  stats socket ipv4@127.0.0.1:{admin_port} level admin\n  pidfile {pid}\n\
             defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  timeout http-keep-alive 30s\n{a}{b}{c}",
            sock = socket.display(),
            pid = d.join("haproxy.pid").display(),
            a = frontend("main", port, format!("crt {}", cert_path.display())),
            b = frontend("second", port2, format!("crt {}", cert2_path.display())),
            c = frontend("listed", port3, format!("crt-list {}", crt_list.display())),
        );
        std::fs::write(&config, cfg).expect("haproxy.cfg");
        let mut cmd = Command::new(binary);
        cmd.arg("-db").arg("-f").arg(&config);
        let mut process = ProcessGroup::spawn("haproxy", cmd, &d.join("haproxy.log"));
        let sock = socket.clone();
        process.wait_until(Duration::from_secs(20), || {
            sock.exists()
                && [port, port2, port3, admin_port]
                    .iter()
                    .all(|p| accepts(loopback(*p)))
        });
        Haproxy {
            port,
            port2,
            port3,
            cert_path,
            cert2_path,
            crt_list,
            socket,
            admin_port,
            dir: d.to_path_buf(),
            process,
            _dir: dir,
        }
    }

    /// The `[target."<id>"]` table for the main frontend over the UNIX socket.
    pub fn connection_toml(&self, id: &str) -> String {
        format!(
            "[target.\"{id}\"]\nkind = \"haproxy\"\nsocket = \"unix:{}\"\ncert_path = \"{}\"\ncrt_list = \"{}\"\ntimeout_seconds = 10\n",
            self.socket.display(),
            self.cert_path.display(),
            self.crt_list.display()
        )
    }

    /// The log (for failure messages).
    pub fn log(&self) -> String {
        self.process.log()
    }
}
