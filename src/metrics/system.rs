//! Process and container resources, read from `/proc` and the cgroup filesystem at each scrape
//! (a handful of small files: cheaper than keeping them current in the background).
//!
//! A reading that is not available is left out rather than reported as zero: outside a
//! container there is no cgroup limit, and `container_memory_limit_bytes` and
//! `container_cpu_limit_cores` then do not appear at all.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

use crate::sysinfo::{cgroup, process};

#[derive(Debug, Default)]
pub(super) struct SystemCollector;

impl Collector for SystemCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let proc = process::read();
        let container = cgroup::read();
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory of the task-api process",
                proc.resident_memory_bytes.map(as_f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory of the task-api process",
                proc.virtual_memory_bytes.map(as_f64),
            ),
            (
                "process_open_fds",
                "File descriptors the process holds open",
                proc.open_fds.map(as_f64),
            ),
            (
                "process_max_fds",
                "Most file descriptors the process may open (soft limit)",
                proc.max_fds.map(as_f64),
            ),
            (
                "process_start_time_seconds",
                "Unix time at which the process started",
                proc.start_time_seconds,
            ),
            (
                "container_memory_usage_bytes",
                "Memory the container's cgroup uses, less inactive page cache (as docker stats \
                 shows it)",
                container.memory_usage_bytes.map(as_f64),
            ),
            (
                "container_memory_limit_bytes",
                "Memory limit of the container's cgroup; absent when there is none",
                container.memory_limit_bytes.map(as_f64),
            ),
            (
                "container_cpu_limit_cores",
                "CPU quota of the container's cgroup in cores; absent when there is none",
                container.cpu_limit_cores,
            ),
        ];
        super::encode_present_gauges(&mut encoder, &gauges)?;
        if let Some(seconds) = proc.cpu_seconds {
            let counter = ConstCounter::new(seconds);
            counter.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time the process has used",
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// Byte counts fit a float's 53 bits of mantissa for any memory size there is.
fn as_f64(n: u64) -> f64 {
    n as f64
}
