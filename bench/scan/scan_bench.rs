//! Benchmark driver for `bench/scan/run.sh` (built as the `scan_bench` example of
//! certops-tls). Three roles, one binary:
//!
//! - `serve DIR COUNT`: COUNT TLS endpoints on 127.0.0.1, one port each, ECDSA P-256 leaves
//!   under one intermediate (all generated now); writes `targets.txt`, `root.pem`,
//!   `openssl.args` and `ready` into DIR, then serves until killed.
//! - `scan TARGETS ROOT CONCURRENCY ROUNDS`: our prober over every target, ROUNDS times,
//!   trusting only ROOT; prints `key=value` results. Each round uses a fresh prober, so
//!   nothing learnt in one round (its signature cache) helps the next.
//! - `bb-load ADDR TARGETS CONCURRENCY ROUNDS`: drives a blackbox_exporter at ADDR with one
//!   `/probe?module=tls_connect` request per target per round at CONCURRENCY; prints
//!   `key=value`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use certops_tls::{Prober, ProberConfig, Status, Target, TrustStore};
use futures::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["serve", dir, count] => rt.block_on(serve(dir, count.parse()?)),
        ["scan", targets, root, conc, rounds] => {
            rt.block_on(scan(targets, root, conc.parse()?, rounds.parse()?))
        }
        ["bb-load", addr, targets, conc, rounds] => {
            rt.block_on(bb_load(addr.parse()?, targets, conc.parse()?, rounds.parse()?))
        }
        _ => Err("usage: scan_bench serve DIR COUNT | scan TARGETS ROOT CONCURRENCY ROUNDS | bb-load ADDR TARGETS CONCURRENCY ROUNDS".into()),
    }
}

fn ca_params(name: &str) -> Res<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(p)
}

async fn serve(dir: &str, count: usize) -> Res<()> {
    let dir = std::path::Path::new(dir);
    let root_key = KeyPair::generate()?;
    let root_params = ca_params("certops bench root")?;
    let root = root_params.self_signed(&root_key)?;
    let root_issuer = Issuer::from_params(&root_params, &root_key);
    let inter_key = KeyPair::generate()?;
    let inter_params = ca_params("certops bench intermediate")?;
    let inter = inter_params.signed_by(&inter_key, &root_issuer)?;
    let inter_issuer = Issuer::from_params(&inter_params, &inter_key);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());

    let mut targets = String::new();
    let mut openssl_args = String::new();
    for i in 0..count {
        let name = format!("ep{i}.bench.test");
        let mut params = CertificateParams::new(vec![name.clone(), "127.0.0.1".to_owned()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, name.as_str());
        let key = KeyPair::generate()?;
        let leaf = params.signed_by(&key, &inter_issuer)?;
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone(), inter.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )?;
        config.send_tls13_tickets = 0;
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        targets.push_str(&format!("{addr}@{name}\n"));
        openssl_args.push_str(&format!("-connect {addr} -servername {name}\n"));
        tokio::spawn(accept_loop(listener, TlsAcceptor::from(Arc::new(config))));
    }
    std::fs::write(dir.join("root.pem"), root.pem())?;
    std::fs::write(dir.join("targets.txt"), targets)?;
    std::fs::write(dir.join("openssl.args"), openssl_args)?;
    std::fs::write(dir.join("ready"), b"")?;
    std::future::pending::<()>().await;
    Ok(())
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor) {
    while let Ok((stream, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(Ok(mut tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
            else {
                return;
            };
            let mut buf = [0u8; 256];
            // Wait for the client to go away (bounded).
            let _ = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await;
        });
    }
}

async fn scan(targets: &str, root: &str, concurrency: usize, rounds: usize) -> Res<()> {
    let mut trust = TrustStore::empty();
    trust.add_pem_file(std::path::Path::new(root))?;
    let targets: Vec<Target> = std::fs::read_to_string(targets)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let mut ok = 0;
    let mut other = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..rounds {
        let prober = Prober::new(ProberConfig {
            timeout: Duration::from_secs(10),
            concurrency,
            trust: trust.clone(),
            ..ProberConfig::default()
        })?;
        let mut reports = prober.scan(targets.clone());
        while let Some(r) = reports.next().await {
            if r.status == Status::Ok {
                ok += 1;
            } else {
                *other.entry(r.status.to_string()).or_default() += 1;
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "endpoints={} ok={ok} other={other:?} wall_s={wall:.3}",
        targets.len() * rounds
    );
    Ok(())
}

async fn bb_load(addr: SocketAddr, targets: &str, concurrency: usize, rounds: usize) -> Res<()> {
    let lines: Vec<String> = std::fs::read_to_string(targets)?
        .lines()
        .filter_map(|l| l.split('@').next().map(str::to_owned))
        .filter(|l| !l.is_empty())
        .collect();
    let started = Instant::now();
    let mut ok = 0;
    for _ in 0..rounds {
        let results: Vec<bool> = futures::stream::iter(lines.clone())
            .map(|target| async move { probe_via_blackbox(addr, &target).await.unwrap_or(false) })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        ok += results.iter().filter(|b| **b).count();
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "endpoints={} ok={ok} wall_s={wall:.3}",
        lines.len() * rounds
    );
    Ok(())
}

async fn probe_via_blackbox(addr: SocketAddr, target: &str) -> Res<bool> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!(
        "GET /probe?module=tls_connect&target={target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut body = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut body)).await??;
    Ok(String::from_utf8_lossy(&body)
        .lines()
        .any(|l| l == "probe_success 1"))
}
