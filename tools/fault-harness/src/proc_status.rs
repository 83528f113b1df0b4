//! The kernel's view of a container's process (/proc/PID/status), whatever the engine was told:
//! its user and group ids, effective capabilities, no_new_privs and seccomp mode.

use anyhow::{Context, bail};
use procfs::FromRead;
use procfs::process::Status;

pub(crate) fn read(pid: u32) -> anyhow::Result<Status> {
    let path = format!("/proc/{pid}/status");
    let file = std::fs::File::open(&path).with_context(|| format!("cannot read {path}"))?;
    Status::from_read(file).with_context(|| format!("cannot parse {path}"))
}

/// Real, effective, saved and filesystem ids all `uid` and `gid` ("1001:1001").
pub(crate) fn runs_as(status: &Status, user: &str) -> anyhow::Result<String> {
    let (uid, gid) = user
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)))
        .with_context(|| format!("'{user}' is not UID:GID"))?;
    let uids = [status.ruid, status.euid, status.suid, status.fuid];
    let gids = [status.rgid, status.egid, status.sgid, status.fgid];
    if uids != [uid; 4] {
        bail!("the process does not run as UID {uid}: Uid {uids:?}");
    }
    if gids != [gid; 4] {
        bail!("the process does not run as GID {gid}: Gid {gids:?}");
    }
    Ok(format!("process Uid and Gid {uid} {gid}"))
}

pub(crate) fn no_capabilities(status: &Status) -> anyhow::Result<String> {
    if status.capeff != 0 {
        bail!(
            "the process keeps capabilities: CapEff {:016x}",
            status.capeff
        );
    }
    Ok("CapEff 0".to_owned())
}

/// `allowPrivilegeEscalation: false` / `no-new-privileges`, as applied.
pub(crate) fn no_new_privs(status: &Status) -> anyhow::Result<String> {
    if status.nonewprivs != Some(1) {
        bail!(
            "no_new_privs is not set: NoNewPrivs {:?}",
            status.nonewprivs
        );
    }
    Ok("NoNewPrivs 1".to_owned())
}

/// Mode 2: a seccomp filter is in force.
pub(crate) fn seccomp_filter(status: &Status) -> anyhow::Result<String> {
    if status.seccomp != Some(2) {
        bail!(
            "the process runs without a seccomp filter: Seccomp {:?}",
            status.seccomp
        );
    }
    Ok("Seccomp 2 (filter)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/PID/status of task-api run with --cap-drop ALL and no-new-privileges.
    const HARDENED: &str = include_str!("fixtures/status-1001");

    fn status(text: &str) -> Status {
        Status::from_read(text.as_bytes()).unwrap()
    }

    #[test]
    fn the_hardened_process_passes() -> anyhow::Result<()> {
        let s = status(HARDENED);
        runs_as(&s, "1001:1001")?;
        no_capabilities(&s)?;
        no_new_privs(&s)?;
        seccomp_filter(&s)?;
        Ok(())
    }

    #[test]
    fn root_capabilities_and_no_filter_fail() {
        let root = HARDENED
            .replace("Uid:\t1001\t1001\t1001\t1001", "Uid:\t0\t0\t0\t0")
            .replace("CapEff:\t0000000000000000", "CapEff:\t000001ffffffffff")
            .replace("NoNewPrivs:\t1", "NoNewPrivs:\t0")
            .replace("Seccomp:\t2", "Seccomp:\t0");
        let s = status(&root);
        assert!(
            runs_as(&s, "1001:1001")
                .err()
                .is_some_and(|e| e.to_string().contains("UID 1001"))
        );
        assert!(no_capabilities(&s).is_err());
        assert!(no_new_privs(&s).is_err());
        assert!(seccomp_filter(&s).is_err());
    }

    #[test]
    fn one_id_out_of_four_is_enough_to_fail() {
        let saved = HARDENED.replace("Gid:\t1001\t1001\t1001\t1001", "Gid:\t1001\t1001\t0\t1001");
        assert!(runs_as(&status(&saved), "1001:1001").is_err());
        assert!(runs_as(&status(HARDENED), "1001").is_err());
    }
}
