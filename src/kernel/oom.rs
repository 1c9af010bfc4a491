//! Parser for the OOM-killer lines of the kernel log (text already unescaped).
//!
//! Task names (comm) are user-controlled and may contain spaces, parentheses
//! and commas, so each comm is delimited by searching for the kernel-written
//! text that follows it from the right: everything after a comm is numbers
//! and fixed keywords, which a comm cannot fake there.

use std::str::FromStr;

#[derive(Debug, Clone, PartialEq)]
pub enum OomLine {
    Killed(Killed),
    /// 4.x: the victim choice, followed by a separate `Killed process` line.
    KillChoice {
        pid: u32,
        comm: String,
        score: i64,
        memcg: bool,
    },
    Summary(Summary),
    Invoked {
        comm: String,
        gfp_mask: String,
        order: i32,
        oom_score_adj: i64,
    },
    Reaped {
        pid: u32,
        comm: String,
        anon_rss_kb: u64,
        file_rss_kb: u64,
        shmem_rss_kb: u64,
    },
}

/// `Killed process ...`. Fields missing from older kernels are `None`; the
/// unprefixed 4.x second line reports `memcg: false` (the preceding
/// [`OomLine::KillChoice`] tells whether it was a memcg OOM).
#[derive(Debug, Clone, PartialEq)]
pub struct Killed {
    pub pid: u32,
    pub comm: String,
    pub memcg: bool,
    pub total_vm_kb: u64,
    pub anon_rss_kb: u64,
    pub file_rss_kb: u64,
    pub shmem_rss_kb: Option<u64>,
    pub uid: Option<u32>,
    pub pgtables_kb: Option<u64>,
    pub oom_score_adj: Option<i64>,
}

/// The 5.0+ `oom-kill:` summary line.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub constraint: String,
    /// `None` for a global (`global_oom`) OOM.
    pub oom_memcg: Option<String>,
    pub task_memcg: String,
    pub task: String,
    pub pid: u32,
    pub uid: u32,
}

/// Returns `None` for unrelated or malformed text.
pub fn parse_oom_line(text: &str) -> Option<OomLine> {
    let text = text.trim_end();
    if let Some(rest) = text.strip_prefix("oom-kill:") {
        return parse_summary(rest).map(OomLine::Summary);
    }
    if let Some(rest) = text.strip_prefix("oom_reaper: reaped process ") {
        return parse_reaped(rest);
    }
    let (memcg, body) = if let Some(b) = text.strip_prefix("Memory cgroup out of memory: ") {
        (true, b)
    } else if let Some(b) = text.strip_prefix("Out of memory: ") {
        (false, b)
    } else if let Some(b) = text.strip_prefix("Killed process ") {
        return parse_killed(b, false).map(OomLine::Killed);
    } else {
        return parse_invoked(text);
    };
    if let Some(b) = body.strip_prefix("Killed process ") {
        parse_killed(b, memcg).map(OomLine::Killed)
    } else if let Some(b) = body.strip_prefix("Kill process ") {
        let (pid, comm, rest) = pid_comm(b, ") score ")?;
        let score = rest.strip_suffix(" or sacrifice child")?;
        Some(OomLine::KillChoice {
            pid,
            comm,
            score: num(score)?,
            memcg,
        })
    } else {
        None
    }
}

fn parse_killed(s: &str, memcg: bool) -> Option<Killed> {
    let (pid, comm, rest) = pid_comm(s, ") total-vm:")?;
    // pid_comm consumed the "total-vm:" key itself.
    let (total_vm, rest) = rest.split_once(',')?;
    let (mut anon, mut file, mut shmem, mut uid, mut pgtables, mut adj) =
        (None, None, None, None, None, None);
    for kv in fields(rest) {
        let (key, value) = kv?;
        match key {
            "anon-rss" => anon = Some(kb(value)?),
            "file-rss" => file = Some(kb(value)?),
            "shmem-rss" => shmem = Some(kb(value)?),
            "UID" => uid = Some(num(value)?),
            "pgtables" => pgtables = Some(kb(value)?),
            "oom_score_adj" => adj = Some(num(value)?),
            // Newer kernels may add fields; they do not invalidate the line.
            _ => {}
        }
    }
    Some(Killed {
        pid,
        comm,
        memcg,
        total_vm_kb: kb(total_vm)?,
        anon_rss_kb: anon?,
        file_rss_kb: file?,
        shmem_rss_kb: shmem,
        uid,
        pgtables_kb: pgtables,
        oom_score_adj: adj,
    })
}

fn parse_reaped(s: &str) -> Option<OomLine> {
    let (pid, comm, rest) = pid_comm(s, "), now ")?;
    let (mut anon, mut file, mut shmem) = (None, None, None);
    for kv in fields(rest) {
        let (key, value) = kv?;
        match key {
            "anon-rss" => anon = Some(kb(value)?),
            "file-rss" => file = Some(kb(value)?),
            "shmem-rss" => shmem = Some(kb(value)?),
            _ => {}
        }
    }
    Some(OomLine::Reaped {
        pid,
        comm,
        anon_rss_kb: anon?,
        file_rss_kb: file?,
        shmem_rss_kb: shmem?,
    })
}

fn parse_invoked(text: &str) -> Option<OomLine> {
    const MARK: &str = " invoked oom-killer: gfp_mask=";
    let at = text.rfind(MARK)?;
    let rest = &text[at + MARK.len()..];
    // 4.x inserts `nodemask=0-1,3,` between gfp_mask and order, so look the
    // later fields up by name instead of by position.
    let (gfp_mask, _) = rest.split_once(',')?;
    let (_, order) = rest.split_once(", order=")?;
    let (order, oom_score_adj) = order.split_once(", oom_score_adj=")?;
    Some(OomLine::Invoked {
        comm: text[..at].to_owned(),
        gfp_mask: gfp_mask.to_owned(),
        order: num(order)?,
        oom_score_adj: num(oom_score_adj)?,
    })
}

fn parse_summary(s: &str) -> Option<Summary> {
    let (constraint, rest) = s.strip_prefix("constraint=")?.split_once(',')?;
    // pid and uid are numbers at the very end, so split them off from the
    // right; the task name before them may contain commas.
    let (rest, uid) = rest.rsplit_once(",uid=")?;
    let (rest, pid) = rest.rsplit_once(",pid=")?;
    // nodemask and mems_allowed are CPU-list style ("0-1,3"), cpuset and the
    // memcgs are paths: find the memcg markers rather than splitting on ','.
    let (oom_memcg, rest) = match (rest.find(",oom_memcg="), rest.find(",global_oom,")) {
        (Some(m), g) if g.is_none_or(|g| m < g) => {
            let rest = &rest[m + ",oom_memcg=".len()..];
            let end = rest.find(",task_memcg=")?;
            (Some(rest[..end].to_owned()), &rest[end..])
        }
        (_, Some(g)) => (None, &rest[g + ",global_oom".len()..]),
        _ => return None,
    };
    let (task_memcg, task) = rest.strip_prefix(",task_memcg=")?.split_once(",task=")?;
    Some(Summary {
        constraint: constraint.to_owned(),
        oom_memcg,
        task_memcg: task_memcg.to_owned(),
        task: task.to_owned(),
        pid: num(pid)?,
        uid: num(uid)?,
    })
}

/// Splits `PID (COMM<end>REST` at the last `<end>`, returning REST after it.
fn pid_comm<'a>(s: &'a str, end: &str) -> Option<(u32, String, &'a str)> {
    let (pid, rest) = s.split_once(" (")?;
    let at = rest.rfind(end)?;
    Some((num(pid)?, rest[..at].to_owned(), &rest[at + end.len()..]))
}

/// `key:value` pairs separated by `, ` or ` ` (the kernel mixes both).
fn fields(s: &str) -> impl Iterator<Item = Option<(&str, &str)>> {
    s.split([',', ' '])
        .filter(|t| !t.is_empty())
        .map(|t| t.split_once(':'))
}

fn kb(v: &str) -> Option<u64> {
    num(v.strip_suffix("kB")?)
}

/// Like `str::parse`, but rejects the leading `+` the kernel never prints.
fn num<T: FromStr>(s: &str) -> Option<T> {
    if s.starts_with('+') {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::super::kmsg::parse_record;
    use super::super::kmsg::tests::{fixture_records, kernel_escape, CAPTURED, OOM_HAND};
    use super::*;
    use proptest::prelude::*;

    /// Parses a fixture the way the exporter will: kmsg record, then OOM text.
    fn oom_lines(file: &str) -> Vec<Option<OomLine>> {
        fixture_records(file)
            .iter()
            .map(|r| parse_oom_line(&parse_record(r.as_bytes()).unwrap().text))
            .collect()
    }

    fn invoked(comm: &str, gfp_mask: &str, order: i32, oom_score_adj: i64) -> OomLine {
        OomLine::Invoked {
            comm: comm.into(),
            gfp_mask: gfp_mask.into(),
            order,
            oom_score_adj,
        }
    }

    fn memcg_summary(task: &str, pid: u32) -> OomLine {
        OomLine::Summary(Summary {
            constraint: "CONSTRAINT_MEMCG".into(),
            oom_memcg: Some("/bgw_fixture_capture".into()),
            task_memcg: "/bgw_fixture_capture".into(),
            task: task.into(),
            pid,
            uid: 0,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn killed(
        pid: u32,
        comm: &str,
        memcg: bool,
        [total_vm_kb, anon_rss_kb, file_rss_kb]: [u64; 3],
        shmem_rss_kb: Option<u64>,
        uid: Option<u32>,
        pgtables_kb: Option<u64>,
        oom_score_adj: Option<i64>,
    ) -> OomLine {
        OomLine::Killed(Killed {
            pid,
            comm: comm.into(),
            memcg,
            total_vm_kb,
            anon_rss_kb,
            file_rss_kb,
            shmem_rss_kb,
            uid,
            pgtables_kb,
            oom_score_adj,
        })
    }

    #[test]
    fn captured_6_18_memcg_oom() {
        let found: Vec<OomLine> = oom_lines(CAPTURED).into_iter().flatten().collect();
        let gfp = "0xcc0(GFP_KERNEL)";
        let mb64 = |pid, comm, vm, anon, file, pgt| {
            killed(
                pid,
                comm,
                true,
                [vm, anon, file],
                Some(0),
                Some(0),
                Some(pgt),
                Some(0),
            )
        };
        assert_eq!(
            found,
            [
                invoked("python3", gfp, 0, 0),
                memcg_summary("python3", 7418),
                mb64(7418, "python3", 75160, 65280, 6636, 188),
                invoked("gunicorn: w (a)", gfp, 0, 0),
                memcg_summary("gunicorn: w (a)", 7419),
                mb64(7419, "gunicorn: w (a)", 75340, 64992, 6728, 188),
                invoked("bgw\\xé z", gfp, 0, 0),
                memcg_summary("bgw\\xé z", 7420),
                mb64(7420, "bgw\\xé z", 75340, 65152, 6748, 192),
            ]
        );
    }

    #[test]
    fn hand_built_formats() {
        let worker = "gunicorn: worker [app]";
        let odd = "my worker\\(1)";
        let expected = [
            Some(killed(
                2345,
                worker,
                false,
                [1048576, 524288, 1024],
                Some(16),
                Some(1000),
                Some(2048),
                Some(300),
            )),
            Some(killed(
                812,
                "Web Content",
                true,
                [2301148, 601676, 0],
                Some(1128),
                None,
                None,
                None,
            )),
            Some(killed(
                31,
                "a) b",
                false,
                [10, 20, 30],
                None,
                None,
                None,
                None,
            )),
            Some(OomLine::KillChoice {
                pid: 4242,
                comm: "java".into(),
                score: 1000,
                memcg: true,
            }),
            Some(killed(
                4242,
                "java",
                false,
                [4121076, 262144, 20],
                None,
                None,
                None,
                None,
            )),
            Some(OomLine::KillChoice {
                pid: 77,
                comm: odd.into(),
                score: 911,
                memcg: false,
            }),
            Some(killed(
                77,
                odd,
                false,
                [1000, 900, 8],
                Some(4),
                None,
                None,
                None,
            )),
            Some(OomLine::Summary(Summary {
                constraint: "CONSTRAINT_NONE".into(),
                oom_memcg: None,
                task_memcg: "/system.slice/app.service".into(),
                task: "a,b,pid=9".into(),
                pid: 99,
                uid: 1000,
            })),
            Some(OomLine::Summary(Summary {
                constraint: "CONSTRAINT_MEMCG".into(),
                oom_memcg: Some("/docker/abc".into()),
                task_memcg: "/docker/abc/sub".into(),
                task: "node".into(),
                pid: 5,
                uid: 65534,
            })),
            Some(invoked(
                "Chrome_IOThread",
                "0x14200ca(GFP_HIGHUSER_MOVABLE)",
                0,
                -1000,
            )),
            Some(invoked(
                "kworker/u8:2",
                "0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP)",
                3,
                0,
            )),
            Some(OomLine::Reaped {
                pid: 2345,
                comm: worker.into(),
                anon_rss_kb: 0,
                file_rss_kb: 0,
                shmem_rss_kb: 16,
            }),
            None, // truncated fragment
            None, // non-numeric pid
            None,
            None, // truncated summary
            None,
            None, // kill choice with an unknown tail
            None,
        ];
        assert_eq!(oom_lines(OOM_HAND), expected);
    }

    #[test]
    fn garbage_is_none() {
        for s in [
            "",
            "Killed process",
            "Killed process 1 (",
            "Killed process 1 (x) total-vm:",
            "Killed process 1 (x) total-vm:1kB, anon-rss:1kB, file-rss:1kB, UID:x",
            "Killed process 1 (x) total-vm:1kB, anon-rss:1kB, file-rss",
            "Killed process +1 (x) total-vm:1kB, anon-rss:1kB, file-rss:1kB",
            "Killed process 99999999999 (x) total-vm:1kB, anon-rss:1kB, file-rss:1kB",
            "x invoked oom-killer: gfp_mask=",
            "x invoked oom-killer: gfp_mask=0, order=a, oom_score_adj=0",
            "oom-kill:",
            "oom-kill:constraint=X,global_oom,task=a,pid=1,uid=0",
            "oom_reaper: reaped process 1 (x), now anon-rss:0kB",
        ] {
            assert_eq!(parse_oom_line(s), None, "{s:?}");
        }
    }

    #[test]
    fn comm_spelling_the_next_field_is_kept_whole() {
        let line = "Out of memory: Killed process 1 (x) total-vm:9) total-vm:1kB, anon-rss:2kB, file-rss:3kB";
        assert_eq!(
            parse_oom_line(line),
            Some(killed(
                1,
                "x) total-vm:9",
                false,
                [1, 2, 3],
                None,
                None,
                None,
                None
            ))
        );
        let line = "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/,task=a,oom_memcg=/x,pid=1,uid=0";
        let Some(OomLine::Summary(s)) = parse_oom_line(line) else {
            panic!("not a summary");
        };
        assert_eq!((s.oom_memcg, s.task.as_str()), (None, "a,oom_memcg=/x"));
    }

    #[test]
    fn unknown_future_fields_are_ignored() {
        let line = "Out of memory: Killed process 1 (x) total-vm:1kB, anon-rss:2kB, file-rss:3kB, shmem-rss:4kB, UID:5 pgtables:6kB oom_score_adj:-7 swapents:8kB";
        assert_eq!(
            parse_oom_line(line),
            Some(killed(
                1,
                "x",
                false,
                [1, 2, 3],
                Some(4),
                Some(5),
                Some(6),
                Some(-7)
            ))
        );
    }

    /// Task names, including ones that spell the kernel's own field separators
    /// (any process can set such a comm to try to spoof the parse).
    const COMM: &str = "\\PC{0,15}|[ ()a-z:,=\\[\\]]{0,15}|[a-z]{0,3}(\\) total-vm:|\\), now |\\) score |,task=|,pid=|,uid=|,oom_memcg=|,global_oom,|,task_memcg=| invoked oom-killer: gfp_mask=)[a-z0-9 ]{0,4}";

    prop_compose! {
        fn arb_killed()(
            pid in any::<u32>(),
            comm in COMM,
            memcg in any::<bool>(),
            sizes in any::<[u64; 6]>(),
            uid in any::<u32>(),
            adj in -1000i64..=1000,
        ) -> Killed {
            let [total_vm_kb, anon_rss_kb, file_rss_kb, shmem, pgtables, _] = sizes;
            Killed {
                pid, comm, memcg, total_vm_kb, anon_rss_kb, file_rss_kb,
                shmem_rss_kb: Some(shmem), uid: Some(uid), pgtables_kb: Some(pgtables), oom_score_adj: Some(adj),
            }
        }
    }

    /// Renders `k` as kernel generation `fmt` would log it, through the
    /// /dev/kmsg escaping, and returns the OOM lines parsed back from that
    /// plus the `Killed` that generation can express.
    fn through_kernel(k: &Killed, fmt: u8) -> (Vec<Option<OomLine>>, Killed) {
        let mut want = k.clone();
        let prefix = if k.memcg {
            "Memory cgroup out of memory"
        } else {
            "Out of memory"
        };
        let base = format!(
            "Killed process {} ({}) total-vm:{}kB, anon-rss:{}kB, file-rss:{}kB",
            k.pid, k.comm, k.total_vm_kb, k.anon_rss_kb, k.file_rss_kb
        );
        let shmem = format!(", shmem-rss:{}kB", k.shmem_rss_kb.unwrap_or(0));
        let lines = match fmt {
            0 => vec![format!(
                "{prefix}: {base}{shmem}, UID:{} pgtables:{}kB oom_score_adj:{}",
                k.uid.unwrap_or(0),
                k.pgtables_kb.unwrap_or(0),
                k.oom_score_adj.unwrap_or(0)
            )],
            1 | 2 => {
                (want.uid, want.pgtables_kb, want.oom_score_adj) = (None, None, None);
                if fmt == 2 {
                    want.shmem_rss_kb = None;
                    vec![format!("{prefix}: {base}")]
                } else {
                    vec![format!("{prefix}: {base}{shmem}")]
                }
            }
            _ => {
                (want.uid, want.pgtables_kb, want.oom_score_adj) = (None, None, None);
                want.memcg = false;
                vec![
                    format!(
                        "{prefix}: Kill process {} ({}) score 42 or sacrifice child",
                        k.pid, k.comm
                    ),
                    format!("{base}{shmem}"),
                ]
            }
        };
        let parsed = lines
            .iter()
            .map(|l| {
                let rec = format!("3,1,2,-;{}\n", kernel_escape(l.as_bytes()));
                parse_oom_line(&parse_record(rec.as_bytes()).unwrap().text)
            })
            .collect();
        (parsed, want)
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_oom_line(&s);
        }

        #[test]
        fn never_panics_near_valid(
            s in "(Out of memory: |Memory cgroup out of memory: |oom_reaper: reaped process |oom-kill:constraint=)?[0-9a-z()=:, /_-]{0,80}"
        ) {
            let _ = parse_oom_line(&s);
        }

        #[test]
        fn never_panics_on_mutated_real_lines(line_no in 0usize..300, cut in 0usize..300, junk in "\\PC{0,3}") {
            let lines: Vec<&str> = CAPTURED.lines().chain(OOM_HAND.lines()).collect();
            let text = lines[line_no % lines.len()].split_once(';').map_or("", |(_, t)| t);
            let at = (0..=cut.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
            let _ = parse_oom_line(&format!("{}{junk}{}", &text[..at], &text[at..]));
            let _ = parse_oom_line(&text[..at]);
        }

        #[test]
        fn killed_round_trips_in_every_format(k in arb_killed(), fmt in 0u8..4) {
            let (parsed, want) = through_kernel(&k, fmt);
            let last = parsed.last().cloned().flatten();
            prop_assert_eq!(last, Some(OomLine::Killed(want)));
            if fmt == 3 {
                prop_assert_eq!(
                    parsed[0].clone(),
                    Some(OomLine::KillChoice { pid: k.pid, comm: k.comm.clone(), score: 42, memcg: k.memcg })
                );
            }
        }

        #[test]
        fn other_lines_round_trip(
            comm in COMM,
            memcg in proptest::option::of("/[a-z0-9_./,-]{0,20}"),
            task_memcg in "/[a-z0-9_./,-]{0,20}",
            pid in any::<u32>(),
            uid in any::<u32>(),
            kb in any::<[u64; 3]>(),
            order in 0i32..11,
            adj in -1000i64..=1000,
        ) {
            let ctx = memcg.as_ref().map_or("global_oom".to_owned(), |m| format!("oom_memcg={m}"));
            let summary = format!(
                "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0-1,3,{ctx},task_memcg={task_memcg},task={comm},pid={pid},uid={uid}"
            );
            prop_assert_eq!(parse_oom_line(&summary), Some(OomLine::Summary(Summary {
                constraint: "CONSTRAINT_MEMCG".into(), oom_memcg: memcg, task_memcg, task: comm.clone(), pid, uid,
            })));
            let inv = format!("{comm} invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order={order}, oom_score_adj={adj}");
            prop_assert_eq!(parse_oom_line(&inv), Some(invoked(&comm, "0xcc0(GFP_KERNEL)", order, adj)));
            let [anon_rss_kb, file_rss_kb, shmem_rss_kb] = kb;
            let reaped = format!(
                "oom_reaper: reaped process {pid} ({comm}), now anon-rss:{anon_rss_kb}kB, file-rss:{file_rss_kb}kB, shmem-rss:{shmem_rss_kb}kB"
            );
            prop_assert_eq!(parse_oom_line(&reaped), Some(OomLine::Reaped { pid, comm, anon_rss_kb, file_rss_kb, shmem_rss_kb }));
        }
    }
}
