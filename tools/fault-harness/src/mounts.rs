//! The container's mounts as its process sees them (/proc/PID/mounts): the root read-only and
//! /tmp a tmpfs with the documented options.

use anyhow::{Context, bail};
use procfs::FromRead;
use procfs::MountEntry;

pub(crate) fn read(pid: u32) -> anyhow::Result<Vec<MountEntry>> {
    let path = format!("/proc/{pid}/mounts");
    let file = std::fs::File::open(&path).with_context(|| format!("cannot read {path}"))?;
    Vec::<MountEntry>::from_read(file).with_context(|| format!("cannot parse {path}"))
}

fn at<'a>(mounts: &'a [MountEntry], point: &str) -> Option<&'a MountEntry> {
    // The last mount on a point is the one in force.
    mounts.iter().rev().find(|m| m.fs_file == point)
}

fn has(mount: &MountEntry, option: &str) -> bool {
    match option.split_once('=') {
        Some((key, value)) => mount.fs_mntops.get(key) == Some(&Some(value.to_owned())),
        None => mount.fs_mntops.get(option) == Some(&None),
    }
}

fn describe(mount: &MountEntry) -> String {
    // Overlay's layer paths (lowerdir=/var/lib/…) say nothing a reader needs.
    let mut options: Vec<String> = mount
        .fs_mntops
        .iter()
        .filter(|(_, v)| !v.as_ref().is_some_and(|v| v.contains('/')))
        .map(|(k, v)| v.as_ref().map_or_else(|| k.clone(), |v| format!("{k}={v}")))
        .collect();
    options.sort();
    format!(
        "{} {} {}",
        mount.fs_file,
        mount.fs_vfstype,
        options.join(",")
    )
}

pub(crate) fn root_read_only(mounts: &[MountEntry]) -> anyhow::Result<String> {
    let root = at(mounts, "/").context("no mount on /")?;
    if !has(root, "ro") {
        bail!("/ is not mounted read-only: {}", describe(root));
    }
    Ok(format!("mount {}", describe(root)))
}

/// /tmp is a tmpfs carrying each of `options` (the kernel's spelling: size=102400k).
pub(crate) fn tmp_tmpfs(mounts: &[MountEntry], options: &[&str]) -> anyhow::Result<String> {
    let tmp = at(mounts, "/tmp").context("/tmp is not a mount of its own")?;
    let missing: Vec<&str> = options.iter().copied().filter(|o| !has(tmp, o)).collect();
    if tmp.fs_vfstype != "tmpfs" || !missing.is_empty() {
        bail!(
            "/tmp is not a tmpfs with {}: {}",
            options.join(","),
            describe(tmp)
        );
    }
    Ok(format!("mount {}", describe(tmp)))
}

/// The engine's own writable in-memory mounts, for the record (/dev/shm is in every container).
pub(crate) fn writable_memory_mounts(mounts: &[MountEntry]) -> Vec<&str> {
    mounts
        .iter()
        .filter(|m| has(m, "rw") && matches!(m.fs_vfstype.as_str(), "tmpfs" | "shm" | "mqueue"))
        .filter(|m| !m.fs_file.starts_with("/proc/") && !m.fs_file.starts_with("/sys/"))
        .map(|m| m.fs_file.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/PID/mounts of `docker run --read-only --tmpfs /tmp:rw,noexec,nosuid,size=100m`
    /// (a /data tmpfs beside it), trimmed.
    const READ_ONLY: &str = include_str!("fixtures/mounts-read-only");
    const TMP: [&str; 4] = ["rw", "noexec", "nosuid", "size=102400k"];

    fn parse(text: &str) -> Vec<MountEntry> {
        Vec::<MountEntry>::from_read(text.as_bytes()).unwrap()
    }

    #[test]
    fn a_read_only_root_with_a_noexec_tmp_passes() -> anyhow::Result<()> {
        let mounts = parse(READ_ONLY);
        root_read_only(&mounts)?;
        tmp_tmpfs(&mounts, &TMP)?;
        assert_eq!(
            writable_memory_mounts(&mounts),
            ["/data", "/tmp", "/dev/shm"]
        );
        Ok(())
    }

    #[test]
    fn a_writable_root_or_an_exec_tmp_fails() {
        let writable = READ_ONLY.replace("overlay / overlay ro,", "overlay / overlay rw,");
        assert!(root_read_only(&parse(&writable)).is_err());
        let exec = READ_ONLY.replace(
            "nodev,noexec,relatime,size=102400k",
            "nodev,relatime,size=102400k",
        );
        assert!(tmp_tmpfs(&parse(&exec), &TMP).is_err());
        let small = READ_ONLY.replace("size=102400k", "size=1024k");
        assert!(tmp_tmpfs(&parse(&small), &TMP).is_err());
    }

    #[test]
    fn tmp_on_the_root_filesystem_fails() {
        let on_root: String = READ_ONLY
            .lines()
            .filter(|l| !l.contains(" /tmp "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(tmp_tmpfs(&parse(&on_root), &TMP).is_err());
        let disk = READ_ONLY.replace("tmpfs /tmp tmpfs", "/dev/vda /tmp ext4");
        assert!(tmp_tmpfs(&parse(&disk), &TMP).is_err());
    }
}
