//! [`TokenSealer`] with AES-256-GCM: task tokens are stored only in sealed form.
//!
//! The 32-byte key is generated on first use and kept in a 0600 file in the data
//! directory; a key file readable by group or others is refused rather than used. The sealed
//! form is `base64(nonce ‖ ciphertext ‖ tag)` with a fresh random 96-bit nonce per seal, and
//! a fixed associated-data label so a sealed token cannot be confused with other ciphertext.
//!
//! On AWS the key comes from a Secrets Manager secret instead of a file
//! ([`AesGcmSealer::from_secret`]): the secret's text is stretched to the AES key with
//! HKDF-SHA256, so any random string of enough entropy (SAM's `GenerateSecretString`) works.

use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use certops_core::ports::TokenSealer;
use certops_core::Error;

const AAD: &[u8] = b"certops task token v1";

/// Shortest secret text accepted by [`AesGcmSealer::from_secret`].
pub const MIN_SECRET_LEN: usize = 32;

/// AES-256-GCM token sealing with a key file or a key derived from a secret.
pub struct AesGcmSealer {
    key: LessSafeKey,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for AesGcmSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AesGcmSealer")
            .field("key_file", &self.path)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

impl AesGcmSealer {
    /// Loads the key from `key_file`, generating it (mode 0600) if the file does not exist.
    /// Fails with [`Error::Misconfigured`] if the file has the wrong length or is readable by
    /// group or others.
    pub fn open(key_file: &Path) -> Result<AesGcmSealer, Error> {
        let bytes = crate::key_file::load_or_create(key_file, "token key")?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map(LessSafeKey::new)
            .map_err(|_| Error::Misconfigured("token key is not usable".into()))?;
        Ok(AesGcmSealer {
            key,
            path: Some(key_file.to_path_buf()),
        })
    }

    /// Derives the key from a secret's text with HKDF-SHA256 (fixed salt and label, so every
    /// function given the same secret derives the same key). Refuses text shorter than
    /// [`MIN_SECRET_LEN`] bytes.
    pub fn from_secret(secret: &str) -> Result<AesGcmSealer, Error> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(Error::Misconfigured(format!(
                "the token-sealing secret must be at least {MIN_SECRET_LEN} characters"
            )));
        }
        let unusable = || Error::Misconfigured("the token-sealing secret is not usable".into());
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"certops token sealing salt v1");
        let prk = salt.extract(secret.as_bytes());
        let okm = prk
            .expand(&[b"certops task token key v1"], &AES_256_GCM)
            .map_err(|_| unusable())?;
        let key = UnboundKey::from(okm);
        Ok(AesGcmSealer {
            key: LessSafeKey::new(key),
            path: None,
        })
    }

    /// The key file (`None` when the key was derived from a secret).
    pub fn key_file(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl TokenSealer for AesGcmSealer {
    fn seal(&self, token: &str) -> Result<String, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| Error::Transient("no randomness for a nonce".into()))?;
        let mut in_out = token.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut in_out,
            )
            .map_err(|_| Error::Transient("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&in_out);
        Ok(STANDARD.encode(out))
    }

    fn open(&self, sealed: &str) -> Result<String, Error> {
        let refused = || Error::InvalidInput("sealed token does not open with this key".into());
        let bytes = STANDARD.decode(sealed.trim()).map_err(|_| refused())?;
        if bytes.len() < NONCE_LEN {
            return Err(refused());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused())?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(AAD), &mut in_out)
            .map_err(|_| refused())?;
        String::from_utf8(plain.to_vec()).map_err(|_| refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_file::KEY_LEN;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    const TOKEN: &str = "AAAAKgAAAAIAAAAAAAAAAQ-task-token-for-approval-42";

    #[test]
    fn round_trip_and_the_sealed_text_does_not_contain_the_token() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("token.key");
        let sealer = AesGcmSealer::open(&path).unwrap();
        let sealed = sealer.seal(TOKEN).unwrap();
        assert!(!sealed.contains(TOKEN));
        assert!(!sealed.contains("task-token"));
        assert_eq!(sealer.open(&sealed).unwrap(), TOKEN);
        // A fresh nonce each time.
        assert_ne!(sealer.seal(TOKEN).unwrap(), sealed);
        // The key file is 0600 and survives a reopen.
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read(&path).unwrap().len(), KEY_LEN);
        let again = AesGcmSealer::open(&path).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), TOKEN);
        assert!(!format!("{again:?}").contains(&format!("{:?}", fs::read(&path).unwrap())));
    }

    #[test]
    fn tampered_or_foreign_ciphertext_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let a = AesGcmSealer::open(&tmp.path().join("a.key")).unwrap();
        let b = AesGcmSealer::open(&tmp.path().join("b.key")).unwrap();
        let sealed = a.seal(TOKEN).unwrap();
        assert_eq!(b.open(&sealed).unwrap_err().name(), "InvalidInput");
        let mut raw = STANDARD.decode(&sealed).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(a.open(&STANDARD.encode(raw)).is_err());
        assert!(a.open("not base64 !").is_err());
        assert!(a.open("").is_err());
    }

    #[test]
    fn a_key_derived_from_a_secret_is_stable_per_secret_and_distinct_across_secrets() {
        let secret = "k3Y-material-from-secrets-manager-0123456789";
        let a = AesGcmSealer::from_secret(secret).unwrap();
        let sealed = a.seal(TOKEN).unwrap();
        assert!(!sealed.contains("task-token"));
        // Another function given the same secret opens it.
        let b = AesGcmSealer::from_secret(secret).unwrap();
        assert_eq!(b.open(&sealed).unwrap(), TOKEN);
        assert_eq!(b.key_file(), None);
        let other = AesGcmSealer::from_secret(&secret.replace('k', "K")).unwrap();
        assert_eq!(other.open(&sealed).unwrap_err().name(), "InvalidInput");
        assert!(!format!("{a:?}").contains(secret));
        assert_eq!(
            AesGcmSealer::from_secret("short").unwrap_err().name(),
            "Misconfigured"
        );
    }

    #[test]
    fn a_loose_or_malformed_key_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("token.key");
        AesGcmSealer::open(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            AesGcmSealer::open(&path).unwrap_err().name(),
            "Misconfigured"
        );
        let short = tmp.path().join("short.key");
        fs::write(&short, b"too short").unwrap();
        fs::set_permissions(&short, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            AesGcmSealer::open(&short).unwrap_err().name(),
            "Misconfigured"
        );
    }
}
