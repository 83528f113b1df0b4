//! The backup file format (documented for humans in `docs/backup-format.md`).
//!
//! A zstd-compressed stream (frame checksum on) of JSON lines: one header object, one object
//! per task in id order, one trailer object holding the row count, the highest id ever handed
//! out, and the SHA-256 of every uncompressed byte before the trailer line. With recipients,
//! the whole zstd stream is encrypted with age on its way to the file, and decrypted on its
//! way back.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest;
pub(super) use sha2::Sha256;

use super::BackupError;
use crate::domain::{Task, TaskDescription, TaskId, TaskStatus, TaskTitle};
use crate::encryption::{self, Identities, Recipients};

pub(super) const FORMAT_NAME: &str = "task-api-backup";
/// Bumped on any change an older reader could not read correctly.
pub const FORMAT_VERSION: u32 = 1;
/// Fast and still a good ratio on text; higher levels cost more time than they save space.
const ZSTD_LEVEL: i32 = 3;

/// The first line of a backup: what it is and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub format_version: u32,
    pub app_version: String,
    pub schema_version: i64,
    pub source_backend: String,
    pub created_at: String,
}

impl Header {
    pub fn new(schema_version: i64, source_backend: &str, created_at: DateTime<Utc>) -> Self {
        Self {
            format: FORMAT_NAME.to_owned(),
            format_version: FORMAT_VERSION,
            app_version: env!("CARGO_PKG_VERSION").to_owned(),
            schema_version,
            source_backend: source_backend.to_owned(),
            created_at: timestamp(created_at),
        }
    }
}

/// One task, exactly as the API shows it (written from a [`Task`]).
#[derive(Debug, Serialize)]
struct Record<'a> {
    id: i64,
    title: &'a str,
    description: &'a str,
    status: &'a str,
    created_at: String,
    updated_at: String,
}

/// A task line as read: strings borrowed from the line unless they hold escapes, so checking
/// a file allocates next to nothing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordRef<'a> {
    id: i64,
    #[serde(borrow)]
    title: Cow<'a, str>,
    #[serde(borrow)]
    description: Cow<'a, str>,
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(borrow)]
    created_at: Cow<'a, str>,
    #[serde(borrow)]
    updated_at: Cow<'a, str>,
}

/// The last line: what a reader checks the rest against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailer {
    pub rows: u64,
    /// The highest id the source had ever handed out: restore moves the sequence past it, so
    /// an id deleted before the backup is not given out again either.
    pub id_high_water: i64,
    pub sha256: String,
}

#[derive(Serialize, Deserialize)]
struct TrailerLine {
    trailer: Trailer,
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Writes a backup to `path` (a temporary name: the caller renames it once complete).
pub(super) struct Writer {
    path: PathBuf,
    encoder: zstd::Encoder<'static, Sink>,
    hasher: Sha256,
    rows: u64,
    line: Vec<u8>,
}

impl Writer {
    /// Starts the file with `header`; encrypted to `encrypt_to` when given.
    pub(super) fn create(
        path: &Path,
        header: &Header,
        encrypt_to: Option<&Recipients>,
    ) -> Result<Self, BackupError> {
        let io = |source| BackupError::io(path, source);
        let file = BufWriter::with_capacity(1 << 16, File::create(path).map_err(io)?);
        let sink = match encrypt_to {
            Some(recipients) => Sink::Encrypted(recipients.encrypt(file).map_err(io)?),
            None => Sink::Plain(file),
        };
        let mut encoder = zstd::Encoder::new(sink, ZSTD_LEVEL).map_err(io)?;
        encoder.include_checksum(true).map_err(io)?;
        let mut writer = Self {
            path: path.to_owned(),
            encoder,
            hasher: Sha256::new(),
            rows: 0,
            line: Vec::with_capacity(1024),
        };
        writer.write_line(header)?;
        Ok(writer)
    }

    fn write_line(&mut self, value: &impl Serialize) -> Result<(), BackupError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, value)
            .map_err(|e| BackupError::io(&self.path, std::io::Error::other(e)))?;
        self.line.push(b'\n');
        self.hasher.update(&self.line);
        self.encoder
            .write_all(&self.line)
            .map_err(|e| BackupError::io(&self.path, e))
    }

    pub(super) fn write_task(&mut self, task: &Task) -> Result<(), BackupError> {
        let record = Record {
            id: task.id.get(),
            title: &task.title,
            description: &task.description,
            status: task.status.as_str(),
            created_at: timestamp(task.created_at),
            updated_at: timestamp(task.updated_at),
        };
        self.write_line(&record)?;
        self.rows += 1;
        Ok(())
    }

    /// Appends the trailer and makes the bytes durable; returns the trailer.
    pub(super) fn finish(mut self, id_high_water: i64) -> Result<Trailer, BackupError> {
        let trailer = Trailer {
            rows: self.rows,
            id_high_water,
            sha256: format!("{:x}", self.hasher.clone().finalize()),
        };
        self.line.clear();
        serde_json::to_writer(
            &mut self.line,
            &TrailerLine {
                trailer: trailer.clone(),
            },
        )
        .map_err(|e| BackupError::io(&self.path, std::io::Error::other(e)))?;
        self.line.push(b'\n');
        let io = |source| BackupError::io(&self.path, source);
        self.encoder.write_all(&self.line).map_err(io)?;
        let sink = self.encoder.finish().map_err(io)?;
        sink.finish().and_then(|file| file.sync_all()).map_err(io)?;
        Ok(trailer)
    }
}

/// What the zstd stream is written into: the file itself, or an age stream into it.
enum Sink {
    Plain(BufWriter<File>),
    Encrypted(age::stream::StreamWriter<BufWriter<File>>),
}

impl Sink {
    /// Ends the age stream (its last chunk is marked as last: a cut file is detected) and
    /// flushes everything into the file.
    fn finish(self) -> io::Result<File> {
        let buffered = match self {
            Self::Plain(buffered) => buffered,
            Self::Encrypted(stream) => stream.finish()?,
        };
        buffered
            .into_inner()
            .map_err(io::IntoInnerError::into_error)
    }
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(w) => w.write(bytes),
            Self::Encrypted(w) => w.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(w) => w.flush(),
            Self::Encrypted(w) => w.flush(),
        }
    }
}

/// What the zstd stream is read from: the file itself, or the plaintext of an age file.
enum Source {
    Plain(File),
    Decrypted(age::stream::StreamReader<BufReader<File>>),
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(r) => r.read(buf),
            Self::Decrypted(r) => r.read(buf),
        }
    }
}

impl Source {
    /// The file's content as zstd data: decrypted when it is an age file, for which
    /// `identities` are needed.
    fn open(
        mut file: File,
        path: &Path,
        identities: Option<&Identities>,
    ) -> Result<Self, BackupError> {
        if !encryption::is_encrypted(&mut file).map_err(|e| BackupError::io(path, e))? {
            return Ok(Self::Plain(file));
        }
        let identities = identities.ok_or_else(|| BackupError::NoIdentity(path.to_owned()))?;
        match identities.decrypt(BufReader::new(file)) {
            Ok(plaintext) => Ok(Self::Decrypted(plaintext)),
            Err(age::DecryptError::NoMatchingKeys) => Err(BackupError::WrongIdentity {
                path: path.to_owned(),
                identity_file: identities.path().to_owned(),
            }),
            Err(age::DecryptError::Io(e)) => Err(BackupError::io(path, e)),
            Err(e) => Err(BackupError::Corrupt {
                path: path.to_owned(),
                reason: format!("age: {e}"),
            }),
        }
    }
}

/// Reads a backup, checking every line as it goes; the trailer is checked at the end.
pub(super) struct Reader {
    path: PathBuf,
    lines: BufReader<zstd::Decoder<'static, BufReader<Source>>>,
    header: Header,
    /// `None` when reading a file already verified: the zstd frame checksum and the row count
    /// still guard the read, the SHA-256 is not computed twice.
    hasher: Option<Sha256>,
    rows: u64,
    line_number: u64,
    line: String,
    trailer: Option<Trailer>,
}

impl Reader {
    /// Opens a backup and reads its header; refuses what is not a backup or is too new.
    /// An encrypted backup needs `identities`.
    pub(super) fn open(path: &Path, identities: Option<&Identities>) -> Result<Self, BackupError> {
        let file = File::open(path).map_err(|e| BackupError::io(path, e))?;
        Self::from_file(file, path, Some(Sha256::new()), identities)
    }

    /// Reads again, from its start, a file that [`Self::from_file`] has just read in full:
    /// the same open file, so a file renamed over the path meanwhile is not what gets read.
    pub(super) fn reread_verified(
        mut file: File,
        path: &Path,
        identities: Option<&Identities>,
    ) -> Result<Self, BackupError> {
        file.seek(SeekFrom::Start(0))
            .map_err(|e| BackupError::io(path, e))?;
        Self::from_file(file, path, None, identities)
    }

    /// Reads a backup from an open file (from its start), computing its SHA-256 when
    /// `hasher` is given.
    pub(super) fn from_file(
        file: File,
        path: &Path,
        hasher: Option<Sha256>,
        identities: Option<&Identities>,
    ) -> Result<Self, BackupError> {
        let io = |source| BackupError::io(path, source);
        let source = Source::open(file, path, identities)?;
        let decoder = zstd::Decoder::new(source).map_err(io)?;
        let mut reader = Self {
            path: path.to_owned(),
            lines: BufReader::with_capacity(1 << 16, decoder),
            header: Header::new(0, "", Utc::now()),
            hasher,
            rows: 0,
            line_number: 0,
            line: String::with_capacity(1024),
            trailer: None,
        };
        if !reader.read_line()? {
            return Err(reader.corrupt("empty file"));
        }
        let header: Header = serde_json::from_str(&reader.line)
            .map_err(|_| BackupError::NotABackup(path.to_owned()))?;
        if header.format != FORMAT_NAME {
            return Err(BackupError::NotABackup(path.to_owned()));
        }
        if header.format_version > FORMAT_VERSION {
            return Err(BackupError::NewerFormat {
                path: path.to_owned(),
                version: header.format_version,
            });
        }
        if let Some(hasher) = &mut reader.hasher {
            hasher.update(reader.line.as_bytes());
        }
        reader.header = header;
        Ok(reader)
    }

    pub(super) fn header(&self) -> &Header {
        &self.header
    }

    fn corrupt(&self, reason: impl Into<String>) -> BackupError {
        BackupError::Corrupt {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// Reads the next line into `self.line`; false at the end of the stream.
    fn read_line(&mut self) -> Result<bool, BackupError> {
        self.line.clear();
        match self.lines.read_line(&mut self.line) {
            Ok(0) => Ok(false),
            Ok(_) => {
                self.line_number += 1;
                if self.line.ends_with('\n') {
                    Ok(true)
                } else {
                    Err(self.corrupt("truncated: the last line is incomplete"))
                }
            }
            // Bad compressed data, a failed zstd checksum, a cut-off frame or invalid UTF-8.
            Err(e) => Err(self.corrupt(format!("unreadable after line {}: {e}", self.line_number))),
        }
    }

    /// The next task, or `None` once the trailer has been read and checked.
    pub(super) fn next_task(&mut self) -> Result<Option<Task>, BackupError> {
        if !self.next_line()? {
            return Ok(None);
        }
        let line_number = self.line_number;
        let record: RecordRef<'_> = serde_json::from_str(&self.line)
            .map_err(|e| self.corrupt(format!("line {line_number}: {e}")))?;
        let task = task_from_record(&record)
            .map_err(|e| self.corrupt(format!("line {line_number}: {e}")))?;
        Ok(Some(task))
    }

    /// Checks the next task without building it; false once the trailer has been checked.
    pub(super) fn check_next(&mut self) -> Result<bool, BackupError> {
        if !self.next_line()? {
            return Ok(false);
        }
        let line_number = self.line_number;
        let record: RecordRef<'_> = serde_json::from_str(&self.line)
            .map_err(|e| self.corrupt(format!("line {line_number}: {e}")))?;
        check_record(&record).map_err(|e| self.corrupt(format!("line {line_number}: {e}")))?;
        Ok(true)
    }

    /// Checks every task line on a second thread while this one decompresses and hashes: the
    /// same checks as [`Self::check_next`], in about half the time on two cores.
    pub(super) fn check_all_parallel(mut self) -> Result<(Header, Trailer), BackupError> {
        const CHUNK_BYTES: usize = 1 << 18;
        let (sink, chunks) = std::sync::mpsc::sync_channel::<(u64, String)>(4);
        let checker = std::thread::spawn(move || {
            for (first_line, chunk) in chunks {
                for (offset, line) in chunk.lines().enumerate() {
                    let at = first_line + offset as u64;
                    let record: RecordRef<'_> =
                        serde_json::from_str(line).map_err(|e| format!("line {at}: {e}"))?;
                    check_record(&record).map_err(|e| format!("line {at}: {e}"))?;
                }
            }
            Ok::<_, String>(())
        });
        let mut chunk = String::with_capacity(CHUNK_BYTES + 4096);
        let mut first_line = self.line_number + 1;
        let read = loop {
            match self.next_line() {
                Ok(true) => {
                    chunk.push_str(&self.line);
                    if chunk.len() >= CHUNK_BYTES {
                        let full = std::mem::replace(
                            &mut chunk,
                            String::with_capacity(CHUNK_BYTES + 4096),
                        );
                        if sink.send((first_line, full)).is_err() {
                            break Ok(());
                        }
                        first_line = self.line_number + 1;
                    }
                }
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if read.is_ok() && !chunk.is_empty() {
            let _ = sink.send((first_line, chunk));
        }
        drop(sink);
        let checked = checker
            .join()
            .map_err(|_| self.corrupt("the checking thread failed"))?;
        read?;
        checked.map_err(|reason| self.corrupt(reason))?;
        let trailer = self
            .trailer
            .clone()
            .ok_or_else(|| self.corrupt("no trailer"))?;
        Ok((self.header, trailer))
    }

    /// Reads the next task line into `self.line` (hashed and counted); false after the trailer,
    /// which it reads and checks.
    fn next_line(&mut self) -> Result<bool, BackupError> {
        if self.trailer.is_some() {
            return Ok(false);
        }
        if !self.read_line()? {
            return Err(self.corrupt("truncated: no trailer"));
        }
        if self.line.starts_with("{\"trailer\"") {
            let TrailerLine { trailer } = serde_json::from_str(&self.line).map_err(|e| {
                self.corrupt(format!("line {}: bad trailer: {e}", self.line_number))
            })?;
            self.check_trailer(&trailer)?;
            self.trailer = Some(trailer);
            return Ok(false);
        }
        if let Some(hasher) = &mut self.hasher {
            hasher.update(self.line.as_bytes());
        }
        self.rows += 1;
        Ok(true)
    }

    fn check_trailer(&mut self, trailer: &Trailer) -> Result<(), BackupError> {
        if self.read_line()? {
            return Err(self.corrupt("data after the trailer"));
        }
        if trailer.rows != self.rows {
            return Err(self.corrupt(format!(
                "row count mismatch: trailer says {}, file holds {}",
                trailer.rows, self.rows
            )));
        }
        let actual = self
            .hasher
            .as_ref()
            .map(|h| format!("{:x}", h.clone().finalize()));
        if actual.is_some_and(|actual| actual != trailer.sha256) {
            return Err(self.corrupt("checksum mismatch: the content was altered"));
        }
        Ok(())
    }

    /// The trailer, once every task has been read.
    pub(super) fn trailer(&self) -> Option<&Trailer> {
        self.trailer.as_ref()
    }
}

/// Validates a record exactly as the API validates input: a backup never loads what the API
/// would refuse.
fn check_record(
    r: &RecordRef<'_>,
) -> Result<(TaskId, TaskStatus, DateTime<Utc>, DateTime<Utc>), String> {
    let id = TaskId::new(r.id).map_err(|e| e.to_string())?;
    TaskTitle::check(&r.title).map_err(|e| e.to_string())?;
    if r.title.trim() != r.title {
        return Err("title has surrounding whitespace".into());
    }
    TaskDescription::check(&r.description).map_err(|e| e.to_string())?;
    let status: TaskStatus = r
        .status
        .parse()
        .map_err(|e: crate::domain::ValidationError| e.to_string())?;
    let time = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("bad timestamp {s:?}: {e}"))
    };
    Ok((id, status, time(&r.created_at)?, time(&r.updated_at)?))
}

fn task_from_record(r: &RecordRef<'_>) -> Result<Task, String> {
    let (id, status, created_at, updated_at) = check_record(r)?;
    Ok(Task {
        id,
        title: r.title.clone().into_owned(),
        description: r.description.clone().into_owned(),
        status,
        created_at,
        updated_at,
    })
}
