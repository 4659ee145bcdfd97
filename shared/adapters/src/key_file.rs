//! Secret key files in the data directory: 32 random bytes generated on first use into a
//! file created with mode 0600 (`create_new`, so two processes racing end with one key), and
//! refused when readable by group or others. The bytes are wiped when dropped.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use certops_core::Error;
use zeroize::Zeroizing;

/// The length of every key file, in bytes.
pub const KEY_LEN: usize = 32;

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Transient(format!("{what} {}: {e}", path.display()))
}

/// Loads the key `what` (e.g. "token key") from `path`, generating it if the file does not
/// exist. [`Error::Misconfigured`] if the file is readable by group or others or is not
/// [`KEY_LEN`] bytes.
pub fn load_or_create(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    let bytes = match fs::read(path) {
        Ok(b) => {
            let mode = fs::metadata(path)
                .map_err(|e| io_err(&format!("stat {what}"), path, e))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(Error::Misconfigured(format!(
                    "{what} {} has mode {:o}; it must be 0600",
                    path.display(),
                    mode & 0o777
                )));
            }
            Zeroizing::new(b)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => create(path, what)?,
        Err(e) => return Err(io_err(&format!("read {what}"), path, e)),
    };
    if bytes.len() != KEY_LEN {
        return Err(Error::Misconfigured(format!(
            "{what} {} must be {KEY_LEN} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

fn create(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut key = Zeroizing::new(vec![0u8; KEY_LEN]);
    aws_lc_rs::rand::fill(&mut key)
        .map_err(|_| Error::Transient(format!("no randomness for the {what}")))?;
    // create_new: if another process wins the race, use its key instead.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            f.write_all(&key)
                .and_then(|()| f.sync_all())
                .map_err(|e| io_err(&format!("write {what}"), path, e))?;
            Ok(key)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => fs::read(path)
            .map(Zeroizing::new)
            .map_err(|e| io_err(&format!("read {what}"), path, e)),
        Err(e) => Err(io_err(&format!("create {what}"), path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_kept_private_and_refused_when_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let a = load_or_create(&path, "test key").unwrap();
        let b = load_or_create(&path, "test key").unwrap();
        assert_eq!(a, b, "the same key on the second load");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(&path, "test key").unwrap_err();
        assert!(err.to_string().contains("must be 0600"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, b"short").unwrap();
        let err = load_or_create(&path, "test key").unwrap_err();
        assert!(err.to_string().contains("32 bytes"), "{err}");
    }
}
