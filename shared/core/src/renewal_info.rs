//! ACME Renewal Information (RFC 9773) kept between runs: the CA's suggested renewal window
//! for the certificate each ACME certificate object serves, one Store record per object.
//!
//! The scan fetches the window through [`crate::ports::Issuer::renewal_window`] when there is
//! no record, when the served certificate changed, or once the CA's `Retry-After` has passed,
//! and sends a finding once the window has opened. Validation reads the record, so a renewal
//! inside the window is due even beyond the planned threshold. The renew step names the
//! record's certificate in the new order's `replaces`.

use crate::ports::{StoreExt, Table};
use chrono::{DateTime, Utc};

use crate::ports::{RenewalWindow, Store};
use crate::Error;

/// The stored window for `cert_id`, if any. A record that does not parse is
/// [`Error::Corrupt`] naming it.
pub async fn load(store: &dyn Store, cert_id: &str) -> Result<Option<RenewalWindow>, Error> {
    store.get_as(Table::RenewalInfo, cert_id).await
}

/// Whether `stored` must be fetched again for the served certificate `served_id` at `now`:
/// none yet, another certificate, or the CA's `Retry-After` has passed.
pub fn needs_refresh(stored: Option<&RenewalWindow>, served_id: &str, now: DateTime<Utc>) -> bool {
    match stored {
        None => true,
        Some(w) => w.certificate_id != served_id || now >= w.next_check,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn window(id: &str, next_check: DateTime<Utc>) -> RenewalWindow {
        RenewalWindow {
            certificate_id: id.into(),
            start: next_check,
            end: next_check,
            next_check,
            explanation_url: None,
        }
    }

    #[test]
    fn refreshes_when_missing_for_another_certificate_or_after_retry_after() {
        let now = Utc::now();
        let later = now + TimeDelta::hours(6);
        assert!(needs_refresh(None, "a.b", now));
        assert!(!needs_refresh(Some(&window("a.b", later)), "a.b", now));
        assert!(needs_refresh(Some(&window("a.c", later)), "a.b", now));
        assert!(needs_refresh(Some(&window("a.b", now)), "a.b", now));
    }
}
