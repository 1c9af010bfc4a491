//! Threaded real-time test: a writer thread appends ~3000 lines/s for ~3 s
//! while the main thread rotates the log every way logrotate can, and the
//! follower polls every 50 ms on the real clock.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::super::{FollowConfig, Follower, Line, PollStats, StartAt};

/// The writer's state. Holding the lock pauses the writer between batches.
struct Writer {
    file: File,
    next_id: u64,
    stop: bool,
}

fn open_append(path: &Path) -> File {
    // O_APPEND like nginx: after a truncate, writes land at the new end
    // instead of leaving a hole at the old offset.
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log for append")
}

fn lock(w: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    w.lock().expect("writer mutex poisoned")
}

#[derive(Default)]
struct Seen {
    ids: HashSet<u64>,
    dups: u64,
    bad: u64,
}

fn poll(f: &mut Follower, seen: &mut Seen) -> PollStats {
    f.poll(&mut |l: Line<'_>| {
        let id = std::str::from_utf8(l.bytes)
            .ok()
            .and_then(|s| s.strip_prefix("line-"))
            .and_then(|s| s.parse::<u64>().ok());
        match id {
            Some(id) if !l.truncated => {
                if !seen.ids.insert(id) {
                    seen.dups += 1;
                }
            }
            _ => seen.bad += 1,
        }
    })
    .expect("poll")
}

#[test]
fn realtime_writer_with_rotations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("access.log");
    let writer = Arc::new(Mutex::new(Writer {
        file: open_append(&path),
        next_id: 0,
        stop: false,
    }));
    let mut f = Follower::new(
        &path,
        FollowConfig {
            max_line_bytes: 256,
            start: StartAt::End,
            rotate_grace: Duration::from_secs(1),
        },
    );

    let w = Arc::clone(&writer);
    let handle = thread::spawn(move || loop {
        {
            let mut g = lock(&w);
            if g.stop {
                break;
            }
            // 15 lines every ~5 ms ≈ 3000 lines/s, one write(2) per batch.
            let mut batch = String::new();
            for _ in 0..15 {
                batch.push_str(&format!("line-{:07}\n", g.next_id));
                g.next_id += 1;
            }
            g.file.write_all(batch.as_bytes()).expect("write");
        }
        thread::sleep(Duration::from_millis(5));
    });

    let mut seen = Seen::default();
    let start = Instant::now();
    let ms = |n: u64| Duration::from_millis(n);
    let mut step = 0;
    while start.elapsed() < ms(3000) {
        poll(&mut f, &mut seen);
        let t = start.elapsed();
        match step {
            // logrotate default (rename + create); nginx keeps writing to the
            // renamed file until "USR1" 300 ms later.
            0 if t >= ms(500) => {
                fs::rename(&path, dir.path().join("access.log.1")).expect("rename");
                File::create(&path).expect("create");
                step += 1;
            }
            1 if t >= ms(800) => {
                lock(&writer).file = open_append(&path);
                step += 1;
            }
            // copytruncate, coordinated: lines written between the copy and
            // the truncate (or between our last read and the truncate) are
            // lost by design of copytruncate, so an exact count needs the
            // writer paused and the follower drained first. The poll after
            // the truncate makes detection deterministic (size < offset)
            // rather than relying on the content check.
            2 if t >= ms(1500) => {
                let g = lock(&writer);
                poll(&mut f, &mut seen);
                fs::copy(&path, dir.path().join("access.log.2")).expect("copy");
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|h| h.set_len(0))
                    .expect("truncate");
                poll(&mut f, &mut seen);
                drop(g);
                step += 1;
            }
            // Delete + recreate, writer reopens 300 ms later.
            3 if t >= ms(2200) => {
                fs::remove_file(&path).expect("remove");
                File::create(&path).expect("create");
                step += 1;
            }
            4 if t >= ms(2500) => {
                lock(&writer).file = open_append(&path);
                step += 1;
            }
            _ => {}
        }
        thread::sleep(ms(50));
    }
    lock(&writer).stop = true;
    handle.join().expect("writer thread");
    let written = lock(&writer).next_id;

    // Drain: poll until two consecutive polls bring nothing.
    let mut idle = 0;
    while idle < 2 {
        let s = poll(&mut f, &mut seen);
        idle = if s.lines == 0 { idle + 1 } else { 0 };
    }

    assert_eq!(step, 5, "all rotations ran");
    assert!(written > 5000, "writer too slow: {written}");
    assert_eq!(seen.bad, 0, "malformed lines");
    assert_eq!(seen.dups, 0, "duplicates");
    assert_eq!(
        seen.ids.len() as u64,
        written,
        "distinct delivered == written"
    );
    // Cumulative counters (per-poll ones are summed into these).
    let totals = f.totals();
    assert_eq!(totals.rotations, 2);
    assert_eq!(totals.truncations, 1);
    assert_eq!(totals.lines, written);
    assert_eq!(f.lag_bytes(), 0);
}
