//! Bearer tokens read from a file (`API_TOKENS_FILE`, `METRICS_TOKENS_FILE`).
//!
//! Only SHA-256 digests are kept in memory. A file line is a token, or `sha256:<64 hex>` (the
//! digest of one) so that the file itself need not hold any token. A presented token is hashed
//! and compared with every digest in constant time, without stopping at the first match, so
//! the answer's timing says nothing about how close a guess came or which token matched.

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// Shortest plain token accepted: anything shorter is guessable.
pub const MIN_TOKEN_CHARS: usize = 16;

const DIGEST_PREFIX: &str = "sha256:";

/// A set of accepted tokens, held as digests.
#[derive(Clone)]
pub struct TokenSet {
    digests: Vec<[u8; 32]>,
}

/// Why a token file was refused. Never holds any part of a line's content.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds no token")]
    Empty { path: String },
    #[error("{path} line {line}: {reason}")]
    Malformed {
        path: String,
        line: usize,
        reason: &'static str,
    },
}

impl TokenSet {
    /// Reads and checks a token file: one token or `sha256:<hex digest>` a line, blank lines
    /// and `#` comments allowed.
    pub fn from_file(path: &Path) -> Result<Self, TokenFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Unreadable {
            path: shown.clone(),
            source,
        })?;
        let mut digests = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let digest = parse_line(line).map_err(|reason| TokenFileError::Malformed {
                path: shown.clone(),
                line: index + 1,
                reason,
            })?;
            digests.push(digest);
        }
        if digests.is_empty() {
            return Err(TokenFileError::Empty { path: shown });
        }
        Ok(Self { digests })
    }

    /// A set of the given plain tokens (embedders and tests).
    pub fn from_tokens<I, T>(tokens: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        Self {
            digests: tokens.into_iter().map(|t| digest(t.as_ref())).collect(),
        }
    }

    /// True when `presented` is one of the tokens. Takes the same time whichever token
    /// matches, or none.
    pub fn accepts(&self, presented: &str) -> bool {
        let candidate = digest(presented);
        let mut found = Choice::from(0);
        for stored in &self.digests {
            found |= stored.ct_eq(&candidate);
        }
        found.into()
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }
}

impl fmt::Debug for TokenSet {
    /// The count only: not even digests go to logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenSet({} tokens)", self.digests.len())
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_line(line: &str) -> Result<[u8; 32], &'static str> {
    if let Some(hex_digest) = line.strip_prefix(DIGEST_PREFIX) {
        let mut out = [0_u8; 32];
        return hex::decode_to_slice(hex_digest, &mut out)
            .map(|()| out)
            .map_err(|_| "sha256: must be followed by 64 hexadecimal digits");
    }
    if !line.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a token is visible ASCII characters without spaces");
    }
    if line.chars().count() < MIN_TOKEN_CHARS {
        return Err("token too short: use at least 16 characters (32 random bytes is better)");
    }
    Ok(digest(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::NamedTempFile, std::path::PathBuf) {
        let file = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(file.path(), text).unwrap_or_else(|e| panic!("{e}"));
        let path = file.path().to_path_buf();
        (file, path)
    }

    #[test]
    fn plain_and_hashed_lines_are_accepted_with_comments_and_blanks() {
        let hashed = hex::encode(Sha256::digest(b"second-token-0123456789"));
        let (_keep, path) = write(&format!(
            "# operators\n\nfirst-token-0123456789\r\n  sha256:{hashed}  \n"
        ));
        let set = TokenSet::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(set.len(), 2);
        assert!(set.accepts("first-token-0123456789"));
        assert!(set.accepts("second-token-0123456789"));
        assert!(!set.accepts("first-token-012345678"));
        assert!(!set.accepts(""));
    }

    #[test]
    fn errors_name_the_line_and_never_quote_it() {
        let secret = "a secret token with spaces";
        for (text, line) in [
            (format!("# c\n{secret}\n"), 2),
            ("ok-token-0123456789abc\ntiny-tok\n".to_owned(), 2),
            (format!("sha256:{}\n", "zz".repeat(32)), 1),
            ("sha256:abcd\n".to_owned(), 1),
        ] {
            let (_keep, path) = write(&text);
            let error = TokenSet::from_file(&path).err().map(|e| e.to_string());
            let error = error.unwrap_or_default();
            assert!(error.contains(&format!("line {line}:")), "{error}");
            assert!(
                !error.contains(secret) && !error.contains("tiny-tok"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_file_without_tokens_is_refused() {
        let (_keep, path) = write("# nothing yet\n\n");
        assert!(matches!(
            TokenSet::from_file(&path),
            Err(TokenFileError::Empty { .. })
        ));
    }
}
