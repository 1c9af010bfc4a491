//! The report as text, for a terminal, and as JSON. The text has one
//! section per command it replaces, then the verdict and the recovery
//! options.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::{FailureSection, MemorySection, OomSection, PoolSection, Report, Severity, MIB};

impl Report {
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "badgateway_exporter diagnose, {} (since {})",
            self.generated_at, self.since
        );
        if !self.unreadable.is_empty() {
            let _ = writeln!(s, "\nCould not read (this diagnosis lacks them):");
            for u in &self.unreadable {
                let _ = writeln!(s, "  {}: {}", u.source, u.error);
            }
        }
        oom_text(&mut s, &self.oom_kills);
        memory_text(&mut s, &self.memory);
        for p in &self.pools {
            pool_text(&mut s, p);
        }
        failures_text(&mut s, &self.failures);
        self.verdict_text(&mut s);
        self.recovery_text(&mut s);
        s
    }

    fn verdict_text(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "\n== Verdict: {}",
            match self.severity {
                Severity::Ok => "OK, nothing found",
                Severity::Warning => "WARNING",
                Severity::Critical => "CRITICAL",
            }
        );
        for fi in &self.findings {
            let _ = writeln!(s, "  [{:?}] {}", fi.severity, fi.text);
        }
    }

    fn recovery_text(&self, s: &mut String) {
        let _ = writeln!(s, "\nRecovery options, in order:");
        for (i, o) in self.recovery.iter().enumerate() {
            let _ = writeln!(
                s,
                "{}. {}{}",
                i + 1,
                o.title,
                if o.applies { "" } else { " (not indicated)" }
            );
            let _ = writeln!(s, "   {}", o.advice);
            for (k, v) in &o.numbers {
                let _ = writeln!(s, "   - {k}: {v}");
            }
        }
    }
}

fn oom_text(s: &mut String, o: &OomSection) {
    let _ = writeln!(s, "\n== 1. OOM kills   (instead of: {})", o.replaces);
    if !o.kernel_log_read {
        let _ = writeln!(s, "  the kernel log could not be read");
    }
    if let Some(n) = o.since_boot {
        let _ = writeln!(s, "  since boot (/proc/vmstat): {n}");
    }
    if o.kills.is_empty() {
        let _ = writeln!(s, "  none in the window");
    }
    for k in &o.kills {
        let _ = writeln!(
            s,
            "  {} pid {} ({}) pool {} slot {}: anon {}, file {}, shmem {}; cgroup {}; tied by {}",
            k.at,
            k.pid,
            k.comm,
            k.pool,
            k.slot.map_or("-".into(), |x| x.to_string()),
            mib(k.anon_bytes),
            mib(k.file_bytes),
            k.shmem_bytes.map_or("-".into(), mib),
            k.cgroup.as_deref().unwrap_or("-"),
            k.attributed_by
        );
    }
}

fn memory_text(s: &mut String, m: &MemorySection) {
    let _ = writeln!(s, "\n== 2. Memory   (instead of: {})", m.replaces);
    let _ = writeln!(
        s,
        "  host: total {}, available {}, swap free {}",
        opt_mib(m.total_bytes),
        opt_mib(m.available_bytes),
        opt_mib(m.swap_free_bytes)
    );
    if let Some(some) = m.pressure_some_seconds {
        let _ = writeln!(
            s,
            "  pressure (PSI): some {:.3} s, full {:.3} s stalled since boot",
            some,
            m.pressure_full_seconds.unwrap_or(0.0)
        );
    }
    for c in &m.cgroups {
        let _ = writeln!(
            s,
            "  pool {} cgroup {}: usage {}, limit {}, OOM kills {}",
            c.pool,
            c.path,
            opt_mib(c.usage_bytes),
            c.limit_bytes.map_or("none".into(), mib),
            c.oom_kills.map_or("-".into(), |n| n.to_string())
        );
    }
}

fn pool_text(s: &mut String, p: &PoolSection) {
    let _ = writeln!(s, "\n== 3. Pool {}   (instead of: {})", p.name, p.replaces);
    let _ = writeln!(
        s,
        "  {} master {}: {}, {} workers",
        p.server,
        p.master_pid.map_or("-".into(), |x| x.to_string()),
        if p.up { "running" } else { "DOWN" },
        p.workers.len()
    );
    for wk in &p.workers {
        let _ = writeln!(
            s,
            "  slot {} pid {}: up {:.0} s, rss {}, pss {}, uss {}, cpu {}, fds {}/{}",
            wk.slot,
            wk.pid,
            wk.age_seconds,
            mib(wk.rss_bytes),
            opt_mib(wk.pss_bytes),
            opt_mib(wk.uss_bytes),
            wk.cpu_seconds.map_or("-".into(), |c| format!("{c:.1} s")),
            wk.open_fds.map_or("-".into(), |n| n.to_string()),
            wk.max_fds.map_or("-".into(), |n| n.to_string()),
        );
    }
    let exits: Vec<String> = p.exits.iter().map(|(r, n)| format!("{r} {n}")).collect();
    let _ = writeln!(
        s,
        "  exits in the window: {}",
        if exits.is_empty() {
            "none".into()
        } else {
            exits.join(", ")
        }
    );
}

fn failures_text(s: &mut String, f: &FailureSection) {
    let _ = writeln!(
        s,
        "\n== 4. nginx 502s and 504s   (instead of: {})",
        f.replaces
    );
    if f.by_cause.is_empty() {
        let _ = writeln!(s, "  none in the window");
    }
    for c in &f.by_cause {
        let _ = writeln!(s, "  pool {} {} {}: {}", c.pool, c.status, c.cause, c.count);
    }
    if !f.in_flight_on_dead_workers.is_empty() {
        let _ = writeln!(s, "  requests in flight on workers that died:");
        for q in &f.in_flight_on_dead_workers {
            let _ = writeln!(
                s,
                "    {} {} {} x{}{}",
                q.pool,
                q.method,
                q.path,
                q.count,
                q.worker_rss_bytes
                    .map(|b| format!(" (worker at {})", mib(b)))
                    .unwrap_or_default()
            );
        }
    }
}

pub(super) fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / MIB)
}

fn opt_mib(b: Option<u64>) -> String {
    b.map_or("-".into(), mib)
}

/// `2026-11-23T04:20:01Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{Inputs, MB};
    use super::*;
    use crate::state::timeline::FailureCause;
    use std::time::Duration;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(t(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(t(1_795_407_601)), "2026-11-23T04:20:01Z");
        assert_eq!(rfc3339(t(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(t(4_102_444_799)), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn the_text_has_its_sections_in_order() {
        let mut i = Inputs::new();
        i.pool("api", &[50]);
        i.oom_kill(Some("api"), 300);
        i.failed("api", FailureCause::WorkerOomKilled, Some("/export"));
        let text = i.report().text();
        let heads: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("== ") || l.starts_with("Recovery"))
            .map(|l| l.split("   ").next().unwrap())
            .collect();
        assert_eq!(
            heads,
            [
                "== 1. OOM kills",
                "== 2. Memory",
                "== 3. Pool api",
                "== 4. nginx 502s and 504s",
                "== Verdict: CRITICAL",
                "Recovery options, in order:"
            ]
        );
        assert!(text.contains("    api GET /export x1 (worker at 300.0 MiB)\n"));
        assert!(text.contains("\n4. Fix the backlog or the timeout (not indicated)\n"));
        assert!(text.ends_with("   - failed requests of no known cause: 0\n"));
        // Nothing at all: each section says so.
        let text = Inputs::new().report().text();
        assert_eq!(text.matches("  none in the window\n").count(), 2);
        assert!(text.contains("\n== Verdict: OK, nothing found\n"));
        assert_eq!(text.matches(" (not indicated)\n").count(), 5);
    }

    #[test]
    fn the_json_is_the_report_field_for_field() {
        let mut i = Inputs::new();
        i.pool("api", &[50]);
        i.oom_kill(Some("api"), 300);
        let v: serde_json::Value = serde_json::from_str(&i.report().json()).unwrap();
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["oom_kills"]["kills"][0]["pool"], "api");
        assert_eq!(v["pools"][0]["workers"][0]["rss_bytes"], 50 * MB);
        assert_eq!(v["recovery"][1]["name"], "add_ram");
        assert_eq!(v["recovery"][1]["numbers"][0][0], "api memory now (PSS)");
    }

    #[test]
    fn mebibytes_to_a_tenth() {
        assert_eq!(mib(0), "0.0 MiB");
        assert_eq!(mib(1 << 20), "1.0 MiB");
        assert_eq!(mib(3 << 19), "1.5 MiB");
        assert_eq!(opt_mib(None), "-");
        assert_eq!(opt_mib(Some(u64::MAX)), "17592186044416.0 MiB");
    }
}
