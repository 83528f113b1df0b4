//! `hardening`: a running container is hardened as the way it was started promises, by the
//! engine's account (`podman inspect`, `top`, `diff`), by the kernel's (/proc/PID/status and
//! mounts) and by trying to write and to execute inside it. Every check runs; all failures are
//! named together.

use anyhow::bail;
use clap::{Args, ValueEnum};

use crate::inspect::{self, Inspect};
use crate::{container, mounts, podman_text, probes, proc_status};

/// /tmp as the README mounts it (`--tmpfs /tmp:rw,noexec,nosuid,size=100m`), as the engine
/// records it and as the kernel shows it.
const TMPFS_OPTIONS: [&str; 4] = ["rw", "noexec", "nosuid", "size=100m"];
const TMP_MOUNT_OPTIONS: [&str; 4] = ["rw", "noexec", "nosuid", "size=102400k"];
/// What the service's user must not be able to write in a --read-only container.
const READ_ONLY_DIRS: [&str; 4] = ["/", "/data", "/backups", "/etc"];

#[derive(Args)]
pub(crate) struct HardeningArgs {
    /// The container.
    container: String,
    /// The checks that go with one way of starting the image.
    #[arg(long, value_enum, required_unless_present = "check")]
    profile: Option<Profile>,
    /// A single check (repeatable), beside or instead of --profile.
    #[arg(long, value_enum)]
    check: Vec<Check>,
    /// The user (UID:GID) the process must run as; its name in `podman top` is --user-name.
    #[arg(long, default_value = "1001:1001")]
    user: String,
    #[arg(long, default_value = "task-api")]
    user_name: String,
    /// The memory limit the engine must have recorded, in MiB.
    #[arg(long, default_value_t = 512)]
    memory_mib: u64,
    /// The CPU limit the engine must have recorded.
    #[arg(long, default_value_t = 0.5)]
    cpus: f64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Profile {
    /// The README's `docker run`: limits, healthy, user 1001 (engine, kernel, top), layer unchanged.
    Users,
    /// `--read-only` with /tmp a noexec tmpfs: the root read-only, /tmp the only writable place.
    ReadOnly,
    /// compose.yaml's API service: read-only, capabilities dropped, no-new-privileges, limits,
    /// /tmp tmpfs, restart policy, the password only as a file.
    Compose,
    /// The Kubernetes Deployment's securityContext as the kernel applied it.
    Kube,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Check {
    /// HostConfig.Memory and NanoCpus are --memory-mib and --cpus.
    Limits,
    /// State.Health.Status is healthy.
    Healthy,
    /// Config.User is --user.
    User,
    /// /proc/PID/status: every uid and gid is --user's.
    ProcessIds,
    /// `podman top`: the process's user is --user-name or its uid.
    Top,
    /// `podman diff`: nothing changed but the engine's own mount points.
    Layer,
    /// HostConfig.ReadonlyRootfs.
    ReadOnlyRoot,
    /// HostConfig.Tmpfs holds /tmp with rw,noexec,nosuid,size=100m.
    Tmpfs,
    /// /proc/PID/mounts: / read-only, /tmp a tmpfs with rw,noexec,nosuid,size=100m.
    Mounts,
    /// /tmp takes a file; /, /data, /backups and /etc do not.
    Writes,
    /// /tmp takes a file; / does not.
    RootWrite,
    /// A binary copied into /tmp does not run.
    Noexec,
    /// HostConfig.CapDrop is set and no capability is effective.
    CapDrop,
    /// HostConfig.SecurityOpt holds no-new-privileges.
    NoNewPrivileges,
    /// /proc/PID/status: CapEff 0.
    KernelCaps,
    /// /proc/PID/status: NoNewPrivs 1.
    KernelNoNewPrivs,
    /// /proc/PID/status: Seccomp 2.
    Seccomp,
    /// The restart policy is unless-stopped.
    Restart,
    /// No DB_PASSWORD in the environment.
    PasswordFile,
}

impl Profile {
    fn checks(self) -> &'static [Check] {
        use Check::*;
        match self {
            Self::Users => &[Limits, Healthy, User, ProcessIds, Top, Layer],
            Self::ReadOnly => &[ReadOnlyRoot, Tmpfs, Mounts, Writes, Noexec],
            Self::Compose => &[
                ReadOnlyRoot,
                CapDrop,
                NoNewPrivileges,
                Limits,
                Tmpfs,
                Restart,
                PasswordFile,
            ],
            Self::Kube => &[
                ProcessIds,
                KernelCaps,
                KernelNoNewPrivs,
                Seccomp,
                ReadOnlyRoot,
                RootWrite,
                PasswordFile,
            ],
        }
    }
}

/// What the checks read, gathered once.
struct Subject<'a> {
    args: &'a HardeningArgs,
    inspect: Inspect,
    pid: u32,
}

pub(crate) fn run(args: HardeningArgs) -> anyhow::Result<()> {
    let mut checks: Vec<Check> = args
        .profile
        .map(|p| p.checks().to_vec())
        .unwrap_or_default();
    for &check in &args.check {
        if !checks.contains(&check) {
            checks.push(check);
        }
    }
    let inspect = inspect::load(&args.container)?;
    if !inspect.state.running || inspect.state.pid == 0 {
        bail!("container {} is not running", args.container);
    }
    let subject = Subject {
        pid: inspect.state.pid,
        inspect,
        args: &args,
    };
    let mut failed = Vec::new();
    for &check in &checks {
        let name = check
            .to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_owned());
        match subject.judge(check) {
            Ok(seen) => println!("ok    {name}: {seen}"),
            Err(e) => {
                println!("FAIL  {name}: {e:#}");
                failed.push(format!("{name}: {e:#}"));
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "{}: {} of {} checks failed: {}",
            args.container,
            failed.len(),
            checks.len(),
            failed.join("; ")
        );
    }
    println!("{}: {} checks passed", args.container, checks.len());
    Ok(())
}

impl Subject<'_> {
    fn judge(&self, check: Check) -> anyhow::Result<String> {
        let (i, args, pid) = (&self.inspect, self.args, self.pid);
        match check {
            Check::Limits => inspect::limits(i, args.memory_mib, args.cpus),
            Check::Healthy => inspect::healthy(i),
            Check::User => inspect::user(i, &args.user),
            Check::ProcessIds => proc_status::runs_as(&proc_status::read(pid)?, &args.user),
            Check::Top => {
                let uid = args.user.split(':').next().unwrap_or_default();
                let top = container::podman(&["top", &args.container])?;
                podman_text::top_user(&top, &args.user_name, uid)
            }
            Check::Layer => {
                podman_text::layer_unchanged(&container::podman(&["diff", &args.container])?)
            }
            Check::ReadOnlyRoot => inspect::read_only_root(i),
            Check::Tmpfs => inspect::tmpfs(i, &TMPFS_OPTIONS),
            Check::Mounts => {
                let all = mounts::read(pid)?;
                let root = mounts::root_read_only(&all)?;
                let tmp = mounts::tmp_tmpfs(&all, &TMP_MOUNT_OPTIONS)?;
                let writable = mounts::writable_memory_mounts(&all).join(" ");
                Ok(format!(
                    "{root}; {tmp}; writable in-memory mounts: {writable}"
                ))
            }
            Check::Writes => probes::only_tmp_writable(pid, &READ_ONLY_DIRS),
            Check::RootWrite => probes::only_tmp_writable(pid, &["/"]),
            Check::Noexec => probes::tmp_noexec(&args.container, pid),
            Check::CapDrop => inspect::capabilities_dropped(i),
            Check::NoNewPrivileges => inspect::no_new_privileges(i),
            Check::KernelCaps => proc_status::no_capabilities(&proc_status::read(pid)?),
            Check::KernelNoNewPrivs => proc_status::no_new_privs(&proc_status::read(pid)?),
            Check::Seccomp => proc_status::seccomp_filter(&proc_status::read(pid)?),
            Check::Restart => inspect::restart_policy(i, "unless-stopped"),
            Check::PasswordFile => inspect::password_not_in_env(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_names_each_check_once() {
        for profile in Profile::value_variants() {
            let checks = profile.checks();
            for (n, check) in checks.iter().enumerate() {
                assert!(!checks[n + 1..].contains(check));
            }
        }
    }
}
