//! nginx access logs: the `log_format` directive reader, the format
//! compiler, the line parser and the upstream list splitter. The first line
//! of the input is the format (or a whole directive), the rest are lines.
#![no_main]

use badgateway_exporter::nginx::access::{
    parse_log_format_directive, upstream_entries, upstream_groups, AccessFields, AccessFormat,
    Escape,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let (head, lines) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    let format = if head.starts_with("log_format") {
        match parse_log_format_directive(head) {
            Ok((_, escape, text)) => AccessFormat::compile(&text, escape),
            Err(_) => return,
        }
    } else {
        let escape = [Escape::Default, Escape::Json, Escape::None][mode as usize % 3];
        AccessFormat::compile(head, escape)
    };
    let Ok(format) = format else {
        return;
    };
    for line in lines.split(|&b| b == b'\n') {
        let mut f = AccessFields::default();
        if format.parse(line, &mut f).is_ok() {
            for field in [f.upstream_addr(), f.upstream_status()].into_iter().flatten() {
                upstream_entries(field).for_each(drop);
                upstream_groups(field).for_each(drop);
            }
        }
    }
});
