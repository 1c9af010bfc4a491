//! The web config file of Prometheus' exporter-toolkit (`--web.config.file`):
//! TLS, basic auth, extra response headers and a rate limit, parsed so that a
//! web-config.yml written for a Go exporter works unchanged.
//!
//! Parsing is pure (no file is read): relative paths are resolved against the
//! config file's directory, as the toolkit does, and the files they name are
//! read when the TLS settings are built (`tls::server_config`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("reading web config file {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("web config file {path}: {err}")]
    Yaml {
        path: PathBuf,
        err: serde_norway::Error,
    },
    #[error("web config file {path}: {what}")]
    Invalid { path: PathBuf, what: String },
}

/// Go's `tls.ClientAuthType`, by the names the toolkit accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    fn from_go(s: &str) -> Option<ClientAuth> {
        Some(match s {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            // "RequireClientCert" is the toolkit's older name, still accepted.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            _ => return None,
        })
    }

    /// Whether a client certificate is asked for at all.
    pub fn requests_cert(self) -> bool {
        self != ClientAuth::NoClientCert
    }

    /// Whether a presented certificate must chain to the client CAs.
    pub fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }

    /// Whether a client without a certificate is turned away.
    pub fn mandatory(self) -> bool {
        matches!(
            self,
            ClientAuth::RequireAnyClientCert | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, |s| {
            Ok(match s {
                "TLS10" => TlsVersion::Tls10,
                "TLS11" => TlsVersion::Tls11,
                "TLS12" => TlsVersion::Tls12,
                "TLS13" => TlsVersion::Tls13,
                _ => {
                    return Err(format!(
                        "unknown TLS version: {s} (expected TLS10, TLS11, TLS12 or TLS13)"
                    ))
                }
            })
        })
    }
}

/// A cipher suite by its Go name (`tls.CipherSuites()`): the ones the
/// toolkit accepts. rustls implements all but the four CBC suites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cipher(pub &'static str);

/// Go's secure cipher suites; the toolkit rejects every other name.
pub const GO_CIPHER_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
];

impl<'de> Deserialize<'de> for Cipher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, |s| match GO_CIPHER_SUITES.iter().find(|c| **c == s) {
            Some(c) => Ok(Cipher(c)),
            None => Err(format!("unknown cipher: {s}")),
        })
    }
}

/// An elliptic curve by the toolkit's name for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
    X25519,
}

impl Curve {
    pub fn go_name(self) -> &'static str {
        match self {
            Curve::P256 => "CurveP256",
            Curve::P384 => "CurveP384",
            Curve::P521 => "CurveP521",
            Curve::X25519 => "X25519",
        }
    }
}

impl<'de> Deserialize<'de> for Curve {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, |s| {
            Ok(match s {
                "CurveP256" => Curve::P256,
                "CurveP384" => Curve::P384,
                "CurveP521" => Curve::P521,
                "X25519" => Curve::X25519,
                _ => {
                    return Err(format!(
                        "unknown curve: {s} (expected CurveP256, CurveP384, CurveP521 or X25519)"
                    ))
                }
            })
        })
    }
}

/// A YAML scalar read as a string, as Go's yaml.v2 does for string fields
/// (`X-XSS-Protection: 1` is the string "1").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, |s| Ok(Scalar(s.to_string())))
    }
}

/// Read a scalar as text and convert it with `parse`, inside the visitor,
/// so that an error carries the value's own line and column.
fn scalar<'de, D: Deserializer<'de>, T>(
    d: D,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error> {
    struct V<T>(fn(&str) -> Result<T, String>);
    impl<T> de::Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_unit<E: de::Error>(self) -> Result<T, E> {
            self.visit_str("")
        }
    }
    d.deserialize_any(V(parse))
}

/// `client_auth_type` as written: an empty one still turns TLS on in Go.
#[derive(Debug)]
struct AuthType {
    auth: ClientAuth,
    named: bool,
}

impl<'de> Deserialize<'de> for AuthType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, |s| {
            match ClientAuth::from_go(s) {
            Some(auth) => Ok(AuthType { auth, named: !s.is_empty() }),
            None => Err(format!(
                "invalid ClientAuth: {s} (expected NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
            )),
        }
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<Scalar>,
    key: Option<Scalar>,
    client_ca: Option<Scalar>,
    cert_file: Option<Scalar>,
    key_file: Option<Scalar>,
    client_auth_type: Option<AuthType>,
    client_ca_file: Option<Scalar>,
    client_allowed_sans: Option<Vec<Scalar>>,
    min_version: Option<TlsVersion>,
    max_version: Option<TlsVersion>,
    cipher_suites: Option<Vec<Cipher>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<Curve>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<Scalar, Scalar>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    interval: Option<Scalar>,
    burst: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<Scalar, Scalar>>,
    rate_limit: Option<RawRateLimit>,
}

/// PEM text, from a file or written inline in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pem {
    File(PathBuf),
    Inline(String),
}

impl Pem {
    /// Where it came from, for messages.
    pub fn describe(&self, key: &str) -> String {
        match self {
            Pem::File(p) => format!("{key}_file {}", p.display()),
            Pem::Inline(_) => format!("inline {key}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert: Pem,
    pub key: Pem,
    pub client_ca: Option<Pem>,
    pub client_auth: ClientAuth,
    /// When set, a client certificate must carry one of these SANs.
    pub client_allowed_sans: Option<Vec<String>>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// TLS 1.2 suites, in preference order; empty for the defaults.
    pub cipher_suites: Vec<Cipher>,
    pub prefer_server_cipher_suites: bool,
    pub curve_preferences: Vec<Curve>,
}

/// Go's `rate.Limiter`: one request per `interval`, bursts of `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub interval: Duration,
    pub burst: u32,
}

/// The headers the toolkit lets a config set, with the values it allows
/// (none listed: any value).
const EXTRA_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebConfig {
    /// Absent when the file configures no TLS: the server speaks plain HTTP.
    pub tls: Option<TlsSettings>,
    /// Headers added to every response.
    pub headers: Vec<(String, String)>,
    /// User name to bcrypt hash; empty when basic auth is off.
    pub users: BTreeMap<String, String>,
    pub rate_limit: Option<RateLimit>,
    /// Accepted for compatibility; HTTP/2 is not served (see `mod.rs`).
    pub http2: bool,
}

impl WebConfig {
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| WebConfigError::Read {
            path: path.to_path_buf(),
            err,
        })?;
        WebConfig::parse(&text, path)
    }

    /// Parse and validate the file's text; `path` resolves relative file
    /// names and names the file in errors. Reads no file.
    pub fn parse(text: &str, path: &Path) -> Result<WebConfig, WebConfigError> {
        let invalid = |what: String| WebConfigError::Invalid {
            path: path.to_path_buf(),
            what,
        };
        // An empty (or comments-only) file is an empty config, as in Go.
        let raw: Option<RawConfig> =
            serde_norway::from_str(text).map_err(|err| WebConfigError::Yaml {
                path: path.to_path_buf(),
                err,
            })?;
        let raw = raw.unwrap_or_default();
        let dir = path.parent().unwrap_or(Path::new(""));

        let tls = match raw.tls_server_config {
            Some(t) => tls_settings(t, dir).map_err(invalid)?,
            None => None,
        };

        let http = raw.http_server_config.unwrap_or_default();
        let mut headers = Vec::new();
        for (Scalar(name), Scalar(value)) in http.headers.unwrap_or_default() {
            let Some((_, allowed)) = EXTRA_HEADERS.iter().find(|(n, _)| *n == name) else {
                return Err(invalid(format!(
                    "http_server_config.headers: HTTP header {name:?} can not be configured (allowed: {})",
                    EXTRA_HEADERS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                )));
            };
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                return Err(invalid(format!(
                    "http_server_config.headers: invalid value for {name}. Expected one of: {allowed:?}, but got: {value:?}"
                )));
            }
            // Go sets the header even when blank; a blank value is dropped
            // here since an empty header says nothing.
            if !value.is_empty() {
                headers.push((name, value));
            }
        }

        let mut users = BTreeMap::new();
        for (Scalar(user), Scalar(hash)) in raw.basic_auth_users.unwrap_or_default() {
            if let Err(e) = hash.parse::<bcrypt::HashParts>() {
                return Err(invalid(format!(
                    "basic_auth_users: the password of user {user:?} is not a bcrypt hash ({e}); make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
                )));
            }
            users.insert(user, hash);
        }

        let rate_limit = match raw.rate_limit {
            None => None,
            Some(r) => {
                let interval = match &r.interval {
                    None => Duration::ZERO,
                    Some(Scalar(s)) => parse_go_duration(s)
                        .map_err(|e| invalid(format!("rate_limit.interval: {e}")))?,
                };
                (!interval.is_zero()).then_some(RateLimit {
                    interval,
                    burst: r.burst.unwrap_or(0),
                })
            }
        };

        Ok(WebConfig {
            tls,
            headers,
            users,
            rate_limit,
            http2: http.http2.unwrap_or(true),
        })
    }

    /// The files this config reads besides itself, for change detection.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(t) = &self.tls {
            for p in [Some(&t.cert), Some(&t.key), t.client_ca.as_ref()]
                .into_iter()
                .flatten()
            {
                if let Pem::File(f) = p {
                    out.push(f.clone());
                }
            }
        }
        out
    }
}

fn non_empty(s: Option<Scalar>) -> Option<String> {
    s.map(|s| s.0).filter(|s| !s.is_empty())
}

/// The toolkit's TLS rules (`validateTLSPaths`, `ConfigToTLSConfig`), in
/// its order so that the same file fails with the same complaint.
fn tls_settings(t: RawTls, dir: &Path) -> Result<Option<TlsSettings>, String> {
    let join = |p: String| {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            dir.join(p)
        }
    };
    let cert_file = non_empty(t.cert_file).map(join);
    let key_file = non_empty(t.key_file).map(join);
    let ca_file = non_empty(t.client_ca_file).map(join);
    let cert = non_empty(t.cert);
    let key = non_empty(t.key);
    let ca = non_empty(t.client_ca);
    let (client_auth, auth_named) = t
        .client_auth_type
        .map_or((ClientAuth::NoClientCert, false), |a| (a.auth, a.named));

    let enabled = cert_file.is_some()
        || cert.is_some()
        || key_file.is_some()
        || key.is_some()
        || ca_file.is_some()
        || ca.is_some()
        || auth_named;
    if !enabled {
        return Ok(None);
    }
    let cert = match (cert_file, cert) {
        (Some(f), _) => Pem::File(f),
        (None, Some(c)) => Pem::Inline(c),
        (None, None) => {
            return Err("tls_server_config: missing one of cert or cert_file".to_string())
        }
    };
    let key = match (key_file, key) {
        (Some(f), _) => Pem::File(f),
        (None, Some(k)) => Pem::Inline(k),
        (None, None) => return Err("tls_server_config: missing one of key or key_file".to_string()),
    };
    let client_ca = match (ca_file, ca) {
        (Some(f), _) => Some(Pem::File(f)),
        (None, Some(c)) => Some(Pem::Inline(c)),
        (None, None) => None,
    };
    if client_ca.is_some() && client_auth == ClientAuth::NoClientCert {
        return Err("tls_server_config: client CA's have been configured without a Client Auth Policy (set client_auth_type)".to_string());
    }
    let client_allowed_sans = t
        .client_allowed_sans
        .map(|v| v.into_iter().map(|s| s.0).collect::<Vec<_>>());
    if let Some(sans) = &client_allowed_sans {
        if !client_auth.requests_cert() {
            return Err("tls_server_config: client_allowed_sans needs a client_auth_type that asks for a client certificate".to_string());
        }
        if sans.is_empty() {
            return Err("tls_server_config.client_allowed_sans: the list is empty, so no client could connect".to_string());
        }
    }
    let min_version = t.min_version.unwrap_or(TlsVersion::Tls12);
    let max_version = t.max_version.unwrap_or(TlsVersion::Tls13);
    if min_version > max_version {
        return Err(format!(
            "tls_server_config: min_version {min_version:?} is above max_version {max_version:?}"
        ));
    }
    Ok(Some(TlsSettings {
        cert,
        key,
        client_ca,
        client_auth,
        client_allowed_sans,
        min_version,
        max_version,
        cipher_suites: t.cipher_suites.unwrap_or_default(),
        prefer_server_cipher_suites: t.prefer_server_cipher_suites.unwrap_or(true),
        curve_preferences: t.curve_preferences.unwrap_or_default(),
    }))
}

/// Go's `time.ParseDuration` (`1s`, `1m30s`, `250ms`), plus a bare integer,
/// which yaml.v2 reads into a `time.Duration` as nanoseconds.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (expected e.g. 1s, 500ms, 1m30s)");
    if let Ok(ns) = s.parse::<u64>() {
        return Ok(Duration::from_nanos(ns));
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() || rest.starts_with('-') {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * secs;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WebConfig, WebConfigError> {
        WebConfig::parse(text, Path::new("/etc/bgw/web.yml"))
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn empty_and_comment_only_files_are_empty_configs() {
        assert_eq!(
            parse("").unwrap(),
            WebConfig {
                http2: true,
                ..Default::default()
            }
        );
        assert_eq!(parse("# nothing\n").unwrap().tls, None);
    }

    #[test]
    fn relative_paths_are_resolved_against_the_file() {
        let c = parse("tls_server_config:\n  cert_file: server.crt\n  key_file: /abs/server.key\n")
            .unwrap();
        let t = c.tls.unwrap();
        assert_eq!(t.cert, Pem::File("/etc/bgw/server.crt".into()));
        assert_eq!(t.key, Pem::File("/abs/server.key".into()));
        assert_eq!(t.client_auth, ClientAuth::NoClientCert);
        assert_eq!(
            (t.min_version, t.max_version),
            (TlsVersion::Tls12, TlsVersion::Tls13)
        );
        assert!(t.prefer_server_cipher_suites);
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let e = err("tls_server_config:\n  cert_filse: server.crt\n");
        assert!(e.contains("cert_filse") && e.contains("line 2"), "{e}");
        let e = err("basic_auth_users: {}\nbasic_auth: {}\n");
        assert!(e.contains("basic_auth") && e.contains("line 2"), "{e}");
        let e = err("http_server_config:\n  http3: true\n");
        assert!(e.contains("http3"), "{e}");
    }

    #[test]
    fn bad_enumerations_name_the_value_and_line() {
        let e = err("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS111\n");
        assert!(
            e.contains("unknown TLS version: TLS111") && e.contains("line 4"),
            "{e}"
        );
        let e = err("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites:\n  - TLS_RSA_WITH_RC4_128_SHA\n");
        assert!(
            e.contains("unknown cipher: TLS_RSA_WITH_RC4_128_SHA") && e.contains("line 5"),
            "{e}"
        );
        let e = err(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  curve_preferences: [CurveP257]\n",
        );
        assert!(
            e.contains("unknown curve: CurveP257") && e.contains("line 4"),
            "{e}"
        );
        let e =
            err("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Maybe\n");
        assert!(
            e.contains("invalid ClientAuth: Maybe") && e.contains("line 4"),
            "{e}"
        );
    }

    #[test]
    fn client_auth_types_map_to_their_policies() {
        for (name, want) in [
            ("NoClientCert", ClientAuth::NoClientCert),
            ("RequestClientCert", ClientAuth::RequestClientCert),
            ("RequireAnyClientCert", ClientAuth::RequireAnyClientCert),
            ("RequireClientCert", ClientAuth::RequireAnyClientCert),
            (
                "VerifyClientCertIfGiven",
                ClientAuth::VerifyClientCertIfGiven,
            ),
            (
                "RequireAndVerifyClientCert",
                ClientAuth::RequireAndVerifyClientCert,
            ),
        ] {
            let c = parse(&format!(
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: {name}\n"
            ))
            .unwrap();
            assert_eq!(c.tls.unwrap().client_auth, want, "{name}");
        }
    }

    #[test]
    fn tls_rules_of_the_toolkit() {
        let e = err("tls_server_config:\n  key_file: b\n");
        assert!(e.contains("missing one of cert or cert_file"), "{e}");
        let e = err("tls_server_config:\n  cert: ''\n  key_file: b\n");
        assert!(e.contains("missing one of cert or cert_file"), "{e}");
        let e = err("tls_server_config:\n  cert_file: a\n  key: ''\n");
        assert!(e.contains("missing one of key or key_file"), "{e}");
        let e = err("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n");
        assert!(e.contains("without a Client Auth Policy"), "{e}");
        let e =
            err("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_allowed_sans: [x]\n");
        assert!(e.contains("client_allowed_sans needs"), "{e}");
        let e = err("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n");
        assert!(e.contains("above max_version"), "{e}");
        // Only an empty file name everywhere: no TLS at all.
        assert_eq!(
            parse("tls_server_config:\n  cert_file: ''\n").unwrap().tls,
            None
        );
    }

    #[test]
    fn headers_are_checked_like_the_toolkit() {
        let c = parse(
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-XSS-Protection: 1\n",
        )
        .unwrap();
        assert_eq!(
            c.headers,
            vec![
                ("X-Frame-Options".to_string(), "deny".to_string()),
                ("X-XSS-Protection".to_string(), "1".to_string())
            ]
        );
        let e = err("http_server_config:\n  headers:\n    Content-Type: foo\n");
        assert!(e.contains("\"Content-Type\" can not be configured"), "{e}");
        let e = err("http_server_config:\n  headers:\n    X-Frame-Options: foo\n");
        assert!(e.contains("invalid value for X-Frame-Options"), "{e}");
    }

    #[test]
    fn users_need_bcrypt_hashes() {
        let c = parse("basic_auth_users:\n  alice: $2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi\n").unwrap();
        assert_eq!(c.users.len(), 1);
        let e = err("basic_auth_users:\n  john: doe\n");
        assert!(
            e.contains("\"john\"") && e.contains("not a bcrypt hash"),
            "{e}"
        );
    }

    #[test]
    fn rate_limit_and_go_durations() {
        let c = parse("rate_limit:\n  interval: 1s\n  burst: 20\n").unwrap();
        assert_eq!(
            c.rate_limit,
            Some(RateLimit {
                interval: Duration::from_secs(1),
                burst: 20
            })
        );
        assert_eq!(
            parse("rate_limit:\n  interval: 0\n  burst: 0\n")
                .unwrap()
                .rate_limit,
            None
        );
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1000"), Ok(Duration::from_nanos(1000)));
        for bad in ["", "s", "1", "1x", "-1s", "1s2"] {
            if bad == "1" {
                continue; // a bare integer is nanoseconds
            }
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
        let e = err("rate_limit:\n  interval: soon\n");
        assert!(e.contains("rate_limit.interval"), "{e}");
    }

    #[test]
    fn files_lists_what_tls_reads() {
        let c = parse("tls_server_config:\n  cert_file: a.crt\n  key: inline\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n").unwrap();
        assert_eq!(
            c.files(),
            vec![
                PathBuf::from("/etc/bgw/a.crt"),
                PathBuf::from("/etc/bgw/ca.pem")
            ]
        );
    }
}
