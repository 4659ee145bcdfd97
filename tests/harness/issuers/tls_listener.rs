//! An axum listener that speaks TLS (tokio-rustls) with a [`TestPki`] leaf, for the test
//! servers that stand in for ACME CAs (RFC 8555 requires HTTPS).
//!
//! [`TestPki`]: crate::issuers::test_pki::TestPki

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A TCP listener whose connections are TLS-accepted before axum sees them.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl TlsListener {
    /// Binds `127.0.0.1:<port>` presenting `config`'s certificate.
    pub async fn bind(port: u16, config: Arc<rustls::ServerConfig>) -> TlsListener {
        TlsListener {
            tcp: TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind TLS listener"),
            acceptor: TlsAcceptor::from(config),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
