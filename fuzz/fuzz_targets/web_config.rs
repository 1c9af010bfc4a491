//! The web config file (exporter-toolkit's format), parsed and checked.
#![no_main]

use badgateway_exporter::web::WebConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = WebConfig::parse(text, std::path::Path::new("/etc/fuzz/web.yml"));
    }
});
