//! Memory and CPU limits of the control group this process runs in, cgroup v1 and v2.
//!
//! The cgroup directory is found the way the kernel describes it: the path from
//! `/proc/self/cgroup` taken relative to the root of the matching mount in
//! `/proc/self/mountinfo`, so it works with and without a cgroup namespace.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use procfs::FromBufRead;
use procfs::process::MountInfos;

/// v1 reports "no limit" as a page-rounded `i64::MAX`; anything this large is no limit.
const V1_UNLIMITED_THRESHOLD: u64 = 1 << 62;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    V1,
    V2,
}

/// What the cgroup limits and uses right now. `None` means "no limit" (or not readable).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CgroupStats {
    pub version: Option<CgroupVersion>,
    pub memory_limit_bytes: Option<u64>,
    /// Usage as `docker stats` shows it: charged memory minus inactive page cache.
    pub memory_usage_bytes: Option<u64>,
    /// CPU quota in cores (quota / period), e.g. 0.5 for `--cpus 0.5`.
    pub cpu_limit_cores: Option<f64>,
}

/// Where to read from; tests point these at fixture directories.
#[derive(Debug, Clone)]
pub struct Sources {
    pub proc_self_cgroup: PathBuf,
    pub proc_self_mountinfo: PathBuf,
    /// Prefix joined in front of mount points (empty for the live system).
    pub root: PathBuf,
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            proc_self_cgroup: PathBuf::from("/proc/self/cgroup"),
            proc_self_mountinfo: PathBuf::from("/proc/self/mountinfo"),
            root: PathBuf::from("/"),
        }
    }
}

/// Reads the limits of this process's cgroup. Missing files mean "no limit", never an error:
/// outside a container there may be no cgroup filesystem at all.
pub fn read() -> CgroupStats {
    read_from(&Sources::default())
}

pub fn read_from(sources: &Sources) -> CgroupStats {
    let (Ok(membership), Ok(mounts)) = (
        fs::read_to_string(&sources.proc_self_cgroup),
        fs::read_to_string(&sources.proc_self_mountinfo),
    ) else {
        return CgroupStats::default();
    };
    let Ok(mounts) = MountInfos::from_buf_read(mounts.as_bytes()) else {
        return CgroupStats::default();
    };
    let memberships = parse_membership(&membership);

    // A pure v2 system, or a hybrid one whose v1 memory controller is not mounted.
    let v1_memory = v1_dir(&memberships, &mounts, "memory", &sources.root);
    let v1_cpu = v1_dir(&memberships, &mounts, "cpu", &sources.root);
    if v1_memory.is_some() || v1_cpu.is_some() {
        return read_v1(v1_memory.as_deref(), v1_cpu.as_deref());
    }
    match v2_dir(&memberships, &mounts, &sources.root) {
        Some(dir) => read_v2(&dir),
        None => CgroupStats::default(),
    }
}

struct Membership {
    hierarchy: u32,
    controllers: Vec<String>,
    path: String,
}

fn parse_membership(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let hierarchy = parts.next()?.parse().ok()?;
            let controllers = parts
                .next()?
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect();
            let path = parts.next()?.to_owned();
            Some(Membership {
                hierarchy,
                controllers,
                path,
            })
        })
        .collect()
}

fn v1_dir(
    memberships: &[Membership],
    mounts: &MountInfos,
    controller: &str,
    root: &Path,
) -> Option<PathBuf> {
    let member = memberships
        .iter()
        .find(|m| m.hierarchy != 0 && m.controllers.iter().any(|c| c == controller))?;
    let mount = mounts
        .iter()
        .find(|m| m.fs_type == "cgroup" && m.super_options.contains_key(controller))?;
    Some(join_cgroup_path(
        root,
        &mount.mount_point,
        &mount.root,
        &member.path,
    ))
}

fn v2_dir(memberships: &[Membership], mounts: &MountInfos, root: &Path) -> Option<PathBuf> {
    let member = memberships.iter().find(|m| m.hierarchy == 0)?;
    let mount = mounts.iter().find(|m| m.fs_type == "cgroup2")?;
    Some(join_cgroup_path(
        root,
        &mount.mount_point,
        &mount.root,
        &member.path,
    ))
}

/// The directory of `cgroup_path` under a mount whose own root is `mount_root`.
fn join_cgroup_path(
    root: &Path,
    mount_point: &Path,
    mount_root: &str,
    cgroup_path: &str,
) -> PathBuf {
    let relative = cgroup_path
        .strip_prefix(mount_root)
        .unwrap_or(cgroup_path)
        .trim_start_matches('/');
    let mount_point = mount_point.strip_prefix("/").unwrap_or(mount_point);
    let dir = root.join(mount_point);
    if relative.is_empty() {
        dir
    } else {
        dir.join(relative)
    }
}

fn read_v2(dir: &Path) -> CgroupStats {
    let memory_limit_bytes = read_trimmed(&dir.join("memory.max"))
        .ok()
        .and_then(|v| v.parse().ok());
    let memory_usage_bytes = read_number(&dir.join("memory.current")).map(|current| {
        let inactive = stat_value(&dir.join("memory.stat"), "inactive_file").unwrap_or(0);
        current.saturating_sub(inactive)
    });
    let cpu_limit_cores = read_trimmed(&dir.join("cpu.max"))
        .ok()
        .and_then(|v| parse_cpu_max(&v));
    CgroupStats {
        version: Some(CgroupVersion::V2),
        memory_limit_bytes,
        memory_usage_bytes,
        cpu_limit_cores,
    }
}

fn read_v1(memory: Option<&Path>, cpu: Option<&Path>) -> CgroupStats {
    let memory_limit_bytes = memory
        .and_then(|d| read_number(&d.join("memory.limit_in_bytes")))
        .filter(|&limit| limit < V1_UNLIMITED_THRESHOLD);
    let memory_usage_bytes = memory.and_then(|d| {
        let usage = read_number(&d.join("memory.usage_in_bytes"))?;
        let inactive = stat_value(&d.join("memory.stat"), "total_inactive_file").unwrap_or(0);
        Some(usage.saturating_sub(inactive))
    });
    let cpu_limit_cores = cpu.and_then(|d| {
        let quota: i64 = read_trimmed(&d.join("cpu.cfs_quota_us"))
            .ok()?
            .parse()
            .ok()?;
        let period: u64 = read_number(&d.join("cpu.cfs_period_us"))?;
        (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
    });
    CgroupStats {
        version: Some(CgroupVersion::V1),
        memory_limit_bytes,
        memory_usage_bytes,
        cpu_limit_cores,
    }
}

/// `cpu.max` is "max 100000" (no limit) or "<quota> <period>".
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut fields = text.split_whitespace();
    let quota: u64 = fields.next()?.parse().ok()?;
    let period: u64 = fields.next()?.parse().ok()?;
    (period > 0).then(|| quota as f64 / period as f64)
}

fn read_trimmed(path: &Path) -> io::Result<String> {
    Ok(fs::read_to_string(path)?.trim().to_owned())
}

fn read_number(path: &Path) -> Option<u64> {
    read_trimmed(path).ok()?.parse().ok()
}

fn stat_value(path: &Path, key: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, relative: &str, content: &str) {
        let path = dir.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    fn sources(dir: &Path) -> Sources {
        Sources {
            proc_self_cgroup: dir.join("proc/self/cgroup"),
            proc_self_mountinfo: dir.join("proc/self/mountinfo"),
            root: dir.to_path_buf(),
        }
    }

    #[test]
    fn v2_in_a_cgroup_namespace_reads_the_mount_root() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "proc/self/cgroup", "0::/\n");
        write(
            dir.path(),
            "proc/self/mountinfo",
            "30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n",
        );
        write(dir.path(), "sys/fs/cgroup/memory.max", "536870912\n");
        write(dir.path(), "sys/fs/cgroup/memory.current", "10485760\n");
        write(
            dir.path(),
            "sys/fs/cgroup/memory.stat",
            "anon 4096\nfile 8192\ninactive_file 2097152\n",
        );
        write(dir.path(), "sys/fs/cgroup/cpu.max", "50000 100000\n");
        let stats = read_from(&sources(dir.path()));
        assert_eq!(stats.version, Some(CgroupVersion::V2));
        assert_eq!(stats.memory_limit_bytes, Some(536_870_912));
        assert_eq!(stats.memory_usage_bytes, Some(10_485_760 - 2_097_152));
        assert_eq!(stats.cpu_limit_cores, Some(0.5));
    }

    #[test]
    fn v2_without_limits_reports_none() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "proc/self/cgroup",
            "0::/user.slice/session-1.scope\n",
        );
        write(
            dir.path(),
            "proc/self/mountinfo",
            "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n",
        );
        let scope = "sys/fs/cgroup/user.slice/session-1.scope";
        write(dir.path(), &format!("{scope}/memory.max"), "max\n");
        write(dir.path(), &format!("{scope}/memory.current"), "4096\n");
        write(dir.path(), &format!("{scope}/cpu.max"), "max 100000\n");
        let stats = read_from(&sources(dir.path()));
        assert_eq!(stats.version, Some(CgroupVersion::V2));
        assert_eq!(stats.memory_limit_bytes, None);
        assert_eq!(stats.memory_usage_bytes, Some(4096));
        assert_eq!(stats.cpu_limit_cores, None);
    }

    #[test]
    fn v1_without_a_namespace_strips_the_mount_root() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "proc/self/cgroup",
            "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/\n",
        );
        write(
            dir.path(),
            "proc/self/mountinfo",
            "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n\
             32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
        );
        write(
            dir.path(),
            "sys/fs/cgroup/memory/memory.limit_in_bytes",
            "536870912\n",
        );
        write(
            dir.path(),
            "sys/fs/cgroup/memory/memory.usage_in_bytes",
            "3000000\n",
        );
        write(
            dir.path(),
            "sys/fs/cgroup/memory/memory.stat",
            "cache 100\ntotal_inactive_file 1000000\n",
        );
        write(
            dir.path(),
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us",
            "150000\n",
        );
        write(
            dir.path(),
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us",
            "100000\n",
        );
        let stats = read_from(&sources(dir.path()));
        assert_eq!(stats.version, Some(CgroupVersion::V1));
        assert_eq!(stats.memory_limit_bytes, Some(536_870_912));
        assert_eq!(stats.memory_usage_bytes, Some(2_000_000));
        assert_eq!(stats.cpu_limit_cores, Some(1.5));
    }

    #[test]
    fn v1_unlimited_values_are_none() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "proc/self/cgroup", "4:memory:/\n1:cpu:/\n");
        write(
            dir.path(),
            "proc/self/mountinfo",
            "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n",
        );
        write(
            dir.path(),
            "sys/fs/cgroup/memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        write(dir.path(), "sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n");
        write(
            dir.path(),
            "sys/fs/cgroup/cpu/cpu.cfs_period_us",
            "100000\n",
        );
        let stats = read_from(&sources(dir.path()));
        assert_eq!(stats.version, Some(CgroupVersion::V1));
        assert_eq!(stats.memory_limit_bytes, None);
        assert_eq!(stats.cpu_limit_cores, None);
    }

    #[test]
    fn no_cgroup_filesystem_means_no_limits() {
        let dir = tempfile::tempdir().unwrap();
        let stats = read_from(&sources(dir.path()));
        assert_eq!(stats, CgroupStats::default());
    }
}
