//! Serving HTTP with `--web.config.file`: the web config of Prometheus'
//! exporter-toolkit (TLS, client certificates, basic auth, headers, a rate
//! limit), so that an operator's web-config.yml works unchanged.
//!
//! The toolkit re-reads the file on every request and every handshake. Here
//! a task stats the file, and the certificate files it names, once a second
//! and rebuilds the config when one changed; a bad new file keeps the old
//! config and logs why. Each connection takes the config current when it is
//! accepted, each request the rules current when it arrives.
//!
//! HTTP/1.1 only: `http_server_config.http2` is accepted and has no effect.
//! Prometheus scrapes over HTTP/1.1, and TLS offers ALPN `http/1.1`.

pub mod auth;
pub mod config;
pub mod listen;
pub mod probe;
pub mod tls;

use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

pub use listen::Listen;

pub use config::{WebConfig, WebConfigError};

/// How often the web config and its files are checked for changes.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);
/// A TLS handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's headers must arrive within this (also closes idle
/// keep-alive connections).
const HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long shutdown waits for open connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One loaded web config, ready to serve.
pub struct Active {
    pub config: WebConfig,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub rules: auth::Rules,
}

impl Active {
    /// Read and check the file and everything it names; the error says
    /// which file and key are wrong.
    pub fn load(path: &Path) -> anyhow::Result<Active> {
        let config = WebConfig::load(path)?;
        Active::build(config).with_context(|| format!("web config file {}", path.display()))
    }

    fn build(config: WebConfig) -> anyhow::Result<Active> {
        let tls = match &config.tls {
            Some(t) => {
                if t.client_auth.verifies() && t.client_ca.is_none() {
                    tracing::warn!(
                        client_auth_type = ?t.client_auth,
                        "no client_ca_file or client_ca: every client certificate will be refused"
                    );
                }
                if t.min_version < config::TlsVersion::Tls12 {
                    tracing::warn!(min_version = ?t.min_version, "rustls speaks TLS 1.2 and 1.3 only: TLS12 is the minimum");
                }
                Some(tls::server_config(t)?)
            }
            None => None,
        };
        let rules = auth::Rules::new(&config).map_err(anyhow::Error::msg)?;
        Ok(Active { config, tls, rules })
    }
}

/// What identifies a file's content without reading it.
type Stamp = Option<(u64, u64, i64, i64, u64)>;

fn stamp(p: &Path) -> Stamp {
    std::fs::metadata(p)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
}

/// State shared by the accept loop, the reload task and the middleware.
pub struct Shared {
    path: PathBuf,
    current: RwLock<Arc<Active>>,
    stamps: Mutex<Vec<Stamp>>,
    pub verdicts: auth::Verdicts,
}

impl Shared {
    pub fn new(path: &Path, active: Active) -> Shared {
        let s = Shared {
            path: path.to_path_buf(),
            stamps: Mutex::new(Vec::new()),
            current: RwLock::new(Arc::new(active)),
            verdicts: auth::Verdicts::default(),
        };
        *lock(&s.stamps) = s.stamps_of(&s.current());
        s
    }

    pub fn current(&self) -> Arc<Active> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn stamps_of(&self, a: &Active) -> Vec<Stamp> {
        std::iter::once(self.path.clone())
            .chain(a.config.files())
            .map(|p| stamp(&p))
            .collect()
    }

    /// Reload when the file or one it names changed. Returns whether a new
    /// config was taken; a bad one is logged once and the old one kept.
    pub fn reload_if_changed(&self) -> bool {
        let now = self.stamps_of(&self.current());
        if *lock(&self.stamps) == now {
            return false;
        }
        *lock(&self.stamps) = now;
        match Active::load(&self.path) {
            Ok(a) => {
                *lock(&self.stamps) = self.stamps_of(&a);
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(a);
                tracing::info!(path = %self.path.display(), "web config reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(
                    path = %self.path.display(),
                    error = format!("{e:#}"),
                    "web config changed but is invalid: keeping the previous one"
                );
                false
            }
        }
    }
}

/// Log what `l` serves, and start its accept loop in `accepting`: each
/// connection goes to `conns`.
fn accept_loop(
    l: std::net::TcpListener,
    shared: Option<&Shared>,
    conns: tokio::sync::mpsc::Sender<tokio::net::TcpStream>,
    accepting: &mut tokio::task::JoinSet<()>,
) -> anyhow::Result<()> {
    let address = l.local_addr().context("a listening socket's address")?;
    match shared {
        None => tracing::info!(address = %address, tls = false, "listening"),
        Some(s) => {
            let active = s.current();
            tracing::info!(
                address = %address,
                tls = active.tls.is_some(),
                basic_auth = !active.config.users.is_empty(),
                web_config = %s.path.display(),
                "listening"
            );
        }
    }
    l.set_nonblocking(true)
        .with_context(|| format!("listening on {address}"))?;
    let l =
        tokio::net::TcpListener::from_std(l).with_context(|| format!("listening on {address}"))?;
    accepting.spawn(async move {
        loop {
            match l.accept().await {
                Ok((tcp, _)) => {
                    if conns.send(tcp).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    // Out of file descriptors, mostly: back off a little.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    Ok(())
}

/// One connection, plain or TLS (with the handshake bounded), until it
/// closes or the shutdown's drain ends it.
async fn serve_connection(
    tcp: tokio::net::TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    svc: TowerToHyperService<Router>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let result = match tls {
        None => {
            watcher
                .watch(http.serve_connection(TokioIo::new(tcp), svc))
                .await
        }
        Some(cfg) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), svc))
                        .await
                }
                // The peer's address stays out of the log.
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "HTTP connection");
    }
}

/// Serve `router` on every socket of `listen` until `shutdown` resolves.
/// With a web config, TLS and the request rules of the file apply, and the
/// file is reloaded when it changes. A bad file is an error here, before
/// anything is served, and so is a socket that cannot be opened.
pub async fn serve(
    router: Router,
    listen: &Listen,
    web_config: Option<&Path>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let shared = match web_config {
        Some(p) => Some(Arc::new(Shared::new(p, Active::load(p)?))),
        None => None,
    };
    let listeners = listen.open()?;
    // Each socket's accept loop hands its connections to the one loop
    // below, which serves them all alike.
    let (conns, mut accepted) = tokio::sync::mpsc::channel(64);
    let mut accepting = tokio::task::JoinSet::new();
    for l in listeners {
        accept_loop(l, shared.as_deref(), conns.clone(), &mut accepting)?;
    }
    drop(conns);
    let reloader = shared.clone().map(|s| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_CHECK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                s.reload_if_changed();
            }
        })
    });
    let app = match &shared {
        Some(s) => router.layer(axum::middleware::from_fn_with_state(s.clone(), auth::guard)),
        None => router,
    };
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            Some(tcp) = accepted.recv() => tcp,
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let tls = shared.as_ref().and_then(|s| s.current().tls.clone());
        let svc = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        tokio::spawn(serve_connection(tcp, tls, svc, watcher));
    }
    accepting.abort_all();
    drop(accepted);
    if let Some(r) = reloader {
        r.abort();
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
    Ok(())
}
