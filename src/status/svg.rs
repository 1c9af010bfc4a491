//! The page's two charts, as inline SVG: the hour's failed requests as
//! stacked bars with the marks above them on one time axis, and a pool's
//! per-slot PSS as lines against each worker's share of its limit.
//!
//! Each bar and mark carries `data-*` attributes (minute, cause, status,
//! kind) for scripts and tests, and a `<title>` child with its evidence,
//! which browsers show as a tooltip with no script. The charts scale with
//! their container (`viewBox`, width 100%).

use std::fmt::Write as _;
use std::time::SystemTime;

use super::{cause_colour, clock, escape, mark_colour, mark_evidence, mib, palette};
use crate::diagnose::rfc3339;
use crate::state::history::{History, MarkKind, PoolSeries, MINUTES};
use crate::state::timeline::{ExitReason, FailureCause};

/// Timeline chart geometry, in viewBox units.
const LEFT: f64 = 40.0;
const MINUTE_W: f64 = 12.0;
const PLOT_W: f64 = MINUTE_W * MINUTES as f64;
const BARS_TOP: f64 = 60.0;
const BARS_BOTTOM: f64 = 200.0;

/// The smallest 1, 2 or 5 times a power of ten at or above `v`.
fn nice(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

fn fill(c: Option<&str>) -> String {
    match c {
        Some(c) => format!("fill=\"{c}\""),
        None => "class=\"fgfill\"".into(),
    }
}

fn epoch(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The hour: bars of failed requests per minute stacked by cause, and the
/// marks in three rows above them (OOM kills, worker exits, masters).
pub fn timeline(o: &mut String, h: &History) {
    let minutes: Vec<_> = h.minutes().collect();
    let Some(first) = minutes.first().map(|b| b.start()) else {
        o.push_str("<p class=\"muted\">No history yet.</p>\n");
        return;
    };
    let width = LEFT + PLOT_W + 10.0;
    let _ = writeln!(
        o,
        "<svg id=\"timeline\" viewBox=\"0 0 {width} 220\" role=\"img\" aria-label=\"502s and 504s per minute over the last hour, by cause, with OOM kills and worker exits\">"
    );
    let ymax = nice(minutes.iter().map(|b| b.total()).max().unwrap_or(0) as f64);
    let scale = (BARS_BOTTOM - BARS_TOP) / ymax;
    // The axes, a mid grid line and their labels.
    for (v, y) in [
        (0.0, BARS_BOTTOM),
        (ymax / 2.0, (BARS_BOTTOM + BARS_TOP) / 2.0),
        (ymax, BARS_TOP),
    ] {
        let _ = writeln!(
            o,
            "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            LEFT + PLOT_W,
            LEFT - 4.0,
            y + 3.0,
            if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") }
        );
    }
    let _ = writeln!(
        o,
        "<text x=\"2\" y=\"{}\" transform=\"rotate(-90 8 {})\">req/min</text>",
        BARS_TOP + 60.0,
        BARS_TOP + 60.0
    );
    for (label, y) in [("OOM", 16.0), ("exit", 32.0), ("master", 48.0)] {
        let _ = write!(
            o,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{label}</text>",
            LEFT - 4.0,
            y + 3.0
        );
    }
    for (i, b) in minutes.iter().enumerate() {
        let x = LEFT + i as f64 * MINUTE_W;
        if i % 10 == 0 || i + 1 == minutes.len() {
            let _ = write!(
                o,
                "<text x=\"{}\" y=\"214\" text-anchor=\"middle\">{}</text><line class=\"axis\" x1=\"{x}\" x2=\"{x}\" y1=\"{BARS_BOTTOM}\" y2=\"{}\"/>",
                x + MINUTE_W / 2.0,
                &clock(b.start())[..5],
                BARS_BOTTOM + 4.0
            );
        }
        if b.total() == 0 {
            continue;
        }
        let minute = rfc3339(b.start());
        let mut count = 0u32;
        let mut bottom = BARS_BOTTOM as i64;
        let (bx, bw) = ((x + 1.0) as i64, (MINUTE_W - 2.0) as i64);
        // Stacked in the causes' fixed order, so colours sit alike in
        // every bar.
        let mut parts: Vec<(u16, FailureCause, u32)> = b.failed().collect();
        parts.sort_by_key(|(s, c, _)| (FailureCause::ALL.iter().position(|k| k == c), *s));
        for (status, cause, n) in parts {
            // Whole units: exact-precision float formatting would cost more
            // than the rest of the page.
            count += n;
            let top = (BARS_BOTTOM - count as f64 * scale).round() as i64;
            let (y, hgt) = (top, bottom - top);
            bottom = top;
            let _ = writeln!(
                o,
                "<rect class=\"bar\" data-minute=\"{minute}\" data-status=\"{status}\" data-cause=\"{}\" data-count=\"{n}\" x=\"{bx}\" y=\"{y}\" width=\"{bw}\" height=\"{hgt}\" {}{}><title>{} UTC: {n} × {status} {}</title></rect>",
                cause.as_str(),
                fill(cause_colour(cause)),
                if status == 504 { " fill-opacity=\"0.6\"" } else { "" },
                &clock(b.start())[..5],
                cause.as_str()
            );
        }
    }
    let t0 = epoch(first);
    for m in h.marks() {
        let x = (LEFT + ((epoch(m.at) - t0) / 60.0 * MINUTE_W).clamp(0.0, PLOT_W)) as i64;
        let (y, shape) = match m.kind {
            MarkKind::OomKill => (16.0, format!("M{} 10 L{} 10 L{x} 22 Z", x - 6, x + 6)),
            MarkKind::WorkerExit(_) => (32.0, String::new()),
            MarkKind::MasterRestart | MarkKind::MasterExit => (
                48.0,
                format!("M{x} 42 L{} 48 L{x} 54 L{} 48 Z", x + 6, x - 6),
            ),
        };
        let millis =
            m.at.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
        let minute = rfc3339(
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs((millis / 60_000) as u64 * 60),
        );
        let _ = write!(
            o,
            "<g class=\"mark\" data-kind=\"{}\" data-reason=\"{}\" data-minute=\"{minute}\" data-at=\"{}.{:03}\" data-pool=\"{}\" data-pid=\"{}\"><title>{}</title>",
            m.kind.as_str(),
            m.kind.reason().map_or("", ExitReason::as_str),
            millis / 1000,
            millis % 1000,
            escape(m.pool.as_deref().unwrap_or("-")),
            m.pid,
            escape(&mark_evidence(m))
        );
        let f = fill(mark_colour(m.kind));
        if shape.is_empty() {
            let _ = write!(o, "<circle cx=\"{x}\" cy=\"{y}\" r=\"5\" {f}/>");
        } else {
            let _ = write!(o, "<path d=\"{shape}\" {f}/>");
        }
        o.push_str("</g>\n");
    }
    o.push_str("</svg>\n");
}

/// What the colours of the timeline mean.
pub fn timeline_legend(o: &mut String) {
    o.push_str("<p class=\"legend\">");
    for c in FailureCause::ALL {
        let style = match cause_colour(*c) {
            Some(col) => format!("background:{col}"),
            None => "background:var(--fg)".into(),
        };
        let _ = write!(
            o,
            "<span><i class=\"sw\" style=\"{style}\"></i>{}</span> ",
            c.as_str()
        );
    }
    let _ = writeln!(
        o,
        "<br>Marks: ▼ OOM kill, ● worker exit (<span style=\"color:{}\">oom_killed</span>, <span style=\"color:{}\">timeout</span>, <span style=\"color:{}\">max_requests</span>, <span style=\"color:{}\">signal</span>, <span style=\"color:{}\">exit_error</span>, <span style=\"color:{}\">reload/shutdown</span>), ◆ master exit or restart. 504s are drawn lighter.</p>",
        palette::VERMILLION,
        palette::ORANGE,
        palette::BLUISH_GREEN,
        palette::SKY_BLUE,
        palette::REDDISH_PURPLE,
        palette::BLUE
    );
}

/// Memory chart geometry.
const M_LEFT: f64 = 48.0;
const M_STEP: f64 = 6.0;
const M_TOP: f64 = 10.0;
const M_BOTTOM: f64 = 130.0;

/// One pool's slots: each slot's largest PSS per minute as a line, the
/// per-worker share as a dashed line, the pool's OOM kills as marks.
pub fn memory(o: &mut String, h: &History, s: &PoolSeries, share: Option<(u64, &str)>) {
    let lines: Vec<Vec<Option<u64>>> = (0..s.slots()).map(|k| h.slot_pss(s, k)).collect();
    let top = lines
        .iter()
        .flatten()
        .flatten()
        .copied()
        .max()
        .unwrap_or(0)
        .max(share.map_or(0, |x| x.0));
    let ymax_mib = nice(top as f64 / (1u64 << 20) as f64 * 1.05);
    let ymax = ymax_mib * (1u64 << 20) as f64;
    let y_of = |b: u64| M_BOTTOM - (b as f64 / ymax) * (M_BOTTOM - M_TOP);
    let width = M_LEFT + M_STEP * MINUTES as f64 + 8.0;
    let _ = writeln!(
        o,
        "<svg class=\"memory\" data-pool=\"{}\" viewBox=\"0 0 {width} 150\" role=\"img\" aria-label=\"each slot's PSS over the last hour\">",
        escape(&s.pool)
    );
    for (v, y) in [(0.0, M_BOTTOM), (ymax_mib, M_TOP)] {
        let _ = writeln!(
            o,
            "<line class=\"axis\" x1=\"{M_LEFT}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v} MiB</text>",
            M_LEFT + M_STEP * MINUTES as f64,
            M_LEFT - 4.0,
            y + 3.0
        );
    }
    let starts: Vec<SystemTime> = h.minutes().map(|b| b.start()).collect();
    for (i, t) in starts.iter().enumerate() {
        if i % 15 == 0 || i + 1 == starts.len() {
            let _ = write!(
                o,
                "<text x=\"{:.1}\" y=\"145\" text-anchor=\"middle\">{}</text>",
                M_LEFT + i as f64 * M_STEP + M_STEP / 2.0,
                &clock(*t)[..5]
            );
        }
    }
    if let Some((b, what)) = share {
        let y = y_of(b);
        let _ = writeln!(
            o,
            "<line class=\"fgstroke\" stroke-dasharray=\"4 3\" x1=\"{M_LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"><title>each worker's {what}: {}</title></line><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{what} {}</text>",
            M_LEFT + M_STEP * MINUTES as f64,
            mib(b),
            M_LEFT + M_STEP * MINUTES as f64,
            y - 3.0,
            mib(b)
        );
    }
    for (k, line) in lines.iter().enumerate() {
        let colour = palette::SERIES[k % palette::SERIES.len()];
        let peak = line.iter().flatten().max().copied();
        // One polyline per run of sampled minutes.
        let mut run = String::new();
        let mut runs = Vec::new();
        for (i, v) in line.iter().enumerate() {
            match v {
                Some(b) => {
                    let _ = write!(
                        run,
                        "{},{} ",
                        (M_LEFT + i as f64 * M_STEP + M_STEP / 2.0) as i64,
                        y_of(*b).round() as i64
                    );
                }
                None if !run.is_empty() => runs.push(std::mem::take(&mut run)),
                None => {}
            }
        }
        if !run.is_empty() {
            runs.push(run);
        }
        for r in runs {
            let single = r.trim().split(' ').count() == 1;
            let _ = writeln!(
                o,
                "<polyline data-slot=\"{k}\" points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"{}\" stroke-linecap=\"round\"><title>slot {k}: largest PSS {}</title></polyline>",
                if single { format!("{0} {0}", r.trim()) } else { r.trim().to_string() },
                if single { 4 } else { 2 },
                peak.map_or("-".into(), mib)
            );
        }
    }
    if let Some(t0) = starts.first() {
        let t0 = epoch(*t0);
        for m in h
            .marks()
            .filter(|m| m.kind == MarkKind::OomKill && m.pool.as_deref() == Some(&*s.pool))
        {
            let x = (M_LEFT
                + ((epoch(m.at) - t0) / 60.0 * M_STEP).clamp(0.0, M_STEP * MINUTES as f64))
                as i64;
            let _ = writeln!(
                o,
                "<g class=\"mark\" data-kind=\"oom_kill\"><title>{}</title><path d=\"M{} {M_TOP} L{} {M_TOP} L{x} {} Z\" fill=\"{}\"/></g>",
                escape(&mark_evidence(m)),
                x - 4,
                x + 4,
                M_TOP + 8.0,
                palette::VERMILLION
            );
        }
    }
    o.push_str("</svg>\n");
}
