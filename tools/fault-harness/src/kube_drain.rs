//! `kube-drain`: SIGTERM as Kubernetes sends it, to the pod's API container: /readyz turns 503
//! ("draining") at once while /livez still answers 200, and the process exits 0 after the
//! ConfigMap's drain delay and inside the Deployment's grace period.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use crate::args::ApiArgs;
use crate::{container, request};

/// A hard limit on the whole check (grace periods are well under it).
pub(crate) const TIME_CAP: Duration = Duration::from_secs(300);

#[derive(Args)]
pub(crate) struct KubeDrainArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The pod's API container, stopped with `podman stop -t <terminationGracePeriodSeconds>`.
    #[arg(long)]
    container: String,
    /// The Deployment manifest, for terminationGracePeriodSeconds.
    #[arg(long)]
    manifest: PathBuf,
    /// The ConfigMap, for SHUTDOWN_DRAIN_DELAY (whole seconds, e.g. "5s").
    #[arg(long)]
    configmap: PathBuf,
}

pub(crate) async fn run(args: KubeDrainArgs) -> anyhow::Result<()> {
    let grace: u64 = value_in(&args.manifest, "terminationGracePeriodSeconds")?
        .parse()
        .context("terminationGracePeriodSeconds is not a number of seconds")?;
    let delay = value_in(&args.configmap, "SHUTDOWN_DRAIN_DELAY")?;
    let drain = whole_seconds(&delay).with_context(|| {
        format!(
            "SHUTDOWN_DRAIN_DELAY in {} is not whole seconds: {delay}",
            args.configmap.display()
        )
    })?;

    let started = Instant::now();
    let stop = tokio::process::Command::new("podman")
        .args(["stop", "-t", &grace.to_string(), &args.container])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run podman stop")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let url = &args.api.api_url;
    let (ready, body) = request::send(url, "GET", "/readyz", None).await?;
    let reason = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("reason")?.as_str().map(str::to_owned));
    if ready != 503 || reason.as_deref() != Some("draining") {
        bail!("/readyz during the drain answered {ready}: {body}");
    }
    let (live, body) = request::send(url, "GET", "/livez", None).await?;
    if live != 200 {
        bail!("/livez during the drain answered {live}, expected 200: {body}");
    }
    let stopped = stop.wait_with_output().await.context("podman stop")?;
    let elapsed = started.elapsed();
    if !stopped.status.success() {
        bail!(
            "podman stop failed: {}",
            String::from_utf8_lossy(&stopped.stderr).trim()
        );
    }
    let exit = container::inspect(&args.container, "{{.State.ExitCode}}")?;
    judge(
        &exit,
        elapsed,
        Duration::from_secs(drain),
        Duration::from_secs(grace),
    )?;
    println!(
        "SIGTERM: readyz 503 draining, livez 200, exit 0 after {} ms (drain {drain} s, grace {grace} s)",
        elapsed.as_millis()
    );
    Ok(())
}

/// The value of the first `KEY: VALUE` line of a YAML file, quotes removed.
fn value_in(file: &Path, key: &str) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    yaml_value(&text, key).with_context(|| format!("no {key} in {}", file.display()))
}

fn yaml_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next()?.strip_suffix(':')? == key)
            .then(|| words.next().map(|v| v.replace('"', "")))?
    })
}

fn whole_seconds(value: &str) -> Option<u64> {
    let digits = value.strip_suffix('s')?;
    digits
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| digits.parse().ok())?
}

/// Exit 0, no sooner than the drain delay, before the grace period ends.
fn judge(exit: &str, elapsed: Duration, drain: Duration, grace: Duration) -> anyhow::Result<()> {
    let ms = elapsed.as_millis();
    if exit != "0" {
        bail!("the pod's container exited {exit} after SIGTERM, not 0");
    }
    if elapsed < drain {
        bail!(
            "stopped after {ms} ms, before the {} s drain delay",
            drain.as_secs()
        );
    }
    if elapsed >= grace {
        bail!(
            "stopped after {ms} ms: not inside terminationGracePeriodSeconds ({} s)",
            grace.as_secs()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn values_are_read_like_the_manifests_write_them() {
        let deployment = "spec:\n  template:\n    spec:\n      terminationGracePeriodSeconds: 30\n";
        assert_eq!(
            yaml_value(deployment, "terminationGracePeriodSeconds").as_deref(),
            Some("30")
        );
        let configmap = "data:\n  SHUTDOWN_DRAIN_DELAY: \"5s\"\n  SHUTDOWN_TIMEOUT: \"20s\"\n";
        assert_eq!(
            yaml_value(configmap, "SHUTDOWN_DRAIN_DELAY").as_deref(),
            Some("5s")
        );
        assert_eq!(yaml_value(configmap, "SHUTDOWN_DRAIN"), None);
    }

    #[test]
    fn only_whole_seconds_are_a_drain_delay() {
        assert_eq!(whole_seconds("5s"), Some(5));
        assert_eq!(whole_seconds("500ms"), None);
        assert_eq!(whole_seconds("1.5s"), None);
        assert_eq!(whole_seconds("5"), None);
    }

    #[test]
    fn an_exit_inside_the_window_passes() {
        assert!(judge("0", Duration::from_millis(5_300), S(5), S(30)).is_ok());
    }

    #[test]
    fn a_kill_an_early_exit_or_a_late_one_fails() {
        assert!(judge("137", Duration::from_millis(5_300), S(5), S(30)).is_err());
        assert!(judge("0", Duration::from_millis(4_900), S(5), S(30)).is_err());
        assert!(judge("0", S(30), S(5), S(30)).is_err());
    }
}
