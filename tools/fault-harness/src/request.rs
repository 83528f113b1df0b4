//! `request`: one HTTP request to the API and what its answer must be: the status, fields of a
//! JSON body, lines of a Prometheus text body. Optionally prints one field (a new task's id).

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;

use crate::args::ApiArgs;

/// As long as the `curl --max-time 10` it replaces.
const LIMIT: Duration = Duration::from_secs(10);

#[derive(Args)]
pub(crate) struct RequestArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The status the answer must have.
    status: u16,
    /// GET, POST, PUT, PATCH or DELETE.
    method: String,
    /// The path, with its query.
    path: String,
    /// A JSON body, sent as application/json.
    body: Option<String>,
    /// POINTER=VALUE or POINTER>=NUMBER (repeatable): a field of the JSON answer, by JSON
    /// pointer, e.g. /data/status=completed; strings compare without their quotes.
    #[arg(long = "field")]
    fields: Vec<FieldRule>,
    /// NAME=NUMBER (repeatable): an unlabelled sample of a Prometheus text answer.
    #[arg(long = "metric")]
    metrics: Vec<MetricRule>,
    /// Prints this field of the JSON answer (a JSON pointer, e.g. /data/id).
    #[arg(long)]
    print: Option<String>,
}

#[derive(Clone, Debug)]
enum FieldRule {
    Equals(String, String),
    AtLeast(String, f64),
}

impl FromStr for FieldRule {
    type Err = String;
    fn from_str(rule: &str) -> Result<Self, String> {
        if let Some((pointer, least)) = rule.split_once(">=") {
            let least = least
                .parse()
                .map_err(|_| format!("{least} is not a number"))?;
            return Ok(Self::AtLeast(pointer.to_owned(), least));
        }
        rule.split_once('=')
            .map(|(p, v)| Self::Equals(p.to_owned(), v.to_owned()))
            .ok_or_else(|| format!("{rule}: expected POINTER=VALUE or POINTER>=NUMBER"))
    }
}

#[derive(Clone, Debug)]
struct MetricRule {
    name: String,
    value: f64,
}

impl FromStr for MetricRule {
    type Err = String;
    fn from_str(rule: &str) -> Result<Self, String> {
        let (name, value) = rule
            .split_once('=')
            .ok_or_else(|| format!("{rule}: expected NAME=NUMBER"))?;
        let value = value
            .parse()
            .map_err(|_| format!("{value} is not a number"))?;
        Ok(Self {
            name: name.to_owned(),
            value,
        })
    }
}

pub(crate) async fn run(args: RequestArgs) -> anyhow::Result<()> {
    let what = format!("{} {}", args.method, args.path);
    let (status, body) = send(
        &args.api.api_url,
        &args.method,
        &args.path,
        args.body.as_deref(),
    )
    .await
    .with_context(|| format!("{what}: no answer"))?;
    let printed = judge(&args, status, &body).map_err(|e| anyhow!("{what} {e:#}"))?;
    if let Some(value) = printed {
        println!("{value}");
    }
    Ok(())
}

/// One request on a fresh connection: the status and the body.
pub(crate) async fn send(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let method = reqwest::Method::from_str(method).context("not an HTTP method")?;
    let client = reqwest::Client::builder()
        .timeout(LIMIT)
        .pool_max_idle_per_host(0)
        .build()
        .context("cannot build the HTTP client")?;
    let mut request = client.request(method, format!("{}{path}", base.trim_end_matches('/')));
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

/// The verdict on one answer; the value to print, if one was asked for.
fn judge(args: &RequestArgs, status: u16, body: &str) -> anyhow::Result<Option<String>> {
    let excerpt: String = body.chars().take(400).collect();
    if status != args.status {
        bail!("answered {status}, expected {}: {excerpt}", args.status);
    }
    if !args.fields.is_empty() || args.print.is_some() {
        let json: serde_json::Value =
            serde_json::from_str(body).with_context(|| format!("answered no JSON: {excerpt}"))?;
        for rule in &args.fields {
            check_field(&json, rule).with_context(|| format!("answered {excerpt}"))?;
        }
        if let Some(pointer) = &args.print {
            let value = json
                .pointer(pointer)
                .with_context(|| format!("no {pointer} in {excerpt}"))?;
            return Ok(Some(text(value)));
        }
    }
    for rule in &args.metrics {
        check_metric(body, rule)?;
    }
    Ok(None)
}

/// A JSON value as a shell would compare it: strings without quotes.
fn text(value: &serde_json::Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

fn check_field(json: &serde_json::Value, rule: &FieldRule) -> anyhow::Result<()> {
    match rule {
        FieldRule::Equals(pointer, expected) => {
            let seen = json.pointer(pointer).map(text);
            if seen.as_deref() != Some(expected.as_str()) {
                let seen = seen.unwrap_or_else(|| "missing".to_owned());
                bail!("{pointer} is {seen}, expected {expected}");
            }
        }
        FieldRule::AtLeast(pointer, least) => {
            let seen = json.pointer(pointer);
            if !seen
                .and_then(serde_json::Value::as_f64)
                .is_some_and(|n| n >= *least)
            {
                let seen = seen.map_or_else(|| "missing".to_owned(), text);
                bail!("{pointer} is {seen}, expected at least {least}");
            }
        }
    }
    Ok(())
}

/// `NAME VALUE` lines of the exposition format; labelled samples are not matched.
fn check_metric(body: &str, rule: &MetricRule) -> anyhow::Result<()> {
    let seen = body.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == rule.name).then(|| value.trim().parse::<f64>().ok())
    });
    match seen {
        Some(Some(value)) if value == rule.value => Ok(()),
        Some(value) => bail!("shows {} {value:?}, expected {}", rule.name, rule.value),
        None => bail!("shows no {} sample", rule.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: RequestArgs,
    }

    fn args(line: &[&str]) -> RequestArgs {
        let mut all = vec!["request", "--api-url", "http://127.0.0.1:1"];
        all.extend(line);
        Cli::parse_from(all).args
    }

    const TASK: &str = r#"{"data": {"id": 7, "title": "Container check", "status": "completed"},
        "pagination": {"total": 3}}"#;

    #[test]
    fn the_status_and_fields_pass_and_the_asked_field_is_printed() -> anyhow::Result<()> {
        let a = args(&[
            "200",
            "GET",
            "/tasks/7",
            "--field",
            "/data/title=Container check",
            "--field",
            "/pagination/total>=1",
            "--print",
            "/data/id",
        ]);
        assert_eq!(judge(&a, 200, TASK)?, Some("7".to_owned()));
        Ok(())
    }

    #[test]
    fn another_status_or_field_value_fails() {
        let a = args(&["200", "GET", "/tasks/7", "--field", "/data/status=pending"]);
        assert!(
            judge(&a, 404, TASK)
                .err()
                .is_some_and(|e| e.to_string().contains("answered 404"))
        );
        assert!(judge(&a, 200, TASK).is_err());
        let total = args(&["200", "GET", "/tasks", "--field", "/pagination/total>=4"]);
        assert!(judge(&total, 200, TASK).is_err());
        let missing = args(&["200", "GET", "/tasks", "--field", "/data/owner=me"]);
        assert!(judge(&missing, 200, TASK).is_err());
        assert!(judge(&missing, 200, "not json").is_err());
    }

    #[test]
    fn metrics_compare_as_numbers() -> anyhow::Result<()> {
        let body = "# TYPE container_cpu_limit_cores gauge\ncontainer_cpu_limit_cores 0.5\n\
                    container_memory_limit_bytes 536870912.0\nhttp{path=\"/\"} 3\n";
        let a = args(&[
            "200",
            "GET",
            "/metrics",
            "--metric",
            "container_memory_limit_bytes=536870912",
            "--metric",
            "container_cpu_limit_cores=0.5",
        ]);
        judge(&a, 200, body)?;
        let other = args(&[
            "200",
            "GET",
            "/metrics",
            "--metric",
            "container_cpu_limit_cores=1",
        ]);
        assert!(judge(&other, 200, body).is_err());
        let absent = args(&[
            "200",
            "GET",
            "/metrics",
            "--metric",
            "container_pids_limit=200",
        ]);
        assert!(judge(&absent, 200, body).is_err());
        Ok(())
    }
}
