//! `certops serve --tls-cert --tls-key`: the same routes over HTTPS with a certificate made
//! at run time, the console's cookies then `Secure` (as well as `HttpOnly` and
//! `SameSite=Strict`), plain HTTP on that port refused, and a private key readable by others
//! refused before anything listens.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use certops_tests::process::{certops_bin, free_port};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A CA and a leaf for 127.0.0.1 signed by it: (CA PEM, leaf chain PEM, leaf key PEM).
fn pki() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "serve TLS test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("leaf");
    (
        ca_cert.pem(),
        format!("{}{}", leaf.pem(), ca_cert.pem()),
        key.serialize_pem(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_over_tls_sets_secure_cookies_and_refuses_plain_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, chain, key) = pki();
    let (cert_file, key_file) = (dir.path().join("serve.crt"), dir.path().join("serve.key"));
    std::fs::write(&cert_file, chain).expect("cert");
    std::fs::write(&key_file, key).expect("key");

    // A key readable by others is refused, and nothing listens.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let port = free_port();
    let serve = |port: u16| {
        let mut cmd = Command::new(certops_bin());
        cmd.arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["serve", "--scan-every", "0s", "--port", &port.to_string()])
            .arg("--tls-cert")
            .arg(&cert_file)
            .arg("--tls-key")
            .arg(&key_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    let refused = serve(port).output().expect("run certops serve");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("chmod 600"), "{err}");

    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let _server = Killed(serve(port).spawn().expect("start certops serve"));
    certops_tests::eventually::eventually(
        "certops serve listening",
        Duration::from_secs(30),
        || certops_tests::eventually::listening(port).then_some(()),
    );

    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).expect("CA")])
        .build()
        .expect("client");
    let base = format!("https://127.0.0.1:{port}");
    let health = client
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("GET /health over TLS");
    assert!(health.status().is_success(), "{health:?}");
    let login = client
        .get(format!("{base}/console/login"))
        .send()
        .await
        .expect("GET /console/login over TLS");
    assert!(login.status().is_success(), "{login:?}");
    let cookies: Vec<String> = login
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    assert!(!cookies.is_empty(), "the sign-in page sets its cookie");
    for c in &cookies {
        assert!(
            c.contains("; Secure") && c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
    }

    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/health"))
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
}
