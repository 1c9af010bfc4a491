//! badgateway_exporter: per-worker memory of pre-fork app servers, kernel
//! OOM kills attributed to their pool, and nginx upstream failures.
//!
//! Data flows one way: sources (`pools`, `kernel`, `nginx`) read the world
//! into typed state (`state`), the renderer (`metrics`) encodes a snapshot,
//! and outputs (`server`) serve it.

pub mod cli;
pub mod config;
pub mod follow;
pub mod kernel;
pub mod metrics;
pub mod nginx;
pub mod pools;
pub mod server;
pub mod state;
pub mod web;
