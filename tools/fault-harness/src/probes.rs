//! Trying instead of reading: writing into a container's directories and running a binary from
//! its /tmp, from the host through /proc/PID/root (so root's privileges do not hide a read-only
//! mount: the kernel refuses the write all the same).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::container;

const PROBE: &str = "container-stage-probe";

/// Whether a file can be created in `dir`; a probe that was written is removed again.
pub(crate) fn writable(dir: &Path) -> bool {
    let probe = dir.join(PROBE);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| f.write_all(b"probe\n"))
        .is_ok();
    if written {
        let _ = std::fs::remove_file(&probe);
    }
    written
}

fn inside(pid: u32, dir: &str) -> PathBuf {
    Path::new(&format!("/proc/{pid}/root")).join(dir.trim_start_matches('/'))
}

/// /tmp takes a file; none of `read_only` does.
pub(crate) fn only_tmp_writable(pid: u32, read_only: &[&str]) -> anyhow::Result<String> {
    if !writable(&inside(pid, "/tmp")) {
        bail!("cannot write to /tmp");
    }
    let written: Vec<&str> = read_only
        .iter()
        .copied()
        .filter(|dir| writable(&inside(pid, dir)))
        .collect();
    if !written.is_empty() {
        bail!("writable in a read-only container: {}", written.join(" "));
    }
    Ok(format!(
        "writable: /tmp; read-only: {}",
        read_only.join(" ")
    ))
}

/// A copy of the service's binary in /tmp does not run (noexec).
pub(crate) fn tmp_noexec(container: &str, pid: u32) -> anyhow::Result<String> {
    let copy = inside(pid, "/tmp/task-api-copy");
    std::fs::copy(inside(pid, "/task-api"), &copy)
        .with_context(|| format!("cannot copy the binary to {}", copy.display()))?;
    let ran = container::podman_output(&["exec", container, "/tmp/task-api-copy", "--version"]);
    let _ = std::fs::remove_file(&copy);
    if ran?.status.success() {
        bail!("a binary in /tmp could be executed (noexec missing)");
    }
    Ok("noexec: a binary copied to /tmp does not run".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_directory_takes_the_probe_and_keeps_nothing() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        assert!(writable(dir.path()));
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
        Ok(())
    }

    #[test]
    fn a_missing_directory_is_not_writable() {
        assert!(!writable(Path::new("/nonexistent/container-stage")));
    }

    #[test]
    fn paths_inside_resolve_under_the_process_root() {
        assert_eq!(inside(42, "/tmp"), Path::new("/proc/42/root/tmp"));
        assert_eq!(inside(42, "/"), Path::new("/proc/42/root/"));
    }
}
