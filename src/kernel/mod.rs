//! The kernel source: OOM kills from /dev/kmsg, and memory counters.

/// What the kernel source has seen.
#[derive(Debug, Default, Clone)]
pub struct KernelState {}

pub mod kmsg;
pub mod oom;

use std::sync::Arc;

use prometheus_client::encoding::DescriptorEncoder;

use crate::config::Config;
use crate::metrics::define_metrics;
use crate::state::World;

pub fn start(_cfg: &Config, _args: &crate::cli::Args, _world: Arc<World>) -> anyhow::Result<()> {
    Ok(())
}

pub fn encode(_world: &World, _enc: &mut DescriptorEncoder) -> std::fmt::Result {
    Ok(())
}

define_metrics! { METRICS;
}
