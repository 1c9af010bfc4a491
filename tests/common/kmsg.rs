//! The kernel log read by hand, independently of the exporter's parser:
//! what the tests compare the exporter's kill counts with. Needs root.

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;

/// The kernel log's texts with their seq, read without blocking. Parsed
/// here by hand, independently of the exporter's parser.
pub fn kmsg_records() -> Vec<(u64, String)> {
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
                let seq = head.split(',').nth(1).unwrap().parse().unwrap();
                out.push((seq, text.lines().next().unwrap_or("").to_string()));
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
    for (seq, text) in kmsg_records() {
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
                    anon_kb: field(&text, "anon-rss:"),
                    file_kb: field(&text, "file-rss:"),
                    shmem_kb: field(&text, "shmem-rss:"),
                });
            }
        }
    }
    kills
}
