//! [`Keystore`] over a directory: one 0600 file per bundle in a 0700 directory, referenced
//! as `keystore:<name>`.
//!
//! The private key is read and written here and nowhere else in the embedded runtime; it
//! never appears in an error message, a log line or a `Debug` output (the port hands it
//! around as [`SecretPem`]). Writes go to a fresh 0600 temporary file that is renamed over
//! the old one, so a reader sees either the old bundle or the new one, never half of one.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use certops_core::ports::{Bundle, Keystore, SecretPem};
use certops_core::Error;
use serde::{Deserialize, Serialize};

/// The prefix of every reference this keystore hands out.
pub const REFERENCE_PREFIX: &str = "keystore:";

/// File name suffix of a stored bundle.
const SUFFIX: &str = ".bundle";

/// The on-disk form of a bundle. Deliberately no `Debug`.
#[derive(Serialize, Deserialize)]
struct StoredBundle {
    chain_pem: String,
    key_pem: String,
}

impl Drop for StoredBundle {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key_pem);
    }
}

/// The directory-backed [`Keystore`].
#[derive(Debug, Clone)]
pub struct FileKeystore {
    dir: PathBuf,
}

impl FileKeystore {
    /// Opens the keystore in `dir`, creating it with mode 0700 if needed, and tightens an
    /// existing directory to 0700.
    pub fn open(dir: &Path) -> Result<FileKeystore, Error> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_err("create keystore directory", dir, e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| io_err("set keystore directory mode", dir, e))?;
        Ok(FileKeystore {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The reference a bundle stored under `name` gets (`keystore:<name>`), after checking
    /// the name.
    pub fn reference_for(name: &str) -> Result<String, Error> {
        validate_name(name)?;
        Ok(format!("{REFERENCE_PREFIX}{name}"))
    }

    fn path_for(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}{SUFFIX}"))
    }

    fn name_of(reference: &str) -> Result<&str, Error> {
        let name = reference.strip_prefix(REFERENCE_PREFIX).ok_or_else(|| {
            Error::InvalidInput(format!(
                "keystore reference \"{reference}\" does not start with \"{REFERENCE_PREFIX}\""
            ))
        })?;
        validate_name(name)?;
        Ok(name)
    }

    fn collect(&self, dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), Error> {
        let entries = fs::read_dir(dir).map_err(|e| io_err("list keystore", dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err("list keystore", dir, e))?;
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            let kind = entry
                .file_type()
                .map_err(|e| io_err("list keystore", dir, e))?;
            if kind.is_dir() {
                self.collect(&entry.path(), &format!("{prefix}{file_name}/"), out)?;
            } else if let Some(stem) = file_name.strip_suffix(SUFFIX) {
                let name = format!("{prefix}{stem}");
                if validate_name(&name).is_ok() {
                    out.push(format!("{REFERENCE_PREFIX}{name}"));
                }
            }
        }
        Ok(())
    }
}

/// Bundle names: `[a-zA-Z0-9._/-]`, no empty, `.` or `..` path component, no leading `/`.
fn validate_name(name: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        Err(Error::InvalidInput(format!(
            "keystore name \"{}\" is invalid: {why}",
            name.escape_default()
        )))
    };
    if name.is_empty() || name.len() > 200 {
        return bad("must be 1 to 200 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
    {
        return bad("only letters, digits and . _ / - are allowed");
    }
    if name
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return bad("path components must not be empty, \".\" or \"..\"");
    }
    Ok(())
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Transient(format!("{what} {}: {e}", path.display()))
}

#[async_trait]
impl Keystore for FileKeystore {
    async fn put_bundle(&self, name: &str, bundle: Bundle) -> Result<String, Error> {
        let reference = Self::reference_for(name)?;
        let path = self.path_for(name);
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&parent)
            .map_err(|e| io_err("create keystore directory", &parent, e))?;
        let stored = StoredBundle {
            chain_pem: bundle.chain_pem,
            key_pem: bundle.key.expose().to_string(),
        };
        let bytes = zeroize::Zeroizing::new(
            serde_json::to_vec(&stored)
                .map_err(|e| Error::InvalidInput(format!("bundle not serializable: {e}")))?,
        );
        let tmp = parent.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        })();
        drop(bytes);
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("write bundle", &path, e));
        }
        Ok(reference)
    }

    async fn get_bundle(&self, reference: &str) -> Result<Bundle, Error> {
        let name = Self::name_of(reference)?;
        let path = self.path_for(name);
        let bytes = match fs::read(&path) {
            Ok(b) => zeroize::Zeroizing::new(b),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::InvalidInput(format!(
                    "no bundle stored under {reference}"
                )))
            }
            Err(e) => return Err(io_err("read bundle", &path, e)),
        };
        // serde_json's messages name a line and column, never the content.
        let parsed: Result<StoredBundle, _> = serde_json::from_slice(&bytes);
        drop(bytes);
        let mut stored = parsed
            .map_err(|e| Error::Transient(format!("bundle {reference} is not readable: {e}")))?;
        Ok(Bundle {
            chain_pem: std::mem::take(&mut stored.chain_pem),
            key: SecretPem::new(std::mem::take(&mut stored.key_pem)),
        })
    }

    async fn exists(&self, reference: &str) -> Result<bool, Error> {
        let name = Self::name_of(reference)?;
        Ok(self.path_for(name).is_file())
    }

    async fn references(&self) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        self.collect(&self.dir, "", &mut out)?;
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = concat!(
        "-----BEGIN PRIVATE",
        " KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE",
        " KEY-----\n"
    );

    fn bundle() -> Bundle {
        Bundle {
            chain_pem: "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n".into(),
            key: SecretPem::new(KEY.into()),
        }
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn bundles_round_trip_in_0600_files_inside_a_0700_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keystore");
        let ks = FileKeystore::open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let r = ks.put_bundle("shop-www/2026-12", bundle()).await.unwrap();
        assert_eq!(r, "keystore:shop-www/2026-12");
        let file = dir.join("shop-www/2026-12.bundle");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir.join("shop-www")), 0o700);
        let back = ks.get_bundle(&r).await.unwrap();
        assert_eq!(back.key.expose(), KEY);
        assert!(back.chain_pem.contains("BEGIN CERTIFICATE"));
        assert!(ks.exists(&r).await.unwrap());
        assert!(!ks.exists("keystore:nope").await.unwrap());
        // Overwrite keeps the mode and leaves no temporary file behind.
        ks.put_bundle("shop-www/2026-12", bundle()).await.unwrap();
        assert_eq!(mode(&file), 0o600);
        ks.put_bundle("fallback.docs", bundle()).await.unwrap();
        assert_eq!(
            ks.references().await.unwrap(),
            ["keystore:fallback.docs", "keystore:shop-www/2026-12"]
        );
    }

    #[tokio::test]
    async fn an_existing_loose_directory_is_tightened_to_0700() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ks");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        FileKeystore::open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[tokio::test]
    async fn names_that_could_escape_the_directory_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let ks = FileKeystore::open(&tmp.path().join("ks")).unwrap();
        for name in [
            "",
            "../etc/passwd",
            "a/../../b",
            "/abs",
            "a//b",
            "a b",
            "a\\b",
            "./x",
            "ä",
        ] {
            let err = ks.put_bundle(name, bundle()).await.unwrap_err();
            assert_eq!(err.name(), "InvalidInput", "{name:?}");
        }
        assert_eq!(
            ks.get_bundle("keystore:../x").await.err().unwrap().name(),
            "InvalidInput"
        );
        assert_eq!(
            ks.get_bundle("arn:aws:x").await.err().unwrap().name(),
            "InvalidInput"
        );
        assert!(ks.references().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_key_never_shows_in_errors_or_debug_output() {
        let tmp = tempfile::tempdir().unwrap();
        let ks = FileKeystore::open(&tmp.path().join("ks")).unwrap();
        let r = ks.put_bundle("k", bundle()).await.unwrap();
        let b = ks.get_bundle(&r).await.unwrap();
        assert!(!format!("{:?}", b.key).contains("c2VjcmV0"));
        assert!(!format!("{ks:?}").contains("c2VjcmV0"));
        // A corrupted file yields an error that does not quote the file.
        fs::write(
            tmp.path().join("ks/k.bundle"),
            format!("{{\"key_pem\": \"{KEY}"),
        )
        .unwrap();
        let err = ks.get_bundle(&r).await.err().unwrap();
        assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
        let missing = ks.get_bundle("keystore:missing").await.err().unwrap();
        assert_eq!(missing.name(), "InvalidInput");
    }
}
