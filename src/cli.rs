//! Command line and process wiring: start the sources, the renderer and
//! the HTTP server; reload the config on SIGHUP; stop on SIGTERM or ctrl-c.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::app_log::AppLogOptions;
use crate::config::{Config, Discover, Server};
use crate::follow::StartAt;
use crate::kernel::counter_reader::CounterOptions;
use crate::kernel::kmsg_reader::KmsgOptions;
use crate::metrics::exporter::BUILD;
use crate::nginx::NginxOptions;
use crate::one_shot;
use crate::pools::listen_queue::ListenQueueOptions;
use crate::pools::self_usage;
use crate::pools::server_status::ServerStatusOptions;
use crate::pools::PoolOptions;
use crate::rules::JudgeOptions;
use crate::snapshot::{Renderer, Snapshot};
use crate::sources::{Entry, Options, Reloads, Sources};
use crate::state::source::drive;
use crate::state::timeline::TIMELINE_CAP;
use crate::state::{Published, Sinks};

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
#[derive(Debug, Clone, Parser)]
// Flags before a subcommand are the server's: each subcommand takes (and
// its --help lists) only the flags it uses, after its name.
#[command(
    about,
    disable_version_flag = true,
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Print the version, git revision and branch, build date and Rust
    /// version, and exit.
    #[arg(long = "version", short = 'V')]
    pub version: bool,
    #[command(flatten)]
    pub web: WebArgs,
    /// Serve on the sockets systemd passes (a socket-activated service:
    /// LISTEN_FDS) instead of --web.listen-address.
    #[arg(long = "web.systemd-socket")]
    pub systemd_socket: bool,
    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", default_value = "/metrics")]
    pub telemetry_path: String,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub paths: PathArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// How often the pool collector reads the process table and RSS.
    #[arg(long = "collector.pools.interval", default_value = "5s", value_parser = parse_duration)]
    pub pools_interval: Duration,
    /// How often PSS/USS are read from smaps_rollup (takes the mmap lock).
    #[arg(long = "collector.smaps.interval", default_value = "15s", value_parser = parse_duration)]
    pub smaps_interval: Duration,
    /// Skip smaps_rollup for processes whose RSS is above this many bytes.
    #[arg(long = "collector.smaps.max-rss", default_value_t = 16 << 30)]
    pub smaps_max_rss: u64,
    /// Follow forks and exits with the kernel's process events (the proc
    /// connector): exit statuses, and workers that live shorter than a
    /// cycle. `false`: /proc polling alone.
    #[arg(long = "collector.proc-events", default_value_t = true, action = clap::ArgAction::Set)]
    pub proc_events: bool,
    /// How often the listen queues of the pools' sockets are sampled.
    #[arg(long = "collector.listen-queue.interval", default_value = "100ms", value_parser = parse_duration)]
    pub listen_queue_interval: Duration,
    /// How far back badgateway_pool_listen_queue_peak reaches. Keep it at
    /// least Prometheus' scrape interval (15s as shipped), or a burst
    /// between two scrapes is never seen: change the two together.
    #[arg(long = "collector.listen-queue.peak-window", default_value = "15s", value_parser = parse_duration)]
    pub listen_queue_peak_window: Duration,
    /// How often to scan command lines for new Gunicorn masters.
    #[arg(long = "collector.discover.interval", default_value = "10s", value_parser = parse_duration)]
    pub discover_interval: Duration,
    /// How often the kernel counters (vmstat, meminfo, PSI, cgroups) are read.
    #[arg(long = "collector.kernel.interval", default_value = "5s", value_parser = parse_duration)]
    pub kernel_interval: Duration,
    /// How often followed log files are polled.
    #[arg(long = "collector.nginx.interval", default_value = "250ms", value_parser = parse_duration)]
    pub nginx_interval: Duration,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the 502 checklist once on this host and print the diagnosis:
    /// OOM kills, memory, each pool's workers, nginx's 502s and 504s by
    /// cause, and the recovery options. Exits 0 when nothing was found, 1
    /// for warnings, 2 for a critical finding, 3 when it could not run.
    Diagnose(DiagnoseArgs),
    /// Exit 0 when the exporter on each --web.listen-address answers
    /// /healthz (for container HEALTHCHECKs; the runtime image has no
    /// curl).
    Healthcheck(WebArgs),
    /// Check the config (--config.file with the --nginx.* flags), the
    /// listen addresses and the web config (--web.config.file, with the
    /// certificates it names) without starting anything. Exits 0 when all
    /// are valid, 1 with the error of each that is not (its file, line and
    /// key).
    CheckConfig(CheckConfigArgs),
}

/// The config, for every command that reads it.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// YAML config file. Without one, Gunicorn masters are auto-discovered.
    #[arg(long = "config.file")]
    pub config_file: Option<PathBuf>,
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
}

/// Where the host's /proc and /sys are, for the commands that read them.
#[derive(Debug, Clone, clap::Args)]
pub struct PathArgs {
    /// procfs mount point.
    #[arg(long = "path.procfs", default_value = "/proc")]
    pub procfs: PathBuf,
    /// sysfs mount point (for cgroups).
    #[arg(long = "path.sysfs", default_value = "/sys")]
    pub sysfs: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    #[arg(long = "log.level", value_enum, default_value = "info")]
    pub log_level: LogLevel,
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    pub log_format: LogFormat,
}

/// `check-config`: the config and the web flags, nothing started.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckConfigArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub web: WebArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// Where the exporter serves, for the commands that serve or reach it.
#[derive(Debug, Clone, clap::Args)]
pub struct WebArgs {
    /// Address to listen on: `host:port`, or `:port` for all interfaces.
    /// Repeat it to serve on several at once.
    #[arg(long = "web.listen-address", default_value = ":9502")]
    pub listen_addresses: Vec<String>,
    /// Web config of Prometheus' exporter-toolkit: TLS, client
    /// certificates, basic auth, headers. Reloaded when it changes.
    #[arg(long = "web.config.file")]
    pub web_config_file: Option<PathBuf>,
}

impl WebArgs {
    pub fn addresses(&self) -> anyhow::Result<Vec<SocketAddr>> {
        self.listen_addresses
            .iter()
            .map(|a| parse_listen_address(a))
            .collect()
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct DiagnoseArgs {
    /// How far back to look: kills, exits and failed requests older than
    /// this are left out.
    #[arg(long = "since", default_value = "1h", value_parser = parse_duration)]
    pub since: Duration,
    #[arg(long = "format", value_enum, default_value = "text")]
    pub format: ReportFormat,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub paths: PathArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
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

fn init_logging(args: &LogArgs) {
    init_logging_to(args, tracing::Level::TRACE);
}

/// Logging at the flag's level, but no more than `most` (a diagnosis
/// prints a report; its sources' warnings are in it).
fn init_logging_to(args: &LogArgs, most: tracing::Level) {
    use tracing_subscriber::prelude::*;
    let level = match args.log_level {
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Error => tracing::Level::ERROR,
    }
    .min(most);
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

/// Start a source's thread; sources block on reads and sleeps, so they run
/// on threads of their own, off the async runtime.
fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(256 * 1024)
        .spawn(f)
        .with_context(|| format!("starting the {name} thread"))?;
    Ok(())
}

/// What the binary does: serve the exporter, run a diagnosis once, or
/// probe a running exporter's health. Returns the process's exit code.
pub fn run(args: Args) -> anyhow::Result<i32> {
    if args.version {
        print!("{}", BUILD.version_text());
        return Ok(0);
    }
    match &args.command {
        Some(Command::Diagnose(d)) => {
            // The server's other flags at their defaults, those of
            // diagnose given.
            let args = Args {
                config: d.config.clone(),
                paths: d.paths.clone(),
                log: d.log.clone(),
                ..Args::parse_from(["badgateway_exporter"])
            };
            diagnose(&args, d)
        }
        Some(Command::CheckConfig(c)) => Ok(check_config(c)),
        Some(Command::Healthcheck(w)) => {
            for addr in w.addresses()? {
                crate::web::probe::healthcheck(
                    addr,
                    w.web_config_file.as_deref(),
                    Duration::from_secs(5),
                )?;
            }
            Ok(0)
        }
        None => serve(args).map(|()| 0),
    }
}

/// The config file (or the embedded default), with the single-nginx flags.
fn load_config(args: &ConfigArgs) -> anyhow::Result<Config> {
    let mut cfg = match &args.config_file {
        Some(p) => Config::load(p)?,
        None => {
            tracing::info!("no --config.file: auto-discovering gunicorn masters");
            Config::embedded_default()
        }
    };
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
    Ok(cfg)
}

/// The config as the exporter, `check-config`, `diagnose` and a reload
/// take it: the file with the flags, and the one check the file's parser
/// cannot make, the nginx formats, with the line of the one that fails.
fn checked_config(args: &ConfigArgs) -> anyhow::Result<Config> {
    use crate::config::Step;
    let cfg = load_config(args)?;
    let from_flags = args.nginx_access_log.is_some() || args.nginx_error_log.is_some();
    for (i, n) in cfg.nginx.iter().enumerate() {
        let Err(e) = n
            .access_log
            .as_ref()
            .map_or(Ok(()), |_| crate::nginx::compile_format(n).map(|_| ()))
        else {
            continue;
        };
        match &args.config_file {
            // The flags' entry is the last.
            _ if from_flags && i + 1 == cfg.nginx.len() => {
                anyhow::bail!("--nginx.log-format {:?}: {e}", n.log_format)
            }
            Some(file) => {
                let text = std::fs::read_to_string(file).unwrap_or_default();
                let at = [Step::Key("nginx"), Step::Index(i), Step::Key("log_format")];
                return Err(crate::config::error_at(file, &text, &at, &e).into());
            }
            None => anyhow::bail!("config {}: nginx {:?}: {e}", cfg.origin, n.name),
        }
    }
    warn_unread_log_files(&cfg);
    Ok(cfg)
}

/// `check-config`: the config and the web config checked, nothing
/// started. Returns the exit code.
fn check_config(args: &CheckConfigArgs) -> i32 {
    init_logging_to(&args.log, tracing::Level::WARN);
    let web = &args.web;
    let mut failed = false;
    match checked_config(&args.config) {
        Ok(cfg) => println!(
            "config {}: valid: {} pools, {} nginx, gunicorn discovery {}, kmsg {}",
            cfg.origin,
            cfg.pools.len(),
            cfg.nginx.len(),
            if cfg.discover.contains(&Discover::Gunicorn) {
                "on"
            } else {
                "off"
            },
            if cfg.kernel.kmsg { "on" } else { "off" },
        ),
        Err(e) => {
            eprintln!("badgateway_exporter: {e:#}");
            failed = true;
        }
    }
    if let Err(e) = web.addresses() {
        eprintln!("badgateway_exporter: {e:#}");
        failed = true;
    }
    if let Some(p) = &web.web_config_file {
        match crate::web::Active::load(p) {
            Ok(a) => println!(
                "web config {}: valid: tls {}, basic auth users {}",
                p.display(),
                if a.tls.is_some() { "on" } else { "off" },
                a.config.users.len()
            ),
            Err(e) => {
                eprintln!("badgateway_exporter: {e:#}");
                failed = true;
            }
        }
    }
    failed as i32
}

/// Every source's options, from the flags and the config. `start`:
/// where the logs are read from; `proc_events`: whether the pool source
/// follows the process events.
fn source_options(args: &Args, cfg: &Config, start: StartAt, proc_events: bool) -> Options {
    Options {
        pools: PoolOptions {
            proc_events,
            ..pool_options(args, cfg)
        },
        listen_queues: ListenQueueOptions {
            interval: args.listen_queue_interval,
            peak_window: args.listen_queue_peak_window,
            procfs: args.paths.procfs.clone(),
        },
        counters: CounterOptions {
            procfs: args.paths.procfs.clone(),
            sysfs: args.paths.sysfs.clone(),
            interval: args.kernel_interval,
        },
        kmsg: kmsg_options(args, cfg),
        read_kmsg: cfg.kernel.kmsg,
        nginx: nginx_options(args, cfg, start),
        app_logs: AppLogOptions {
            start,
            ..app_log_options(args, cfg)
        },
        procfs: args.paths.procfs.clone(),
        process_interval: self_usage::DEFAULT_INTERVAL,
        judge: JudgeOptions::default(),
        status: ServerStatusOptions::new(&cfg.pools, args.pools_interval),
    }
}

/// Every source built from its options; an error names the config.
fn build_sources(o: &Options, cfg: &Config, timeline_cap: usize) -> anyhow::Result<Sources> {
    Sources::build(o, timeline_cap, &cfg.origin)
        .map_err(|e| anyhow::anyhow!("config {}: {e}", cfg.origin))
}

/// Run every source once, from the start of the logs and the kernel's ring
/// buffer, judge what they found, and print the diagnosis.
fn diagnose(args: &Args, d: &DiagnoseArgs) -> anyhow::Result<i32> {
    init_logging_to(&args.log, tracing::Level::ERROR);
    let cfg = checked_config(&args.config)?;
    let mut o = source_options(args, &cfg, StartAt::Beginning, false);
    // The growth fit counts each pool's requests over each worker's life.
    o.nginx.request_history = true;
    let mut s = build_sources(&o, &cfg, one_shot::TIMELINE_CAP)?;
    let report = one_shot::run(&mut s, o.read_kmsg, d.since);
    match d.format {
        ReportFormat::Text => print!("{}", report.text()),
        ReportFormat::Json => println!("{}", report.json()),
    }
    Ok(report.exit_code())
}

fn serve(args: Args) -> anyhow::Result<()> {
    init_logging(&args.log);
    let listen = if args.systemd_socket {
        crate::web::Listen::SystemdSocket
    } else {
        crate::web::Listen::Addresses(args.web.addresses()?)
    };
    if !args.telemetry_path.starts_with('/') || args.telemetry_path == "/" {
        anyhow::bail!(
            "--web.telemetry-path {:?}: must start with / and not be /",
            args.telemetry_path
        );
    }
    let cfg = checked_config(&args.config)?;
    let rt = runtime()?;
    // Before any thread starts: SIGHUP's default action ends the process.
    let mut hangup = {
        let _rt = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?
    };
    let o = source_options(&args, &cfg, StartAt::End, args.proc_events);
    let Sources {
        table,
        inputs,
        reloads,
    } = build_sources(&o, &cfg, TIMELINE_CAP)?;
    let snapshot = Published::new(Snapshot::empty(&cfg.origin));
    // A source with nothing to read waits idle until a reload gives it
    // work; the rest start now, in the table's order.
    let mut reload = Reload {
        args: args.clone(),
        reloads,
        sinks: inputs.sinks.clone(),
        idle: table.into_entries(),
        refused: None,
    };
    reload.start_idle(&o)?;
    let renderer = Renderer::new(inputs).telemetry_path(&args.telemetry_path);
    let out = snapshot.clone();
    spawn("render", move || {
        renderer.run(out, Duration::from_millis(200))
    })?;

    rt.spawn(async move {
        while hangup.recv().await.is_some() {
            // A file read and a parse: short enough for the runtime.
            reload.reload();
        }
    });
    rt.block_on(crate::web::serve(
        crate::server::app(snapshot, &args.telemetry_path),
        &listen,
        args.web.web_config_file.as_deref(),
        shutdown_signal(),
    ))?;
    tracing::info!("shut down");
    Ok(())
}

/// The async runtime of the HTTP server: one thread. Two worker threads
/// were measured with bench/load.sh (three runs beside this build on the
/// 2-core host): no steady gain in p99, plain or TLS, and 1-2.5 MiB more
/// peak RSS.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("starting the async runtime")
}

/// What a SIGHUP does: read and check the config again, and hand each
/// running source its new options, which it takes at the start of its
/// next step (a pool cycle, a log poll, a kmsg reopen). A source keeps
/// what did not change, counters included. A bad config changes nothing
/// and is logged once.
struct Reload {
    args: Args,
    /// Where each source that takes new options follows them.
    reloads: Reloads,
    /// Where the sources write, for the driver of each.
    sinks: Sinks,
    /// Sources not started because the config had nothing for them.
    idle: Vec<Entry>,
    /// The last config refused, so that it is logged once however many
    /// SIGHUPs follow.
    refused: Option<String>,
}

impl Reload {
    fn reload(&mut self) {
        let cfg = match checked_config(&self.args.config) {
            Ok(cfg) => cfg,
            Err(e) => {
                let e = format!("{e:#}");
                if self.refused.as_deref() != Some(e.as_str()) {
                    tracing::warn!(error = %e, "SIGHUP: the config is invalid; keeping the previous one");
                    self.refused = Some(e);
                }
                return;
            }
        };
        self.refused = None;
        let o = source_options(&self.args, &cfg, StartAt::End, self.args.proc_events);
        self.reloads.publish(&o);
        if let Err(e) = self.start_idle(&o) {
            tracing::error!(error = format!("{e:#}"), "SIGHUP: starting a source");
        }
        tracing::info!(
            config = %cfg.origin,
            pools = cfg.pools.len(),
            nginx = cfg.nginx.len(),
            kmsg = cfg.kernel.kmsg,
            "config reloaded"
        );
    }

    /// Start each idle source that the config now gives something to
    /// read.
    fn start_idle(&mut self, o: &Options) -> anyhow::Result<()> {
        for e in std::mem::take(&mut self.idle) {
            if (e.runs)(o) {
                let (name, sinks, mut source) = (e.name(), self.sinks.clone(), e.source);
                spawn(name, move || drive(&sinks, &mut *source))?;
            } else {
                self.idle.push(e);
            }
        }
        Ok(())
    }
}

fn kmsg_options(args: &Args, cfg: &Config) -> KmsgOptions {
    KmsgOptions {
        path: cfg.kernel.kmsg_path.clone(),
        exit_window: (args.pools_interval * 3).max(Duration::from_secs(60)),
        boot_time: None,
    }
}

fn nginx_options(args: &Args, cfg: &Config, start: StartAt) -> NginxOptions {
    NginxOptions {
        logs: cfg.nginx.clone(),
        max_upstreams: cfg.max_upstreams,
        start,
        interval: args.nginx_interval,
        request_history: false,
    }
}

/// The servers whose `log_file` is read: those with a parser.
const LOG_SERVERS: &[Server] = &[
    Server::Gunicorn,
    Server::Uwsgi,
    Server::PhpFpm,
    Server::Puma,
    Server::Unicorn,
];

/// The pools' own logs that are read.
fn app_log_options(args: &Args, cfg: &Config) -> AppLogOptions {
    let logs = cfg
        .pools
        .iter()
        .filter(|p| LOG_SERVERS.contains(&p.server))
        .filter_map(|p| {
            Some((
                p.name.clone(),
                p.log_file.clone()?,
                p.server,
                p.php_fpm_pool.clone(),
            ))
        })
        .collect();
    AppLogOptions {
        logs,
        start: StartAt::End,
        interval: args.nginx_interval,
    }
}

/// Another server's `log_file` is said once per config read and left alone.
fn warn_unread_log_files(cfg: &Config) {
    for p in cfg
        .pools
        .iter()
        .filter(|p| !LOG_SERVERS.contains(&p.server))
    {
        if let Some(f) = &p.log_file {
            tracing::warn!(
                pool = %p.name,
                log_file = %f.display(),
                server = p.server.as_str(),
                "log_file is not read for server: generic; ignoring it"
            );
        }
    }
}

/// The pool source's options, from the flags and the config.
fn pool_options(args: &Args, cfg: &Config) -> PoolOptions {
    PoolOptions {
        procfs: args.paths.procfs.clone(),
        pools: cfg.pools.clone(),
        discover_gunicorn: cfg.discover.contains(&Discover::Gunicorn),
        discover_presets: cfg
            .discover
            .iter()
            .filter(|d| **d != Discover::Gunicorn)
            .map(|d| d.server())
            .collect(),
        interval: args.pools_interval,
        smaps_interval: args.smaps_interval.max(args.pools_interval),
        smaps_max_rss: args.smaps_max_rss,
        discover_interval: args.discover_interval,
        proc_events: args.proc_events,
        ..PoolOptions::default()
    }
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
        assert!(matches!(a.log.log_format, LogFormat::Json));
    }
}
