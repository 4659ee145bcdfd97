//! A private Varnish in front of an [`Origin`](super::origin::Origin): an HTTP listener
//! whose VCL lets loopback `PURGE` and `BAN` (the ACL certops relies on), and an admin port
//! with a secret file generated at run time. [`Varnish::refuse_purges`] loads a VCL whose
//! ACL leaves certops out (demo scenario 5) and [`Varnish::allow_purges`] puts it back.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::free_port;

use super::{loopback, require, write_private, ProcessGroup};

/// The VCL: cache everything, `PURGE`/`BAN` only from the `purgers` ACL.
pub fn vcl(origin_port: u16, purgers: &str) -> String {
    format!(
        r#"vcl 4.1;
backend origin {{ .host = "127.0.0.1"; .port = "{origin_port}"; }}
acl purgers {{ "{purgers}"; }}
sub vcl_recv {{
  if (req.method == "PURGE") {{
    if (!client.ip ~ purgers) {{ return (synth(405, "Not allowed")); }}
    return (purge);
  }}
  if (req.method == "BAN") {{
    if (!client.ip ~ purgers) {{ return (synth(405, "Not allowed")); }}
    ban("req.url ~ ^" + req.url);
    return (synth(200, "Banned"));
  }}
}}
"#
    )
}

/// A running varnishd.
pub struct Varnish {
    /// The HTTP listener's port.
    pub port: u16,
    /// The admin port (`-T`).
    pub admin_port: u16,
    /// The admin secret file (`-S`).
    pub secret_file: PathBuf,
    origin_port: u16,
    dir: PathBuf,
    process: ProcessGroup,
    _dir: tempfile::TempDir,
}

impl Varnish {
    /// Starts varnishd caching `origin_port`.
    pub fn start(origin_port: u16) -> Varnish {
        let binary = require("varnishd", "varnish");
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_path_buf();
        let (port, admin_port) = (free_port(), free_port());
        let secret_file = d.join("secret");
        let secret: String = rand::random::<[u8; 32]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        write_private(&secret_file, &format!("{secret}\n"));
        let vcl_file = d.join("allow.vcl");
        std::fs::write(&vcl_file, vcl(origin_port, "127.0.0.1")).expect("vcl");
        let mut cmd = Command::new(binary);
        cmd.args([
            "-F",
            "-j",
            "none",
            "-s",
            "malloc,32m",
            "-p",
            "ban_lurker_sleep=0.01",
        ])
        .arg("-n")
        .arg(d.join("work"))
        .arg("-a")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-T")
        .arg(format!("127.0.0.1:{admin_port}"))
        .arg("-S")
        .arg(&secret_file)
        .arg("-f")
        .arg(&vcl_file);
        let mut process = ProcessGroup::spawn("varnishd", cmd, &d.join("varnishd.log"));
        process.wait_until(Duration::from_secs(60), || {
            // Ready when the child answers HTTP (it listens only after the VCL compiled).
            use std::io::{Read, Write};
            let Ok(mut s) =
                std::net::TcpStream::connect_timeout(&loopback(port), Duration::from_millis(200))
            else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            if s.write_all(b"HEAD /ready HTTP/1.1\r\nhost: ready\r\nconnection: close\r\n\r\n")
                .is_err()
            {
                return false;
            }
            let mut buf = [0u8; 12];
            s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1")
        });
        Varnish {
            port,
            admin_port,
            secret_file,
            origin_port,
            dir: d,
            process,
            _dir: dir,
        }
    }

    /// Runs `varnishadm` against this instance.
    pub fn admin(&self, args: &[&str]) -> String {
        let out = Command::new(require("varnishadm", "varnish"))
            .arg("-T")
            .arg(format!("127.0.0.1:{}", self.admin_port))
            .arg("-S")
            .arg(&self.secret_file)
            .args(args)
            .output()
            .expect("varnishadm");
        assert!(
            out.status.success(),
            "varnishadm {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn use_vcl(&self, name: &str, purgers: &str) {
        let file = self.dir.join(format!("{name}.vcl"));
        std::fs::write(&file, vcl(self.origin_port, purgers)).expect("vcl");
        let loaded = self.admin(&["vcl.list"]);
        if !loaded.contains(&format!(" {name}")) {
            self.admin(&["vcl.load", name, &file.display().to_string()]);
        }
        self.admin(&["vcl.use", name]);
    }

    /// Loads a VCL whose purge ACL does not include loopback: every `PURGE`/`BAN` is refused.
    pub fn refuse_purges(&self) {
        self.use_vcl("refuse", "192.0.2.1");
    }

    /// Goes back to a VCL that lets loopback purge.
    pub fn allow_purges(&self) {
        self.use_vcl("allowagain", "127.0.0.1");
    }

    /// The `[cdn."<id>"]` table for HTTP purges (of `shop.example.com`, the host the
    /// tests' requests name: a `PURGE` removes the object of one host and URL).
    pub fn http_connection_toml(&self, id: &str) -> String {
        format!(
            "[cdn.\"{id}\"]\nkind = \"varnish\"\nhttp = \"http://127.0.0.1:{}\"\nhost = \"shop.example.com\"\ntimeout_seconds = 10\n",
            self.port
        )
    }

    /// The `[cdn."<id>"]` table for admin-port bans.
    pub fn admin_connection_toml(&self, id: &str) -> String {
        format!(
            "[cdn.\"{id}\"]\nkind = \"varnish\"\nadmin = \"127.0.0.1:{}\"\nsecret_file = \"{}\"\ntimeout_seconds = 10\n",
            self.admin_port,
            self.secret_file.display()
        )
    }

    /// GET `path` through Varnish; returns the origin generation it carries.
    pub fn get_generation(&self, path: &str) -> u64 {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(loopback(self.port)).expect("connect varnish");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nhost: shop.example.com\r\nconnection: close\r\n\r\n"
        )
        .expect("write");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("x-generation:")
                    .map(|v| v.trim().to_string())
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no generation in {text:?}"))
    }

    /// The log (for failure messages).
    pub fn log(&self) -> String {
        self.process.log()
    }
}
