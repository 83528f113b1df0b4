//! Backups encrypted at rest with age (<https://age-encryption.org/v1>).
//!
//! The job that writes backups holds only public keys ([`Recipients`]); reading an encrypted
//! backup's contents takes a private key ([`Identities`]). Without one, `inspect` still
//! checks what is readable: the age header and how many recipients it names.
//!
//! Only X25519 keys (`age1…`, `AGE-SECRET-KEY-1…`, as `age-keygen` writes them) are accepted:
//! SSH keys would pull an RSA implementation into the binary for no gain over a dedicated
//! backup key, so they are refused with a message saying so.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use age::x25519;

/// Every age file starts with this line (the version follows the slash).
const MAGIC: &[u8] = b"age-encryption.org/";
/// A header larger than this is not one our backups (a few stanzas) would have.
const HEADER_LIMIT: u64 = 1 << 20;
/// The nonce that follows the header.
const NONCE_BYTES: u64 = 16;

/// A recipients or identity file that cannot be used. Names the file and the line; never
/// shows key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{setting}: cannot read {}: {source}", path.display())]
    Unreadable {
        setting: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{setting}: {} line {line}: {reason}", path.display())]
    BadLine {
        setting: &'static str,
        path: PathBuf,
        line: usize,
        reason: &'static str,
    },
    #[error("{setting}: {} holds no key", path.display())]
    Empty {
        setting: &'static str,
        path: PathBuf,
    },
}

/// The public keys backups are encrypted to (`BACKUP_ENCRYPT_TO`): any one of the matching
/// identities can decrypt them.
#[derive(Clone)]
pub struct Recipients {
    keys: Arc<[x25519::Recipient]>,
    path: PathBuf,
}

impl Recipients {
    /// Reads a recipients file: one `age1…` key per line; `#` comments and blank lines allowed.
    pub fn from_file(path: &Path) -> Result<Self, KeyFileError> {
        let keys = read_keys(path, "BACKUP_ENCRYPT_TO", |line| {
            if line.starts_with("ssh-") || line.starts_with("ecdsa-") {
                return Err("SSH keys are not supported: generate an age key with age-keygen");
            }
            if line.starts_with("AGE-SECRET-KEY-") {
                return Err("a private key: this file takes public keys (age1…) only");
            }
            x25519::Recipient::from_str(line).map_err(|_| "not an age public key (age1…)")
        })?;
        Ok(Self {
            keys: keys.into(),
            path: path.to_owned(),
        })
    }

    /// How many keys the file holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Never true: a file without keys is refused.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The file the keys came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Encrypts everything written to the returned writer into `output`; the caller must call
    /// `finish` on it, or the file is cut short (and refused when read).
    pub(crate) fn encrypt(
        &self,
        output: BufWriter<File>,
    ) -> io::Result<age::stream::StreamWriter<BufWriter<File>>> {
        let encryptor =
            age::Encryptor::with_recipients(self.keys.iter().map(|k| k as &dyn age::Recipient))
                .map_err(io::Error::other)?;
        encryptor.wrap_output(output)
    }
}

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipients({} from {})", self.len(), self.path.display())
    }
}

/// The private keys that decrypt backups (`BACKUP_IDENTITY_FILE`).
#[derive(Clone)]
pub struct Identities {
    keys: Arc<[x25519::Identity]>,
    path: PathBuf,
}

impl Identities {
    /// Reads an identity file as `age-keygen` writes it: `AGE-SECRET-KEY-1…` lines; `#`
    /// comments and blank lines allowed.
    pub fn from_file(path: &Path) -> Result<Self, KeyFileError> {
        let keys = read_keys(path, "BACKUP_IDENTITY_FILE", |line| {
            if line.starts_with("age1") {
                return Err("a public key: this file takes private keys (AGE-SECRET-KEY-1…)");
            }
            if line.starts_with("-----BEGIN") {
                return Err("SSH keys are not supported: generate an age key with age-keygen");
            }
            x25519::Identity::from_str(line).map_err(|_| "not an age private key")
        })?;
        Ok(Self {
            keys: keys.into(),
            path: path.to_owned(),
        })
    }

    /// How many keys the file holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Never true: a file without keys is refused.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The file the keys came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a backup encrypted to `recipients` is one these keys decrypt.
    pub fn opens(&self, recipients: &Recipients) -> bool {
        self.keys
            .iter()
            .any(|key| recipients.keys.contains(&key.to_public()))
    }

    /// A reader of the plaintext of the age file `input`.
    pub(crate) fn decrypt(
        &self,
        input: BufReader<File>,
    ) -> Result<age::stream::StreamReader<BufReader<File>>, age::DecryptError> {
        age::Decryptor::new_buffered(input)?
            .decrypt(self.keys.iter().map(|k| k as &dyn age::Identity))
    }
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identities({} from {})", self.len(), self.path.display())
    }
}

/// Reads a key file line by line; the parsed line is dropped at once, errors carry no part of
/// it.
fn read_keys<K>(
    path: &Path,
    setting: &'static str,
    parse: impl Fn(&str) -> Result<K, &'static str>,
) -> Result<Vec<K>, KeyFileError> {
    let unreadable = |source| KeyFileError::Unreadable {
        setting,
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(unreadable)?;
    let mut keys = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(unreadable)?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = parse(line).map_err(|reason| KeyFileError::BadLine {
            setting,
            path: path.to_owned(),
            line: index + 1,
            reason,
        })?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(KeyFileError::Empty {
            setting,
            path: path.to_owned(),
        });
    }
    Ok(keys)
}

/// Whether `file` is an age file (by its first bytes); leaves it at its start.
pub(crate) fn is_encrypted(file: &mut File) -> io::Result<bool> {
    file.seek(SeekFrom::Start(0))?;
    let mut start = [0_u8; MAGIC.len()];
    let mut filled = 0;
    while filled < start.len() {
        match file.read(&mut start[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(start[..filled] == *MAGIC)
}

/// What can be learnt of an encrypted backup without its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// How many recipients (public keys) the file is encrypted to.
    pub recipients: usize,
    /// The size of the whole file in bytes.
    pub size: u64,
}

/// Reads and checks the age header of `file` (from its start) without a key: its structure as
/// the age library parses it, and that an encrypted payload follows it.
pub(crate) fn inspect(file: &mut File) -> Result<Envelope, String> {
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mut header = Vec::new();
    let mut recipients = 0;
    let mut lines = BufReader::new(file.take(HEADER_LIMIT));
    loop {
        let start = header.len();
        let read = lines
            .read_until(b'\n', &mut header)
            .map_err(|e| e.to_string())?;
        let line = &header[start..];
        if read == 0 || !line.ends_with(b"\n") {
            return Err("age header: cut short".into());
        }
        if let Some(stanza) = line.strip_prefix(b"-> ") {
            // age adds a random stanza tagged `…-grease` to keep readers tolerant; it
            // stands for no recipient.
            let tag = stanza.split(|&b| b == b' ' || b == b'\n').next();
            if !tag.is_some_and(|tag| tag.ends_with(b"-grease")) {
                recipients += 1;
            }
        } else if line.starts_with(b"--- ") {
            break;
        }
    }
    let header_len = header.len() as u64;
    let mut nonce = [0_u8; NONCE_BYTES as usize];
    lines
        .read_exact(&mut nonce)
        .map_err(|_| "age header: no payload after it".to_owned())?;
    header.extend_from_slice(&nonce);
    age::Decryptor::new_buffered(header.as_slice()).map_err(|e| format!("age header: {e}"))?;
    // The smallest payload is one authentication tag; a non-empty backup has more.
    if size <= header_len + NONCE_BYTES + 16 {
        return Err("age payload: empty or cut short".into());
    }
    Ok(Envelope { recipients, size })
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use age::secrecy::ExposeSecret;

    use super::*;

    struct Keys {
        dir: tempfile::TempDir,
        identity: x25519::Identity,
    }

    fn keys() -> Keys {
        Keys {
            dir: tempfile::tempdir().unwrap(),
            identity: x25519::Identity::generate(),
        }
    }

    impl Keys {
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        }

        fn recipients(&self, extra: usize) -> Recipients {
            let mut text = format!("# backups\n\n{}\n", self.identity.to_public());
            for _ in 0..extra {
                text.push_str(&format!("{}\n", x25519::Identity::generate().to_public()));
            }
            Recipients::from_file(&self.write("recipients.txt", &text)).unwrap()
        }

        fn identities(&self) -> Identities {
            let text = format!(
                "# created: today\n# public key: {}\n{}\n",
                self.identity.to_public(),
                self.identity.to_string().expose_secret()
            );
            Identities::from_file(&self.write("key.txt", &text)).unwrap()
        }

        fn encrypt(&self, recipients: &Recipients, plaintext: &[u8]) -> PathBuf {
            let path = self.dir.path().join("backup.age");
            let file = BufWriter::new(File::create(&path).unwrap());
            let mut writer = recipients.encrypt(file).unwrap();
            writer.write_all(plaintext).unwrap();
            writer.finish().unwrap().flush().unwrap();
            path
        }
    }

    fn decrypt(identities: &Identities, path: &Path) -> io::Result<Vec<u8>> {
        let file = BufReader::new(File::open(path).unwrap());
        let mut reader = identities.decrypt(file).map_err(io::Error::other)?;
        let mut plaintext = Vec::new();
        reader.read_to_end(&mut plaintext)?;
        Ok(plaintext)
    }

    fn plaintext() -> Vec<u8> {
        // Several 64 KiB chunks of age's stream, the last one partial.
        (0..200_000_u32).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn what_is_encrypted_decrypts_with_the_identity_and_shows_no_plaintext() {
        let keys = keys();
        let path = keys.encrypt(&keys.recipients(0), b"Critical Data\n");
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
        assert!(!bytes.windows(8).any(|w| w == b"Critical"));
        assert_eq!(
            decrypt(&keys.identities(), &path).unwrap(),
            b"Critical Data\n"
        );
        let big = plaintext();
        let path = keys.encrypt(&keys.recipients(2), &big);
        assert_eq!(decrypt(&keys.identities(), &path).unwrap(), big);
    }

    #[test]
    fn another_identity_is_refused_as_not_matching() {
        let keys = keys();
        let path = keys.encrypt(&keys.recipients(1), b"secret\n");
        let stranger = super::tests::keys();
        match stranger
            .identities()
            .decrypt(BufReader::new(File::open(&path).unwrap()))
        {
            Err(age::DecryptError::NoMatchingKeys) => {}
            Err(other) => panic!("unexpected error: {other}"),
            Ok(_) => panic!("decrypted with a key it was not encrypted to"),
        }
    }

    #[test]
    fn a_cut_or_altered_ciphertext_is_detected() {
        let keys = keys();
        let path = keys.encrypt(&keys.recipients(0), &plaintext());
        let whole = std::fs::read(&path).unwrap();
        let identities = keys.identities();
        // At a chunk boundary (header + nonce + one 64 KiB chunk and its tag) and inside one.
        let header_len = whole.windows(4).position(|w| w == b"--- ").unwrap();
        let after_header = whole[header_len..]
            .iter()
            .position(|&b| b == b'\n')
            .unwrap();
        let payload = header_len + after_header + 1 + 16;
        for cut in [payload + 65_536 + 16, payload + 1000, whole.len() - 1] {
            std::fs::write(&path, &whole[..cut]).unwrap();
            assert!(decrypt(&identities, &path).is_err(), "cut at {cut} passed");
        }
        let mut altered = whole.clone();
        altered[payload + 70_000] ^= 1;
        std::fs::write(&path, &altered).unwrap();
        assert!(decrypt(&identities, &path).is_err(), "a flipped bit passed");
    }

    #[test]
    fn the_header_is_inspected_without_a_key() {
        let keys = keys();
        let path = keys.encrypt(&keys.recipients(2), &plaintext());
        let mut file = File::open(&path).unwrap();
        assert!(is_encrypted(&mut file).unwrap());
        let envelope = inspect(&mut file).unwrap();
        assert_eq!(envelope.recipients, 3);
        assert_eq!(envelope.size, file.metadata().unwrap().len());

        let whole = std::fs::read(&path).unwrap();
        let header_end = whole.windows(4).position(|w| w == b"--- ").unwrap();
        std::fs::write(&path, &whole[..header_end + 10]).unwrap();
        assert!(inspect(&mut File::open(&path).unwrap()).is_err());
        // A character base64 does not have, in the body of the first stanza.
        let first_body = 23 + whole[23..].iter().position(|&b| b == b'\n').unwrap();
        let mut damaged = whole.clone();
        damaged[first_body + 5] = b'!';
        std::fs::write(&path, &damaged).unwrap();
        assert!(inspect(&mut File::open(&path).unwrap()).is_err());
        let mut foreign = whole.clone();
        foreign[20] = b'9';
        std::fs::write(&path, &foreign).unwrap();
        assert!(inspect(&mut File::open(&path).unwrap()).is_err());

        let plain = keys.write("plain.zst", "\u{28}\u{b5}/\u{fd} not age");
        assert!(!is_encrypted(&mut File::open(plain).unwrap()).unwrap());
    }

    #[test]
    fn key_files_name_the_bad_line_and_never_show_a_key() {
        let keys = keys();
        let secret = keys.identity.to_string().expose_secret().to_owned();
        let public = keys.identity.to_public().to_string();
        let recipients_with_secret = keys.write("r.txt", &format!("{public}\n\n{secret}\n"));
        let error = Recipients::from_file(&recipients_with_secret)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("BACKUP_ENCRYPT_TO: "), "{error}");
        assert!(error.contains("r.txt line 3: a private key"), "{error}");
        assert!(!error.contains(&secret[20..]), "{error}");

        let ssh = keys.write("ssh.txt", "ssh-ed25519 AAAAC3Nza me@host\n");
        let error = Recipients::from_file(&ssh).unwrap_err().to_string();
        assert!(
            error.contains("line 1: SSH keys are not supported"),
            "{error}"
        );

        let mangled = format!("# key\n{}x\n", &secret[..secret.len() - 1]);
        let error = Identities::from_file(&keys.write("k.txt", &mangled))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("BACKUP_IDENTITY_FILE: "), "{error}");
        assert!(
            error.contains("k.txt line 2: not an age private key"),
            "{error}"
        );
        assert!(!error.contains(&secret[20..40]), "{error}");

        let public_as_identity = keys.write("p.txt", &format!("{public}\n"));
        assert!(
            Identities::from_file(&public_as_identity)
                .unwrap_err()
                .to_string()
                .contains("a public key")
        );
        let empty = keys.write("e.txt", "# nothing yet\n\n");
        assert!(
            Recipients::from_file(&empty)
                .unwrap_err()
                .to_string()
                .ends_with("holds no key")
        );
        let missing = keys.dir.path().join("missing.txt");
        assert!(
            Identities::from_file(&missing)
                .unwrap_err()
                .to_string()
                .contains("cannot read")
        );
        let identities = keys.identities();
        assert_eq!(identities.len(), 1);
        assert!(!format!("{identities:?}").contains(&secret[20..]));
    }
}
