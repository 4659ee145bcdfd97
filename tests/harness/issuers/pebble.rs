//! pebble (the ACME test CA) and pebble-challtestsrv (its DNS server and DNS update API),
//! from the Debian package `pebble`, on free loopback ports, killed on drop.
//!
//! pebble's own API is served with a leaf from a [`TestPki`] generated at run time. pebble
//! resolves every name through challtestsrv, which answers A queries with 127.0.0.1 (AAAA is
//! switched off), so HTTP-01 validation connects to `127.0.0.1:<http01_port>`: the test's
//! webroot server listens there. External account binding is required, with a key id and
//! HMAC key generated per run.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;

use crate::issuers::test_pki::TestPki;
use crate::process::free_port;

/// A running pebble with its challenge test server.
pub struct Pebble {
    pebble: Child,
    challtestsrv: Child,
    /// The temporary directory with the configuration, the test PKI and the roots.
    pub dir: tempfile::TempDir,
    /// The test PKI of pebble's own TLS.
    pub pki: TestPki,
    /// pebble's ACME API port.
    pub port: u16,
    /// pebble's management API port (roots, intermediates).
    pub management_port: u16,
    /// The port pebble connects to for HTTP-01 (serve the webroot here).
    pub http01_port: u16,
    /// challtestsrv's DNS port.
    pub dns_port: u16,
    /// challtestsrv's management (DNS update) port.
    pub challtestsrv_port: u16,
    /// The external account binding key id.
    pub eab_kid: String,
    /// The external account binding HMAC key, base64url.
    pub eab_hmac: String,
}

fn wait_listening(port: u16, what: &str, child: &mut Child) {
    crate::eventually::eventually(
        &format!("{what} listening on 127.0.0.1:{port}"),
        Duration::from_secs(30),
        || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{what} exited ({status}) before listening on 127.0.0.1:{port}");
            }
            crate::eventually::listening(port).then_some(())
        },
    );
}

fn bin(name: &str, env: &str) -> String {
    let bin = std::env::var(env).unwrap_or_else(|_| format!("/usr/bin/{name}"));
    assert!(
        std::path::Path::new(&bin).exists(),
        "{bin} is missing: install the Debian package `pebble` (scripts/test-all.sh does)"
    );
    bin
}

impl Pebble {
    /// Starts challtestsrv and pebble; HTTP-01 validation goes to `http01_port`.
    pub fn start(http01_port: u16) -> Pebble {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::generate(dir.path());
        let (port, management_port, dns_port, challtestsrv_port) =
            (free_port(), free_port(), free_port(), free_port());
        let mut challtestsrv = Command::new(bin("pebble-challtestsrv", "PEBBLE_CHALLTESTSRV"))
            .args([
                "-dns01",
                &format!("127.0.0.1:{dns_port}"),
                "-management",
                &format!("127.0.0.1:{challtestsrv_port}"),
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble-challtestsrv");
        wait_listening(challtestsrv_port, "pebble-challtestsrv", &mut challtestsrv);
        let eab_kid = format!("kid-{}", uuid_like());
        let eab_hmac =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": pki.leaf_file,
            "privateKey": pki.leaf_key_file,
            "httpPort": http01_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": true,
            // Seven days, so a scan right after issuance finds the certificate due again.
            "certificateValidityPeriod": 604_800,
            "externalAccountMACKeys": { eab_kid.clone(): eab_hmac.clone() },
        }});
        let config_file = dir.path().join("pebble-config.json");
        std::fs::write(&config_file, config.to_string()).expect("write pebble config");
        let log = std::fs::File::create(dir.path().join("pebble.log")).expect("pebble log");
        let mut pebble = Command::new(bin("pebble", "PEBBLE"))
            .arg("-config")
            .arg(&config_file)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            // Reject 5 % of nonces, as pebble does by default: the client must retry badNonce.
            .env("PEBBLE_WFE_NONCEREJECT", "5")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start pebble");
        wait_listening(port, "pebble", &mut pebble);
        wait_listening(management_port, "pebble management", &mut pebble);
        Pebble {
            pebble,
            challtestsrv,
            dir,
            pki,
            port,
            management_port,
            http01_port,
            dns_port,
            challtestsrv_port,
            eab_kid,
            eab_hmac,
        }
    }

    /// The ACME directory URL.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// challtestsrv's DNS update endpoint base URL.
    pub fn dns_update_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.challtestsrv_port)
    }

    /// pebble's root CA (generated at its start), written into the directory; returns the
    /// file (the trust anchor of everything pebble issues).
    pub async fn issued_roots_file(&self) -> PathBuf {
        let url = format!("https://127.0.0.1:{}/roots/0", self.management_port);
        let pem = self
            .pki
            .client()
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("pebble roots")
            .text()
            .await
            .expect("roots text");
        let file = self.dir.path().join("pebble-issued-roots.pem");
        std::fs::write(&file, pem).expect("write roots");
        file
    }

    /// The DNS queries pebble made for `host` (e.g. `_acme-challenge.x.`), from
    /// challtestsrv's request history.
    pub async fn dns_queries(&self, host: &str) -> Vec<serde_json::Value> {
        let url = format!("{}/dns-request-history", self.dns_update_url());
        let mut all = Vec::new();
        // challtestsrv keys its history by the queried name; ask with and without the root dot.
        for name in [host.to_string(), host.trim_end_matches('.').to_string()] {
            let rsp = self
                .pki
                .client()
                .post(&url)
                .json(&serde_json::json!({"host": name}))
                .send()
                .await
                .expect("challtestsrv history");
            if let Ok(list) = rsp.json::<Vec<serde_json::Value>>().await {
                all.extend(list);
            }
        }
        all
    }

    /// pebble's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.pebble.kill();
        let _ = self.pebble.wait();
        let _ = self.challtestsrv.kill();
        let _ = self.challtestsrv.wait();
    }
}

fn uuid_like() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}
