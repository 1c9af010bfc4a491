//! The standard `process_*` families of Prometheus' client libraries
//! (client_golang's and client_rust's process collector), with their names
//! and meanings, so that dashboards and alerts made for any exporter's
//! memory, CPU and file descriptors work here. The values are what the
//! exporter last published of itself (`pools::self_usage`).

use std::fmt;

use super::{define_metrics, family, Encoder};
use crate::pools::self_usage::ProcessUsage;

define_metrics! { METRICS;
    CPU: Counter, "process_cpu_seconds", [], "Total user and system CPU time spent in seconds.";
    OPEN_FDS: Gauge, "process_open_fds", [], "Number of open file descriptors.";
    MAX_FDS: Gauge, "process_max_fds", [], "Maximum number of open file descriptors.";
    VIRTUAL: Gauge, "process_virtual_memory_bytes", [], "Virtual memory size in bytes.";
    RESIDENT: Gauge, "process_resident_memory_bytes", [], "Resident memory size in bytes.";
    START_TIME: Gauge, "process_start_time_seconds", [], "Start time of the process since unix epoch in seconds.";
}

/// Each value that was read; one that was not is left out.
pub fn encode(u: &ProcessUsage, enc: &mut Encoder) -> fmt::Result {
    if let Some(v) = u.cpu_seconds {
        family(enc, &CPU, |f| f.counter(&[], v))?;
    }
    if let Some(v) = u.open_fds {
        family(enc, &OPEN_FDS, |f| f.gauge(&[], v))?;
    }
    if let Some(v) = u.max_fds {
        family(enc, &MAX_FDS, |f| f.gauge(&[], v))?;
    }
    if let Some(v) = u.virtual_bytes {
        family(enc, &VIRTUAL, |f| f.gauge(&[], v))?;
    }
    if let Some(v) = u.resident_bytes {
        family(enc, &RESIDENT, |f| f.gauge(&[], v))?;
    }
    if let Some(v) = u.start_time_seconds {
        family(enc, &START_TIME, |f| f.gauge(&[], v))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_of_the_go_client() {
        let mut enc = Encoder::default();
        encode(
            &ProcessUsage {
                resident_bytes: Some(1 << 20),
                virtual_bytes: Some(1 << 30),
                cpu_seconds: Some(1.5),
                start_time_seconds: Some(1_700_000_000.25),
                open_fds: Some(9),
                max_fds: Some(u64::MAX),
            },
            &mut enc,
        )
        .unwrap();
        let (text, om) = enc.finish();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "process_cpu_seconds_total 1.5",
                "process_open_fds 9",
                "process_max_fds 18446744073709551615",
                "process_virtual_memory_bytes 1073741824",
                "process_resident_memory_bytes 1048576",
                "process_start_time_seconds 1700000000.25",
            ]
        );
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
        assert!(om.contains("# TYPE process_cpu_seconds counter\n"));
        // Nothing read, nothing written.
        let mut enc = Encoder::default();
        encode(&ProcessUsage::default(), &mut enc).unwrap();
        assert_eq!(enc.finish().0, "");
    }
}
