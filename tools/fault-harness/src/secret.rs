//! The secret the checks look for: read from a file, so it is never on a command line.

use std::path::Path;

use anyhow::{Context, bail};

/// The file's content without its trailing newline; an empty secret would match everything.
pub(crate) fn read(file: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the secret file {}", file.display()))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        bail!("the secret file {} is empty", file.display());
    }
    Ok(secret.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trailing_newline_is_not_part_of_the_secret() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("password");
        std::fs::write(&file, "stage-1234\n")?;
        assert_eq!(read(&file)?, "stage-1234");
        std::fs::write(&file, "\n")?;
        assert!(read(&file).is_err());
        Ok(())
    }
}
