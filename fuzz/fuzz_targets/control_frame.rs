//! Gunicorn's control socket: length-prefixed frames read from a stream of
//! bytes, and each payload decoded as the answers the client asks for.
#![no_main]

use std::path::Path;

use badgateway_exporter::gunicorn::control::{decode_answer, read_frame, Stats, Worker};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut stream = data;
    let path = Path::new("/run/gunicorn/app.ctl");
    // Two frames at most: a read never runs past the first error.
    for id in 1..=2 {
        let Ok(payload) = read_frame(&mut stream, 64 * 1024) else {
            return;
        };
        let _ = decode_answer::<Vec<Worker>>(&payload, id, path, "show workers");
        let _ = decode_answer::<Stats>(&payload, id, path, "show stats");
    }
});
