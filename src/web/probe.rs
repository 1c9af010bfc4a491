//! `badgateway_exporter healthcheck`: GET /healthz of a running exporter on
//! this host, for container runtimes whose images have no curl or shell.
//!
//! With TLS on, the probe does not verify the server's certificate: it
//! talks to its own exporter over loopback and sends no secret (/healthz
//! needs no password). A config that demands client certificates cannot be
//! probed this way, and the probe says so.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::auth::HEALTH_PATH;
use super::config::WebConfig;

/// Where to reach a server listening on `addr` from this host.
pub fn local_target(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// Ok when /healthz answers 200.
pub fn healthcheck(
    addr: SocketAddr,
    web_config: Option<&Path>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let target = local_target(addr);
    let tls = match web_config {
        Some(p) => WebConfig::load(p)?.tls,
        None => None,
    };
    let mut tcp = TcpStream::connect_timeout(&target, timeout)
        .with_context(|| format!("connecting to {target}"))?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let request = format!("GET {HEALTH_PATH} HTTP/1.0\r\nHost: {target}\r\n\r\n");
    let mut response = Vec::new();
    match tls {
        None => {
            tcp.write_all(request.as_bytes())?;
            tcp.read_to_end(&mut response)?;
        }
        Some(t) => {
            if t.client_auth.mandatory() || t.client_allowed_sans.is_some() {
                bail!(
                    "the web config requires client certificates ({:?}): this probe has none; use a TCP check",
                    t.client_auth
                );
            }
            let provider = Arc::new(ring::default_provider());
            let algs = provider.signature_verification_algorithms;
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(OwnServer(algs)))
                .with_no_client_auth();
            let name = ServerName::IpAddress(target.ip().into());
            let conn = rustls::ClientConnection::new(Arc::new(cfg), name)?;
            let mut s = rustls::StreamOwned::new(conn, tcp);
            s.write_all(request.as_bytes())?;
            // HTTP/1.0: the server closes; a missing close_notify is fine.
            match s.read_to_end(&mut response) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
                Err(e) => return Err(e).context("reading over TLS"),
            }
        }
    }
    let head = String::from_utf8_lossy(&response[..response.len().min(64)]).into_owned();
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "200" {
        bail!(
            "{HEALTH_PATH} on {target} answered {:?}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(())
}

/// Accepts the server's certificate unchecked (see the module comment),
/// still checking the handshake signature.
#[derive(Debug)]
struct OwnServer(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for OwnServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_become_loopback() {
        assert_eq!(
            local_target("0.0.0.0:9502".parse().unwrap()),
            "127.0.0.1:9502".parse().unwrap()
        );
        assert_eq!(
            local_target("[::]:9502".parse().unwrap()),
            "[::1]:9502".parse().unwrap()
        );
        assert_eq!(
            local_target("10.1.2.3:1".parse().unwrap()),
            "10.1.2.3:1".parse().unwrap()
        );
    }
}
