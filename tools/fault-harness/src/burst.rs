//! `burst`: a burst of creates against the API container, its memory sampled by `podman stats`
//! meanwhile; every create must succeed and the peak stay under the container's limit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tokio::task::JoinSet;

use crate::api::Api;
use crate::args::ApiArgs;
use crate::container;

/// Time between two `podman stats` samples.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

#[derive(Args)]
pub(crate) struct BurstArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The API container, whose memory `podman stats` reports.
    #[arg(long, default_value = "task-api")]
    container: String,
    /// Creates in the burst.
    #[arg(long, default_value_t = 100)]
    creates: u32,
    /// Creates in flight at once.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=200))]
    concurrency: u32,
    /// How long one create may take.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// The container's memory limit in MiB: the sampled peak must stay below it.
    #[arg(long, default_value_t = 512)]
    memory_limit_mib: u64,
}

/// A hard limit on the whole check.
pub(crate) const TIME_CAP: Duration = Duration::from_secs(300);

pub(crate) async fn run(args: BurstArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.api.api_url)?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, name) = (stop.clone(), args.container.clone());
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                samples.extend(memory_bytes(&name));
                std::thread::sleep(SAMPLE_EVERY);
            }
            samples
        })
    };

    let statuses = send_burst(&api, &args).await;

    let stats = container::podman(&["stats", "--no-stream", &args.container])?;
    for line in stats.lines() {
        println!("  {line}");
    }
    stop.store(true, Ordering::Relaxed);
    let mut samples = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("the memory sampler panicked"))?;
    samples.extend(memory_bytes(&args.container));

    let limit = args.memory_limit_mib * 1024 * 1024;
    let peak = judge(args.creates, &statuses, &samples, limit)?;
    let pid: i32 = container::inspect(&args.container, "{{.State.Pid}}")?
        .parse()
        .context("podman inspect gave no process id")?;
    let peak_rss = procfs::process::Process::new(pid)
        .and_then(|p| p.status())
        .ok()
        .and_then(|s| s.vmhwm)
        .map_or_else(|| "unknown".to_owned(), |kb| format!("{kb} kB"));
    let after = stats.lines().last().unwrap_or_default();
    println!(
        "{n}/{n} created (201); podman stats peak {} of {} MiB ({} samples); process peak RSS {peak_rss}; after: {}",
        mib(peak),
        args.memory_limit_mib,
        samples.len(),
        after.split_whitespace().collect::<Vec<_>>().join(" "),
        n = args.creates,
    );
    Ok(())
}

/// Sends the creates, `concurrency` at a time, each on its own connection; the status of each,
/// or why it got none.
async fn send_burst(api: &Api, args: &BurstArgs) -> Vec<String> {
    let mut outcomes = Vec::new();
    let mut in_flight = JoinSet::new();
    for n in 1..=args.creates {
        if in_flight.len() >= args.concurrency as usize
            && let Some(done) = in_flight.join_next().await
        {
            outcomes.push(done.unwrap_or_else(|e| format!("client task failed: {e}")));
        }
        let (api, timeout) = (api.clone(), args.request_timeout);
        in_flight.spawn(async move {
            let body = serde_json::json!({
                "title": format!("Burst task {n}"),
                "description": "one of a hundred",
            });
            match api.post_task(&body, timeout).await {
                Ok(status) => status.to_string(),
                Err(e) if e.is_timeout() => "timeout".to_owned(),
                Err(e) => format!("error: {e}"),
            }
        });
    }
    while let Some(done) = in_flight.join_next().await {
        outcomes.push(done.unwrap_or_else(|e| format!("client task failed: {e}")));
    }
    outcomes
}

/// The verdict: every create answered 201, memory was sampled at least once and its peak stayed
/// under `limit`. Returns the peak.
fn judge(creates: u32, statuses: &[String], samples: &[u64], limit: u64) -> anyhow::Result<u64> {
    let created = statuses.iter().filter(|s| *s == "201").count();
    if created != creates as usize {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for status in statuses {
            *counts.entry(status).or_default() += 1;
        }
        let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        bail!("not every create succeeded: {}", counts.join(", "));
    }
    let peak = samples.iter().copied().max().unwrap_or(0);
    if peak == 0 {
        bail!("podman stats reported no memory figure");
    }
    if peak >= limit {
        bail!(
            "memory reached {}, the limit is {} MiB",
            mib(peak),
            limit / 1024 / 1024
        );
    }
    Ok(peak)
}

/// One `podman stats` memory figure of `container`, in bytes; None when podman gave none.
fn memory_bytes(container: &str) -> Option<u64> {
    container::podman(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.MemUsage}}",
        container,
    ])
    .ok()
    .and_then(|usage| parse_usage(&usage))
}

/// The used part of podman's "2.425MB / 536.9MB": decimal (SI) units, as podman prints them.
fn parse_usage(usage: &str) -> Option<u64> {
    let used = usage.split_whitespace().next()?.strip_suffix('B')?;
    let (number, scale) = match used.char_indices().last()? {
        (i, 'k' | 'K') => (&used[..i], 1e3),
        (i, 'M') => (&used[..i], 1e6),
        (i, 'G') => (&used[..i], 1e9),
        (i, 'T') => (&used[..i], 1e12),
        _ => (used, 1.0),
    };
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value >= 0.0).then(|| (value * scale).round() as u64)
}

fn mib(bytes: u64) -> String {
    format!("{:.1}MiB", bytes as f64 / 1024.0 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 512 * 1024 * 1024;

    fn all_created() -> Vec<String> {
        vec!["201".to_owned(); 100]
    }

    #[test]
    fn podman_memory_figures_are_read_in_decimal_units() {
        assert_eq!(parse_usage("2.425MB / 536.9MB"), Some(2_425_000));
        assert_eq!(parse_usage("123.8kB / 536.9MB"), Some(123_800));
        assert_eq!(parse_usage("1.2GB / 2GB"), Some(1_200_000_000));
        assert_eq!(parse_usage("512B / 536.9MB"), Some(512));
        assert_eq!(parse_usage("--"), None);
        assert_eq!(parse_usage(""), None);
    }

    #[test]
    fn a_burst_where_every_create_succeeds_under_the_limit_passes() {
        let peak = judge(100, &all_created(), &[1_400_000, 1_500_000], LIMIT);
        assert_eq!(peak.ok(), Some(1_500_000));
    }

    #[test]
    fn one_create_that_did_not_answer_201_fails_the_burst() {
        let mut statuses = all_created();
        statuses[7] = "503".to_owned();
        let error = judge(100, &statuses, &[1_000], LIMIT).err();
        assert!(error.is_some_and(|e| e.to_string().contains("1 503")));
        statuses[7] = "timeout".to_owned();
        assert!(judge(100, &statuses, &[1_000], LIMIT).is_err());
        assert!(judge(100, &all_created()[..99], &[1_000], LIMIT).is_err());
    }

    #[test]
    fn no_memory_sample_or_a_peak_at_the_limit_fails_the_burst() {
        assert!(judge(100, &all_created(), &[], LIMIT).is_err());
        assert!(judge(100, &all_created(), &[0], LIMIT).is_err());
        assert!(judge(100, &all_created(), &[1_000, LIMIT], LIMIT).is_err());
        assert!(judge(100, &all_created(), &[LIMIT - 1], LIMIT).is_ok());
    }
}
