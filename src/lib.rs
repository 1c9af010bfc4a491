//! badgateway_exporter: per-worker memory of pre-fork app servers, kernel
//! OOM kills attributed to their pool, and nginx upstream failures.
//!
//! Data flows one way, through layers; a module uses the layers below it,
//! never one above (tests/layers.rs holds the table and checks it):
//! 1. parsers and readers: `config`, `follow`, `upstream_failure` (the
//!    vocabulary of nginx upstream failures), and the parser modules inside
//!    each source (`kernel::kmsg`, `nginx::access`, `pools::proc`, ...);
//! 2. `state`: the timeline, published values, source health;
//! 3. sources: `pools`, `kernel`, `nginx`, each with options in and a
//!    one-shot step, publishing its state and putting events on the
//!    timeline;
//! 4. rules over the timeline;
//! 5. outputs: `metrics` (one file per source), `snapshot`, `diagnose`
//!    and `status` (the page at `/` and `/api/v1/timeline`);
//! 6. edges: `server` (HTTP), `sources` (every source built and listed in
//!    one table), `one_shot` (the sources stepped once, for `diagnose`)
//!    and `cli`, the only place that reads flags and starts threads.

pub mod app_log;
pub mod cli;
pub mod config;
pub mod diagnose;
pub mod follow;
pub mod gunicorn;
pub mod kernel;
pub mod metrics;
pub mod netlink;
pub mod nginx;
pub mod one_shot;
pub mod pools;
pub mod rules;
pub mod server;
pub mod snapshot;
pub mod sources;
pub mod state;
pub mod status;
pub mod upstream_failure;
pub mod web;
