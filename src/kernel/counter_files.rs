//! Parsers for the memory counters the kernel keeps without a log:
//! /proc/vmstat, /proc/meminfo, /proc/pressure/memory, and the cgroup
//! memory files (v1 and v2). Each is a pure function from the file's text.

/// `oom_kill` from /proc/vmstat: OOM kills since boot (4.13+).
pub fn vmstat_oom_kills(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

/// What /proc/meminfo says about the host, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostMemory {
    pub total: Option<u64>,
    /// Absent before 3.14.
    pub available: Option<u64>,
    pub swap_free: Option<u64>,
}

pub fn parse_meminfo(text: &str) -> HostMemory {
    let mut m = HostMemory::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "MemTotal" => &mut m.total,
            "MemAvailable" => &mut m.available,
            "SwapFree" => &mut m.swap_free,
            _ => continue,
        };
        *slot = kb_value(value);
    }
    m
}

/// `   123 kB` -> bytes.
fn kb_value(v: &str) -> Option<u64> {
    let n: u64 = v.trim().strip_suffix("kB")?.trim_end().parse().ok()?;
    n.checked_mul(1024)
}

/// Stall totals from a PSI file, in microseconds. `full` is absent from
/// files that only have `some` (the system-wide cpu file before 5.13).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub some_usec: Option<u64>,
    pub full_usec: Option<u64>,
}

pub fn parse_pressure(text: &str) -> Pressure {
    let mut p = Pressure::default();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let slot = match words.next() {
            Some("some") => &mut p.some_usec,
            Some("full") => &mut p.full_usec,
            _ => continue,
        };
        *slot = words
            .find_map(|w| w.strip_prefix("total="))
            .and_then(|v| v.parse().ok());
    }
    p
}

/// Counters of a cgroup v2 `memory.events` file (or of v1's
/// `memory.oom_control`, which only has `oom_kill`). A key the kernel
/// does not write is `None`, never 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryEvents {
    pub high: Option<u64>,
    pub max: Option<u64>,
    pub oom: Option<u64>,
    pub oom_kill: Option<u64>,
    /// 5.17+.
    pub oom_group_kill: Option<u64>,
}

impl MemoryEvents {
    /// Label value and count for each counter the file had.
    pub fn by_name(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("high", self.high),
            ("max", self.max),
            ("oom", self.oom),
            ("oom_kill", self.oom_kill),
            ("oom_group_kill", self.oom_group_kill),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
    }
}

/// Flat-keyed `key value` lines, as in memory.events and memory.oom_control.
pub fn parse_memory_events(text: &str) -> MemoryEvents {
    let mut e = MemoryEvents::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        let slot = match key {
            "high" => &mut e.high,
            "max" => &mut e.max,
            "oom" => &mut e.oom,
            "oom_kill" => &mut e.oom_kill,
            "oom_group_kill" => &mut e.oom_group_kill,
            _ => continue,
        };
        *slot = value.trim().parse().ok();
    }
    e
}

/// v1 writes "no limit" as the largest page-aligned value below 2^63;
/// anything this large is not a limit anyone set.
const V1_UNLIMITED: u64 = 1 << 62;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Bytes(u64),
    Unlimited,
}

/// A memory limit: v2 `memory.max` (`max` = none) or v1
/// `memory.limit_in_bytes` (a value near 2^63 = none). `None` when the
/// text is not a limit.
pub fn parse_limit(text: &str) -> Option<Limit> {
    match text.trim() {
        "max" => Some(Limit::Unlimited),
        v => match v.parse::<u64>().ok()? {
            n if n >= V1_UNLIMITED => Some(Limit::Unlimited),
            n => Some(Limit::Bytes(n)),
        },
    }
}

/// A single number: v2 `memory.current`, v1 `memory.usage_in_bytes`.
pub fn parse_bytes(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Where a process sits in the memory controller, from /proc/PID/cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcCgroups {
    /// The path in the v1 hierarchy that has the `memory` controller.
    pub v1_memory: Option<String>,
    /// The path in the v2 (unified) hierarchy, the `0::` line.
    pub v2: Option<String>,
}

pub fn parse_proc_cgroup(text: &str) -> ProcCgroups {
    let mut c = ProcCgroups {
        v1_memory: None,
        v2: None,
    };
    for line in text.lines() {
        // hierarchy-ID:controller-list:path; the path may contain ':'.
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            c.v2 = Some(path.to_owned());
        } else if controllers.split(',').any(|k| k == "memory") {
            c.v1_memory = Some(path.to_owned());
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    macro_rules! fixture {
        ($p:literal) => {
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/kernel/", $p))
        };
    }

    #[test]
    fn vmstat_captured_6_18() {
        assert_eq!(vmstat_oom_kills(fixture!("6.18/vmstat")), Some(3));
        assert_eq!(vmstat_oom_kills(fixture!("hand/vmstat.pre_4.13")), None);
        // `oom_kill_x` style keys must not match by prefix.
        assert_eq!(vmstat_oom_kills("oom_killx 5\noom_kill 7\n"), Some(7));
    }

    #[test]
    fn meminfo_captured_6_18() {
        assert_eq!(
            parse_meminfo(fixture!("6.18/meminfo")),
            HostMemory {
                total: Some(24684092 * 1024),
                available: Some(24207772 * 1024),
                swap_free: Some(0),
            }
        );
        let old = parse_meminfo(fixture!("hand/meminfo.no_memavailable"));
        assert_eq!(old.available, None);
        assert_eq!(old.total, Some(24684092 * 1024));
    }

    #[test]
    fn pressure_captured_6_18() {
        assert_eq!(
            parse_pressure(fixture!("6.18/pressure_memory")),
            Pressure {
                some_usec: Some(8475),
                full_usec: Some(7455)
            }
        );
        assert_eq!(
            parse_pressure(fixture!("hand/pressure_memory.some_only")),
            Pressure {
                some_usec: Some(0),
                full_usec: None
            }
        );
        assert_eq!(parse_pressure(""), Pressure::default());
    }

    #[test]
    fn cgroup_v1_files_captured_6_18() {
        let e = parse_memory_events(fixture!("6.18/memory.oom_control"));
        assert_eq!(e.oom_kill, Some(0));
        assert_eq!(e.by_name().collect::<Vec<_>>(), [("oom_kill", 0)]);
        assert_eq!(
            parse_memory_events(fixture!("hand/memory.oom_control.killed")).oom_kill,
            Some(2)
        );
        assert_eq!(
            parse_memory_events(fixture!("hand/memory.oom_control.pre_4.13")).oom_kill,
            None
        );
        assert_eq!(
            parse_limit(fixture!("6.18/memory.limit_in_bytes")),
            Some(Limit::Bytes(64 << 20))
        );
        assert_eq!(
            parse_limit(fixture!("6.18/memory.limit_in_bytes.unlimited")),
            Some(Limit::Unlimited)
        );
        assert_eq!(
            parse_bytes(fixture!("6.18/memory.usage_in_bytes")),
            Some(3205263360)
        );
        let c = parse_proc_cgroup(fixture!("6.18/pid_cgroup_v1"));
        assert_eq!(
            c.v1_memory.as_deref(),
            Some("/process_api/bb7d7a6d3fa41e7d693b326f6b3e7d62")
        );
        assert_eq!(c.v2.as_deref(), Some("/"));
    }

    #[test]
    fn cgroup_v2_files_hand_built() {
        assert_eq!(
            parse_memory_events(fixture!("hand/memory.events.v2")),
            MemoryEvents {
                high: Some(12),
                max: Some(345),
                oom: Some(3),
                oom_kill: Some(2),
                oom_group_kill: Some(1),
            }
        );
        let old = parse_memory_events(fixture!("hand/memory.events.v2_no_group_kill"));
        assert_eq!((old.oom_kill, old.oom_group_kill), (Some(0), None));
        assert_eq!(
            parse_limit(fixture!("hand/memory.max.unlimited")),
            Some(Limit::Unlimited)
        );
        assert_eq!(
            parse_limit(fixture!("hand/memory.max")),
            Some(Limit::Bytes(512 << 20))
        );
        assert_eq!(parse_limit("lots"), None);
        assert_eq!(
            parse_bytes(fixture!("hand/memory.current")),
            Some(123863040)
        );
        assert_eq!(
            parse_proc_cgroup(fixture!("hand/pid_cgroup_v2")),
            ProcCgroups {
                v1_memory: None,
                v2: Some("/system.slice/app.service".into())
            }
        );
        // A path with ':' and a v1 hierarchy with several controllers.
        assert_eq!(
            parse_proc_cgroup("4:cpu,memory:/a:b\n0::/c\n"),
            ProcCgroups {
                v1_memory: Some("/a:b".into()),
                v2: Some("/c".into())
            }
        );
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,200}") {
            let _ = vmstat_oom_kills(&s);
            let _ = parse_meminfo(&s);
            let _ = parse_pressure(&s);
            let _ = parse_memory_events(&s);
            let _ = parse_limit(&s);
            let _ = parse_bytes(&s);
            let _ = parse_proc_cgroup(&s);
        }

        #[test]
        fn parsers_never_panic_near_valid(
            s in "((oom_kill|MemTotal:|MemAvailable:|some|full|total=|oom|max|high|0::|[0-9]:memory:)[ 0-9a-z=./:]{0,20}\n){0,8}"
        ) {
            let _ = vmstat_oom_kills(&s);
            let _ = parse_meminfo(&s);
            let _ = parse_pressure(&s);
            let _ = parse_memory_events(&s);
            let _ = parse_limit(&s);
            let _ = parse_proc_cgroup(&s);
        }

        #[test]
        fn meminfo_round_trips(total in 0u64..1 << 50, avail in 0u64..1 << 50) {
            let text = format!("MemTotal:       {total} kB\nMemFree: 1 kB\nMemAvailable:   {avail} kB\n");
            let m = parse_meminfo(&text);
            prop_assert_eq!(m.total, Some(total * 1024));
            prop_assert_eq!(m.available, Some(avail * 1024));
            prop_assert_eq!(m.swap_free, None);
        }

        #[test]
        fn pressure_round_trips(some in any::<u64>(), full in any::<u64>()) {
            let text = format!("some avg10=1.00 avg60=0.00 avg300=0.00 total={some}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total={full}\n");
            prop_assert_eq!(parse_pressure(&text), Pressure { some_usec: Some(some), full_usec: Some(full) });
        }
    }
}
