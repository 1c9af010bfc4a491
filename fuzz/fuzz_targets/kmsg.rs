//! /dev/kmsg records (one per read) and the OOM-killer lines in them.
#![no_main]

use badgateway_exporter::kernel::kmsg::{parse_record, unescape};
use badgateway_exporter::kernel::oom::parse_oom_line;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = parse_record(data) {
        let _ = parse_oom_line(&r.text);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines() {
            let _ = parse_oom_line(&unescape(line));
        }
    }
});
