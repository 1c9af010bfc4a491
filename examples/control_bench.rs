//! The cost of what the pool source asks Gunicorn's control socket each
//! cycle, run by bench/control.sh (not a test: it prints figures and
//! asserts nothing about time).
//!
//!   control_bench CTL_PATH MASTER_PID N
//!       N times, as a pool cycle does: connect (checking the peer is the
//!       master), `show workers`, `show stats`. Prints the exporter's CPU
//!       and wall time per cycle, and the Gunicorn master's CPU per cycle
//!       (from its /proc/PID/stat, all its threads), which the app pays.

use std::path::Path;
use std::time::{Duration, Instant};

use badgateway_exporter::gunicorn::control::{ControlClient, ControlOptions};
use badgateway_exporter::state::thread_cpu_seconds;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: control_bench CTL_PATH MASTER_PID N");
        std::process::exit(2);
    }
    let path = Path::new(&args[1]);
    let master: u32 = args[2].parse().expect("a pid");
    let n: usize = args[3].parse().expect("a number");
    let opts = ControlOptions::default();

    let master_ticks = || -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{master}/stat")).expect("master stat");
        let f: Vec<&str> = stat
            .rsplit_once(')')
            .expect("stat")
            .1
            .split_whitespace()
            .collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;

    let mut workers = 0;
    let mut retries = 0;
    let (t0, cpu0, m0) = (Instant::now(), thread_cpu_seconds(), master_ticks());
    for _ in 0..n {
        loop {
            let r = ControlClient::connect_to(path, master, &opts).and_then(|mut c| {
                let w = c.show_workers()?;
                c.show_stats()?;
                Ok(w.len())
            });
            match r {
                Ok(w) => {
                    workers = w;
                    break;
                }
                Err(e) if e.is_transient() => {
                    retries += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds() - cpu0;
    let master_cpu = (master_ticks() - m0) as f64 / ticks;
    println!(
        "control cycles={n} workers={workers} retries={retries} exporter_cpu_us_per_cycle={:.1} wall_us_per_cycle={:.1} master_cpu_us_per_cycle={:.0}",
        cpu / n as f64 * 1e6,
        wall / n as f64 * 1e6,
        master_cpu / n as f64 * 1e6,
    );
}
