//! What the operating system says about this process and the container it runs in.
//!
//! Read on demand from `/proc` and `/sys/fs/cgroup`, shared by `/metrics` and `task-api doctor`.

pub mod cgroup;
pub mod process;
