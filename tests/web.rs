//! `--web.config.file`: exporter-toolkit's web config on the real binary.
//! TLS with a certificate made by the test, client certificates, basic
//! auth, headers, reloading, and every web config file of the toolkit's own
//! test data and docs.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use badgateway_exporter::web::Active;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

fn toolkit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/web/exporter-toolkit")
}

/// A CA, a server certificate for localhost/127.0.0.1 signed by it, a
/// client certificate signed by it (SAN `scraper.example`), and a
/// self-signed client certificate nobody trusts (SAN `intruder.example`).
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("pki");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "bgw test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", &ca.pem());
        let leaf = |sans: &[&str], issuer: Option<&CertifiedIssuer<'_, KeyPair>>| {
            let key = KeyPair::generate().unwrap();
            let params =
                CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .unwrap();
            let cert = match issuer {
                Some(i) => params.signed_by(&key, i).unwrap(),
                None => params.self_signed(&key).unwrap(),
            };
            (cert.pem(), key.serialize_pem())
        };
        let (c, k) = leaf(&["localhost", "127.0.0.1"], Some(&ca));
        write("server.crt", &c);
        write("server.key", &k);
        let (c, k) = leaf(&["scraper.example"], Some(&ca));
        write("client.crt", &c);
        write("client.key", &k);
        let (c, k) = leaf(&["intruder.example"], None);
        write("intruder.crt", &c);
        write("intruder.key", &k);
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Reply {
        status: head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn request(path: &str, auth: Option<(&str, &str)>) -> String {
    use base64::Engine;
    let mut r = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n");
    if let Some((u, p)) = auth {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        r.push_str(&format!("Authorization: Basic {b}\r\n"));
    }
    r.push_str("\r\n");
    r
}

/// A plain HTTP GET, with basic auth when given.
fn plain_get(addr: &str, path: &str, auth: Option<(&str, &str)>) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(request(path, auth).as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    Ok(parse_reply(&raw))
}

/// A TLS client trusting `ca`, presenting `client` (cert, key) when given.
fn tls_get(
    addr: &str,
    path: &str,
    ca: &Path,
    client: Option<(&Path, &Path)>,
    auth: Option<(&str, &str)>,
) -> Result<Reply, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match client {
        Some((cert, key)) => b
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(request(path, auth).as_bytes())
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    Ok(parse_reply(&raw))
}

/// The real binary with `web_yml` as its web config (written into its
/// scratch dir, where relative paths in it resolve).
struct Served {
    _proc: Proc,
    addr: String,
    dir: TempDir,
}

impl Served {
    fn start(web_yml: &str) -> Served {
        let dir = TempDir::new("web");
        std::fs::write(dir.path().join("web.yml"), web_yml).unwrap();
        std::fs::write(
            dir.path().join("config.yml"),
            "pools: []\nkernel: {kmsg: false}\n",
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let proc = spawn(
            "exporter",
            Command::new(env!("CARGO_BIN_EXE_badgateway_exporter"))
                .arg(format!("--web.listen-address={addr}"))
                .arg(format!(
                    "--web.config.file={}",
                    dir.path().join("web.yml").display()
                ))
                .arg(format!(
                    "--config.file={}",
                    dir.path().join("config.yml").display()
                ))
                .arg("--collector.pools.interval=300ms")
                .arg("--log.level=debug")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("exporter.log")).unwrap()),
        );
        let s = Served {
            _proc: proc,
            addr,
            dir,
        };
        wait_for(Duration::from_secs(20), "the exporter to listen", || {
            s.log().contains("listening") && TcpStream::connect(&s.addr).is_ok()
        });
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("exporter.log")).unwrap_or_default()
    }

    fn rewrite(&self, web_yml: &str) {
        let p = self.dir.path().join("web.yml");
        // Write beside and rename, as config management does.
        let tmp = self.dir.path().join("web.yml.new");
        std::fs::write(&tmp, web_yml).unwrap();
        std::fs::rename(tmp, p).unwrap();
    }
}

fn tls_yml(pki: &Pki, extra: &str) -> String {
    format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n{extra}",
        pki.path("server.crt").display(),
        pki.path("server.key").display()
    )
}

#[test]
fn tls_scrape_with_a_trusting_client_and_plain_http_fails() {
    let pki = Pki::new();
    let e = Served::start(&tls_yml(&pki, ""));
    let ca = pki.path("ca.pem");
    let mut last = None;
    wait_for(Duration::from_secs(20), "a TLS scrape", || {
        last = Some(tls_get(&e.addr, "/metrics", &ca, None, None));
        matches!(&last, Some(Ok(r)) if r.status == 200 && r.body.contains("badgateway_"))
    });
    // A plain-HTTP client gets no answer from the TLS port.
    if let Ok(r) = plain_get(&e.addr, "/metrics", None) {
        assert_ne!(
            r.status, 200,
            "plain HTTP answered on a TLS port: {}",
            r.head
        );
    }
    // A client that trusts another CA refuses the server.
    let err = tls_get(&e.addr, "/metrics", &pki.path("intruder.crt"), None, None)
        .err()
        .expect("an untrusted server certificate is refused");
    assert!(err.contains("certificate"), "{err}");
    // /healthz over TLS, and the healthcheck subcommand, which speaks TLS.
    assert_eq!(
        tls_get(&e.addr, "/healthz", &ca, None, None)
            .unwrap()
            .status,
        200
    );
    let out = Command::new(env!("CARGO_BIN_EXE_badgateway_exporter"))
        .arg("healthcheck")
        .arg(format!("--web.listen-address={}", e.addr))
        .arg(format!(
            "--web.config.file={}",
            e.dir.path().join("web.yml").display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(e.log().contains("tls=true"), "{}", e.log());

    // SIGTERM: the TLS server drains and the process exits cleanly.
    let mut e = e;
    e._proc.signal(libc::SIGTERM);
    let status = e._proc.child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{}", e.log());
    assert!(e.log().contains("shut down"), "{}", e.log());
}

#[test]
fn rate_limit_answers_429_past_the_burst_and_spares_healthz() {
    // One request per hour, bursts of 3: the fourth request is refused.
    let e = Served::start("rate_limit:\n  interval: 1h\n  burst: 3\n");
    let statuses: Vec<u16> = (0..5)
        .map(|_| plain_get(&e.addr, "/", None).unwrap().status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(plain_get(&e.addr, "/healthz", None).unwrap().status, 200);
}

#[test]
fn basic_auth_right_wrong_and_missing_passwords() {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let yml = format!(
        "basic_auth_users:\n  alice: {hash}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n"
    );
    let e = Served::start(&yml);
    wait_for(Duration::from_secs(20), "an authenticated scrape", || {
        plain_get(&e.addr, "/metrics", Some(("alice", "s3cret")))
            .map(|r| r.status == 200)
            .unwrap_or(false)
    });
    let ok = plain_get(&e.addr, "/metrics", Some(("alice", "s3cret"))).unwrap();
    assert!(ok.body.contains("badgateway_"), "{}", ok.body);
    assert_eq!(ok.header("X-Frame-Options").as_deref(), Some("deny"));
    assert_eq!(
        ok.header("Strict-Transport-Security").as_deref(),
        Some("max-age=31536000")
    );
    for (what, auth) in [
        ("wrong password", Some(("alice", "guess"))),
        ("unknown user", Some(("mallory", "s3cret"))),
        ("no password", None),
    ] {
        let r = plain_get(&e.addr, "/metrics", auth).unwrap();
        assert_eq!(r.status, 401, "{what}: {}", r.head);
        assert_eq!(
            r.header("WWW-Authenticate").as_deref(),
            Some("Basic"),
            "{what}"
        );
        assert!(!r.body.contains("badgateway_"), "{what}: {}", r.body);
        // The configured headers go on refusals too.
        assert_eq!(
            r.header("X-Frame-Options").as_deref(),
            Some("deny"),
            "{what}"
        );
    }
    // Probes need no password.
    assert_eq!(plain_get(&e.addr, "/healthz", None).unwrap().status, 200);
    // The status page, its JSON and its docs do.
    for path in ["/", "/api/v1/timeline", "/docs/status-page.md", "/diagnose"] {
        let r = plain_get(&e.addr, path, None).unwrap();
        assert_eq!(r.status, 401, "{path} without a password");
        assert!(!r.body.contains("badgateway"), "{path}: {}", r.body);
        let r = plain_get(&e.addr, path, Some(("alice", "s3cret"))).unwrap();
        assert_eq!(r.status, 200, "{path} with the password");
    }
    wait_for(
        Duration::from_secs(20),
        "the status page behind the password",
        || {
            plain_get(&e.addr, "/", Some(("alice", "s3cret")))
                .is_ok_and(|r| r.body.contains("<section id=\"verdict\""))
        },
    );
}

#[test]
fn tls_and_basic_auth_together() {
    let pki = Pki::new();
    let hash = bcrypt::hash("pw", 4).unwrap();
    let e = Served::start(&tls_yml(
        &pki,
        &format!("basic_auth_users:\n  prom: {hash}\n"),
    ));
    let ca = pki.path("ca.pem");
    wait_for(Duration::from_secs(20), "a TLS + basic auth scrape", || {
        tls_get(&e.addr, "/metrics", &ca, None, Some(("prom", "pw")))
            .map(|r| r.status == 200)
            .unwrap_or(false)
    });
    let r = tls_get(&e.addr, "/metrics", &ca, None, Some(("prom", "nope"))).unwrap();
    assert_eq!(r.status, 401);
    let r = tls_get(&e.addr, "/metrics", &ca, None, None).unwrap();
    assert_eq!(r.status, 401);
}

/// Whether a request with `client` certificate gets a 200.
fn accepted(e: &Served, pki: &Pki, client: Option<&str>) -> bool {
    let paths = client.map(|c| (pki.path(&format!("{c}.crt")), pki.path(&format!("{c}.key"))));
    let client = paths.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
    matches!(
        tls_get(&e.addr, "/healthz", &pki.path("ca.pem"), client, None),
        Ok(r) if r.status == 200
    )
}

#[test]
fn client_certificates_accepted_and_refused_as_configured() {
    let pki = Pki::new();
    let ca = pki.path("ca.pem").display().to_string();
    // (client_auth_type and extra lines, then: no cert, CA-signed, untrusted)
    let cases: &[(&str, [bool; 3])] = &[
        ("client_auth_type: NoClientCert\n", [true, true, true]),
        ("client_auth_type: RequestClientCert\n", [true, true, true]),
        ("client_auth_type: RequireAnyClientCert\n", [false, true, true]),
        (
            "client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: CA\n",
            [true, true, false],
        ),
        (
            "client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: CA\n",
            [false, true, false],
        ),
        (
            "client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: CA\n  client_allowed_sans: [scraper.example]\n",
            [false, true, false],
        ),
        (
            "client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: CA\n  client_allowed_sans: [other.example]\n",
            [false, false, false],
        ),
        (
            "client_auth_type: RequireAnyClientCert\n  client_allowed_sans: [intruder.example]\n",
            [false, false, true],
        ),
    ];
    // One exporter; each case is a reload of its web config.
    let e = Served::start(&tls_yml(&pki, ""));
    wait_for(Duration::from_secs(20), "the first snapshot", || {
        accepted(&e, &pki, None)
    });
    for (i, (auth, want)) in cases.iter().enumerate() {
        let yml = tls_yml(&pki, &format!("  {}", auth.replace("CA", &ca)));
        e.rewrite(&yml);
        wait_for(
            Duration::from_secs(10),
            &format!("reload {}", i + 1),
            || e.log().matches("web config reloaded").count() > i,
        );
        let got = [
            accepted(&e, &pki, None),
            accepted(&e, &pki, Some("client")),
            accepted(&e, &pki, Some("intruder")),
        ];
        assert_eq!(&got, want, "{auth}\n{}", e.log());
    }
}

#[test]
fn reload_takes_a_new_password_and_keeps_the_old_config_when_bad() {
    let h1 = bcrypt::hash("one", 4).unwrap();
    let h2 = bcrypt::hash("two", 4).unwrap();
    let e = Served::start(&format!("basic_auth_users:\n  u: {h1}\n"));
    let status = |pw: &str| {
        plain_get(&e.addr, "/metrics", Some(("u", pw)))
            .unwrap()
            .status
    };
    wait_for(Duration::from_secs(20), "a scrape", || status("one") == 200);
    e.rewrite(&format!("basic_auth_users:\n  u: {h2}\n"));
    wait_for(Duration::from_secs(10), "the new password", || {
        status("two") == 200
    });
    assert_eq!(status("one"), 401);
    e.rewrite(&format!(
        "basic_auth_users:\n  u: {h2}\nbasic_auth_user: {{}}\n"
    ));
    wait_for(Duration::from_secs(10), "the complaint", || {
        e.log().contains("keeping the previous one")
    });
    assert!(e.log().contains("basic_auth_user"), "{}", e.log());
    assert_eq!(status("two"), 200);
    assert_eq!(
        e.log().matches("keeping the previous one").count(),
        1,
        "logged once"
    );
}

#[test]
fn a_bad_web_config_stops_the_start_with_file_and_key() {
    let dir = TempDir::new("badweb");
    let p = dir.path().join("web.yml");
    for (yml, want) in [
        ("tls_server_config:\n  cert_filse: x\n", "cert_filse"),
        (
            "tls_server_config:\n  cert_file: nowhere.crt\n  key_file: nowhere.key\n",
            "nowhere.crt",
        ),
        ("basic_auth_users:\n  john: doe\n", "john"),
    ] {
        std::fs::write(&p, yml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_badgateway_exporter"))
            .arg(format!("--web.config.file={}", p.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
            .arg("--config.file=/dev/null")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{yml}");
        assert!(
            err.contains(want) && err.contains("web.yml"),
            "{yml}: {err}"
        );
    }
}

#[test]
fn the_healthcheck_subcommand_fails_without_a_server() {
    let out = Command::new(env!("CARGO_BIN_EXE_badgateway_exporter"))
        .arg("healthcheck")
        .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("connecting"));
    let e = Served::start("");
    wait_for(Duration::from_secs(20), "/healthz", || {
        Command::new(env!("CARGO_BIN_EXE_badgateway_exporter"))
            .arg("healthcheck")
            .arg(format!("--web.listen-address={}", e.addr))
            .output()
            .unwrap()
            .status
            .success()
    });
}

/// The toolkit's files that this exporter reads differently, and why.
const DIFFERENT: &[(&str, &str)] = &[
    // rustls has no CBC cipher suites: refused with a message naming them,
    // rather than silently serving fewer suites than configured.
    (
        "web_config_noAuth_allCiphers.good.yml",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA not implemented by rustls",
    ),
    // rustls (ring) has no P-521 key exchange.
    (
        "web_config_noAuth_allCurves.good.yml",
        "CurveP521 is not implemented by rustls",
    ),
    (
        "web_config_noAuth_someCurves.good.yml",
        "CurveP521 is not implemented by rustls",
    ),
];

/// Bad in Go for a Go-only reason, accepted here: Go's HTTP/2 server needs
/// TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256; this exporter serves HTTP/1.1.
const ACCEPTED_HERE: &[&str] = &["web_config_noAuth_noHTTP2Cipher.bad.yml"];

/// The message each of the toolkit's bad files is refused with (Go's
/// message, where this exporter words it the same).
const BAD: &[(&str, &str)] = &[
    // Go reads the missing CA file first; this exporter checks the policy first.
    (
        "web_config_auth_clientCAs_invalid.bad.yml",
        "without a Client Auth Policy",
    ),
    (
        "web_config_auth_user_list_invalid.bad.yml",
        "not a bcrypt hash",
    ),
    (
        "web_config_headers_content_type_options.bad.yml",
        "invalid value for X-Content-Type-Options",
    ),
    (
        "web_config_headers_extra_header.bad.yml",
        "HTTP header \"Content-Type\" can not be configured",
    ),
    (
        "web_config_headers_frame_options.bad.yml",
        "invalid value for X-Frame-Options",
    ),
    ("web_config_junk.yml", "invalid type"),
    ("web_config_junk_key.yml", "unknown field `cert_filse`"),
    (
        "web_config_noAuth.bad.yml",
        "client CA's have been configured without a Client Auth Policy",
    ),
    (
        "web_config_noAuth_certPath_empty.bad.yml",
        "missing one of cert or cert_file",
    ),
    (
        "web_config_noAuth_certPath_invalid.bad.yml",
        "failed to read cert_file",
    ),
    (
        "web_config_noAuth_certPath_keyPath_empty.bad.yml",
        "invalid ClientAuth: x",
    ),
    (
        "web_config_noAuth_certPath_keyPath_invalid.bad.yml",
        "failed to read cert_file",
    ),
    (
        "web_config_noAuth_cert_empty.bad.yml",
        "missing one of cert or cert_file",
    ),
    (
        "web_config_noAuth_inventedCiphers.bad.yml",
        "unknown cipher: TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA2048",
    ),
    (
        "web_config_noAuth_inventedCurves.bad.yml",
        "unknown curve: CurveP257",
    ),
    (
        "web_config_noAuth_keyPath_empty.bad.yml",
        "missing one of key or key_file",
    ),
    (
        "web_config_noAuth_keyPath_invalid.bad.yml",
        "failed to read cert_file",
    ),
    (
        "web_config_noAuth_key_empty.bad.yml",
        "missing one of key or key_file",
    ),
    (
        "web_config_noAuth_wrongTLSVersion.bad.yml",
        "unknown TLS version: TLS111",
    ),
    ("web_config_auth_client_san.bad.yaml", ""),
];

#[test]
fn the_toolkits_own_files_load_or_fail_as_in_go() {
    let mut seen = 0;
    for entry in std::fs::read_dir(toolkit_dir()).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if !(name.ends_with(".yml") || name.ends_with(".yaml")) {
            continue;
        }
        seen += 1;
        let result = Active::load(&p).map(|_| ()).map_err(|e| format!("{e:#}"));
        if let Some((_, want)) = DIFFERENT.iter().find(|(n, _)| *n == name) {
            let err = result.expect_err(&name);
            assert!(err.contains(want) && err.contains(&name), "{name}: {err}");
        } else if let Some((_, want)) = BAD.iter().find(|(n, _)| *n == name) {
            // client_san.bad is a valid file whose SAN list admits no
            // client: it loads (the SAN rule is tested on handshakes).
            if name == "web_config_auth_client_san.bad.yaml" {
                assert!(result.is_ok(), "{name}: {result:?}");
                continue;
            }
            let err = result.expect_err(&name);
            assert!(err.contains(want) && err.contains(&name), "{name}: {err}");
        } else if name.contains(".bad.") && !ACCEPTED_HERE.contains(&name.as_str()) {
            // clientCAs_missing.bad is byte for byte noAuth.good.blocking:
            // both load in Go and refuse every client certificate.
            assert_eq!(name, "web_config_auth_clientCAs_missing.bad.yml");
            assert!(result.is_ok(), "{name}: {result:?}");
        } else {
            assert!(result.is_ok(), "{name} should load: {result:?}");
        }
    }
    assert_eq!(seen, 43, "every toolkit file was tried");
}

#[test]
fn the_toolkits_certificates_and_san_files_on_the_binary() {
    let dir = toolkit_dir();
    let ca = dir.join("tls-ca-chain.pem");
    let served = |file: &str| {
        let yml = std::fs::read_to_string(dir.join(file))
            .unwrap()
            .replace("\"server.crt\"", &format!("{:?}", dir.join("server.crt")))
            .replace("\"server.key\"", &format!("{:?}", dir.join("server.key")))
            .replace(
                "\"client2_selfsigned.pem\"",
                &format!("{:?}", dir.join("client2_selfsigned.pem")),
            );
        Served::start(&yml)
    };
    let get = |e: &Served, client: Option<(&Path, &Path)>| {
        tls_get(&e.addr, "/healthz", &ca, client, None)
    };
    // The inline certificate and key.
    let inline = served("web_config_noAuth_tlsInline.good.yml");
    wait_for(
        Duration::from_secs(20),
        "a scrape of the inline-cert server",
        || matches!(get(&inline, None), Ok(r) if r.status == 200),
    );
    // RequireAnyClientCert: the toolkit's self-signed client certificate is
    // taken unverified; no certificate is refused.
    let any = served("tls_config_noAuth.requireanyclientcert.good.yml");
    let client = (
        dir.join("client_selfsigned.pem"),
        dir.join("client_selfsigned.key"),
    );
    wait_for(
        Duration::from_secs(20),
        "a handshake with a client certificate",
        || matches!(get(&any, Some((&client.0, &client.1))), Ok(r) if r.status == 200),
    );
    assert!(get(&any, None).is_err());
    // The toolkit's client2 certificate is a CA certificate (CA:TRUE) used
    // as a client's own: Go takes it, rustls' webpki refuses it as
    // CaUsedAsEndEntity, before client_allowed_sans is looked at. The SAN
    // rule itself is tested with proper certificates above.
    let client2 = (
        dir.join("client2_selfsigned.pem"),
        dir.join("client2_selfsigned.key"),
    );
    let san = served("web_config_auth_client_san.good.yaml");
    wait_for(Duration::from_secs(20), "client2 to be refused", || {
        get(&san, Some((&client2.0, &client2.1))).is_err()
            && san.log().contains("CaUsedAsEndEntity")
    });
}
