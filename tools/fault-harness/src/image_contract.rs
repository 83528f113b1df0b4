//! `image-contract`: what the built image promises its users, from `podman image inspect` and
//! `podman history`: user 1001, port 3000, entrypoint and command, a health check running
//! `task-api healthcheck`, the OCI labels, and no secret in its environment or its history.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

use crate::container;

#[derive(Args)]
pub(crate) struct ImageContractArgs {
    /// The image.
    #[arg(long, default_value = "task-api:1.0")]
    image: String,
    /// A file holding a password given to this run's containers: no trace of it in the image.
    #[arg(long)]
    secret_file: PathBuf,
}

/// The fields of `podman image inspect` the contract reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Image {
    config: ImageConfig,
    healthcheck: Option<Healthcheck>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ImageConfig {
    user: String,
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    labels: Option<BTreeMap<String, String>>,
    env: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Healthcheck {
    test: Vec<String>,
}

const LABELS: [&str; 3] = ["version", "source", "licenses"];

pub(crate) fn run(args: ImageContractArgs) -> anyhow::Result<()> {
    let secret = crate::secret::read(&args.secret_file)?;
    let inspected = container::podman(&["image", "inspect", &args.image])?;
    let mut images: Vec<Image> =
        serde_json::from_str(&inspected).context("podman image inspect gave no image JSON")?;
    if images.len() != 1 {
        bail!(
            "podman image inspect {} gave {} images",
            args.image,
            images.len()
        );
    }
    let image = images.remove(0);
    let created_by = container::podman(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        &args.image,
    ])?;
    let history = container::podman(&["history", "--no-trunc", &args.image])?;

    let mut failures = judge(&image, &created_by);
    if history.contains(&secret) || inspected.contains(&secret) {
        failures
            .push("the image's history or configuration holds the database password".to_owned());
    }
    if !failures.is_empty() {
        bail!(
            "{} breaks its contract: {}",
            args.image,
            failures.join("; ")
        );
    }
    let labels = image.config.labels.unwrap_or_default();
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("labels: {}", labels.join(" "));
    println!(
        "user 1001:1001, 3000/tcp, /task-api serve, health check, labels; history: {} layers, none naming a secret",
        created_by.lines().count()
    );
    Ok(())
}

/// Every way the image breaks the contract, each named.
fn judge(image: &Image, created_by: &str) -> Vec<String> {
    let config = &image.config;
    let mut failures = Vec::new();
    if config.user != "1001:1001" {
        failures.push(format!("USER is '{}', not 1001:1001", config.user));
    }
    if !config
        .exposed_ports
        .as_ref()
        .is_some_and(|p| p.contains_key("3000/tcp"))
    {
        failures.push("3000/tcp is not exposed".to_owned());
    }
    if config.entrypoint.as_deref() != Some(&["/task-api".to_owned()]) {
        failures.push(format!(
            "ENTRYPOINT is {:?}, not [\"/task-api\"]",
            config.entrypoint.as_deref().unwrap_or_default()
        ));
    }
    if config.cmd.as_deref() != Some(&["serve".to_owned()]) {
        failures.push(format!(
            "CMD is {:?}, not [\"serve\"]",
            config.cmd.as_deref().unwrap_or_default()
        ));
    }
    if !image
        .healthcheck
        .as_ref()
        .is_some_and(|h| h.test.iter().any(|t| t == "healthcheck"))
    {
        failures.push(
            "no HEALTHCHECK running task-api healthcheck (was it built with --format docker?)"
                .to_owned(),
        );
    }
    for label in LABELS {
        let key = format!("org.opencontainers.image.{label}");
        let value = config.labels.as_ref().and_then(|l| l.get(&key));
        if value.is_none_or(String::is_empty) {
            failures.push(format!("OCI label {key} missing"));
        }
    }
    let secretish = |text: &str, words: &[&str]| {
        let upper = text.to_ascii_uppercase();
        words.iter().any(|w| upper.contains(w))
    };
    for entry in config.env.iter().flatten() {
        if secretish(entry, &["PASSWORD", "SECRET", "TOKEN"]) {
            failures.push(format!(
                "the image's default environment names a secret: {entry}"
            ));
        }
    }
    for line in created_by.lines() {
        if secretish(line, &["PASSWORD=", "SECRET=", "TOKEN="]) {
            failures.push(format!("a layer's history carries a secret: {line}"));
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from `podman image inspect task-api:1.0`.
    const BUILT: &str = r#"{
        "Config": {
            "User": "1001:1001",
            "ExposedPorts": {"3000/tcp": {}},
            "Entrypoint": ["/task-api"],
            "Cmd": ["serve"],
            "Labels": {"org.opencontainers.image.version": "1.0.0",
                       "org.opencontainers.image.source": "https://github.com/task-api/task-api",
                       "org.opencontainers.image.licenses": "MIT"},
            "Env": ["PATH=/usr/local/bin:/usr/bin", "PORT=3000", "DATA_DIR=/data"]
        },
        "Healthcheck": {"Test": ["CMD", "/task-api", "healthcheck"], "Retries": 3}
    }"#;
    const HISTORY: &str = "/bin/sh -c #(nop) CMD [\"serve\"]\n/bin/sh -c #(nop) USER 1001:1001\n";

    fn image(json: &str) -> Image {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_built_image_keeps_its_contract() {
        assert_eq!(judge(&image(BUILT), HISTORY), Vec::<String>::new());
    }

    #[test]
    fn an_image_built_as_oci_or_as_root_breaks_it() {
        let oci = BUILT.replace(r#""Healthcheck""#, r#""Unused""#);
        assert!(judge(&image(&oci), HISTORY)[0].contains("HEALTHCHECK"));
        let root = BUILT.replace(r#""User": "1001:1001""#, r#""User": """#);
        assert!(judge(&image(&root), HISTORY)[0].contains("USER"));
        let shell = BUILT.replace(r#"["serve"]"#, r#"["sh", "-c", "serve"]"#);
        assert!(judge(&image(&shell), HISTORY)[0].contains("CMD"));
    }

    #[test]
    fn a_secret_in_the_environment_or_history_breaks_it_and_so_does_a_missing_label() {
        let env = BUILT.replace("\"PORT=3000\"", "\"API_TOKEN=abc\"");
        assert!(judge(&image(&env), HISTORY)[0].contains("API_TOKEN"));
        let history = format!("{HISTORY}/bin/sh -c #(nop) ENV DB_PASSWORD=hunter2\n");
        assert_eq!(judge(&image(BUILT), &history).len(), 1);
        let unlicensed = BUILT.replace("\"MIT\"", "\"\"");
        assert!(judge(&image(&unlicensed), HISTORY)[0].contains("licenses"));
    }
}
