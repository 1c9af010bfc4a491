//! The status page at `/`: the verdict of the diagnosis, the last hour of
//! 502s and 504s by cause with the worker kills and exits on the same time
//! axis, each pool's per-slot memory against its share of the limit, and
//! which evidence this host lacks with the fix. Also `/api/v1/timeline`,
//! the same hour as JSON ([`json`]).
//!
//! Both are rendered by the snapshot's renderer, off the request path,
//! from what the sources published and the [`History`]; a request serves
//! the bytes. Server-rendered HTML with inline SVG ([`svg`]) and a few lines
//! of inline script: nothing is fetched from elsewhere, so the page works on
//! an air-gapped host. Text tables come first in the document, the charts
//! beside them, so a terminal browser shows everything that matters.
//!
//! Colours are the Okabe–Ito palette (Okabe and Ito, 2002), which readers
//! with the common colour-vision deficiencies can tell apart; every colour
//! is named in a legend and every count is in a table, so none is read
//! from colour alone.
//!
//! Everything that came from a log, a config file or a process is escaped
//! with [`escape`] before it goes into the page.

pub mod json;
pub mod svg;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use crate::diagnose::{self, Report, Severity};
use crate::kernel::counter_files::Limit;
use crate::kernel::{MemoryCounters, NO_POOL};
use crate::pools::listen_queue::ListenQueues;
use crate::pools::{PoolState, PoolsView};
use crate::state::health::SourceStatus;
use crate::state::history::{History, Mark, MarkKind};
use crate::state::timeline::{ExitReason, FailureCause};

/// Seconds between the page's own refreshes.
pub const REFRESH_SECONDS: u32 = 15;
/// Marks listed in the page's table (all of them are in the chart and in
/// `/api/v1/timeline`).
pub const MARKS_LISTED: usize = 20;

/// What the page and the JSON are made of.
pub struct Page<'a> {
    pub report: &'a Report,
    pub history: &'a History,
    pub pools: &'a PoolsView,
    pub listen_queues: &'a ListenQueues,
    pub memory: &'a MemoryCounters,
    pub sources: &'a BTreeMap<String, SourceStatus>,
    pub telemetry_path: &'a str,
    pub config_origin: &'a str,
    pub now: SystemTime,
}

/// HTML-escape text for an element or a quoted attribute.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    escape_into(&mut o, s);
    o
}

/// [`escape`], appending to `o`.
pub fn escape_into(o: &mut String, s: &str) {
    if !s.contains(['<', '>', '&', '"', '\'']) {
        o.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
}

/// Text longer than this from the diagnosis is cut on the page: a path
/// from a log is cut by the source already, but the page does not count
/// on it.
pub const TEXT_MAX: usize = 512;

/// [`escape`] of `s` cut to [`TEXT_MAX`] bytes (on a char boundary), with
/// an ellipsis when cut.
pub fn escape_cut(s: &str) -> String {
    if s.len() <= TEXT_MAX {
        return escape(s);
    }
    let end = (0..=TEXT_MAX)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    let mut o = escape(&s[..end]);
    o.push('…');
    o
}

/// The Okabe–Ito palette.
pub mod palette {
    pub const ORANGE: &str = "#E69F00";
    pub const SKY_BLUE: &str = "#56B4E9";
    pub const BLUISH_GREEN: &str = "#009E73";
    pub const YELLOW: &str = "#F0E442";
    pub const BLUE: &str = "#0072B2";
    pub const VERMILLION: &str = "#D55E00";
    pub const REDDISH_PURPLE: &str = "#CC79A7";
    pub const GREY: &str = "#999999";
    /// For lines that need no meaning of their own: the slots of a pool.
    pub const SERIES: [&str; 7] = [
        BLUE,
        ORANGE,
        BLUISH_GREEN,
        REDDISH_PURPLE,
        SKY_BLUE,
        YELLOW,
        VERMILLION,
    ];
}

/// The colour of a cause; `None` is the theme's foreground (black on
/// light, white on dark).
pub fn cause_colour(c: FailureCause) -> Option<&'static str> {
    use palette::*;
    Some(match c {
        FailureCause::WorkerOomKilled => VERMILLION,
        FailureCause::PoolStoppedAfterOom => REDDISH_PURPLE,
        FailureCause::WorkerTimeout => ORANGE,
        FailureCause::UpstreamTimeout => YELLOW,
        FailureCause::WorkerCrashed => SKY_BLUE,
        FailureCause::WorkerRecycled => BLUISH_GREEN,
        FailureCause::BacklogFull => BLUE,
        FailureCause::PoolDown => return None,
        FailureCause::FdExhausted
        | FailureCause::UpstreamClosed
        | FailureCause::UpstreamSent5xx
        | FailureCause::Other => GREY,
    })
}

/// The colour of a mark.
pub fn mark_colour(k: MarkKind) -> Option<&'static str> {
    use palette::*;
    Some(match k {
        MarkKind::OomKill => VERMILLION,
        MarkKind::WorkerExit(r) => match r {
            ExitReason::OomKilled => VERMILLION,
            ExitReason::Timeout => ORANGE,
            ExitReason::MaxRequests => BLUISH_GREEN,
            ExitReason::Signal => SKY_BLUE,
            ExitReason::ExitError => REDDISH_PURPLE,
            ExitReason::Reload | ExitReason::Shutdown => BLUE,
            ExitReason::Unknown => GREY,
        },
        MarkKind::MasterRestart | MarkKind::MasterExit => return None,
    })
}

pub(crate) fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

/// `HH:MM:SS` UTC.
pub(crate) fn clock(t: SystemTime) -> String {
    let s = diagnose::rfc3339(t);
    s.get(11..19).unwrap_or(&s).to_string()
}

/// What a mark stands for, in words, with its evidence: the tooltip and
/// the table row.
pub fn mark_evidence(m: &Mark) -> String {
    let what = match m.kind {
        MarkKind::OomKill => "OOM kill".to_string(),
        MarkKind::WorkerExit(r) => format!("worker exit ({})", r.as_str()),
        MarkKind::MasterRestart => "master restart".to_string(),
        MarkKind::MasterExit => "master exit".to_string(),
    };
    let mut s = format!(
        "{} UTC {what}: pool {}, pid {}",
        clock(m.at),
        m.pool.as_deref().unwrap_or("-"),
        m.pid
    );
    if let Some(slot) = m.slot {
        let _ = write!(s, ", slot {slot}");
    }
    if let Some(b) = m.memory_bytes {
        let _ = write!(s, ", victim's memory {}", mib(b));
    }
    if let Some(r) = &m.request {
        let _ = write!(s, ", in flight: {} {}", r.method, r.path);
    }
    s
}

/// Each pool's memory budget per worker: its cgroup limit, or (without
/// one) MemAvailable plus what the pool holds now, less the master,
/// shared among the live workers. With the words for what it is.
pub fn worker_share(p: &PoolState, memory: &MemoryCounters) -> Option<(u64, &'static str)> {
    let workers = p.live_workers().max(1) as u64;
    let master = p.master_memory.pss.unwrap_or(p.master_memory.rss);
    let limit = memory.cgroups.get(&p.name).and_then(|c| match c.limit {
        Some(Limit::Bytes(b)) => Some(b),
        _ => None,
    });
    let (budget, what) = match limit {
        Some(l) => (l, "share of the cgroup limit"),
        None => {
            let t = p.total_memory();
            let avail = memory.host.available?;
            (avail + t.pss.unwrap_or(t.rss), "share of MemAvailable")
        }
    };
    Some((budget.saturating_sub(master) / workers, what))
}

/// Why a source may be missing, and what gives it to the exporter.
pub fn source_fix(source: &str, error: &str) -> &'static str {
    let denied = error.contains("ermission") || error.contains("EACCES") || error.contains("EPERM");
    match source {
        "kmsg" => "OOM kills are read from /dev/kmsg: give the exporter CAP_SYSLOG (the systemd unit does), or run it as root. Without it the kills are only counted from /proc/vmstat and the pools' cgroups, with no victim.",
        "proc_connector" => "Worker exit statuses come from the kernel's process events: give the exporter CAP_NET_ADMIN. Without them a worker's end is seen only by polling, and its reason is often unknown.",
        "listen_queue" => "The listen queue is read with sock_diag: give the exporter CAP_NET_ADMIN.",
        s if s.starts_with("pool/") && denied => "Other users' smaps_rollup and fds need CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH.",
        s if s.starts_with("pool/") => "Check the pool's pidfile or cmdline in the config file: its master was not found.",
        s if s.starts_with("control/") => "Heartbeats come from Gunicorn's control socket: set the pool's control_socket in the config file, or give the exporter access to it.",
        s if s.starts_with("app_log/") => "Worker timeouts, boots and shutdowns come from the app server's own log: set the pool's log_file to a file the exporter can read (CAP_DAC_READ_SEARCH).",
        s if s.starts_with("nginx/") && denied => "nginx's logs need read access: CAP_DAC_READ_SEARCH, or the adm group.",
        s if s.starts_with("nginx/") => "Check access_log, error_log and log_format in the config file: the 502s and their upstream failures come from them. A format without $upstream_addr cannot tie a 502 to its pool.",
        _ if denied => "Permission denied: see the capabilities in the README's Install section.",
        _ => "",
    }
}

const STYLE: &str = r#"
/* Okabe–Ito palette: colour-blind safe. Dark theme by prefers-color-scheme. */
:root{--bg:#fff;--fg:#111;--muted:#555;--grid:#ccc;--card:#f4f4f4}
@media (prefers-color-scheme:dark){:root{--bg:#121212;--fg:#eee;--muted:#aaa;--grid:#3a3a3a;--card:#1d1d1d}}
body{font:14px/1.45 system-ui,-apple-system,sans-serif;background:var(--bg);color:var(--fg);margin:0 auto;max-width:1280px;padding:8px 12px}
a{color:#56B4E9}h1{font-size:1.3em;margin:.3em 0}h2{font-size:1.1em;margin:1.2em 0 .4em}h3{font-size:1em;margin:.8em 0 .3em}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}.row>*{flex:1 1 360px;min-width:0}
.wide{flex:2 1 560px}
#timeline{min-width:560px}
table{border-collapse:collapse;font-size:.92em;max-width:100%}td,th{padding:2px 8px 2px 0;text-align:left;border-bottom:1px solid var(--grid);vertical-align:top}
th{color:var(--muted);font-weight:600}.num{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto}
svg{width:100%;height:auto;display:block}svg text{fill:var(--fg);font-size:10px}
.axis{stroke:var(--grid);stroke-width:1}.fgfill{fill:var(--fg)}.fgstroke{stroke:var(--fg)}
.verdict{background:var(--card);padding:8px 12px;border-left:8px solid #009E73}
.verdict.warning{border-color:#E69F00}.verdict.critical{border-color:#D55E00}
.muted{color:var(--muted)}.sw{display:inline-block;width:.9em;height:.9em;vertical-align:-.1em;margin-right:.3em;border:1px solid var(--grid)}
.legend span{margin-right:1em;white-space:nowrap}
#evidence{min-height:1.4em;background:var(--card);padding:2px 6px}
.bar,.mark{cursor:pointer}
"#;

/// A few lines so that a tap on a mark or a bar shows its evidence (a
/// mouse gets the SVG `<title>` tooltip without them), and a chart too
/// wide for a phone starts scrolled to its newest minute.
const SCRIPT: &str = r#"var tl=document.getElementById('timeline');if(tl)tl.parentNode.scrollLeft=1e6;document.addEventListener('click',function(e){var g=e.target.closest&&e.target.closest('.mark,.bar');if(!g)return;var t=g.querySelector('title');if(t)document.getElementById('evidence').textContent=t.textContent;});"#;

impl Page<'_> {
    /// The whole page.
    pub fn html(&self) -> String {
        let mut o = String::with_capacity(64 * 1024);
        let _ = write!(
            o,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n\
             <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\n\
             <meta name=\"color-scheme\" content=\"light dark\">\n\
             <title>badgateway_exporter: {}</title>\n<style>{STYLE}</style></head><body>\n",
            match self.report.severity {
                Severity::Ok => "OK",
                Severity::Warning => "WARNING",
                Severity::Critical => "CRITICAL",
            }
        );
        let _ = write!(
            o,
            "<h1>badgateway_exporter {}</h1>\n<p><a href=\"{}\">Metrics</a> &middot; \
             <a href=\"/diagnose\">Diagnosis</a> &middot; <a href=\"/api/v1/timeline\">Timeline (JSON)</a> &middot; \
             Docs: <a href=\"/docs/status-page.md\">status page</a>, <a href=\"/docs/metrics.md\">metrics</a>, \
             <a href=\"/docs/runbook.md\">runbook</a> &middot; <a href=\"/healthz\">Health</a><br>\
             <span class=\"muted\">Config: {} &middot; rendered {} &middot; refreshes every {REFRESH_SECONDS} s</span></p>\n",
            env!("CARGO_PKG_VERSION"),
            escape(self.telemetry_path),
            escape(self.config_origin),
            escape(&diagnose::rfc3339(self.now)),
        );
        self.verdict(&mut o);
        self.last_hour(&mut o);
        self.pools_section(&mut o);
        self.sources_section(&mut o);
        o.push_str("<p class=\"muted\">Colours: the Okabe–Ito palette, which colour-blind readers can tell apart; every count is also in a table.</p>\n");
        let _ = writeln!(o, "<script>{SCRIPT}</script>\n</body></html>");
        o
    }

    fn verdict(&self, o: &mut String) {
        let r = self.report;
        let failed: u64 = r.failures.by_cause.iter().map(|c| c.count).sum();
        let (class, word) = match r.severity {
            Severity::Ok => ("ok", "OK"),
            Severity::Warning => ("warning", "WARNING"),
            Severity::Critical => ("critical", "CRITICAL"),
        };
        let _ = writeln!(
            o,
            "<section id=\"verdict\" class=\"verdict {class}\" data-severity=\"{class}\" data-failed=\"{failed}\">\n<h2>Verdict: {word}</h2>"
        );
        if failed == 0 {
            o.push_str("<p><b>No 502s in the last hour.</b></p>\n");
        } else {
            let by_cause = cause_totals(r);
            let list: Vec<String> = by_cause
                .iter()
                .map(|(c, n)| format!("{n} {}", escape(c)))
                .collect();
            let _ = writeln!(
                o,
                "<p><b>{failed} failed request(s) (502/504) in the last hour</b>: {}.</p>",
                list.join(", ")
            );
        }
        if !r.findings.is_empty() {
            o.push_str("<ul id=\"findings\">\n");
            for f in &r.findings {
                let _ = writeln!(
                    o,
                    "<li data-severity=\"{}\">{}</li>",
                    sev_word(f.severity),
                    escape_cut(&f.text)
                );
            }
            o.push_str("</ul>\n");
        }
        // The pools' own kills first: a host's other OOM kills are in the
        // findings and the marks.
        let of_pools: Vec<&diagnose::KillRow> = r
            .oom_kills
            .kills
            .iter()
            .rev()
            .filter(|k| k.pool != NO_POOL)
            .take(5)
            .collect();
        let kills = if of_pools.is_empty() {
            r.oom_kills.kills.iter().rev().take(5).collect()
        } else {
            of_pools
        };
        if !kills.is_empty() {
            o.push_str("<p>Latest OOM kills (newest first):</p><div class=\"scroll\"><table id=\"kills\"><tr><th>time</th><th>pool</th><th>pid</th><th>slot</th><th class=\"num\">victim's memory</th></tr>\n");
            for k in kills {
                let _ = writeln!(
                    o,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                    escape(&k.at),
                    escape_cut(&k.pool),
                    k.pid,
                    k.slot.map_or("-".into(), |s| s.to_string()),
                    mib(k.anon_bytes + k.file_bytes + k.shmem_bytes.unwrap_or(0))
                );
            }
            o.push_str("</table></div>\n");
        }
        let applying: Vec<&diagnose::RecoveryOption> =
            r.recovery.iter().filter(|x| x.applies).collect();
        if !applying.is_empty() {
            o.push_str("<h3>What to do, in order</h3>\n<ol id=\"recovery\">\n");
            for x in applying {
                let _ = write!(
                    o,
                    "<li data-option=\"{}\"><b>{}</b>: {}",
                    x.name,
                    escape(x.title),
                    escape_cut(&x.advice)
                );
                if !x.numbers.is_empty() {
                    o.push_str("<table class=\"numbers\">");
                    for (k, v) in &x.numbers {
                        let _ = write!(
                            o,
                            "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
                            escape_cut(k),
                            escape_cut(v)
                        );
                    }
                    o.push_str("</table>");
                }
                o.push_str("</li>\n");
            }
            o.push_str("</ol>\n");
        }
        o.push_str("<p class=\"muted\">The whole checklist, with memory and each worker: <a href=\"/diagnose\">/diagnose</a>.</p>\n</section>\n");
    }

    fn last_hour(&self, o: &mut String) {
        let h = self.history;
        o.push_str("<section id=\"last-hour\">\n<h2>The last hour: 502s and 504s by cause, worker kills and exits</h2>\n<div class=\"row\">\n<div>\n");
        let busy: Vec<_> = h.minutes().filter(|b| b.total() > 0).collect();
        if busy.is_empty() {
            o.push_str("<p>No 502s or 504s in the last hour.</p>\n");
        } else {
            o.push_str("<div class=\"scroll\"><table id=\"failed-by-minute\"><tr><th>minute (UTC)</th><th>status</th><th>cause</th><th class=\"num\">requests</th></tr>\n");
            for b in busy.iter().rev() {
                for (status, cause, n) in b.failed() {
                    let _ = writeln!(
                        o,
                        "<tr><td>{}</td><td>{status}</td><td>{}</td><td class=\"num\">{n}</td></tr>",
                        &clock(b.start())[..5],
                        cause.as_str()
                    );
                }
            }
            o.push_str("</table></div>\n");
        }
        let marks: Vec<&Mark> = h.marks().rev().take(MARKS_LISTED).collect();
        if marks.is_empty() {
            o.push_str("<p>No OOM kill, worker exit or master restart in the last hour.</p>\n");
        } else {
            let _ = writeln!(
                o,
                "<h3>Kills, exits and restarts (newest {} of {})</h3><div class=\"scroll\"><table id=\"marks\"><tr><th>time (UTC)</th><th>what</th><th>pool</th><th>pid</th><th>slot</th><th class=\"num\">memory</th><th>request in flight</th></tr>",
                marks.len(),
                h.marks().count()
            );
            for m in marks {
                let what = match m.kind.reason() {
                    Some(r) => format!("exit: {}", r.as_str()),
                    None => m.kind.as_str().replace('_', " "),
                };
                let _ = writeln!(
                    o,
                    "<tr><td>{}</td><td>{what}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                    clock(m.at),
                    escape(m.pool.as_deref().unwrap_or("-")),
                    m.pid,
                    m.slot.map_or("-".into(), |s| s.to_string()),
                    m.memory_bytes.map_or("-".into(), mib),
                    m.request
                        .as_ref()
                        .map_or(String::from("-"), |r| escape(&format!("{} {}", r.method, r.path)))
                );
            }
            o.push_str("</table></div>\n");
        }
        o.push_str("</div>\n<div class=\"wide\">\n");
        // On a phone the chart scrolls sideways rather than shrink its text.
        o.push_str("<div class=\"scroll\">");
        svg::timeline(o, h);
        o.push_str("</div>\n");
        o.push_str("<p id=\"evidence\" aria-live=\"polite\" class=\"muted\">Hover over or tap a bar or a mark for its evidence.</p>\n");
        svg::timeline_legend(o);
        o.push_str("</div>\n</div>\n</section>\n");
    }

    fn pools_section(&self, o: &mut String) {
        o.push_str("<section id=\"pools\">\n<h2>Pools: each worker's memory over the hour</h2>\n");
        if self.pools.pools.is_empty() {
            o.push_str("<p>No pools configured or discovered yet.</p>\n");
        }
        for p in &self.pools.pools {
            let _ = writeln!(
                o,
                "<h3 data-pool=\"{0}\">{0} <span class=\"muted\">({1}, {2}, master {3}, {4} workers)</span></h3>\n<div class=\"row\">\n<div>",
                escape(&p.name),
                p.server.as_str(),
                if p.up { "up" } else { "<b>DOWN</b>" },
                p.master.map_or("-".into(), |m| m.pid.to_string()),
                p.live_workers()
            );
            let share = worker_share(p, self.memory);
            if let Some((b, what)) = share {
                let _ = writeln!(o, "<p>Each worker's {what}: {}</p>", mib(b));
            }
            o.push_str("<div class=\"scroll\"><table class=\"workers\"><tr><th>slot</th><th>pid</th><th class=\"num\">PSS</th><th class=\"num\">RSS</th><th class=\"num\">heartbeat age</th></tr>\n");
            for w in &p.workers {
                let _ = writeln!(
                    o,
                    "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                    w.slot,
                    w.id.pid,
                    w.memory.pss.map_or("-".into(), mib),
                    mib(w.memory.rss),
                    w.heartbeat_age
                        .map_or("-".into(), |a| format!("{a:.1} s"))
                );
            }
            o.push_str("</table></div>\n");
            for q in self
                .listen_queues
                .queues
                .iter()
                .filter(|q| *q.pool == *p.name)
            {
                let _ = writeln!(
                    o,
                    "<p>Listen queue {}: {} of {} (peak {})</p>",
                    escape(&q.listener),
                    q.length,
                    q.limit,
                    q.peak
                );
            }
            o.push_str("</div>\n<div>\n");
            match self.history.series().iter().find(|s| *s.pool == *p.name) {
                Some(s) => svg::memory(o, self.history, s, share),
                None => o.push_str("<p class=\"muted\">No memory sampled yet.</p>\n"),
            }
            o.push_str("</div>\n</div>\n");
        }
        o.push_str("</section>\n");
    }

    fn sources_section(&self, o: &mut String) {
        o.push_str("<section id=\"sources\">\n<h2>Evidence: what this host can and cannot show</h2>\n<div class=\"scroll\"><table><tr><th>source</th><th>state</th><th>fix</th></tr>\n");
        let mut missing = 0;
        for (name, s) in self.sources {
            let (state, fix) = if s.up {
                (format!("readable ({} errors so far)", s.errors), "")
            } else {
                missing += 1;
                let err = s.last_error.as_deref().unwrap_or("");
                (
                    format!(
                        "NOT READABLE{}{err}",
                        if err.is_empty() { "" } else { ": " }
                    ),
                    source_fix(name, err),
                )
            };
            let _ = writeln!(
                o,
                "<tr data-source=\"{0}\" data-up=\"{1}\"><td>{0}</td><td>{2}</td><td>{3}</td></tr>",
                escape(name),
                s.up,
                escape_cut(&state),
                escape(fix)
            );
        }
        if self.sources.is_empty() {
            o.push_str("<tr><td colspan=3>no source has been tried yet</td></tr>\n");
        }
        o.push_str("</table></div>\n");
        if missing == 0 && !self.sources.is_empty() {
            o.push_str("<p>Every source is readable.</p>\n");
        }
        let d = self.history.dropped();
        let _ = writeln!(
            o,
            "<p class=\"muted\">History dropped: {} marks (ring full), {} events outside the hour, {} events the timeline dropped unread, {} memory samples beyond the caps.</p>\n</section>",
            d.marks, d.out_of_window, d.timeline, d.series
        );
    }
}

fn sev_word(s: Severity) -> &'static str {
    match s {
        Severity::Ok => "ok",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// Failed requests by cause over every pool and status, largest first.
fn cause_totals(r: &Report) -> Vec<(&'static str, u64)> {
    let mut by: BTreeMap<&'static str, u64> = BTreeMap::new();
    for c in &r.failures.by_cause {
        *by.entry(c.cause).or_default() += c.count;
    }
    let mut v: Vec<_> = by.into_iter().collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.1));
    v
}

#[cfg(test)]
mod tests;
