//! The rustls server config for a web config's `tls_server_config`: the
//! certificate, the client-certificate policy with Go's five
//! `client_auth_type`s, `client_allowed_sans`, versions, cipher suites and
//! curves mapped from Go's names.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{ring, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme, SupportedCipherSuite,
};

use super::config::{Cipher, ClientAuth, Curve, Pem, TlsSettings, TlsVersion};

/// What went wrong building the TLS config; the message names the key and
/// the file.
#[derive(Debug, thiserror::Error)]
#[error("tls_server_config: {0}")]
pub struct TlsError(pub String);

fn read_pem(pem: &Pem, key: &str) -> Result<Vec<u8>, TlsError> {
    match pem {
        Pem::File(p) => std::fs::read(p)
            .map_err(|e| TlsError(format!("failed to read {key}_file ({}): {e}", p.display()))),
        Pem::Inline(s) => Ok(s.as_bytes().to_vec()),
    }
}

fn certificates(pem: &Pem, key: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_pem(pem, key)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{}: {e}", pem.describe(key))))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{}: no PEM certificate found",
            pem.describe(key)
        )));
    }
    Ok(certs)
}

/// rustls' name for a Go cipher suite, or None where rustls has none.
fn rustls_suite(c: Cipher) -> Option<SupportedCipherSuite> {
    use ring::cipher_suite as cs;
    Some(match c.0 {
        "TLS_AES_128_GCM_SHA256" => cs::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_256_GCM_SHA384" => cs::TLS13_AES_256_GCM_SHA384,
        "TLS_CHACHA20_POLY1305_SHA256" => cs::TLS13_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

/// The crypto provider restricted to the configured suites and curves.
///
/// As in Go, `cipher_suites` governs TLS 1.2 only: TLS 1.3 always offers
/// all of its suites (the TLS 1.3 names are accepted and have no effect).
fn provider(t: &TlsSettings) -> Result<CryptoProvider, TlsError> {
    let mut p = ring::default_provider();
    if !t.cipher_suites.is_empty() {
        let mut tls12 = Vec::new();
        let mut missing = Vec::new();
        for c in &t.cipher_suites {
            match rustls_suite(*c) {
                Some(s) if s.tls13().is_none() => tls12.push(s),
                Some(_) => {}
                None => missing.push(c.0),
            }
        }
        if !missing.is_empty() {
            return Err(TlsError(format!(
                "cipher_suites: {} not implemented by rustls (it has no CBC suites); remove them",
                missing.join(", ")
            )));
        }
        p.cipher_suites.retain(|s| s.tls13().is_some());
        p.cipher_suites.extend(tls12);
    }
    if !t.curve_preferences.is_empty() {
        let mut groups = Vec::new();
        for c in &t.curve_preferences {
            groups.push(match c {
                Curve::X25519 => ring::kx_group::X25519,
                Curve::P256 => ring::kx_group::SECP256R1,
                Curve::P384 => ring::kx_group::SECP384R1,
                Curve::P521 => {
                    return Err(TlsError(format!(
                        "curve_preferences: {} is not implemented by rustls (use X25519, CurveP256 or CurveP384)",
                        c.go_name()
                    )))
                }
            });
        }
        p.kx_groups = groups;
    }
    Ok(p)
}

fn versions(t: &TlsSettings) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsError> {
    // rustls speaks TLS 1.2 and 1.3 only; a lower min_version therefore
    // means 1.2, which only narrows what the operator allowed.
    let mut v = Vec::new();
    if t.min_version <= TlsVersion::Tls12 && t.max_version >= TlsVersion::Tls12 {
        v.push(&rustls::version::TLS12);
    }
    if t.max_version >= TlsVersion::Tls13 {
        v.push(&rustls::version::TLS13);
    }
    if v.is_empty() {
        return Err(TlsError(format!(
            "max_version {:?}: rustls speaks only TLS12 and TLS13",
            t.max_version
        )));
    }
    Ok(v)
}

/// Build the server config, reading the certificate, key and client CA.
pub fn server_config(t: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(&t.cert, "cert")?;
    let key_bytes = read_pem(&t.key, "key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        TlsError(format!(
            "{}: no usable private key: {e}",
            t.key.describe("key")
        ))
    })?;
    let provider = Arc::new(provider(t)?);
    let verifier = client_verifier(t, &provider)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(t)?)
        .map_err(|e| TlsError(format!("versions and cipher_suites: {e}")))?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(chain, key).map_err(|e| {
        TlsError(format!(
            "failed to load X509KeyPair ({} and {}): {e}",
            t.cert.describe("cert"),
            t.key.describe("key")
        ))
    })?;
    cfg.ignore_client_order = t.prefer_server_cipher_suites;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn client_verifier(
    t: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, TlsError> {
    let algs = provider.signature_verification_algorithms;
    let inner: Arc<dyn ClientCertVerifier> = match t.client_auth {
        ClientAuth::NoClientCert => return Ok(None),
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => Arc::new(Unverified {
            mandatory: t.client_auth.mandatory(),
            accept: true,
            algs,
        }),
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            match &t.client_ca {
                Some(ca) => {
                    let mut roots = RootCertStore::empty();
                    for c in certificates(ca, "client_ca")? {
                        roots
                            .add(c)
                            .map_err(|e| TlsError(format!("{}: {e}", ca.describe("client_ca"))))?;
                    }
                    let b = WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider.clone(),
                    );
                    let b = if t.client_auth.mandatory() {
                        b
                    } else {
                        b.allow_unauthenticated()
                    };
                    b.build().map_err(|e| TlsError(format!("client_ca: {e}")))?
                }
                // Go verifies against an empty pool then: every presented
                // certificate is refused. Kept, so such a file still loads.
                None => Arc::new(Unverified {
                    mandatory: t.client_auth.mandatory(),
                    accept: false,
                    algs,
                }),
            }
        }
    };
    Ok(Some(match &t.client_allowed_sans {
        Some(sans) => Arc::new(SanCheck {
            inner,
            allowed: sans.clone(),
        }),
        None => inner,
    }))
}

/// Go's `RequestClientCert`/`RequireAnyClientCert` (`accept`: any
/// certificate is taken unverified, though the handshake signature is still
/// checked), and `Verify*` without a CA (`!accept`: every certificate is
/// refused).
#[derive(Debug)]
struct Unverified {
    mandatory: bool,
    accept: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for Unverified {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self.accept {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// `client_allowed_sans`: after the policy's own check, the certificate
/// must carry one of the listed SANs, compared exactly as the toolkit does
/// (DNS names, e-mail addresses, IP addresses and URIs as text). A client
/// without a certificate is refused: there is nothing to match.
#[derive(Debug)]
struct SanCheck {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

/// The SAN values of a DER certificate, as text.
pub fn subject_alt_names(der: &[u8]) -> Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let Some(san) = cert.subject_alternative_name().map_err(|e| e.to_string())? else {
        return Ok(out);
    };
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                out.push(s.to_string())
            }
            GeneralName::IPAddress(b) => match b.len() {
                4 => out.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()),
                16 => out.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string()),
                _ => {}
            },
            _ => {}
        }
    }
    Ok(out)
}

impl ClientCertVerifier for SanCheck {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let sans = subject_alt_names(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if sans.iter().any(|s| self.allowed.contains(s)) {
            Ok(ClientCertVerified::assertion())
        } else {
            tracing::debug!(found = ?sans, "client certificate has none of client_allowed_sans");
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::config::WebConfig;

    fn settings(extra: &str) -> TlsSettings {
        let text = format!("tls_server_config:\n  cert_file: a\n  key_file: b\n{extra}");
        WebConfig::parse(&text, std::path::Path::new("/x/web.yml"))
            .unwrap()
            .tls
            .unwrap()
    }

    #[test]
    fn cipher_suites_restrict_tls12_and_leave_tls13_whole() {
        let t = settings(
            "  cipher_suites:\n  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n  - TLS_AES_128_GCM_SHA256\n",
        );
        let p = provider(&t).unwrap();
        let names: Vec<String> = p
            .cipher_suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(
            names,
            [
                "TLS13_AES_256_GCM_SHA384",
                "TLS13_AES_128_GCM_SHA256",
                "TLS13_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
            ]
        );
        let e = provider(&settings(
            "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA not implemented by rustls"),
            "{e}"
        );
    }

    #[test]
    fn curves_in_preference_order() {
        let p = provider(&settings("  curve_preferences: [CurveP384, X25519]\n")).unwrap();
        let names: Vec<String> = p
            .kx_groups
            .iter()
            .map(|g| format!("{:?}", g.name()))
            .collect();
        assert_eq!(names, ["secp384r1", "X25519"]);
        let e = provider(&settings("  curve_preferences: [CurveP521]\n")).unwrap_err();
        assert!(e.to_string().contains("CurveP521"), "{e}");
    }

    #[test]
    fn versions_are_clamped_to_what_rustls_speaks() {
        let v = |extra: &str| {
            versions(&settings(extra)).map(|v| v.iter().map(|x| x.version).collect::<Vec<_>>())
        };
        use rustls::ProtocolVersion::{TLSv1_2, TLSv1_3};
        assert_eq!(v("").unwrap(), [TLSv1_2, TLSv1_3]);
        assert_eq!(v("  min_version: TLS10\n").unwrap(), [TLSv1_2, TLSv1_3]);
        assert_eq!(v("  max_version: TLS12\n").unwrap(), [TLSv1_2]);
        assert_eq!(v("  min_version: TLS13\n").unwrap(), [TLSv1_3]);
        assert!(v("  min_version: TLS10\n  max_version: TLS11\n").is_err());
    }

    #[test]
    fn missing_files_are_named() {
        let e = server_config(&settings("")).unwrap_err().to_string();
        assert!(e.contains("failed to read cert_file (/x/a)"), "{e}");
    }
}
