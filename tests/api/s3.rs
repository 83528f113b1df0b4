//! A real S3-compatible server on loopback for the off-site backup tests: `s3s-fs`, a
//! file-backed implementation (signatures checked, multipart, data kept across restarts).
//!
//! Found as `TASK_API_TEST_S3S_FS`, on the PATH, or in `~/.cargo/bin`; otherwise installed
//! once with `cargo install` into `target/test-tools` (about five minutes), saying so.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use task_api::config::{RemoteSettings, StaticCredentials};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

use crate::pg::free_port;

const VERSION: &str = "0.14.1";
pub(crate) const ACCESS_KEY: &str = "task-api-test";
pub(crate) const SECRET_KEY: &str = "task-api-test-secret";

static INSTALLING: Mutex<()> = Mutex::new(());

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TASK_API_TEST_S3S_FS") {
        return PathBuf::from(path);
    }
    let _one_at_a_time = INSTALLING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let on_path = std::process::Command::new("sh")
        .args(["-c", "command -v s3s-fs"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let home_bin = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/s3s-fs"));
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools");
    let installed = tools.join("bin/s3s-fs");
    if let Some(found) = on_path
        .into_iter()
        .chain(home_bin)
        .chain([installed.clone()])
        .find(|p| p.is_file())
    {
        return found;
    }
    eprintln!(
        "installing the S3 test server: cargo install s3s-fs@{VERSION} --locked --features binary"
    );
    let status = std::process::Command::new(env!("CARGO"))
        .args(["install", "--locked", "--features", "binary", "--root"])
        .arg(&tools)
        .arg(format!("s3s-fs@{VERSION}"))
        .status()
        .expect("run cargo install");
    assert!(
        status.success() && installed.is_file(),
        "the off-site backup tests need s3s-fs: cargo install s3s-fs@{VERSION} --locked --features binary"
    );
    installed
}

/// One s3s-fs process serving `root` (one directory per bucket).
pub(crate) struct S3Server {
    child: Option<Child>,
    pub port: u16,
    pub root: tempfile::TempDir,
}

impl S3Server {
    /// A server with the given buckets, answering.
    pub(crate) async fn start(buckets: &[&str]) -> Self {
        let root = tempfile::tempdir().unwrap();
        for bucket in buckets {
            std::fs::create_dir_all(root.path().join(bucket)).unwrap();
        }
        let mut server = Self {
            child: None,
            port: free_port(),
            root,
        };
        server.restart().await;
        server
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a backup job needs to use `bucket/prefix` on this server.
    pub(crate) fn env(&self, remote: &str) -> Vec<(String, String)> {
        vec![
            ("BACKUP_REMOTE".into(), remote.into()),
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
        ]
    }

    /// In-process settings for `remote` (s3://bucket/prefix) on this server, with the
    /// defaults a command line gets.
    pub(crate) fn settings(&self, remote: &str) -> RemoteSettings {
        RemoteSettings {
            url: remote.parse().unwrap(),
            endpoint: Some(self.endpoint()),
            region: "us-east-1".into(),
            credentials: Some(StaticCredentials {
                access_key_id: ACCESS_KEY.into(),
                secret_access_key: SECRET_KEY.into(),
            }),
            timeout: Duration::from_secs(60),
            part_size: 16 << 20,
        }
    }

    /// Kills the server at once, as a crash would.
    pub(crate) async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Starts (again) on the same port and data.
    pub(crate) async fn restart(&mut self) {
        self.kill().await;
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start s3s-fs");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "s3s-fs did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Files s3s-fs keeps for multipart uploads in progress.
    pub(crate) fn parts_in_progress(&self) -> usize {
        std::fs::read_dir(self.root.path())
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(".upload_id-"))
                    .count()
            })
            .unwrap_or(0)
    }
}

/// A loopback TCP relay to `port` that passes at most `bytes_per_second` upstream, so an
/// upload takes long enough to be interrupted at a chosen moment.
pub(crate) async fn slow_relay(port: u16, bytes_per_second: usize) -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let relay_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = async {
                    let chunk = (bytes_per_second / 20).max(1);
                    let mut buffer = vec![0; chunk];
                    loop {
                        use tokio::io::AsyncReadExt;
                        let read = match client_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(read) => read,
                        };
                        if server_write.write_all(&buffer[..read]).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let _ = server_write.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    let _ = client_write.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    relay_port
}

/// A TLS front for the plain server on `port`, with a certificate for `localhost` made for the
/// occasion in `dir`: its port, and the PEM file of the authority that signed it (to trust via
/// SSL_CERT_FILE).
pub(crate) async fn tls_front(port: u16, dir: &Path) -> (u16, PathBuf) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    // An authority, and a certificate for localhost that it signs: a self-signed certificate
    // is an authority's, which a verifier rightly refuses for a server.
    let (authority, authority_key) = (dir.join("store-ca.pem"), dir.join("store-ca-key.pem"));
    let (cert, key) = (dir.join("store-cert.pem"), dir.join("store-key.pem"));
    let (request, extensions) = (dir.join("store.csr"), dir.join("store.ext"));
    std::fs::write(
        &extensions,
        "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n",
    )
    .unwrap();
    let openssl = |args: &[&std::ffi::OsStr]| {
        let made = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("the TLS test needs the openssl command: apt-get install openssl");
        assert!(made.status.success(), "openssl {args:?} failed: {made:?}");
    };
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    fn os<'a>(parts: &[&'a str]) -> Vec<&'a std::ffi::OsStr> {
        parts.iter().map(|p| std::ffi::OsStr::new(*p)).collect()
    }
    let mut args = os(&[
        "req",
        "-x509",
        "-days",
        "1",
        "-subj",
        "/CN=task-api test authority",
    ]);
    args.extend(os(&new_key));
    args.extend([
        "-keyout".as_ref(),
        authority_key.as_os_str(),
        "-out".as_ref(),
        authority.as_os_str(),
    ]);
    openssl(&args);
    let mut args = os(&["req", "-subj", "/CN=localhost"]);
    args.extend(os(&new_key));
    args.extend([
        "-keyout".as_ref(),
        key.as_os_str(),
        "-out".as_ref(),
        request.as_os_str(),
    ]);
    openssl(&args);
    let mut args = os(&["x509", "-req", "-days", "1", "-CAcreateserial"]);
    args.extend([
        "-in".as_ref(),
        request.as_os_str(),
        "-CA".as_ref(),
        authority.as_os_str(),
        "-CAkey".as_ref(),
        authority_key.as_os_str(),
        "-extfile".as_ref(),
        extensions.as_os_str(),
        "-out".as_ref(),
        cert.as_os_str(),
    ]);
    openssl(&args);
    let chain = CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let private = PrivateKeyDer::from_pem_file(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, private)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let front = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let (Ok(mut client), Ok(mut server)) = (
                    acceptor.accept(client).await,
                    TcpStream::connect(("127.0.0.1", port)).await,
                ) else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (front, authority)
}
