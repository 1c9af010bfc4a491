//! nginx error log lines: the parser, the reason classifier and the
//! upstream server extractor.
#![no_main]

use badgateway_exporter::nginx::error_log::{classify, parse_error_line, upstream_server};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines() {
        if let Some(l) = parse_error_line(line) {
            let _ = classify(&l);
            if let Some(u) = l.upstream {
                let _ = upstream_server(u);
            }
        }
    }
});
