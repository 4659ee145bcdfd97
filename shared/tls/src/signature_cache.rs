//! Memoised certificate-signature checks for chain verification.
//!
//! A fleet shares a handful of intermediates, so a scan verifies the same
//! intermediate-by-root signature over and over; each is an ECDSA or RSA verification that
//! costs more than the rest of the analysis. Only *successful* checks are remembered, keyed by
//! a SHA-256 over the algorithm identifiers, the public key, the signed message and the
//! signature, so a hit is exactly a repeat of a check that passed. Handshake signatures are
//! never cached (they are fresh every time and are verified by rustls itself).

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use rustls_pki_types::{AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm};
use sha2::{Digest, Sha256};

/// Entries kept before the cache is emptied (32 bytes each).
const CAPACITY: usize = 4096;

/// The shared set of remembered successes.
#[derive(Debug, Default)]
pub(crate) struct SignatureCache {
    seen: Mutex<HashSet<[u8; 32]>>,
}

/// A signature algorithm whose successful checks are remembered in a [`SignatureCache`].
pub(crate) struct CachingAlgorithm {
    inner: &'static dyn SignatureVerificationAlgorithm,
    cache: Arc<SignatureCache>,
}

impl CachingAlgorithm {
    /// Wraps every algorithm of `algs` around one shared cache.
    pub(crate) fn wrap_all(
        algs: &[&'static dyn SignatureVerificationAlgorithm],
    ) -> Vec<CachingAlgorithm> {
        let cache = Arc::new(SignatureCache::default());
        algs.iter()
            .map(|inner| CachingAlgorithm {
                inner: *inner,
                cache: cache.clone(),
            })
            .collect()
    }

    fn key(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [
            self.inner.public_key_alg_id().as_ref(),
            self.inner.signature_alg_id().as_ref(),
            public_key,
            message,
            signature,
        ] {
            // Length-prefixed, so no two different inputs concatenate alike.
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }
}

impl fmt::Debug for CachingAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingAlgorithm")
            .field("inner", &self.inner)
            .finish()
    }
}

impl SignatureVerificationAlgorithm for CachingAlgorithm {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let key = self.key(public_key, message, signature);
        if self
            .cache
            .seen
            .lock()
            .map(|s| s.contains(&key))
            .unwrap_or(false)
        {
            return Ok(());
        }
        self.inner
            .verify_signature(public_key, message, signature)?;
        if let Ok(mut seen) = self.cache.seen.lock() {
            if seen.len() >= CAPACITY {
                seen.clear();
            }
            seen.insert(key);
        }
        Ok(())
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        self.inner.public_key_alg_id()
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.inner.signature_alg_id()
    }

    fn fips(&self) -> bool {
        self.inner.fips()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Counting {
        calls: std::sync::atomic::AtomicUsize,
    }

    impl SignatureVerificationAlgorithm for Counting {
        fn verify_signature(
            &self,
            _: &[u8],
            message: &[u8],
            _: &[u8],
        ) -> Result<(), InvalidSignature> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if message == b"good" {
                Ok(())
            } else {
                Err(InvalidSignature)
            }
        }
        fn public_key_alg_id(&self) -> AlgorithmIdentifier {
            AlgorithmIdentifier::from_slice(b"pk")
        }
        fn signature_alg_id(&self) -> AlgorithmIdentifier {
            AlgorithmIdentifier::from_slice(b"sig")
        }
    }

    #[test]
    fn only_exact_repeats_of_successes_are_served_from_the_cache() {
        let counting: &'static Counting = Box::leak(Box::new(Counting { calls: 0.into() }));
        let algs = CachingAlgorithm::wrap_all(&[counting]);
        let alg = &algs[0];
        let calls = || counting.calls.load(std::sync::atomic::Ordering::SeqCst);
        assert!(alg.verify_signature(b"key", b"good", b"sig").is_ok());
        assert!(alg.verify_signature(b"key", b"good", b"sig").is_ok());
        assert_eq!(calls(), 1, "the repeat is a hit");
        assert!(alg.verify_signature(b"key", b"good", b"other sig").is_ok());
        assert_eq!(calls(), 2, "a different signature is checked");
        assert!(alg.verify_signature(b"key", b"bad", b"sig").is_err());
        assert!(alg.verify_signature(b"key", b"bad", b"sig").is_err());
        assert_eq!(calls(), 4, "failures are never remembered");
    }
}
