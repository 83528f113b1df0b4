//! What the engine says about a running container (`podman inspect`), and the verdicts that
//! read it: limits, health, user, read-only root, /tmp tmpfs, capabilities, privileges, restart
//! policy, where the password comes from.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde::{Deserialize, Deserializer};

use crate::container;

/// The fields of `podman inspect CONTAINER` the checks read; the rest is ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Inspect {
    pub config: Config,
    pub host_config: HostConfig,
    #[serde(deserialize_with = "nullable")]
    pub effective_caps: Vec<String>,
    pub state: State,
    pub network_settings: NetworkSettings,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Config {
    pub user: String,
    #[serde(deserialize_with = "nullable")]
    pub env: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct HostConfig {
    pub memory: u64,
    pub nano_cpus: u64,
    pub readonly_rootfs: bool,
    #[serde(deserialize_with = "nullable")]
    pub cap_drop: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub security_opt: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub tmpfs: BTreeMap<String, String>,
    pub restart_policy: RestartPolicy,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct RestartPolicy {
    pub name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct State {
    pub pid: u32,
    pub running: bool,
    #[serde(deserialize_with = "nullable")]
    pub health: Health,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Health {
    pub status: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct NetworkSettings {
    #[serde(deserialize_with = "nullable")]
    pub networks: BTreeMap<String, serde_json::Value>,
}

/// podman writes `null` for an empty list or map.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `podman inspect CONTAINER`, parsed.
pub(crate) fn load(container: &str) -> anyhow::Result<Inspect> {
    parse(&container::podman(&[
        "inspect",
        "--type",
        "container",
        container,
    ])?)
    .with_context(|| format!("podman inspect {container}"))
}

fn parse(json: &str) -> anyhow::Result<Inspect> {
    let mut all: Vec<Inspect> =
        serde_json::from_str(json).context("the answer is not podman's inspect JSON")?;
    if all.len() != 1 {
        bail!("expected one container, got {}", all.len());
    }
    Ok(all.remove(0))
}

/// `--memory MIB` and `--cpus CPUS` as the engine recorded them.
pub(crate) fn limits(inspect: &Inspect, memory_mib: u64, cpus: f64) -> anyhow::Result<String> {
    let (memory, nano_cpus) = (inspect.host_config.memory, inspect.host_config.nano_cpus);
    let seen = format!("Memory {memory}, NanoCpus {nano_cpus}");
    if memory != memory_mib * 1024 * 1024 || nano_cpus != (cpus * 1e9).round() as u64 {
        bail!("limits are {seen}, not {memory_mib}m and {cpus} CPU");
    }
    Ok(seen)
}

pub(crate) fn healthy(inspect: &Inspect) -> anyhow::Result<String> {
    match inspect.state.health.status.as_str() {
        "healthy" => Ok("health status healthy".to_owned()),
        other => bail!("health status is '{other}', not healthy"),
    }
}

/// The user the engine was told (`--user`, or the image's USER).
pub(crate) fn user(inspect: &Inspect, expected: &str) -> anyhow::Result<String> {
    if inspect.config.user != expected {
        bail!("Config.User is '{}', not {expected}", inspect.config.user);
    }
    Ok(format!("Config.User {expected}"))
}

pub(crate) fn read_only_root(inspect: &Inspect) -> anyhow::Result<String> {
    if !inspect.host_config.readonly_rootfs {
        bail!("the root filesystem is writable (HostConfig.ReadonlyRootfs false)");
    }
    Ok("HostConfig.ReadonlyRootfs true".to_owned())
}

/// HostConfig.Tmpfs holds `/tmp` with each of `options` (the engine adds its own after them).
pub(crate) fn tmpfs(inspect: &Inspect, options: &[&str]) -> anyhow::Result<String> {
    let Some(set) = inspect.host_config.tmpfs.get("/tmp") else {
        bail!(
            "HostConfig.Tmpfs has no /tmp: {:?}",
            inspect.host_config.tmpfs
        );
    };
    let missing: Vec<&str> = options
        .iter()
        .copied()
        .filter(|o| !set.split(',').any(|s| s == *o))
        .collect();
    if !missing.is_empty() {
        bail!(
            "HostConfig.Tmpfs /tmp is '{set}': {} missing",
            missing.join(",")
        );
    }
    Ok(format!("HostConfig.Tmpfs /tmp {set}"))
}

/// `--cap-drop ALL`: something dropped, nothing effective left.
pub(crate) fn capabilities_dropped(inspect: &Inspect) -> anyhow::Result<String> {
    if inspect.host_config.cap_drop.is_empty() {
        bail!("capabilities not dropped (HostConfig.CapDrop is empty)");
    }
    if !inspect.effective_caps.is_empty() {
        bail!(
            "the container keeps capabilities: {}",
            inspect.effective_caps.join(",")
        );
    }
    Ok(format!(
        "{} capabilities dropped, none effective",
        inspect.host_config.cap_drop.len()
    ))
}

pub(crate) fn no_new_privileges(inspect: &Inspect) -> anyhow::Result<String> {
    let opts = &inspect.host_config.security_opt;
    if !opts
        .iter()
        .any(|o| o == "no-new-privileges" || o == "no-new-privileges:true")
    {
        bail!("no-new-privileges not set (HostConfig.SecurityOpt {opts:?})");
    }
    Ok("no-new-privileges".to_owned())
}

pub(crate) fn restart_policy(inspect: &Inspect, expected: &str) -> anyhow::Result<String> {
    let name = &inspect.host_config.restart_policy.name;
    if name != expected {
        bail!("restart policy is '{name}', not {expected}");
    }
    Ok(format!("restart {name}"))
}

/// The password reaches the service as a file (DB_PASSWORD_FILE), never in its environment.
pub(crate) fn password_not_in_env(inspect: &Inspect) -> anyhow::Result<String> {
    if inspect
        .config
        .env
        .iter()
        .any(|e| e.starts_with("DB_PASSWORD="))
    {
        bail!("the password is in the container's environment (DB_PASSWORD=)");
    }
    Ok("no DB_PASSWORD in the environment".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from `podman inspect` of `docker run --read-only --tmpfs /tmp:… --memory 512m
    /// --cpus 0.5 --cap-drop ALL --security-opt no-new-privileges --restart unless-stopped`.
    const HARDENED: &str = r#"[{
        "Config": {"User": "1001:1001", "Env": ["PORT=3000", "DB_PASSWORD_FILE=/run/secrets/db_password"]},
        "HostConfig": {
            "Memory": 536870912, "NanoCpus": 500000000, "ReadonlyRootfs": true,
            "CapDrop": ["CAP_CHOWN", "CAP_KILL"], "SecurityOpt": ["no-new-privileges"],
            "Tmpfs": {"/tmp": "rw,noexec,nosuid,size=100m,rprivate,nodev,tmpcopyup"},
            "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0}
        },
        "EffectiveCaps": null,
        "State": {"Pid": 15756, "Running": true, "Health": {"Status": "healthy"}},
        "NetworkSettings": {"Networks": {"task-db-internal": {}}}
    }]"#;

    /// The same image started with `--user 0` and nothing else.
    const PLAIN: &str = r#"[{
        "Config": {"User": "0", "Env": ["DB_PASSWORD=hunter2"]},
        "HostConfig": {"Memory": 0, "NanoCpus": 0, "ReadonlyRootfs": false, "CapDrop": null,
            "SecurityOpt": null, "Tmpfs": {}, "RestartPolicy": {"Name": ""}},
        "EffectiveCaps": ["CAP_CHOWN"],
        "State": {"Pid": 1, "Running": true, "Health": {"Status": "starting"}}
    }]"#;

    #[test]
    fn a_hardened_container_passes_every_verdict() -> anyhow::Result<()> {
        let i = parse(HARDENED)?;
        limits(&i, 512, 0.5)?;
        healthy(&i)?;
        user(&i, "1001:1001")?;
        read_only_root(&i)?;
        tmpfs(&i, &["rw", "noexec", "nosuid", "size=100m"])?;
        capabilities_dropped(&i)?;
        no_new_privileges(&i)?;
        restart_policy(&i, "unless-stopped")?;
        password_not_in_env(&i)?;
        assert_eq!(i.state.pid, 15756);
        assert!(i.network_settings.networks.contains_key("task-db-internal"));
        Ok(())
    }

    #[test]
    fn a_plain_container_fails_every_verdict() -> anyhow::Result<()> {
        let i = parse(PLAIN)?;
        assert!(limits(&i, 512, 0.5).is_err());
        assert!(healthy(&i).is_err());
        assert!(user(&i, "1001:1001").is_err());
        assert!(read_only_root(&i).is_err());
        assert!(tmpfs(&i, &["noexec"]).is_err());
        assert!(capabilities_dropped(&i).is_err());
        assert!(no_new_privileges(&i).is_err());
        assert!(restart_policy(&i, "unless-stopped").is_err());
        assert!(password_not_in_env(&i).is_err());
        Ok(())
    }

    #[test]
    fn a_near_miss_is_named() -> anyhow::Result<()> {
        let i = parse(HARDENED)?;
        let message = |r: anyhow::Result<String>| r.err().map(|e| e.to_string());
        assert!(message(limits(&i, 256, 0.5)).is_some_and(|m| m.contains("not 256m")));
        assert!(message(tmpfs(&i, &["size=50m"])).is_some_and(|m| m.contains("size=50m missing")));
        assert!(message(user(&i, "1002:1002")).is_some_and(|m| m.contains("'1001:1001'")));
        // An option that only starts like the expected one is not it.
        assert!(tmpfs(&i, &["size=100"]).is_err());
        Ok(())
    }

    #[test]
    fn anything_but_one_container_is_an_error() {
        assert!(parse("[]").is_err());
        assert!(parse("not json").is_err());
    }
}
