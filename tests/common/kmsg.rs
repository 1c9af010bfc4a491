//! The kernel log read by hand, independently of the exporter's parser:
//! what the tests compare the exporter's kill counts with. Needs root.

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The kernel log's texts with their seq, read without blocking. Parsed
/// here by hand, independently of the exporter's parser.
pub fn kmsg_records() -> Vec<(u64, String)> {
    kmsg_timed_records()
        .into_iter()
        .map(|(seq, _, text)| (seq, text))
        .collect()
}

/// The kernel log's records as (seq, wall-clock time, text). The record's
/// time is microseconds on the kernel's clock since boot, turned into wall
/// time with the offset between CLOCK_REALTIME and CLOCK_MONOTONIC now.
pub fn kmsg_timed_records() -> Vec<(u64, SystemTime, String)> {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    };
    let boot = UNIX_EPOCH + now(libc::CLOCK_REALTIME) - now(libc::CLOCK_MONOTONIC);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .expect("opening /dev/kmsg (needs root)");
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    loop {
        match f.read(&mut buf) {
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]).into_owned();
                let Some((head, text)) = rec.split_once(';') else {
                    continue;
                };
                let mut fields = head.split(',');
                let seq = fields.nth(1).unwrap().parse().unwrap();
                let usec: u64 = fields.next().unwrap().parse().unwrap();
                out.push((
                    seq,
                    boot + Duration::from_micros(usec),
                    text.lines().next().unwrap_or("").to_string(),
                ));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return out,
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) => panic!("reading /dev/kmsg: {e}"),
        }
    }
}

/// A `Killed process` line of the test's cgroup.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelKill {
    pub pid: i32,
    /// When the kernel logged it, on the wall clock.
    pub at: SystemTime,
    pub anon_kb: u64,
    pub file_kb: u64,
    pub shmem_kb: u64,
}

/// Kills logged after `since` whose `oom-kill:` summary names `memcg` as
/// the victim's cgroup.
pub fn kernel_kills(since: u64, memcg: &str) -> Vec<KernelKill> {
    let mut pids = BTreeSet::new();
    let mut kills = Vec::new();
    let field = |line: &str, key: &str| -> u64 {
        let v = line.split(key).nth(1).unwrap();
        v[..v.find("kB").unwrap()].parse().unwrap()
    };
    for (seq, at, text) in kmsg_timed_records() {
        if seq <= since {
            continue;
        }
        if text.starts_with("oom-kill:") && text.contains(&format!(",task_memcg={memcg},")) {
            let pid = text.rsplit(",pid=").next().unwrap();
            pids.insert(pid.split(',').next().unwrap().parse::<i32>().unwrap());
        } else if let Some(rest) = text.split("Killed process ").nth(1) {
            let pid: i32 = rest.split(' ').next().unwrap().parse().unwrap();
            if pids.contains(&pid) {
                kills.push(KernelKill {
                    pid,
                    at,
                    anon_kb: field(&text, "anon-rss:"),
                    file_kb: field(&text, "file-rss:"),
                    shmem_kb: field(&text, "shmem-rss:"),
                });
            }
        }
    }
    kills
}
