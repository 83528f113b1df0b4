//! An S3 emulator that enforces IAM policies (`moto_server` with
//! `INITIAL_NO_AUTH_ACTION_COUNT`): the only loopback store here that can give a backup job
//! keys that may write but not delete. Found as `TASK_API_TEST_MOTO_SERVER`, on the PATH, or in
//! `/var/cache/task-api/moto-venv`; otherwise installed there from PyPI, saying so.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::pg::free_port;

const VENV: &str = "/var/cache/task-api/moto-venv";
const REQUIREMENT: &str = "moto[server]==5.2.5";

static INSTALLING: Mutex<()> = Mutex::new(());

/// `moto_server` and a Python that has boto3 beside it.
fn tools() -> (PathBuf, PathBuf) {
    if let Some(server) = std::env::var_os("TASK_API_TEST_MOTO_SERVER") {
        let server = PathBuf::from(server);
        let python = server.with_file_name("python3");
        return (server, python);
    }
    let _one_at_a_time = INSTALLING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let venv = PathBuf::from(VENV);
    let (server, python) = (venv.join("bin/moto_server"), venv.join("bin/python3"));
    if server.is_file() && python.is_file() {
        return (server, python);
    }
    crate::tools::require(&[("python3", "python3")]);
    crate::tools::require_package("python3-venv");
    eprintln!("installing the S3 emulator for the credential tests: {REQUIREMENT} into {VENV}");
    let created = std::process::Command::new("python3")
        .args(["-m", "venv", VENV])
        .status()
        .is_ok_and(|s| s.success());
    let installed = created
        && std::process::Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", REQUIREMENT])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        installed && server.is_file(),
        "the write-only credential test needs moto: python3 -m venv {VENV} && {VENV}/bin/pip install '{REQUIREMENT}'"
    );
    (server, python)
}

/// Keys the emulator issued, by role.
pub(crate) struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// A moto server with bucket `task-backups` and two users: `backup-job`, which may put, get
/// and list but not delete, and `backup-admin`, which may do anything to the bucket. After
/// that setup every request must be signed by one of them and is checked against its policy.
pub(crate) struct Moto {
    _child: Child,
    pub port: u16,
    pub writer: Keys,
    pub admin: Keys,
}

/// The setup's requests (bucket, two users with a policy and a key each) before IAM applies.
const SETUP_REQUESTS: &str = "7";

const SETUP: &str = r#"
import json, sys, boto3
endpoint = sys.argv[1]
options = dict(endpoint_url=endpoint, region_name="us-east-1",
               aws_access_key_id="setup", aws_secret_access_key="setup")
s3, iam = boto3.client("s3", **options), boto3.client("iam", **options)
s3.create_bucket(Bucket="task-backups")
def user(name, actions):
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="backups", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions,
                       "Resource": ["arn:aws:s3:::task-backups", "arn:aws:s3:::task-backups/*"]}]}))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return [key["AccessKeyId"], key["SecretAccessKey"]]
writer = user("backup-job", ["s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:AbortMultipartUpload"])
admin = user("backup-admin", ["s3:*"])
print(json.dumps({"writer": writer, "admin": admin}))
"#;

impl Moto {
    pub(crate) async fn start() -> Self {
        let (server, python) = tools();
        let port = free_port();
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", SETUP_REQUESTS)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start moto_server");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let setup = Command::new(python)
            .args(["-c", SETUP, &format!("http://127.0.0.1:{port}")])
            .output()
            .await
            .expect("run the moto setup");
        assert!(
            setup.status.success(),
            "moto setup failed: {}",
            String::from_utf8_lossy(&setup.stderr)
        );
        let keys: serde_json::Value = serde_json::from_slice(&setup.stdout).unwrap();
        let pair = |role: &str| Keys {
            access_key_id: keys[role][0].as_str().unwrap().to_owned(),
            secret_access_key: keys[role][1].as_str().unwrap().to_owned(),
        };
        Self {
            _child: child,
            port,
            writer: pair("writer"),
            admin: pair("admin"),
        }
    }

    /// The environment of a backup job using `keys` on bucket `task-backups`.
    pub(crate) fn env(&self, keys: &Keys) -> Vec<(String, String)> {
        vec![
            ("BACKUP_REMOTE".into(), "s3://task-backups".into()),
            (
                "AWS_ENDPOINT_URL".into(),
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ACCESS_KEY_ID".into(), keys.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                keys.secret_access_key.clone(),
            ),
        ]
    }
}
