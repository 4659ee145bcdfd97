//! Parsing of scan targets: `host`, `host:port`, `host:port@sni`.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use rustls_pki_types::ServerName;
use serde::Serialize;

use crate::Error;

/// The port used when a target names none.
pub const DEFAULT_PORT: u16 = 443;

/// Where to connect and which name to ask for.
///
/// `host` is what is resolved (or an IP literal); `sni` is the name sent in the TLS
/// ClientHello and checked against the certificate. They differ when a target is written
/// `127.0.0.1:8443@shop.example.com`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Target {
    /// Host name or IP literal to connect to.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Server name sent as SNI and verified against the certificate.
    pub sni: String,
}

impl Target {
    /// A target for `host:port` whose SNI is the host itself.
    pub fn new(host: impl Into<String>, port: u16) -> Result<Self, Error> {
        let host = host.into();
        let sni = host.clone();
        Self::with_sni(host, port, sni)
    }

    /// A target that connects to `host:port` and sends `sni`.
    pub fn with_sni(
        host: impl Into<String>,
        port: u16,
        sni: impl Into<String>,
    ) -> Result<Self, Error> {
        let host = host.into();
        let sni = sni.into();
        let text = format!("{host}:{port}@{sni}");
        let fail = |reason: &str| Error::InvalidTarget {
            input: text.clone(),
            reason: reason.to_owned(),
        };
        if host.is_empty() {
            return Err(fail("empty host"));
        }
        if port == 0 {
            return Err(fail("port 0"));
        }
        if host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(fail("host contains whitespace or '/'"));
        }
        ServerName::try_from(sni.as_str())
            .map_err(|_| fail("SNI is neither a DNS name nor an IP address"))?;
        Ok(Self { host, port, sni })
    }

    /// The SNI as a rustls server name.
    pub fn server_name(&self) -> ServerName<'static> {
        // Validated in the constructor; the fallback is unreachable in practice.
        ServerName::try_from(self.sni.clone())
            .unwrap_or_else(|_| ServerName::IpAddress(IpAddr::from([0, 0, 0, 0]).into()))
    }

    /// The host as an IP address when it is a literal (no DNS needed).
    pub fn ip_literal(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{}:{}", self.host, self.port)?;
        }
        if self.sni != self.host {
            write!(f, "@{}", self.sni)?;
        }
        Ok(())
    }
}

impl FromStr for Target {
    type Err = Error;

    /// Parses `host`, `host:port`, `host:port@sni`, `host@sni`, `[v6]:port` or a bare IPv6
    /// literal; the port defaults to 443.
    fn from_str(input: &str) -> Result<Self, Error> {
        let fail = |reason: &str| Error::InvalidTarget {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(fail("empty target"));
        }
        if s.contains("://") {
            return Err(fail("give host[:port][@sni], not a URL"));
        }
        let (addr, sni) = match s.rsplit_once('@') {
            Some((_, "")) => return Err(fail("empty SNI after '@'")),
            Some((a, n)) => (a, Some(n)),
            None => (s, None),
        };
        let (host, port) = split_host_port(addr).map_err(|r| fail(&r))?;
        let sni = sni.map(str::to_owned).unwrap_or_else(|| host.clone());
        Self::with_sni(host, port, sni).map_err(|e| match e {
            Error::InvalidTarget { reason, .. } => fail(&reason),
            other => other,
        })
    }
}

fn split_host_port(addr: &str) -> Result<(String, u16), String> {
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "missing ']' after IPv6 address".to_owned())?;
        host.parse::<Ipv6Addr>()
            .map_err(|_| format!("{host:?} is not an IPv6 address"))?;
        let port = match after {
            "" => DEFAULT_PORT,
            p => parse_port(
                p.strip_prefix(':')
                    .ok_or_else(|| "expected ':' after ']'".to_owned())?,
            )?,
        };
        return Ok((host.to_owned(), port));
    }
    if addr.parse::<Ipv6Addr>().is_ok() {
        return Ok((addr.to_owned(), DEFAULT_PORT));
    }
    match addr.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_owned(), parse_port(p)?)),
        None => Ok((addr.to_owned(), DEFAULT_PORT)),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{p:?} is not a port (1-65535)")),
        Ok(n) => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms() {
        let t: Target = "example.com".parse().unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.sni.as_str()),
            ("example.com", 443, "example.com")
        );
        let t: Target = "example.com:8443".parse().unwrap();
        assert_eq!(t.port, 8443);
        let t: Target = "127.0.0.1:8443@shop.example.com".parse().unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.sni.as_str()),
            ("127.0.0.1", 8443, "shop.example.com")
        );
        assert_eq!(t.to_string(), "127.0.0.1:8443@shop.example.com");
        let t: Target = "[::1]:9443".parse().unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9443));
        assert_eq!(t.to_string(), "[::1]:9443");
        let t: Target = "::1".parse().unwrap();
        assert_eq!(t.port, 443);
        let t: Target = "10.0.0.1@a.example".parse().unwrap();
        assert_eq!((t.port, t.sni.as_str()), (443, "a.example"));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "host:",
            "host:0",
            "host:99999",
            "host:x",
            "https://a.example",
            "a.example:443@",
            "[::1",
            "[nope]:1",
            "a b:443",
            "h:443@bad name",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad:?} should be rejected");
        }
    }
}
