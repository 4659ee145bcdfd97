//! Certificate files on a server's disk: PEM splitting, fingerprints, atomic writes with
//! mode and owner, and the small record beside each certificate file that says which
//! keystore reference it holds — the last-known-good a rollback restores.
//!
//! Every write goes to a fresh temporary file in the same directory (created with its final
//! mode, so a key is never readable by others even for a moment), is flushed, then renamed
//! over the old file: a reader sees the old file or the new one, never half of one.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use certops_core::ports::{Bundle, Keystore, SecretPem};
use certops_core::Error;
use serde::{Deserialize, Serialize};
use sha1::Digest as _;

/// Who should own a written file (`None`: leave as created).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ownership {
    /// User id.
    pub uid: Option<u32>,
    /// Group id.
    pub gid: Option<u32>,
}

/// The PEM blocks of a text, each as its own PEM text, in order, tagged by label.
pub(crate) fn pem_blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = after[..label_end].to_string();
        let end_marker = format!("-----END {label}-----");
        let Some(end) = rest[start..].find(&end_marker) else {
            break;
        };
        let stop = start + end + end_marker.len();
        out.push((label, format!("{}\n", &rest[start..stop])));
        rest = &rest[stop..];
    }
    out
}

/// Splits a PEM text into (certificates PEM, key PEM). The key is the first block whose
/// label ends in `PRIVATE KEY`.
pub(crate) fn split_chain_and_key(text: &str) -> (String, Option<SecretPem>) {
    let mut chain = String::new();
    let mut key = None;
    for (label, block) in pem_blocks(text) {
        if label == "CERTIFICATE" {
            chain.push_str(&block);
        } else if label.ends_with("PRIVATE KEY") && key.is_none() {
            key = Some(SecretPem::new(block));
        }
    }
    (chain, key)
}

/// DER of the first certificate in a PEM text.
pub(crate) fn leaf_der(chain_pem: &str) -> Result<Vec<u8>, Error> {
    use base64::Engine as _;
    let (_, block) = pem_blocks(chain_pem)
        .into_iter()
        .find(|(label, _)| label == "CERTIFICATE")
        .ok_or_else(|| Error::InvalidInput("no certificate in PEM".into()))?;
    let body: String = block
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|e| Error::InvalidInput(format!("certificate PEM does not decode: {e}")))
}

/// SHA-256 of the leaf, lowercase hex (the fingerprint the prober reports).
pub(crate) fn leaf_sha256(chain_pem: &str) -> Result<String, Error> {
    Ok(hex::encode(sha2::Sha256::digest(leaf_der(chain_pem)?)))
}

/// SHA-1 of the leaf, uppercase hex (what HAProxy's `show ssl cert` prints).
pub(crate) fn leaf_sha1(chain_pem: &str) -> Result<String, Error> {
    Ok(hex::encode_upper(sha1::Sha1::digest(leaf_der(chain_pem)?)))
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::DeployFailed(format!("{what} {}: {e}", path.display()))
}

/// Writes `content` to `path` atomically with `mode` and `owner`.
pub(crate) fn write_atomic(
    path: &Path,
    content: &[u8],
    mode: u32,
    owner: Ownership,
) -> Result<(), Error> {
    let tmp = staging_path(path, "new");
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| io("create", &tmp, e))?;
        // The umask may have narrowed the mode; set it exactly.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| io("set mode of", &tmp, e))?;
        if owner.uid.is_some() || owner.gid.is_some() {
            std::os::unix::fs::fchown(&f, owner.uid, owner.gid)
                .map_err(|e| io("set owner of", &tmp, e))?;
        }
        f.write_all(content).map_err(|e| io("write", &tmp, e))?;
        f.sync_all().map_err(|e| io("sync", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| io("rename onto", path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A sibling path used while swapping (`<file>.certops-<what>`).
pub(crate) fn staging_path(path: &Path, what: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".certops-{what}"));
    path.with_file_name(name)
}

/// The current content and mode of a file, kept to restore it; `None` when it did not exist.
pub(crate) struct Saved {
    path: PathBuf,
    content: Option<(zeroize::Zeroizing<Vec<u8>>, u32)>,
}

impl Saved {
    /// Reads what is there now.
    pub(crate) fn take(path: &Path) -> Result<Saved, Error> {
        let content = match fs::read(path) {
            Ok(bytes) => {
                let mode = fs::metadata(path)
                    .map_err(|e| io("stat", path, e))?
                    .permissions()
                    .mode()
                    & 0o777;
                Some((zeroize::Zeroizing::new(bytes), mode))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("read", path, e)),
        };
        Ok(Saved {
            path: path.to_path_buf(),
            content,
        })
    }

    /// Puts it back (atomically), or removes the file if there was none.
    pub(crate) fn restore(&self, owner: Ownership) -> Result<(), Error> {
        match &self.content {
            Some((bytes, mode)) => write_atomic(&self.path, bytes, *mode, owner),
            None => match fs::remove_file(&self.path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io("remove", &self.path, e)),
            },
        }
    }
}

/// Which keystore bundle a certificate file holds, written beside it after each deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InstalledRecord {
    /// The keystore reference.
    pub reference: String,
    /// SHA-256 of the leaf, hex.
    pub fingerprint: String,
}

fn record_path(cert_path: &Path) -> PathBuf {
    staging_path(cert_path, "record.json")
}

/// The record beside `cert_path`, if there is a readable one.
pub(crate) fn read_record(cert_path: &Path) -> Option<InstalledRecord> {
    let text = fs::read_to_string(record_path(cert_path)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the record beside `cert_path` (0600: it names keystore references).
pub(crate) fn write_record(cert_path: &Path, record: &InstalledRecord) -> Result<(), Error> {
    let text = serde_json::to_vec(record)
        .map_err(|e| Error::DeployFailed(format!("record for {}: {e}", cert_path.display())))?;
    write_atomic(&record_path(cert_path), &text, 0o600, Ownership::default())
}

/// The keystore name under which a served certificate that certops did not deploy is kept
/// as last-known-good: `lkg/<target id>/<first 16 hex of its fingerprint>`.
pub(crate) fn lkg_name(target_id: &str, fingerprint: &str) -> String {
    let id: String = target_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "lkg/{}/{}",
        id.trim_matches('.'),
        &fingerprint[..16.min(fingerprint.len())]
    )
}

/// The keystore reference of what a target serves now (its last-known-good).
///
/// `served` is the SHA-256 fingerprint of the served leaf (`None`: nothing served at this
/// path). When the record beside the file names a bundle with that fingerprint that is still
/// in the keystore, that reference is the answer. Otherwise the served files (read by
/// `read_served`) are copied into the keystore under [`lkg_name`] first, so a rollback can
/// always put them back — including certificates certops never deployed.
pub(crate) async fn current_reference(
    keystore: &dyn Keystore,
    target_id: &str,
    cert_path: &Path,
    served: Option<String>,
    read_served: impl FnOnce() -> Result<(String, SecretPem), Error>,
) -> Result<Option<String>, Error> {
    let Some(fingerprint) = served else {
        return Ok(None);
    };
    if let Some(record) = read_record(cert_path) {
        if record.fingerprint == fingerprint
            && keystore.exists(&record.reference).await.unwrap_or(false)
        {
            return Ok(Some(record.reference));
        }
    }
    let (chain_pem, key) = read_served()?;
    if leaf_sha256(&chain_pem)? != fingerprint {
        return Err(Error::DeployFailed(format!(
            "{target_id}: the served certificate differs from {}; cannot record last-known-good",
            cert_path.display()
        )));
    }
    let reference = keystore
        .put_bundle(
            &lkg_name(target_id, &fingerprint),
            Bundle { chain_pem, key },
        )
        .await
        .map_err(|e| Error::DeployFailed(format!("{target_id}: keeping last-known-good: {e}")))?;
    write_record(
        cert_path,
        &InstalledRecord {
            reference: reference.clone(),
            fingerprint,
        },
    )?;
    Ok(Some(reference))
}

/// Loads a bundle for deploying; a missing or broken one is `DeployFailed` naming the
/// target and reference (never key material).
pub(crate) async fn load_bundle(
    keystore: &dyn Keystore,
    target_id: &str,
    reference: &str,
) -> Result<(Bundle, String), Error> {
    let bundle = keystore
        .get_bundle(reference)
        .await
        .map_err(|e| Error::DeployFailed(format!("{target_id}: {e}")))?;
    let fingerprint = leaf_sha256(&bundle.chain_pem)
        .map_err(|e| Error::DeployFailed(format!("{target_id}: {reference}: {e}")))?;
    if !bundle.key.expose().contains("PRIVATE KEY-----") {
        return Err(Error::DeployFailed(format!(
            "{target_id}: {reference} holds no PEM private key"
        )));
    }
    Ok((bundle, fingerprint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec!["a.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (c.pem(), key.serialize_pem())
    }

    #[test]
    fn split_finds_chain_and_key_in_a_combined_file() {
        let (c, k) = cert();
        let (c2, _) = cert();
        let combined = format!("{c}{c2}{k}");
        let (chain, key) = split_chain_and_key(&combined);
        assert_eq!(chain, format!("{c}{c2}"));
        assert_eq!(key.unwrap().expose(), k);
        assert_eq!(leaf_sha256(&chain).unwrap(), leaf_sha256(&c).unwrap());
        assert_eq!(leaf_sha1(&c).unwrap().len(), 40);
    }

    #[test]
    fn atomic_writes_set_the_mode_and_saved_files_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        write_atomic(&p, b"one", 0o600, Ownership::default()).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let saved = Saved::take(&p).unwrap();
        write_atomic(&p, b"two", 0o640, Ownership::default()).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        saved.restore(Ownership::default()).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let none = Saved::take(&dir.path().join("absent")).unwrap();
        none.restore(Ownership::default()).unwrap();
        assert!(!dir.path().join("absent").exists());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp files left"
        );
        assert_eq!(
            lkg_name("haproxy-01:9999/fe", "abcdef0123456789ff"),
            "lkg/haproxy-01_9999_fe/abcdef0123456789"
        );
    }
}
