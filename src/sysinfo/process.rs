//! Resource use of this process, read from `/proc/self`.

use procfs::process::{LimitValue, Process};

/// One reading of the process's resource use; fields that could not be read are `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    pub resident_memory_bytes: Option<u64>,
    pub virtual_memory_bytes: Option<u64>,
    /// User plus system CPU time since the process started.
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    /// Unix time at which the process started.
    pub start_time_seconds: Option<f64>,
    pub threads: Option<u64>,
}

pub fn read() -> ProcessStats {
    let Ok(me) = Process::myself() else {
        return ProcessStats::default();
    };
    let mut stats = ProcessStats::default();
    if let Ok(stat) = me.stat() {
        let ticks = procfs::ticks_per_second() as f64;
        stats.cpu_seconds = Some((stat.utime + stat.stime) as f64 / ticks);
        stats.resident_memory_bytes = Some(stat.rss * procfs::page_size());
        stats.virtual_memory_bytes = Some(stat.vsize);
        stats.threads = u64::try_from(stat.num_threads).ok();
        if let Ok(boot) = procfs::boot_time_secs() {
            stats.start_time_seconds = Some(boot as f64 + stat.starttime as f64 / ticks);
        }
    }
    stats.open_fds = me.fd_count().ok().and_then(|n| u64::try_from(n).ok());
    stats.max_fds = me
        .limits()
        .ok()
        .and_then(|limits| match limits.max_open_files.soft_limit {
            LimitValue::Value(n) => Some(n),
            LimitValue::Unlimited => None,
        });
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plausible_values_for_this_process() {
        let before = read();
        // Burn a little CPU and hold a file open so both readings must move.
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = read();
        drop(file);

        assert!(after.resident_memory_bytes.unwrap() > 1 << 20);
        assert!(after.virtual_memory_bytes.unwrap() >= after.resident_memory_bytes.unwrap());
        assert!(after.cpu_seconds.unwrap() >= before.cpu_seconds.unwrap());
        assert!(after.cpu_seconds.unwrap() > 0.0);
        assert!(after.open_fds.unwrap() >= 3);
        assert!(after.max_fds.unwrap() >= after.open_fds.unwrap());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = after.start_time_seconds.unwrap();
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "start {started}, now {now}"
        );
        assert!(after.threads.unwrap() >= 1);
    }
}
