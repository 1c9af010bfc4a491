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
pub mod probe;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

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

/// Serve `router` on `addr` until `shutdown` resolves. Without a web config
/// this is plain `axum::serve`; with one, TLS and the request rules of the
/// file apply, and the file is reloaded when it changes. A bad file is an
/// error here, before anything is served.
pub async fn serve(
    router: Router,
    addr: SocketAddr,
    web_config: Option<&Path>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let active = match web_config {
        Some(p) => Some(Active::load(p)?),
        None => None,
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let (Some(path), Some(active)) = (web_config, active) else {
        tracing::info!(address = %addr, tls = false, "listening");
        return axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP");
    };
    tracing::info!(
        address = %addr,
        tls = active.tls.is_some(),
        basic_auth = !active.config.users.is_empty(),
        web_config = %path.display(),
        "listening"
    );
    let shared = Arc::new(Shared::new(path, active));
    let s = shared.clone();
    let reloader = tokio::spawn(async move {
        let mut tick = tokio::time::interval(RELOAD_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            s.reload_if_changed();
        }
    });
    let app = router.layer(axum::middleware::from_fn_with_state(
        shared.clone(),
        auth::guard,
    ));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors, mostly: back off a little.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let tls = shared.current().tls.clone();
        let svc = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
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
        });
    }
    drop(listener);
    reloader.abort();
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
    Ok(())
}
