//! Gunicorn's log lines: the line parser, the message classifier, and what
//! the app-log source takes from a line.
#![no_main]

use badgateway_exporter::app_log::evidence;
use badgateway_exporter::gunicorn::log::{parse_line, parse_message, parse_time, signal_number};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for line in data.split(|&b| b == b'\n') {
        if let Some(l) = parse_line(line) {
            let _ = l.worker();
            let _ = evidence(&l);
        }
        let _ = parse_message(line);
        let _ = parse_time(line);
        if let Ok(s) = std::str::from_utf8(line) {
            let _ = signal_number(s);
        }
    }
});
