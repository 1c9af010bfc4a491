//! OOM kills: assembling a kill from the kernel's lines, and deciding
//! which pool the victim belonged to.

use super::oom::{Killed, OomLine, Summary};

/// One OOM victim, as the kernel logged it.
#[derive(Debug, Clone, PartialEq)]
pub struct Victim {
    pub pid: u32,
    pub comm: String,
    /// A memory-cgroup OOM rather than a global one.
    pub memcg: bool,
    /// The victim's memory cgroup, from the 5.0+ `oom-kill:` summary line.
    pub task_memcg: Option<String>,
    pub anon_rss_kb: u64,
    pub file_rss_kb: u64,
    pub shmem_rss_kb: Option<u64>,
}

/// Pairs the `Killed process` line with the line that precedes it for the
/// same pid: the 5.0+ `oom-kill:` summary (the victim's memcg) or the 4.x
/// `Kill process ... or sacrifice child` (whether it was a memcg OOM).
/// Only `Killed process` lines make a kill, so nothing is counted twice.
#[derive(Debug, Default)]
pub struct Assembler {
    summary: Option<Summary>,
    choice: Option<(u32, bool)>,
}

impl Assembler {
    pub fn feed(&mut self, line: OomLine) -> Option<Victim> {
        match line {
            OomLine::Summary(s) => {
                self.summary = Some(s);
                None
            }
            OomLine::KillChoice { pid, memcg, .. } => {
                self.choice = Some((pid, memcg));
                None
            }
            OomLine::Killed(k) => Some(self.victim(k)),
            OomLine::Invoked { .. } | OomLine::Reaped { .. } => None,
        }
    }

    fn victim(&mut self, k: Killed) -> Victim {
        // Stale context from a kill whose Killed line never came (a victim
        // already exiting) has a different pid and is dropped here.
        let summary = self.summary.take().filter(|s| s.pid == k.pid);
        let choice = self.choice.take().filter(|c| c.0 == k.pid);
        Victim {
            pid: k.pid,
            memcg: k.memcg
                || choice.is_some_and(|c| c.1)
                || summary.as_ref().is_some_and(|s| s.oom_memcg.is_some()),
            task_memcg: summary.map(|s| s.task_memcg),
            comm: k.comm,
            anon_rss_kb: k.anon_rss_kb,
            file_rss_kb: k.file_rss_kb,
            shmem_rss_kb: k.shmem_rss_kb,
        }
    }
}

/// A process of a pool that the victim may have been: a live one from the
/// pool table, or one the pool source saw exit.
#[derive(Debug, Clone, PartialEq)]
pub struct Known {
    pub pool: String,
    pub pid: i32,
    /// `None` for a master.
    pub slot: Option<usize>,
    /// When the process started, seconds since the epoch.
    pub started: f64,
    /// When the pool source noticed it had exited; `None` while it lives.
    pub exited: Option<f64>,
}

pub use crate::state::timeline::KillRule as Rule;

#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    pub pool: Option<String>,
    pub slot: Option<usize>,
    pub rule: Rule,
}

/// Clock error allowed between a kill's time and a process's start or
/// exit: start times are read in whole seconds of boot time.
const SLACK_SECS: f64 = 2.0;

/// The victim `pid`, killed at `at` (seconds since the epoch), with memory
/// cgroup `task_memcg` if the kernel logged one. The rules, in order:
///
/// | rule   | the pid is ...                                         | slot  |
/// |--------|--------------------------------------------------------|-------|
/// | Live   | a live pool process that started before the kill       | known |
/// | Exited | a pool process whose exit was seen within `exit_window` after the kill | known |
/// | Cgroup | in the one pool cgroup equal to `task_memcg` (not `/`) | none  |
/// | Unknown| anything else                                          | none  |
///
/// The time checks keep a reused pid (an old kill replayed at startup, a
/// new worker with a dead one's pid) from being blamed on the wrong process.
pub fn attribute(
    pid: u32,
    at: f64,
    task_memcg: Option<&str>,
    known: &[Known],
    cgroups: &[(String, String)],
    exit_window: f64,
) -> Attribution {
    let found = |rule: Rule, k: &Known| Attribution {
        pool: Some(k.pool.clone()),
        slot: k.slot,
        rule,
    };
    let started_before = |k: &&Known| k.pid as i64 == pid as i64 && k.started <= at + SLACK_SECS;
    if let Some(k) = known
        .iter()
        .filter(started_before)
        .find(|k| k.exited.is_none())
    {
        return found(Rule::Live, k);
    }
    if let Some(k) = known.iter().filter(started_before).find(|k| {
        k.exited
            .is_some_and(|e| e >= at - SLACK_SECS && e <= at + exit_window)
    }) {
        return found(Rule::Exited, k);
    }
    if let Some(memcg) = task_memcg.filter(|m| *m != "/") {
        let mut pools = cgroups.iter().filter(|(_, path)| path == memcg);
        if let (Some((pool, _)), None) = (pools.next(), pools.next()) {
            return Attribution {
                pool: Some(pool.clone()),
                slot: None,
                rule: Rule::Cgroup,
            };
        }
    }
    Attribution {
        pool: None,
        slot: None,
        rule: Rule::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::super::kmsg::parse_record;
    use super::super::kmsg::tests::{fixture_records, CAPTURED, OOM_HAND};
    use super::super::oom::parse_oom_line;
    use super::*;

    fn victims(file: &str) -> Vec<Victim> {
        let mut a = Assembler::default();
        fixture_records(file)
            .iter()
            .filter_map(|r| parse_oom_line(&parse_record(r.as_bytes()).unwrap().text))
            .filter_map(|l| a.feed(l))
            .collect()
    }

    #[test]
    fn captured_6_18_kills_carry_the_summary_memcg() {
        let v = victims(CAPTURED);
        assert_eq!(v.len(), 3, "one kill per Killed line, not per summary");
        assert_eq!(
            v[1],
            Victim {
                pid: 7419,
                comm: "gunicorn: w (a)".into(),
                memcg: true,
                task_memcg: Some("/bgw_fixture_capture".into()),
                anon_rss_kb: 64992,
                file_rss_kb: 6728,
                shmem_rss_kb: Some(0),
            }
        );
        assert!(v.iter().all(|v| v.task_memcg.is_some() && v.memcg));
    }

    #[test]
    fn hand_4_x_pairs_take_memcg_from_the_choice_line() {
        let v = victims(OOM_HAND);
        let pids: Vec<u32> = v.iter().map(|v| v.pid).collect();
        assert_eq!(pids, [2345, 812, 31, 4242, 77]);
        let java = &v[3];
        assert!(java.memcg, "4.x memcg kill: the Kill process line says so");
        assert_eq!(java.task_memcg, None);
        assert!(!v[4].memcg);
    }

    #[test]
    fn context_of_another_pid_is_not_used() {
        let mut a = Assembler::default();
        let summary = "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/a,task_memcg=/a,task=x,pid=1,uid=0";
        assert_eq!(a.feed(parse_oom_line(summary).unwrap()), None);
        let killed = "Out of memory: Killed process 2 (y) total-vm:1kB, anon-rss:2kB, file-rss:3kB";
        let v = a.feed(parse_oom_line(killed).unwrap()).unwrap();
        assert_eq!((v.pid, v.task_memcg, v.memcg), (2, None, false));
    }

    #[test]
    fn attribution_rules() {
        let at = 1000.0;
        let k = |pool: &str, pid, slot, started, exited| Known {
            pool: pool.into(),
            pid,
            slot,
            started,
            exited,
        };
        let known = [
            k("api", 10, Some(0), 900.0, None),
            k("api", 11, None, 800.0, None),
            k("api", 12, Some(1), 950.0, Some(1000.3)),
            k("web", 13, Some(0), 950.0, Some(1200.0)),
            // pid 14 was reused: the live process started after the kill.
            k("web", 14, Some(2), 1100.0, None),
            k("web", 15, Some(1), 950.0, Some(900.0)),
            // A dead api worker and a live web worker share pid 16.
            k("api", 16, Some(3), 900.0, Some(1000.5)),
            k("web", 16, Some(4), 1010.0, None),
        ];
        let cgroups = [
            ("api".to_string(), "/apps/api".to_string()),
            ("web".to_string(), "/apps/shared".to_string()),
            ("jobs".to_string(), "/apps/shared".to_string()),
            ("root".to_string(), "/".to_string()),
        ];
        let a = |pool: Option<&str>, slot, rule| Attribution {
            pool: pool.map(str::to_string),
            slot,
            rule,
        };
        let cases: &[(u32, Option<&str>, Attribution)] = &[
            (10, None, a(Some("api"), Some(0), Rule::Live)),
            (11, None, a(Some("api"), None, Rule::Live)),
            (12, None, a(Some("api"), Some(1), Rule::Exited)),
            (13, None, a(None, None, Rule::Unknown)), // exit seen too late
            (14, None, a(None, None, Rule::Unknown)),
            (14, Some("/apps/api"), a(Some("api"), None, Rule::Cgroup)),
            (15, None, a(None, None, Rule::Unknown)), // exited before
            (16, None, a(Some("api"), Some(3), Rule::Exited)),
            (99, Some("/apps/shared"), a(None, None, Rule::Unknown)), // ambiguous
            (99, Some("/"), a(None, None, Rule::Unknown)),
            (99, Some("/apps/api/sub"), a(None, None, Rule::Unknown)),
            (99, None, a(None, None, Rule::Unknown)),
        ];
        for (pid, memcg, want) in cases {
            assert_eq!(
                &attribute(*pid, at, *memcg, &known, &cgroups, 60.0),
                want,
                "pid {pid} memcg {memcg:?}"
            );
        }
    }
}
