//! Reading a secret (a password, the cluster secret) from a file, so that it never shows on a
//! command line (where `ps` shows it to every user).
//!
//! Invariants: the secret is the file's bytes less one trailing line end (`\n` or `\r\n`), and
//! never empty; an error names the flag and the file, never any of its contents.

use std::path::Path;

/// The secret in `path`, given with `flag`.
pub fn read_secret_file(path: &Path, flag: &str) -> Result<Vec<u8>, String> {
    let mut bytes =
        std::fs::read(path).map_err(|error| format!("{flag} {}: {error}", path.display()))?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(format!("{flag} {}: the file is empty", path.display()));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_one_line_end_and_refuses_empty_or_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        for (content, secret) in [
            (&b"pa ss\n"[..], &b"pa ss"[..]),
            (b"pass\r\n", b"pass"),
            (b"pass\n\n", b"pass\n"),
            (b"pass", b"pass"),
        ] {
            std::fs::write(&path, content).unwrap();
            assert_eq!(read_secret_file(&path, "--x").unwrap(), secret);
        }
        std::fs::write(&path, "\n").unwrap();
        let empty = read_secret_file(&path, "--x").unwrap_err();
        assert!(
            empty.starts_with("--x ") && empty.ends_with("the file is empty"),
            "{empty}"
        );
        let missing = read_secret_file(&dir.path().join("none"), "--x").unwrap_err();
        assert!(missing.contains("No such file"), "{missing}");
    }
}
