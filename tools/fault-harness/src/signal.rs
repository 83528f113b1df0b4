//! Sending signals to processes by id.

use anyhow::{Context, anyhow};
use rustix::process::{Pid, Signal, kill_process};

pub(crate) use rustix::process::Signal as Sig;

pub(crate) fn send(pid: u32, signal: Signal) -> anyhow::Result<()> {
    let raw = i32::try_from(pid).map_err(|_| anyhow!("process id {pid} out of range"))?;
    let pid = Pid::from_raw(raw).ok_or_else(|| anyhow!("process id {raw} is not a process"))?;
    kill_process(pid, signal).with_context(|| format!("cannot signal process {raw}"))
}
