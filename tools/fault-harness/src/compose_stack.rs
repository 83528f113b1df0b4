//! `compose-stack`: what compose.yaml promises beyond the API container's own hardening: the
//! database only on the internal network and publishing nothing, the password in no container's
//! configuration, the database volume there, the backup service running.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use crate::container;
use crate::inspect::{self, Inspect};

#[derive(Args)]
pub(crate) struct ComposeStackArgs {
    #[arg(long, default_value = "task-api")]
    api_container: String,
    #[arg(long, default_value = "task-db")]
    db_container: String,
    #[arg(long, default_value = "task-api-backup")]
    backup_container: String,
    /// The only network the database may be on; it must be internal.
    #[arg(long, default_value = "task-db-internal")]
    internal_network: String,
    #[arg(long, default_value = "task-db-data")]
    volume: String,
    /// The stack's password file (secrets/db_password.txt).
    #[arg(long)]
    secret_file: PathBuf,
}

pub(crate) fn run(args: ComposeStackArgs) -> anyhow::Result<()> {
    let secret = crate::secret::read(&args.secret_file)?;
    let (api, db, backup) = (
        &args.api_container,
        &args.db_container,
        &args.backup_container,
    );
    let net = &args.internal_network;
    let mut failures = Vec::new();
    let mut check = |verdict: anyhow::Result<String>| match verdict {
        Ok(seen) => println!("ok    {seen}"),
        Err(e) => {
            println!("FAIL  {e:#}");
            failures.push(format!("{e:#}"));
        }
    };

    let configs = container::podman(&["inspect", api, db, backup])?;
    check(if configs.contains(&secret) {
        Err(anyhow::anyhow!(
            "the secret's value shows in a container's configuration"
        ))
    } else {
        Ok(format!(
            "the password is in no configuration of {api}, {db}, {backup}"
        ))
    });
    check(only_on(&inspect::load(db)?, db, net));
    check(match container::podman(&["port", db])?.as_str() {
        "" => Ok(format!("{db} publishes no port")),
        ports => Err(anyhow::anyhow!("{db} publishes ports: {ports}")),
    });
    check(internal(
        &container::podman(&["network", "inspect", net])?,
        net,
    ));
    check(
        if container::podman_succeeds(&["volume", "exists", &args.volume])? {
            Ok(format!("volume {} exists", args.volume))
        } else {
            Err(anyhow::anyhow!("volume {} missing", args.volume))
        },
    );
    check(match inspect::load(backup)?.state.running {
        true => Ok(format!("{backup} running")),
        false => Err(anyhow::anyhow!(
            "the backup service {backup} is not running"
        )),
    });
    if !failures.is_empty() {
        bail!("compose: {}", failures.join("; "));
    }
    println!(
        "compose: {db} only on internal network {net}, no published port; password only as a file"
    );
    Ok(())
}

/// The container is attached to `network` and to nothing else.
fn only_on(inspect: &Inspect, name: &str, network: &str) -> anyhow::Result<String> {
    let on: Vec<&str> = inspect
        .network_settings
        .networks
        .keys()
        .map(String::as_str)
        .collect();
    if on != [network] {
        bail!(
            "{name} is on networks [{}], not only {network}",
            on.join(", ")
        );
    }
    Ok(format!("{name} only on {network}"))
}

/// `podman network inspect NETWORK`: marked internal (netavark writes `internal`, CNI
/// configurations `Internal`).
fn internal(json: &str, network: &str) -> anyhow::Result<String> {
    let all: Vec<serde_json::Value> =
        serde_json::from_str(json).context("podman network inspect gave no JSON")?;
    let flag = all
        .first()
        .and_then(|n| n.get("internal").or_else(|| n.get("Internal")))
        .and_then(serde_json::Value::as_bool);
    if flag != Some(true) {
        bail!("{network} is not an internal network");
    }
    Ok(format!("{network} is internal"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(networks: &str) -> Inspect {
        serde_json::from_str(&format!(
            r#"{{"NetworkSettings": {{"Networks": {networks}}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn the_database_on_the_internal_network_alone_passes() {
        assert!(
            only_on(
                &on(r#"{"task-db-internal": {}}"#),
                "task-db",
                "task-db-internal"
            )
            .is_ok()
        );
    }

    #[test]
    fn a_second_network_or_none_fails() {
        let both = on(r#"{"task-db-internal": {}, "task-network": {}}"#);
        let error = only_on(&both, "task-db", "task-db-internal").err();
        assert!(error.is_some_and(|e| e.to_string().contains("task-network")));
        assert!(only_on(&on("null"), "task-db", "task-db-internal").is_err());
    }

    #[test]
    fn only_a_network_marked_internal_is_internal() {
        assert!(internal(r#"[{"name": "n", "internal": true}]"#, "n").is_ok());
        assert!(internal(r#"[{"Name": "n", "Internal": true}]"#, "n").is_ok());
        assert!(internal(r#"[{"name": "n", "internal": false}]"#, "n").is_err());
        assert!(internal(r#"[{"name": "n"}]"#, "n").is_err());
        assert!(internal("[]", "n").is_err());
    }
}
