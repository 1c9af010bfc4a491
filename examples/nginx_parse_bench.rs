//! The nginx source and the judge on one access log, on one thread and
//! without a clock, so that an instruction count (valgrind's callgrind) of
//! the same input is the same from run to run on a busy machine. Not a
//! test: it prints figures and asserts nothing about time.
//! bench/nginx_parse.sh measures the running exporter; this is for
//! profiling what it measures.
//!
//!   nginx_parse_bench LOG FORMAT
//!       appends LOG to an empty access log 1 MiB at a time, as the
//!       benchmark does, polling the source after each MiB and stepping
//!       the judge after each 10 MiB as if 100 ms had passed (the running
//!       exporter reads bench/nginx_parse.sh's 550 MiB in about five
//!       seconds, with a judge step every 100 ms); prints the lines
//!       counted, the 5xx judged and the CPU time of the polls and steps.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use badgateway_exporter::config::NginxConfig;
use badgateway_exporter::follow::StartAt;
use badgateway_exporter::nginx::{NginxOptions, NginxSource};
use badgateway_exporter::rules::{Judge, JudgeOptions};
use badgateway_exporter::state::timeline::TIMELINE_CAP;
use badgateway_exporter::state::{thread_cpu_seconds, PoolIndex, Published, Sinks};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: nginx_parse_bench LOG FORMAT");
        std::process::exit(2);
    }
    let dir = std::env::temp_dir().join(format!("nginx_parse_bench.{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let access = dir.join("access.log");
    let mut dst = std::fs::File::create(&access).expect("access log");

    let sinks = Sinks::new(TIMELINE_CAP);
    let pools = Published::new(PoolIndex::default());
    let mut nginx = NginxSource::new(
        NginxOptions {
            logs: vec![NginxConfig {
                name: "bench".into(),
                access_log: Some(access.clone()),
                log_format: args[2].clone(),
                escape: None,
                error_log: None,
            }],
            max_upstreams: 32,
            start: StartAt::Beginning,
            interval: Duration::from_millis(100),
            request_history: false,
        },
        sinks.clone(),
        pools.clone(),
    )
    .expect("the format compiles");
    let mut judge = Judge::new(JudgeOptions::default(), sinks.clone(), pools);

    let mut src = std::fs::File::open(&args[1]).expect("LOG");
    let mut buf = vec![0; 1 << 20];
    let mut now = Instant::now();
    let mut cpu = 0.0;
    let mut timed = |f: &mut dyn FnMut()| {
        let c0 = thread_cpu_seconds();
        f();
        cpu += thread_cpu_seconds() - c0;
    };
    for chunk in 1.. {
        let n = src.read(&mut buf).expect("reading LOG");
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n]).expect("writing the access log");
        timed(&mut || {
            nginx.poll();
        });
        if chunk % 10 == 0 {
            now += Duration::from_millis(100);
            timed(&mut || {
                judge.step(now);
            });
        }
    }
    timed(&mut || {
        nginx.poll();
        judge.finish();
    });
    let view = nginx.published().get();
    let lines = view.logs["bench"].counters.access_lines;
    let judged: u64 = judge
        .failures()
        .get()
        .by_pool
        .values()
        .flat_map(|m| m.values())
        .sum();
    println!(
        "lines={lines} judged={judged} cpu_s={cpu:.2} lines_per_cpu_s={:.0}",
        lines as f64 / cpu
    );
    std::fs::remove_dir_all(&dir).ok();
}
