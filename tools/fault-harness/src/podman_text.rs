//! Verdicts on podman's text output: `podman diff` (what changed in the container's layer) and
//! `podman top` (who the process runs as, by the engine's account).

use anyhow::bail;

/// Paths the engine itself adds or changes in every container's layer: the mount points of
/// hosts, hostname, resolv.conf and .containerenv.
const ENGINE_PATHS: [&str; 6] = [
    "/etc",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/run",
    "/run/.containerenv",
];

/// Nothing but the engine's own paths was added (A) or changed (C); nothing deleted (D).
pub(crate) fn layer_unchanged(diff: &str) -> anyhow::Result<String> {
    let unexpected: Vec<&str> = diff
        .lines()
        .filter(|line| !line.trim().is_empty())
        .filter(|line| {
            !matches!(line.split_once(' '), Some(("A" | "C", path)) if ENGINE_PATHS.contains(&path))
        })
        .collect();
    if !unexpected.is_empty() {
        bail!(
            "files changed in the container layer: {}",
            unexpected.join(", ")
        );
    }
    let seen: Vec<&str> = diff.lines().filter(|l| !l.trim().is_empty()).collect();
    Ok(format!(
        "podman diff: nothing but the engine's own mount points ({})",
        seen.join(", ")
    ))
}

/// The first process `podman top` lists runs as `user` (by name) or as `uid`.
pub(crate) fn top_user(top: &str, user: &str, uid: &str) -> anyhow::Result<String> {
    let first = top
        .lines()
        .nth(1)
        .and_then(|row| row.split_whitespace().next());
    match first {
        Some(seen) if seen == user || seen == uid => Ok(format!("podman top: user {seen}")),
        Some(seen) => bail!("podman top shows user {seen}, not {user} ({uid})"),
        None => bail!("podman top listed no process: {top}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engines_own_mount_points_are_not_changes() {
        assert!(layer_unchanged("C /etc\nA /etc/hosts\nA /run/.containerenv\n").is_ok());
        assert!(layer_unchanged("").is_ok());
    }

    #[test]
    fn a_written_or_deleted_file_is_a_change() {
        let written = layer_unchanged("C /etc\nA /data/tasks.db\n").err();
        assert!(written.is_some_and(|e| e.to_string().contains("A /data/tasks.db")));
        assert!(layer_unchanged("D /etc/hosts").is_err());
        assert!(layer_unchanged("A /etc/passwd").is_err());
        assert!(layer_unchanged("C /run/secret").is_err());
    }

    #[test]
    fn top_names_the_user_of_the_first_process() {
        let top = "USER        PID   PPID  %CPU  ELAPSED  TTY  TIME  COMMAND\n\
                   task-api    1     0     0.000 3.6s     ?    0s    /task-api serve\n";
        assert!(top_user(top, "task-api", "1001").is_ok());
        assert!(
            top_user(
                &top.replace("task-api    1", "1001    1"),
                "task-api",
                "1001"
            )
            .is_ok()
        );
        assert!(
            top_user(
                &top.replace("task-api    1", "root    1"),
                "task-api",
                "1001"
            )
            .is_err()
        );
        assert!(top_user("USER PID\n", "task-api", "1001").is_err());
    }
}
