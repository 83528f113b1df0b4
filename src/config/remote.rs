//! Off-site copies of backups: which S3-compatible bucket, and how to reach it.
//!
//! The variables are the ones the S3 ecosystem already uses (`AWS_ENDPOINT_URL`, `AWS_REGION`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), so an operator's existing credentials work
//! unchanged; each secret can also come from a file (`*_FILE`), like `DB_PASSWORD_FILE`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use secrecy::SecretString;

use super::{ConfigError, read_secret_file};

/// The remote's settings as flags and environment variables.
#[derive(Debug, Clone, Default, Args)]
pub struct RemoteArgs {
    /// Object storage every backup is also copied to, as s3://BUCKET[/PREFIX]; off by default
    /// (an empty value, as a compose file passes an unset variable, is off too).
    #[arg(long, env = "BACKUP_REMOTE")]
    pub backup_remote: Option<String>,
    /// Endpoint of an S3-compatible store other than AWS (e.g. https://s3.example.net); plain
    /// http:// is accepted for a store on the same host or network.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
    /// Region of the bucket (empty means the default, as compose passes an unset variable).
    #[arg(long, env = "AWS_REGION", default_value = DEFAULT_REGION)]
    pub aws_region: String,
    /// Access key id (prefer AWS_ACCESS_KEY_ID_FILE); without keys, the instance's or pod's
    /// own AWS credentials are used.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub aws_access_key_id: Option<String>,
    /// File holding the access key id.
    #[arg(long, env = "AWS_ACCESS_KEY_ID_FILE")]
    pub aws_access_key_id_file: Option<PathBuf>,
    /// Secret access key (prefer AWS_SECRET_ACCESS_KEY_FILE).
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub aws_secret_access_key: Option<String>,
    /// File holding the secret access key, such as a mounted secret.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY_FILE")]
    pub aws_secret_access_key_file: Option<PathBuf>,
    /// Longest one request to the store may take before the upload or download fails.
    #[arg(long, env = "BACKUP_REMOTE_TIMEOUT", default_value = "60s",
          value_parser = parse_timeout)]
    pub backup_remote_timeout: Duration,
    /// Uploads larger than this go up in parts of this size (at least 5MiB, as S3 requires);
    /// an upload holds about two parts in memory.
    #[arg(long, env = "BACKUP_REMOTE_PART_SIZE", default_value = "16MiB",
          value_parser = parse_part_size)]
    pub backup_remote_part_size: ByteSize,
}

/// The region a bucket is in when none is named: AWS's own default, which S3-compatible stores
/// accept whatever their location.
const DEFAULT_REGION: &str = "us-east-1";

/// A size in bytes, written with a binary unit (`16MiB`) or as a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ByteSize(pub u64);

/// S3 refuses parts below 5 MiB (the last part excepted).
const MIN_PART_SIZE: u64 = 5 << 20;
const MAX_PART_SIZE: u64 = 1 << 30;

fn parse_part_size(value: &str) -> Result<ByteSize, String> {
    let (digits, unit) = value
        .find(|c: char| !c.is_ascii_digit())
        .map_or((value, ""), |at| value.split_at(at));
    let scale = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(format!("'{value}' is not a size such as 16MiB")),
    };
    let bytes = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("'{value}' is not a size such as 16MiB"))?;
    if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&bytes) {
        return Err("must be between 5MiB and 1GiB".into());
    }
    Ok(ByteSize(bytes))
}

/// `s3://bucket/prefix`: where in the store backups go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    pub bucket: String,
    /// Without leading or trailing slashes; empty for the bucket's root.
    pub prefix: String,
}

impl FromStr for RemoteUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let rest = text
            .strip_prefix("s3://")
            .ok_or_else(|| format!("'{text}' is not an s3://BUCKET[/PREFIX] address"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // The S3 bucket naming rules, so a typo fails here and not at the first upload.
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid_bucket {
            return Err(format!(
                "'{bucket}' is not a bucket name (3 to 63 lowercase letters, digits, '-' or '.')"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|part| part == "." || part == "..") {
            return Err(format!("the prefix '{prefix}' has a '.' or '..' part"));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// A checked remote configuration: where, which endpoint, whose credentials.
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    pub url: RemoteUrl,
    pub endpoint: Option<String>,
    pub region: String,
    /// Static keys; `None` lets the store's client find the platform's own credentials.
    pub credentials: Option<StaticCredentials>,
    pub timeout: Duration,
    pub part_size: u64,
}

#[derive(Debug, Clone)]
pub struct StaticCredentials {
    pub access_key_id: SecretString,
    pub secret_access_key: SecretString,
}

impl RemoteArgs {
    /// The remote, if `BACKUP_REMOTE` names one; its settings are checked (and secret files
    /// read) here, so a mistake stops the command before any work.
    pub fn settings(self) -> Result<Option<RemoteSettings>, ConfigError> {
        let Some(url) = non_empty(self.backup_remote) else {
            return Ok(None);
        };
        let url: RemoteUrl = url
            .parse()
            .map_err(|e| ConfigError::Remote(format!("BACKUP_REMOTE: {e}")))?;
        let endpoint = non_empty(self.aws_endpoint_url);
        if let Some(endpoint) = &endpoint
            && !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
        {
            return Err(ConfigError::Remote(format!(
                "AWS_ENDPOINT_URL: '{endpoint}' is not an http:// or https:// address"
            )));
        }
        let access_key_id = one_secret(
            "AWS_ACCESS_KEY_ID",
            non_empty(self.aws_access_key_id),
            self.aws_access_key_id_file.as_deref(),
        )?;
        let secret_access_key = one_secret(
            "AWS_SECRET_ACCESS_KEY",
            non_empty(self.aws_secret_access_key),
            self.aws_secret_access_key_file.as_deref(),
        )?;
        let credentials = match (access_key_id, secret_access_key) {
            (Some(access_key_id), Some(secret_access_key)) => Some(StaticCredentials {
                access_key_id,
                secret_access_key,
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Remote(
                    "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::Remote(
                    "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not".into(),
                ));
            }
        };
        Ok(Some(RemoteSettings {
            url,
            endpoint,
            region: non_empty(Some(self.aws_region)).unwrap_or_else(|| DEFAULT_REGION.to_owned()),
            credentials,
            timeout: self.backup_remote_timeout,
            part_size: self.backup_remote_part_size.0,
        }))
    }
}

/// An empty setting means unset: compose passes `${VAR:-}` as an empty string.
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// A secret given as a value or as a file, never both.
fn one_secret(
    name: &'static str,
    value: Option<String>,
    file: Option<&Path>,
) -> Result<Option<SecretString>, ConfigError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(ConfigError::Remote(format!(
            "{name} and {name}_FILE are both set: keep only one"
        ))),
        (Some(value), None) => Ok(Some(SecretString::from(value))),
        (None, Some(path)) => read_secret_file(path).map(Some).map_err(|reason| {
            ConfigError::Remote(format!("{name}_FILE: {}: {reason}", path.display()))
        }),
        (None, None) => Ok(None),
    }
}

fn parse_timeout(value: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(value).map_err(|e| e.to_string())?;
    if timeout < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(timeout)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn a_remote_url_names_a_bucket_and_an_optional_prefix() {
        let url: RemoteUrl = "s3://task-backups/prod/eu//".parse().unwrap();
        assert_eq!(url.bucket, "task-backups");
        assert_eq!(url.prefix, "prod/eu");
        assert_eq!(url.to_string(), "s3://task-backups/prod/eu");
        let root: RemoteUrl = "s3://task-backups".parse().unwrap();
        assert_eq!(root.prefix, "");
        assert_eq!(root.to_string(), "s3://task-backups");
        for bad in [
            "task-backups",
            "https://task-backups/x",
            "s3://",
            "s3://Task_Backups",
            "s3://ab",
            "s3://-bucket",
            "s3://bucket/../other",
        ] {
            assert!(bad.parse::<RemoteUrl>().is_err(), "{bad} was accepted");
        }
    }

    fn args() -> RemoteArgs {
        RemoteArgs {
            backup_remote: Some("s3://bucket/prefix".into()),
            aws_region: DEFAULT_REGION.into(),
            backup_remote_timeout: Duration::from_secs(60),
            backup_remote_part_size: ByteSize(16 << 20),
            ..RemoteArgs::default()
        }
    }

    #[test]
    fn no_remote_means_no_settings_whatever_else_is_set() {
        let args = RemoteArgs {
            backup_remote: None,
            aws_access_key_id: Some("id".into()),
            ..args()
        };
        assert!(args.settings().unwrap().is_none());
    }

    #[test]
    fn empty_settings_count_as_unset_and_a_bad_address_names_the_variable() {
        let empty = RemoteArgs {
            backup_remote: Some(String::new()),
            ..args()
        };
        assert!(empty.settings().unwrap().is_none());
        let blank_endpoint = RemoteArgs {
            aws_endpoint_url: Some(String::new()),
            aws_access_key_id: Some(String::new()),
            aws_region: String::new(),
            ..args()
        };
        let settings = blank_endpoint.settings().unwrap().unwrap();
        assert!(settings.endpoint.is_none() && settings.credentials.is_none());
        assert_eq!(settings.region, DEFAULT_REGION);
        let bad = RemoteArgs {
            backup_remote: Some("s3://Bad_Bucket".into()),
            ..args()
        };
        assert!(
            bad.settings()
                .unwrap_err()
                .to_string()
                .starts_with("BACKUP_REMOTE: ")
        );
    }

    #[test]
    fn keys_come_in_pairs_and_once_each() {
        let only_id = RemoteArgs {
            aws_access_key_id: Some("id".into()),
            ..args()
        };
        let error = only_id.settings().unwrap_err().to_string();
        assert!(error.contains("AWS_SECRET_ACCESS_KEY is set") || error.contains("is not"));

        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cr3t\n").unwrap();
        let twice = RemoteArgs {
            aws_access_key_id: Some("id".into()),
            aws_secret_access_key: Some("inline".into()),
            aws_secret_access_key_file: Some(secret.clone()),
            ..args()
        };
        assert!(
            twice
                .settings()
                .unwrap_err()
                .to_string()
                .contains("both set")
        );

        let from_file = RemoteArgs {
            aws_access_key_id: Some("id".into()),
            aws_secret_access_key_file: Some(secret),
            ..args()
        };
        let settings = from_file.settings().unwrap().unwrap();
        let credentials = settings.credentials.unwrap();
        assert_eq!(credentials.secret_access_key.expose_secret(), "s3cr3t");
        assert_eq!(credentials.access_key_id.expose_secret(), "id");
    }

    #[test]
    fn part_sizes_take_binary_units_within_what_s3_accepts() {
        assert_eq!(parse_part_size("16MiB"), Ok(ByteSize(16 << 20)));
        assert_eq!(parse_part_size("5242880"), Ok(ByteSize(5 << 20)));
        assert_eq!(parse_part_size("1GiB"), Ok(ByteSize(1 << 30)));
        for bad in [
            "4MiB",
            "2GiB",
            "16MB",
            "MiB",
            "",
            "-5MiB",
            "99999999999999GiB",
        ] {
            assert!(parse_part_size(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn an_endpoint_must_be_an_http_address() {
        let bad = RemoteArgs {
            aws_endpoint_url: Some("127.0.0.1:9000".into()),
            ..args()
        };
        assert!(
            bad.settings()
                .unwrap_err()
                .to_string()
                .contains("AWS_ENDPOINT_URL")
        );
    }
}
