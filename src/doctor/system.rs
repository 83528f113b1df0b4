//! Probes of the process and its container: user, mounts, limits, capabilities.
//!
//! Each probe is a function of already-read `/proc` data, so tests feed them fixture files.

use std::fs;
use std::path::{Path, PathBuf};

use indicatif::HumanBytes;
use procfs::FromBufRead;
use procfs::process::{MountInfo, MountInfos, Status};

use super::report::{Finding, RowId};
use crate::sysinfo::cgroup::{self, CgroupStats, CgroupVersion};

/// Where the probes read from; tests point these at fixtures.
#[derive(Debug, Clone)]
pub(super) struct Sources {
    pub proc_self_status: PathBuf,
    pub proc_self_mountinfo: PathBuf,
    pub cgroup: cgroup::Sources,
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            proc_self_status: PathBuf::from("/proc/self/status"),
            proc_self_mountinfo: PathBuf::from("/proc/self/mountinfo"),
            cgroup: cgroup::Sources::default(),
        }
    }
}

/// Every system row, in report order.
pub(super) fn probe(sources: &Sources) -> Vec<(RowId, Finding)> {
    let status = read_parsed::<Status>(&sources.proc_self_status);
    let mounts = read_parsed::<MountInfos>(&sources.proc_self_mountinfo);
    let limits = cgroup::read_from(&sources.cgroup);
    vec![
        (RowId::User, with(&status, user)),
        (RowId::RootFilesystem, with(&mounts, root_filesystem)),
        (RowId::Tmp, with(&mounts, tmp)),
        (RowId::MemoryLimit, memory_limit(&limits)),
        (RowId::CpuLimit, cpu_limit(&limits)),
        (RowId::Capabilities, with(&status, capabilities)),
        (RowId::NoNewPrivileges, with(&status, no_new_privileges)),
    ]
}

/// A probe of data that may not have been readable: unreadable data fails the row, saying why.
fn with<T>(data: &Result<T, String>, probe: fn(&T) -> Finding) -> Finding {
    match data {
        Ok(value) => probe(value),
        Err(e) => Finding::fail("unknown", e.clone()),
    }
}

fn read_parsed<T: FromBufRead>(path: &Path) -> Result<T, String> {
    let text = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    T::from_buf_read(text.as_slice()).map_err(|e| format!("cannot parse {}: {e}", path.display()))
}

pub(super) fn user(status: &Status) -> Finding {
    let observed = if status.ruid == status.euid && status.rgid == status.egid {
        format!("uid {}, gid {}", status.euid, status.egid)
    } else {
        format!(
            "uid {} (real {}), gid {} (real {})",
            status.euid, status.ruid, status.egid, status.rgid
        )
    };
    let fix = "run as an unprivileged user (docker run --user 1001:1001; the image's default)";
    if status.euid == 0 || status.ruid == 0 {
        Finding::fail(observed, format!("runs as root (uid 0): {fix}"))
    } else if status.egid == 0 || status.rgid == 0 {
        Finding::fail(observed, format!("runs with group root (gid 0): {fix}"))
    } else if status.groups.contains(&0) {
        Finding::fail(
            observed,
            format!("member of supplementary group root (0): {fix}"),
        )
    } else {
        Finding::pass(observed, "runs as an unprivileged user")
    }
}

/// The mount visible at `point`: the last one listed, as later mounts cover earlier ones.
fn mount_at<'a>(mounts: &'a MountInfos, point: &str) -> Option<&'a MountInfo> {
    mounts.iter().rfind(|m| m.mount_point == Path::new(point))
}

/// The process's root mount: the `/` entry whose parent lies outside this view. A mount
/// stacked on `/` later (`mount --bind / /`) is listed after it but never seen by the process,
/// whose root stays pinned to the mount below.
fn root_mount(mounts: &MountInfos) -> Option<&MountInfo> {
    let mut roots = mounts.iter().filter(|m| m.mount_point == Path::new("/"));
    let first = roots.clone().next();
    roots
        .find(|root| !mounts.iter().any(|m| m.mnt_id == root.pid))
        .or(first)
}

fn has_option(mount: &MountInfo, name: &str) -> bool {
    mount.mount_options.contains_key(name) || mount.super_options.contains_key(name)
}

pub(super) fn root_filesystem(mounts: &MountInfos) -> Finding {
    let Some(root) = root_mount(mounts) else {
        return Finding::fail("no mount at /", "/proc/self/mountinfo lists no root mount");
    };
    if root.mount_options.contains_key("ro") {
        Finding::pass(format!("{} ro", root.fs_type), "/ is mounted read-only")
    } else {
        Finding::fail(
            format!("{} rw", root.fs_type),
            "/ is writable: run with --read-only (compose: read_only: true)",
        )
    }
}

pub(super) fn tmp(mounts: &MountInfos) -> Finding {
    let fix = "mount it with --tmpfs /tmp:rw,noexec,nosuid,size=100m";
    let Some(mount) = mount_at(mounts, "/tmp") else {
        return Finding::fail(
            "part of /",
            format!("/tmp is not a mount of its own: {fix}"),
        );
    };
    let size = mount
        .super_options
        .get("size")
        .and_then(|s| s.as_deref())
        .and_then(parse_size);
    let mut flags: Vec<&str> = ["ro", "rw", "noexec", "nosuid", "nodev"]
        .into_iter()
        .filter(|f| has_option(mount, f))
        .collect();
    if flags.is_empty() {
        flags.push("-");
    }
    let observed = format!(
        "{} {} size={}",
        mount.fs_type,
        flags.join(","),
        size.map_or("unlimited".to_owned(), |s| HumanBytes(s).to_string())
    );
    let mut missing = Vec::new();
    if mount.fs_type != "tmpfs" {
        missing.push("not tmpfs");
    }
    if !has_option(mount, "noexec") {
        missing.push("no noexec");
    }
    if !has_option(mount, "nosuid") {
        missing.push("no nosuid");
    }
    if size.is_none() {
        missing.push("no size cap");
    }
    if missing.is_empty() {
        Finding::pass(observed, "tmpfs with noexec, nosuid and a size cap")
    } else {
        Finding::fail(observed, format!("{}: {fix}", missing.join(", ")))
    }
}

/// tmpfs sizes as mountinfo shows them: bytes, or a number with k, m or g.
fn parse_size(text: &str) -> Option<u64> {
    let (digits, unit) = match text.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_lowercase()),
        _ => (text, 'b'),
    };
    let shift = match unit {
        'b' => 0,
        'k' => 10,
        'm' => 20,
        'g' => 30,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

fn cgroup_name(stats: &CgroupStats) -> &'static str {
    match stats.version {
        Some(CgroupVersion::V1) => "cgroup v1",
        Some(CgroupVersion::V2) => "cgroup v2",
        None => "no cgroup found",
    }
}

pub(super) fn memory_limit(stats: &CgroupStats) -> Finding {
    match stats.memory_limit_bytes {
        Some(limit) => Finding::pass(
            format!("{} ({})", HumanBytes(limit), cgroup_name(stats)),
            "a memory limit is in force",
        ),
        None => Finding::fail(
            format!("none ({})", cgroup_name(stats)),
            "no memory limit in force: run with --memory 512m (compose: deploy.resources.limits.memory)",
        ),
    }
}

pub(super) fn cpu_limit(stats: &CgroupStats) -> Finding {
    match stats.cpu_limit_cores {
        Some(cores) => Finding::pass(
            format!("{cores} CPUs ({})", cgroup_name(stats)),
            "a CPU limit is in force",
        ),
        None => Finding::fail(
            format!("none ({})", cgroup_name(stats)),
            "no CPU limit in force: run with --cpus 0.5 (compose: deploy.resources.limits.cpus)",
        ),
    }
}

/// Capability names by bit number (capabilities(7)).
const CAPABILITY_NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// A capability set for a table cell: names when there are a few, else a count and the mask.
fn capability_set(set: u64) -> String {
    match set.count_ones() {
        0 => "none".to_owned(),
        1..=4 => (0..64)
            .filter(|bit| set & (1 << bit) != 0)
            .map(|bit| {
                CAPABILITY_NAMES
                    .get(bit)
                    .map_or_else(|| format!("cap_{bit}"), |name| (*name).to_owned())
            })
            .collect::<Vec<_>>()
            .join(","),
        n => format!("{n} ({set:016x})"),
    }
}

pub(super) fn capabilities(status: &Status) -> Finding {
    let bounding = status.capbnd.map_or("unknown".to_owned(), capability_set);
    let observed = format!(
        "effective {}; permitted {}; bounding {bounding}",
        capability_set(status.capeff),
        capability_set(status.capprm)
    );
    if status.capeff == 0 && status.capprm == 0 {
        Finding::pass(observed, "no capabilities held")
    } else {
        Finding::fail(
            observed,
            "capabilities held: run with --cap-drop ALL (compose: cap_drop: [ALL])",
        )
    }
}

pub(super) fn no_new_privileges(status: &Status) -> Finding {
    match status.nonewprivs {
        Some(1) => Finding::pass("NoNewPrivs 1", "no process here can gain privileges"),
        Some(value) => Finding::fail(
            format!("NoNewPrivs {value}"),
            "privileges can be gained through setuid files: run with \
             --security-opt no-new-privileges (compose: security_opt: [no-new-privileges:true])",
        ),
        None => Finding::fail(
            "not reported",
            "the kernel does not report NoNewPrivs (Linux 4.10 or newer needed)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts(lines: &str) -> MountInfos {
        MountInfos::from_buf_read(lines.as_bytes()).unwrap()
    }

    const ROOT_RO: &str =
        "1090 1035 0:81 / / ro,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w\n";
    const ROOT_RW: &str =
        "1090 1035 0:81 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w\n";
    /// /proc/self/status of the service in a hardened container, and of a default root one.
    const STATUS_HARDENED: &str = include_str!("fixtures/status-hardened");
    const STATUS_ROOT: &str = include_str!("fixtures/status-root");

    /// A status fixture with some of its lines replaced (`"Gid:"` → `"Gid:\t0\t0\t0\t0"`);
    /// a replacement with an empty value removes the line.
    fn status(fixture: &str, changes: &[(&str, &str)]) -> Status {
        let text: String = fixture
            .lines()
            .filter_map(
                |line| match changes.iter().find(|(key, _)| line.starts_with(key)) {
                    Some((_, "")) => None,
                    Some((key, value)) => Some(format!("{key}\t{value}\n")),
                    None => Some(format!("{line}\n")),
                },
            )
            .collect();
        Status::from_buf_read(text.as_bytes()).unwrap()
    }

    #[test]
    fn root_user_or_group_fails() {
        let hardened = user(&status(STATUS_HARDENED, &[]));
        assert_eq!(
            hardened,
            Finding::pass("uid 1001, gid 1001", "runs as an unprivileged user")
        );
        let root = user(&status(STATUS_ROOT, &[]));
        assert!(!root.passed);
        assert_eq!(root.observed, "uid 0, gid 0");
        assert!(root.reason.contains("root (uid 0)"), "{}", root.reason);
        let group = user(&status(STATUS_HARDENED, &[("Gid:", "0\t0\t0\t0")]));
        assert!(!group.passed);
        assert!(group.reason.contains("gid 0"), "{}", group.reason);
        let member = user(&status(STATUS_HARDENED, &[("Groups:", "0 10")]));
        assert!(!member.passed);
        assert!(member.reason.contains("supplementary"), "{}", member.reason);
    }

    #[test]
    fn the_root_filesystem_must_be_read_only() {
        let ro = root_filesystem(&mounts(ROOT_RO));
        assert!(ro.passed, "{ro:?}");
        assert_eq!(ro.observed, "overlay ro");
        let rw = root_filesystem(&mounts(ROOT_RW));
        assert!(!rw.passed);
        assert!(rw.reason.contains("--read-only"), "{}", rw.reason);
        // A bind mount stacked on / is listed later, but the process's root is the one below.
        let stacked = "108 97 254:0 / / ro,relatime - ext4 /dev/vda rw\n\
                       160 108 254:0 / / rw,relatime - ext4 /dev/vda rw\n";
        assert!(root_filesystem(&mounts(stacked)).passed);
    }

    #[test]
    fn tmp_needs_tmpfs_noexec_nosuid_and_a_size() {
        let hardened = format!(
            "{ROOT_RO}1100 1090 0:90 / /tmp rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,size=102400k,mode=1777\n"
        );
        let good = tmp(&mounts(&hardened));
        assert!(good.passed, "{good:?}");
        assert_eq!(
            good.observed,
            "tmpfs rw,noexec,nosuid,nodev size=100.00 MiB"
        );

        let exec = format!(
            "{ROOT_RO}1100 1090 0:90 / /tmp rw,nosuid,nodev,relatime - tmpfs tmpfs rw,size=65536k\n"
        );
        let f = tmp(&mounts(&exec));
        assert!(!f.passed);
        assert!(f.reason.starts_with("no noexec:"), "{}", f.reason);

        let unbounded =
            format!("{ROOT_RO}1100 1090 0:90 / /tmp rw,relatime - tmpfs tmpfs rw,mode=1777\n");
        let f = tmp(&mounts(&unbounded));
        assert!(!f.passed);
        assert!(
            f.reason.starts_with("no noexec, no nosuid, no size cap:"),
            "{}",
            f.reason
        );
        assert!(f.observed.ends_with("size=unlimited"), "{}", f.observed);

        let disk =
            format!("{ROOT_RW}1100 1090 8:1 /tmp /tmp rw,nosuid,noexec - ext4 /dev/sda1 rw\n");
        let f = tmp(&mounts(&disk));
        assert!(
            f.reason.starts_with("not tmpfs, no size cap"),
            "{}",
            f.reason
        );

        let none = tmp(&mounts(ROOT_RW));
        assert!(!none.passed);
        assert_eq!(none.observed, "part of /");
    }

    #[test]
    fn tmpfs_sizes_parse_with_units() {
        assert_eq!(parse_size("102400k"), Some(100 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("50%"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn limits_pass_when_set_and_fail_with_the_flag_to_set() {
        let limited = CgroupStats {
            version: Some(CgroupVersion::V2),
            memory_limit_bytes: Some(512 << 20),
            memory_usage_bytes: None,
            cpu_limit_cores: Some(0.5),
        };
        assert_eq!(
            memory_limit(&limited),
            Finding::pass("512.00 MiB (cgroup v2)", "a memory limit is in force")
        );
        assert_eq!(cpu_limit(&limited).observed, "0.5 CPUs (cgroup v2)");
        let none = CgroupStats::default();
        let m = memory_limit(&none);
        assert!(!m.passed);
        assert_eq!(m.observed, "none (no cgroup found)");
        assert!(m.reason.contains("--memory"), "{}", m.reason);
        assert!(cpu_limit(&none).reason.contains("--cpus"));
    }

    #[test]
    fn limits_come_from_cgroup_fixtures_of_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let write = |relative: &str, content: &str| {
            let path = dir.path().join(relative);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        };
        write(
            "proc/self/cgroup",
            "4:memory:/docker/c\n2:cpu,cpuacct:/docker/c\n",
        );
        write(
            "proc/self/mountinfo",
            "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
        );
        write(
            "sys/fs/cgroup/memory/docker/c/memory.limit_in_bytes",
            "268435456\n",
        );
        write(
            "sys/fs/cgroup/cpu,cpuacct/docker/c/cpu.cfs_quota_us",
            "-1\n",
        );
        write(
            "sys/fs/cgroup/cpu,cpuacct/docker/c/cpu.cfs_period_us",
            "100000\n",
        );
        let stats = cgroup::read_from(&cgroup::Sources {
            proc_self_cgroup: dir.path().join("proc/self/cgroup"),
            proc_self_mountinfo: dir.path().join("proc/self/mountinfo"),
            root: dir.path().to_path_buf(),
        });
        assert_eq!(memory_limit(&stats).observed, "256.00 MiB (cgroup v1)");
        assert!(memory_limit(&stats).passed);
        assert_eq!(cpu_limit(&stats).observed, "none (cgroup v1)");
        assert!(!cpu_limit(&stats).passed);
    }

    #[test]
    fn capabilities_must_be_empty_and_are_named() {
        let none = capabilities(&status(STATUS_HARDENED, &[]));
        assert_eq!(
            none,
            Finding::pass(
                "effective none; permitted none; bounding none",
                "no capabilities held"
            )
        );
        let defaults = capabilities(&status(STATUS_ROOT, &[]));
        assert!(!defaults.passed);
        assert_eq!(
            defaults.observed,
            "effective 14 (00000000a80425fb); permitted 14 (00000000a80425fb); \
             bounding 14 (00000000a80425fb)"
        );
        assert!(defaults.reason.contains("--cap-drop ALL"));
        // Permitted alone is enough to fail: the process could raise it to effective.
        let permitted = capabilities(&status(STATUS_HARDENED, &[("CapPrm:", "0000000000000401")]));
        assert!(!permitted.passed);
        assert!(
            permitted
                .observed
                .starts_with("effective none; permitted chown,net_bind_service;"),
            "{}",
            permitted.observed
        );
        assert_eq!(capability_set(1 << 45), "cap_45");
    }

    #[test]
    fn no_new_privileges_must_be_set() {
        assert!(no_new_privileges(&status(STATUS_HARDENED, &[])).passed);
        let off = no_new_privileges(&status(STATUS_ROOT, &[]));
        assert_eq!(off.observed, "NoNewPrivs 0");
        assert!(off.reason.contains("no-new-privileges"));
        let old_kernel = no_new_privileges(&status(STATUS_HARDENED, &[("NoNewPrivs:", "")]));
        assert!(!old_kernel.passed);
        assert_eq!(old_kernel.observed, "not reported");
    }

    #[test]
    fn container_mountinfo_fixtures_pass_hardened_and_fail_default() {
        let hardened = mounts(include_str!("fixtures/mountinfo-hardened"));
        assert!(root_filesystem(&hardened).passed);
        assert!(tmp(&hardened).passed, "{:?}", tmp(&hardened));
        let default = mounts(include_str!("fixtures/mountinfo-default"));
        assert!(!root_filesystem(&default).passed);
        assert_eq!(tmp(&default).observed, "part of /");
    }

    #[test]
    fn unreadable_sources_fail_their_rows_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let findings = probe(&Sources {
            proc_self_status: missing.clone(),
            proc_self_mountinfo: missing.clone(),
            cgroup: cgroup::Sources {
                proc_self_cgroup: missing.clone(),
                proc_self_mountinfo: missing.clone(),
                root: dir.path().to_path_buf(),
            },
        });
        assert_eq!(findings.len(), 7);
        for (id, finding) in findings {
            assert!(!finding.passed, "{id:?}");
            if !matches!(id, RowId::MemoryLimit | RowId::CpuLimit) {
                assert!(
                    finding.reason.starts_with("cannot read"),
                    "{id:?}: {finding:?}"
                );
            }
        }
    }

    #[test]
    fn this_process_can_be_probed_without_panicking() {
        let findings = probe(&Sources::default());
        assert_eq!(findings.len(), 7);
        let user_row = &findings[0].1;
        assert!(user_row.observed.starts_with("uid "), "{user_row:?}");
    }
}
