//! Gunicorn's own evidence about its workers, read without touching the
//! rest of the crate (layer 1: parsers and readers):
//!
//! - [`log`]: its error log (`--error-logfile`, `--log-file`), one line at a
//!   time into a typed event: which worker booted, timed out, was killed by
//!   which signal or exited with which code, and what the master was told;
//! - [`control`]: a client for its control socket (25.1.0 and later):
//!   `show workers` (heartbeat age per worker) and `show stats` (spawn,
//!   kill and reload counts), and how to tell that socket among the master's
//!   listening unix sockets.

pub mod control;
pub mod log;
