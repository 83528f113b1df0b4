//! Sending signals to processes by id, and finding a process's children.

use anyhow::{Context, anyhow};
use rustix::process::{Pid, Signal, kill_process};

pub use rustix::process::Signal as Sig;

pub fn send(pid: u32, signal: Signal) -> anyhow::Result<()> {
    let raw = i32::try_from(pid).map_err(|_| anyhow!("process id {pid} out of range"))?;
    let pid = Pid::from_raw(raw).ok_or_else(|| anyhow!("process id {raw} is not a process"))?;
    kill_process(pid, signal).with_context(|| format!("cannot signal process {raw}"))
}

/// Direct children of `parent`, from /proc.
pub fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // "pid (comm) state ppid …": comm may hold spaces and parentheses.
            let after_comm = &stat[stat.rfind(')')? + 1..];
            let ppid: u32 = after_comm.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}
