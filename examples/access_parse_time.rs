//! Time, not instructions: nanoseconds a line for `AccessFormat::parse`
//! alone and for `LogCounters::access_line` (the parse and the counting),
//! the least of several passes over the same lines. Not a test: it prints
//! figures and asserts nothing about time.
//!
//! The parse waits on each value's search before it can start the next,
//! so a change can cut instructions (callgrind of examples/nginx_parse_bench)
//! and still cost time, or add instructions and save time; compare two
//! builds with this, turn about, on the same lines.
//!
//!   access_parse_time LOG FORMAT [PASSES]
//!       LOG is cut into 64 KiB pieces at line ends; each piece is copied
//!       into one buffer before its lines are parsed, as the follower reads
//!       them (the copy is in both figures). PASSES defaults to 15.

use badgateway_exporter::nginx::access::{AccessFields, AccessFormat, Escape};
use badgateway_exporter::nginx::log_counters::LogCounters;
use badgateway_exporter::state::thread_cpu_seconds;

/// A piece of the log: its range, and its lines' ranges within it.
struct Piece {
    start: usize,
    end: usize,
    lines: Vec<(usize, usize)>,
}

fn pieces(data: &[u8]) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < data.len() {
        let end = (start + 65536).min(data.len());
        let end = match data[start..end].iter().rposition(|&b| b == b'\n') {
            Some(i) if end < data.len() => start + i + 1,
            _ => end,
        };
        let mut lines = Vec::new();
        let mut from = 0;
        for (i, _) in data[start..end]
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
        {
            lines.push((from, i));
            from = i + 1;
        }
        out.push(Piece { start, end, lines });
        start = end;
    }
    out
}

/// Thread CPU seconds of one pass: each piece copied into `buf`, then
/// `f` run on each of its lines.
fn pass(data: &[u8], pieces: &[Piece], buf: &mut [u8], mut f: impl FnMut(&[u8])) -> f64 {
    let c0 = thread_cpu_seconds();
    for p in pieces {
        buf[..p.end - p.start].copy_from_slice(&data[p.start..p.end]);
        for &(a, b) in &p.lines {
            f(&buf[a..b]);
        }
    }
    thread_cpu_seconds() - c0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !(3..=4).contains(&args.len()) {
        eprintln!("usage: access_parse_time LOG FORMAT [PASSES]");
        std::process::exit(2);
    }
    let data = std::fs::read(&args[1]).expect("LOG");
    let fmt = AccessFormat::compile(&args[2], Escape::Default).expect("FORMAT compiles");
    let passes: usize = args.get(3).map_or(15, |s| s.parse().expect("PASSES"));
    let pieces = pieces(&data);
    let lines = pieces.iter().map(|p| p.lines.len()).sum::<usize>() as f64;
    let mut buf = vec![0u8; 65536];
    let (mut parse, mut count) = (f64::MAX, f64::MAX);
    // What the passes found, printed so that no pass is optimized away.
    let mut parsed = 0u64;
    for _ in 0..passes {
        parsed = 0;
        let t = pass(&data, &pieces, &mut buf, |l| {
            let mut f = AccessFields::default();
            parsed += fmt.parse(l, &mut f).is_ok() as u64;
        });
        parse = parse.min(t);
        let mut c = LogCounters::new(32);
        let t = pass(&data, &pieces, &mut buf, |l| {
            c.access_line(&fmt, l, false, &mut AccessFields::default());
        });
        count = count.min(t);
    }
    println!(
        "parse {:.1} ns/line  access_line {:.1} ns/line  (lines {lines}, parsed {parsed})",
        parse / lines * 1e9,
        count / lines * 1e9,
    );
}
