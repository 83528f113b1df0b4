//! Off-site copies in S3-compatible object storage.
//!
//! A backup is written locally first, then uploaded under its own name. The upload is never
//! visible half-done: small files go in one conditional PUT (`If-None-Match: *`, so nothing is
//! ever overwritten), larger ones as a multipart upload that appears only when completed. Every
//! upload is then read back and checked against the local file's SHA-256, which is also kept
//! with the object (`x-amz-meta-sha256`) so a download can be checked without the local file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, ClientOptions, ObjectStore, ObjectStoreExt, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, RetryConfig, WriteMultipart,
};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{BackupError, files};
use crate::config::RemoteSettings;

/// The user metadata key holding the file's SHA-256 (lowercase hex).
const SHA256_KEY: &str = "sha256";
/// Parts uploaded at once in a multipart upload: memory is about this many parts.
const PART_CONCURRENCY: usize = 2;
const READ_CHUNK: usize = 1 << 20;

/// A backup as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteBackup {
    pub name: String,
    pub size: u64,
    /// From its name, like a local backup's.
    pub taken_at: DateTime<Utc>,
}

/// A finished, checked upload.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub duration: Duration,
}

/// The remote backup location: one bucket and prefix in an S3-compatible store.
#[derive(Debug, Clone)]
pub struct Remote {
    store: Arc<AmazonS3>,
    prefix: String,
    url: String,
    part_size: usize,
}

impl Remote {
    /// A client for `settings`; nothing is contacted until the first request.
    pub fn new(settings: &RemoteSettings) -> Result<Self, BackupError> {
        // One process-wide TLS provider: the same ring the database connections use.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = settings.url.to_string();
        let client = ClientOptions::new()
            .with_timeout(settings.timeout)
            .with_connect_timeout(settings.timeout.min(Duration::from_secs(10)));
        // A few quick retries ride out a blip; anything longer fails the run, which the
        // schedule retries with the local copy kept.
        let retry = RetryConfig {
            max_retries: 2,
            retry_timeout: settings.timeout,
            ..RetryConfig::default()
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&settings.url.bucket)
            .with_region(&settings.region)
            .with_client_options(client)
            .with_retry(retry)
            .with_conditional_put(S3ConditionalPut::ETagMatch);
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(credentials) = &settings.credentials {
            builder = builder
                .with_access_key_id(credentials.access_key_id.expose_secret())
                .with_secret_access_key(credentials.secret_access_key.expose_secret());
        }
        let store = builder.build().map_err(|e| BackupError::Remote {
            remote: url.clone(),
            problem: format!("cannot set up the client: {}", describe(&e)),
        })?;
        Ok(Self {
            store: Arc::new(store),
            prefix: settings.url.prefix.clone(),
            url,
            part_size: usize::try_from(settings.part_size).unwrap_or(usize::MAX),
        })
    }

    /// `s3://bucket/prefix`, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn location(&self, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }

    fn failed(&self, action: &str, error: &object_store::Error) -> BackupError {
        BackupError::Remote {
            remote: self.url.clone(),
            problem: format!("{action}: {}", describe(error)),
        }
    }

    /// The backups directly under the prefix, newest first (other objects are ignored).
    pub async fn list(&self) -> Result<Vec<RemoteBackup>, BackupError> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        let depth = prefix.as_ref().map_or(0, |p| p.parts().count()) + 1;
        let mut listing = self.store.list(prefix.as_ref());
        let mut backups = Vec::new();
        while let Some(object) = listing.next().await {
            let object = object.map_err(|e| self.failed("listing failed", &e))?;
            if object.location.parts().count() != depth {
                continue;
            }
            let Some(name) = object.location.filename().map(str::to_owned) else {
                continue;
            };
            if let Some((taken_at, _)) = files::parse_name(&name) {
                backups.push(RemoteBackup {
                    name,
                    size: object.size,
                    taken_at,
                });
            }
        }
        backups.sort_by(|a, b| b.taken_at.cmp(&a.taken_at).then(b.name.cmp(&a.name)));
        Ok(backups)
    }

    /// Uploads the backup at `file` under its own name, then reads it back to check it.
    pub async fn upload(&self, file: &Path) -> Result<Uploaded, BackupError> {
        let started = Instant::now();
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| files::parse_name(n).is_some())
            .ok_or_else(|| BackupError::NotABackup(file.to_owned()))?
            .to_owned();
        let location = self.location(&name);
        let (sha256, size) = hash_file(file).await?;
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::Metadata(SHA256_KEY.into()),
            sha256.clone().into(),
        );
        let action = format!("upload of {name} failed");
        if size <= self.part_size as u64 {
            let bytes = tokio::fs::read(file)
                .await
                .map_err(|e| BackupError::io(file, e))?;
            let options = PutOptions {
                mode: PutMode::Create,
                attributes,
                ..PutOptions::default()
            };
            self.store
                .put_opts(&location, PutPayload::from(bytes), options)
                .await
                .map_err(|e| self.failed(&action, &e))?;
        } else {
            self.upload_in_parts(file, &location, attributes)
                .await
                .map_err(|e| match e {
                    PartsError::Store(e) => self.failed(&action, &e),
                    PartsError::Local(e) => e,
                })?;
        }
        let stored = self.hash_object(&location, &name).await?;
        if stored != (sha256.clone(), size) {
            return Err(BackupError::Remote {
                remote: self.url.clone(),
                problem: format!(
                    "{name} reads back as {} bytes with SHA-256 {}, not the {size} bytes with \
                     SHA-256 {sha256} uploaded",
                    stored.1, stored.0
                ),
            });
        }
        Ok(Uploaded {
            name,
            size,
            sha256,
            duration: started.elapsed(),
        })
    }

    /// A multipart upload: invisible until completed; refused if the name is taken, since
    /// completing a multipart upload is not conditional on every store.
    async fn upload_in_parts(
        &self,
        file: &Path,
        location: &ObjectPath,
        attributes: Attributes,
    ) -> Result<(), PartsError> {
        match self.store.head(location).await {
            Ok(_) => {
                return Err(PartsError::Store(object_store::Error::AlreadyExists {
                    path: location.to_string(),
                    source: "the name is taken".into(),
                }));
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(PartsError::Store(e)),
        }
        let options = PutMultipartOptions {
            attributes,
            ..PutMultipartOptions::default()
        };
        let upload = self
            .store
            .put_multipart_opts(location, options)
            .await
            .map_err(PartsError::Store)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut source = tokio::fs::File::open(file)
            .await
            .map_err(|e| PartsError::Local(BackupError::io(file, e)))?;
        let mut buffer = vec![0; READ_CHUNK];
        loop {
            if let Err(e) = writer.wait_for_capacity(PART_CONCURRENCY).await {
                // Best effort: an upload left incomplete is invisible, and the bucket's
                // lifecycle rule for incomplete uploads removes its parts.
                let _ = writer.abort().await;
                return Err(PartsError::Store(e));
            }
            let read = match source.read(&mut buffer).await {
                Ok(read) => read,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(PartsError::Local(BackupError::io(file, e)));
                }
            };
            if read == 0 {
                break;
            }
            writer.write(&buffer[..read]);
        }
        writer.finish().await.map_err(PartsError::Store)?;
        Ok(())
    }

    /// Streams an object through SHA-256: (hex digest, size).
    async fn hash_object(
        &self,
        location: &ObjectPath,
        name: &str,
    ) -> Result<(String, u64), BackupError> {
        let action = format!("reading back {name} failed");
        let got = self
            .store
            .get(location)
            .await
            .map_err(|e| self.failed(&action, &e))?;
        let mut stream = got.into_stream();
        let mut hasher = Sha256::new();
        let mut size = 0_u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.failed(&action, &e))?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok((hex::encode(hasher.finalize()), size))
    }

    /// Downloads `name` into `dir` under its own name (written aside, checked against the
    /// SHA-256 recorded at upload, then published), and returns the local path.
    pub async fn download(&self, name: &str, dir: &Path) -> Result<PathBuf, BackupError> {
        let (taken_at, encrypted) =
            files::parse_name(name).ok_or_else(|| BackupError::NotABackup(PathBuf::from(name)))?;
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| BackupError::io(dir, e))?;
        let action = format!("download of {name} failed");
        let got = self
            .store
            .get(&self.location(name))
            .await
            .map_err(|e| self.failed(&action, &e))?;
        let recorded = got
            .attributes
            .get(&Attribute::Metadata(SHA256_KEY.into()))
            .map(|value| value.as_ref().to_owned());
        let partial_path = files::partial_path(dir, taken_at, encrypted);
        let mut partial = super::PartialFile(Some(partial_path.clone()));
        let io = |e| BackupError::io(&partial_path, e);
        let mut out = tokio::fs::File::create(&partial_path).await.map_err(io)?;
        let mut hasher = Sha256::new();
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.failed(&action, &e))?;
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(io)?;
        }
        out.sync_all().await.map_err(io)?;
        drop(out);
        let sha256 = hex::encode(hasher.finalize());
        if let Some(recorded) = recorded
            && recorded != sha256
        {
            return Err(BackupError::Remote {
                remote: self.url.clone(),
                problem: format!(
                    "{name} downloads with SHA-256 {sha256}, not the {recorded} recorded at upload"
                ),
            });
        }
        let path = files::publish_as(&partial_path, dir, name)?;
        partial.0 = None;
        Ok(path)
    }

    /// Deletes one backup; the caller decides what a refusal means.
    pub async fn delete(&self, name: &str) -> Result<(), DeleteError> {
        match self.store.delete(&self.location(name)).await {
            Ok(()) => Ok(()),
            Err(e) if is_refusal(&e) => Err(DeleteError::Refused(describe(&e))),
            Err(e) => Err(DeleteError::Failed(
                self.failed(&format!("deleting {name} failed"), &e),
            )),
        }
    }

    /// Whether the backup job may write here, without leaving anything behind: a multipart
    /// upload is started (which needs the same permission as an upload) and aborted.
    pub async fn check_writable(&self) -> Result<(), BackupError> {
        let probe = self.location(&format!(".task-api-write-check-{}", uuid::Uuid::new_v4()));
        let mut upload = self
            .store
            .put_multipart_opts(&probe, PutMultipartOptions::default())
            .await
            .map_err(|e| self.failed("starting an upload failed", &e))?;
        upload
            .abort()
            .await
            .map_err(|e| self.failed("aborting the test upload failed", &e))
    }
}

enum PartsError {
    Store(object_store::Error),
    Local(BackupError),
}

/// Why a remote backup was not deleted.
#[derive(Debug)]
pub enum DeleteError {
    /// The credentials may not delete (a write-only backup job): reported, not fatal.
    Refused(String),
    Failed(BackupError),
}

/// A file's SHA-256 (hex) and size, read in a blocking thread.
pub(super) async fn hash_file(path: &Path) -> Result<(String, u64), BackupError> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&owned).map_err(|e| BackupError::io(&owned, e))?;
        let mut hasher = Sha256::new();
        let size = std::io::copy(&mut file, &mut hasher).map_err(|e| BackupError::io(&owned, e))?;
        Ok((hex::encode(hasher.finalize()), size))
    })
    .await?
}

/// One line saying what went wrong, in the operator's terms: the S3 error code when the store
/// gave one, else the innermost cause (connection refused, timed out, …).
pub(crate) fn describe(error: &object_store::Error) -> String {
    let whole = chain(error);
    let code = s3_code(&whole);
    let with_code = |text: &str| match &code {
        Some(code) => format!("{text} ({code})"),
        None => text.to_owned(),
    };
    match error {
        object_store::Error::NotFound { .. } if code.as_deref() == Some("NoSuchBucket") => {
            "the bucket does not exist (NoSuchBucket)".to_owned()
        }
        object_store::Error::NotFound { .. } => with_code("no such object"),
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            "an object of that name already exists: backups are never overwritten".to_owned()
        }
        object_store::Error::PermissionDenied { .. } => {
            with_code("access denied: wrong credentials, or they lack this permission")
        }
        object_store::Error::Unauthenticated { .. } => {
            with_code("the store refused the credentials")
        }
        _ if code.as_deref() == Some("NoSuchBucket") => {
            "the bucket does not exist (NoSuchBucket)".to_owned()
        }
        _ if code
            .as_deref()
            .is_some_and(|c| CREDENTIAL_CODES.contains(&c)) =>
        {
            with_code("the store refused the credentials")
        }
        _ if code.as_deref() == Some("AccessDenied") => {
            with_code("access denied: the credentials lack this permission")
        }
        _ if code.is_some() => with_code("the store refused the request"),
        _ if whole.contains("timed out") || whole.contains("deadline has elapsed") => {
            "the store did not answer in time (BACKUP_REMOTE_TIMEOUT)".to_owned()
        }
        _ => format!(
            "cannot reach the store: {}",
            causes(error)
                .last()
                .map(|c| c.to_string())
                .unwrap_or_default()
                .trim()
        ),
    }
}

/// S3 error codes that mean the keys themselves are wrong, expired or unknown.
const CREDENTIAL_CODES: [&str; 5] = [
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "InvalidToken",
    "InvalidSecurity",
];

/// The S3 error code quoted in a message: `<Code>…</Code>` from an error body, or the
/// `(code: …)` of a batch delete's per-key error.
fn s3_code(text: &str) -> Option<String> {
    let quoted = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        let length = text[start..].find(close)?;
        Some(&text[start..start + length])
    };
    let code = quoted("<Code>", "</Code>").or_else(|| quoted("(code: ", ")"))?;
    (!code.is_empty() && code.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| code.to_owned())
}

/// Whether the store refused an operation for lack of permission (not a failure to reach it).
fn is_refusal(error: &object_store::Error) -> bool {
    matches!(
        error,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || s3_code(&chain(error)).as_deref() == Some("AccessDenied")
}

/// An error and its causes, outermost first.
fn causes(error: &object_store::Error) -> impl Iterator<Item = &dyn std::error::Error> {
    std::iter::successors(Some(error as &dyn std::error::Error), |e| e.source())
}

/// An error and all its causes, as one string to search for codes and phrases.
fn chain(error: &object_store::Error) -> String {
    causes(error)
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_s3_error_code_is_taken_from_a_quoted_body() {
        let body = "Client error with status 403 Forbidden: <?xml version=\"1.0\"?>\
                    <Error><Code>SignatureDoesNotMatch</Code><Message>x</Message></Error>";
        assert_eq!(s3_code(body).as_deref(), Some("SignatureDoesNotMatch"));
        assert_eq!(s3_code("no body"), None);
        assert_eq!(s3_code("<Code></Code>"), None);
        assert_eq!(s3_code("<Code>a b</Code>"), None);
        assert_eq!(
            s3_code("DeleteObjects request failed for key k: Access Denied (code: AccessDenied)")
                .as_deref(),
            Some("AccessDenied")
        );
    }

    #[test]
    fn store_errors_read_as_one_line_for_operators() {
        let denied = object_store::Error::PermissionDenied {
            path: "x".into(),
            source: "<Code>AccessDenied</Code>".into(),
        };
        assert_eq!(
            describe(&denied),
            "access denied: wrong credentials, or they lack this permission (AccessDenied)"
        );
        let exists = object_store::Error::Precondition {
            path: "x".into(),
            source: "412".into(),
        };
        assert!(describe(&exists).contains("never overwritten"));
        let refused = object_store::Error::Generic {
            store: "S3",
            source: "tcp connect error: Connection refused (os error 111)".into(),
        };
        assert_eq!(
            describe(&refused),
            "cannot reach the store: tcp connect error: Connection refused (os error 111)"
        );
        assert!(!describe(&refused).contains('\n'));
    }
}
