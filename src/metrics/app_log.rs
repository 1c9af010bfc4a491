//! The app-server log source's family.

use std::fmt;

use super::Encoder;

use super::{define_metrics, family};
use crate::app_log::AppLogCounts;

define_metrics! { METRICS;
    APP_LOG_LINES: Counter, "badgateway_app_log_lines", ["pool"], "Lines read from the pool's own log (`log_file`: Gunicorn, uWSGI, php-fpm, Puma, Unicorn).";
}

pub fn encode(c: &AppLogCounts, enc: &mut Encoder) -> fmt::Result {
    if c.lines.is_empty() {
        return Ok(());
    }
    family(enc, &APP_LOG_LINES, |f| {
        c.lines
            .iter()
            .try_for_each(|(pool, n)| f.counter(&[pool], *n))
    })
}
