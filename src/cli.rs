//! Command line and process wiring: start the sources, the renderer and
//! the HTTP server; stop on SIGTERM or ctrl-c.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::pools::{proc::ProcRoot, PoolOptions, PoolSource};
use crate::state::{lock, PoolSummary, Snapshot, World};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// Prometheus exporter for the 502s of pre-fork app servers behind nginx.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address to listen on: `host:port`, or `:port` for all interfaces.
    #[arg(long = "web.listen-address", default_value = ":9502", global = true)]
    pub listen_address: String,
    /// Web config of Prometheus' exporter-toolkit: TLS, client
    /// certificates, basic auth, headers. Reloaded when it changes.
    #[arg(long = "web.config.file", global = true)]
    pub web_config_file: Option<PathBuf>,
    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", default_value = "/metrics")]
    pub telemetry_path: String,
    /// YAML config file. Without one, Gunicorn masters are auto-discovered.
    #[arg(long = "config.file")]
    pub config_file: Option<PathBuf>,
    #[arg(long = "log.level", value_enum, default_value = "info")]
    pub log_level: LogLevel,
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    pub log_format: LogFormat,
    /// procfs mount point.
    #[arg(long = "path.procfs", default_value = "/proc")]
    pub procfs: PathBuf,
    /// sysfs mount point (for cgroups).
    #[arg(long = "path.sysfs", default_value = "/sys")]
    pub sysfs: PathBuf,
    /// How often the pool collector reads the process table and RSS.
    #[arg(long = "collector.pools.interval", default_value = "5s", value_parser = parse_duration)]
    pub pools_interval: Duration,
    /// How often PSS/USS are read from smaps_rollup (takes the mmap lock).
    #[arg(long = "collector.smaps.interval", default_value = "15s", value_parser = parse_duration)]
    pub smaps_interval: Duration,
    /// Skip smaps_rollup for processes whose RSS is above this many bytes.
    #[arg(long = "collector.smaps.max-rss", default_value_t = 16 << 30)]
    pub smaps_max_rss: u64,
    /// How often to scan command lines for new Gunicorn masters.
    #[arg(long = "collector.discover.interval", default_value = "10s", value_parser = parse_duration)]
    pub discover_interval: Duration,
    /// How often the kernel counters (vmstat, meminfo, PSI, cgroups) are read.
    #[arg(long = "collector.kernel.interval", default_value = "5s", value_parser = parse_duration)]
    pub kernel_interval: Duration,
    /// nginx access log to follow (the single-log case; more go in the config).
    #[arg(long = "nginx.access-log")]
    pub nginx_access_log: Option<PathBuf>,
    /// nginx error log to follow (the single-log case).
    #[arg(long = "nginx.error-log")]
    pub nginx_error_log: Option<PathBuf>,
    /// The access log's `log_format`: combined, main, the format string, or
    /// the whole `log_format NAME [escape=json] '...';` directive.
    #[arg(long = "nginx.log-format", default_value = "combined")]
    pub nginx_log_format: String,
    /// How often followed log files are polled.
    #[arg(long = "collector.nginx.interval", default_value = "250ms", value_parser = parse_duration)]
    pub nginx_interval: Duration,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Exit 0 when the exporter on --web.listen-address answers /healthz
    /// (for container HEALTHCHECKs; the runtime image has no curl).
    Healthcheck,
}

/// `250ms`, `5s`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 250ms, 5s, 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?}: use ms, s, m or h")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn parse_listen_address(s: &str) -> anyhow::Result<SocketAddr> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .with_context(|| format!("--web.listen-address {s:?}: expected host:port or :port"))
}

fn init_logging(args: &Args) {
    use tracing_subscriber::prelude::*;
    let level = match args.log_level {
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Error => tracing::Level::ERROR,
    };
    let filter = tracing_subscriber::filter::LevelFilter::from_level(level);
    let registry = tracing_subscriber::registry().with(filter);
    match args.log_format {
        LogFormat::Logfmt => registry
            .with(
                tracing_logfmt::builder()
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
}

/// Re-encode the world whenever a source marks it dirty, at most every
/// `min_gap`, so that bursts of log lines cost one render.
fn run_renderer(world: Arc<World>, min_gap: Duration) {
    let registry = crate::metrics::registry(world.clone());
    loop {
        world.wait_dirty(Duration::from_secs(1));
        let body = crate::metrics::render(&registry);
        let pools = lock(&world.pools)
            .values()
            .map(|p| PoolSummary {
                name: p.name.clone(),
                server: p.server.as_str(),
                up: p.up,
                master_pid: p.master.map(|m| m.pid),
                workers: p.live_workers(),
            })
            .collect();
        let mut sources: Vec<(String, String)> = lock(&world.kernel)
            .sources
            .iter()
            .map(|(s, up)| {
                let state = if *up {
                    "readable"
                } else {
                    "NOT READABLE (see the log)"
                };
                (s.to_string(), state.to_string())
            })
            .collect();
        sources.extend(lock(&world.nginx).logs.iter().map(|(name, l)| {
            let c = &l.counters;
            let state = format!(
                "{} access lines, {} error lines, {} read errors",
                c.access_lines, c.error_lines, l.read_errors
            );
            (format!("nginx {name}"), state)
        }));
        world.publish(Snapshot {
            body: bytes::Bytes::from(body),
            built_at: SystemTime::now(),
            pools,
            sources,
        });
        std::thread::sleep(min_gap);
    }
}

/// Start a source's thread; sources block on reads and sleeps, so they run
/// on threads of their own, off the async runtime.
pub(crate) fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(256 * 1024)
        .spawn(f)
        .with_context(|| format!("starting the {name} thread"))?;
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let addr = parse_listen_address(&args.listen_address)?;
    if let Some(Command::Healthcheck) = args.command {
        return crate::web::probe::healthcheck(
            addr,
            args.web_config_file.as_deref(),
            Duration::from_secs(5),
        );
    }
    init_logging(&args);
    if !args.telemetry_path.starts_with('/') || args.telemetry_path == "/" {
        anyhow::bail!(
            "--web.telemetry-path {:?}: must start with / and not be /",
            args.telemetry_path
        );
    }
    let cfg = match &args.config_file {
        Some(p) => Config::load(p)?,
        None => {
            tracing::info!("no --config.file: auto-discovering gunicorn masters");
            Config::embedded_default()
        }
    };
    let mut cfg = cfg;
    if args.nginx_access_log.is_some() || args.nginx_error_log.is_some() {
        if args.config_file.is_none() {
            // The flags replace the default logs rather than add to them.
            cfg.nginx.clear();
        }
        if cfg.nginx.iter().any(|n| n.name == "nginx") {
            anyhow::bail!(
                "--nginx.access-log/--nginx.error-log: config {} already has an nginx entry named \"nginx\"",
                cfg.origin
            );
        }
        cfg.nginx.push(crate::config::NginxConfig {
            name: "nginx".to_string(),
            access_log: args.nginx_access_log.clone(),
            log_format: args.nginx_log_format.clone(),
            escape: None,
            error_log: args.nginx_error_log.clone(),
        });
    }
    let world = World::new(cfg.origin.clone());

    let root = ProcRoot::new(&args.procfs);
    let opts = PoolOptions {
        interval: args.pools_interval,
        smaps_interval: args.smaps_interval.max(args.pools_interval),
        smaps_max_rss: args.smaps_max_rss,
        discover_interval: args.discover_interval,
        ..PoolOptions::default()
    };
    let source = PoolSource::new(&cfg, root, opts);
    let w = world.clone();
    spawn("pools", move || source.run(w))?;
    crate::kernel::start(&cfg, &args, world.clone())?;
    crate::nginx::start(&cfg, &args, world.clone())?;
    let w = world.clone();
    spawn("render", move || {
        run_renderer(w, Duration::from_millis(200))
    })?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(crate::web::serve(
        crate::server::app(world, &args.telemetry_path),
        addr,
        args.web_config_file.as_deref(),
        shutdown_signal(),
    ))?;
    tracing::info!("shut down");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_address(":9502").unwrap(),
            "0.0.0.0:9502".parse().unwrap()
        );
        assert_eq!(
            parse_listen_address("127.0.0.1:1").unwrap(),
            "127.0.0.1:1".parse().unwrap()
        );
        assert!(parse_listen_address("nope").is_err());
    }

    #[test]
    fn args_parse_node_exporter_style() {
        let a = Args::try_parse_from([
            "x",
            "--web.listen-address=127.0.0.1:1",
            "--log.format=json",
            "--collector.pools.interval=1s",
        ])
        .unwrap();
        assert_eq!(a.pools_interval, Duration::from_secs(1));
        assert!(matches!(a.log_format, LogFormat::Json));
    }
}
