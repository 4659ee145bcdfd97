//! `renew`: under the approved plan (hash recomputed, drift refused), generate
//! a fresh key straight into the keystore, send a CSR through the inventory's
//! issuer path, and return the new bundle *by reference*. On the fallback
//! path, select the pre-provisioned fallback certificate instead.

use certops_core::ports::{Bundle, Deps, IssueRequest, SecretPem, TicketUpdate};
use certops_core::workflow::{
    leaf_facts, plan_in_force, record_audit, require_approval, RenewalOutput, StepEvent,
};
use certops_core::{AuditKind, Error};
use serde_json::json;

const ACTOR: &str = "step:renew";

/// Renews (or selects the fallback) for one execution.
pub async fn handle(deps: &Deps, event: StepEvent) -> Result<RenewalOutput, Error> {
    let (plan, hash) = plan_in_force(&deps.config, &event.state, event.is_fallback())?;
    // The state says it was approved; the Store must agree before anything is issued.
    if let Err(e) = require_approval(deps, &event.execution, &hash).await {
        record_audit(
            deps,
            &event.execution,
            AuditKind::Action,
            ACTOR,
            json!({"refused": e.name(), "reason": e.to_string(), "planHash": hash}),
        )
        .await?;
        return Err(e);
    }
    // The fallback certificate is used when renewal failed at run time (mode) or when
    // validation already planned for it (ACME budget at risk).
    let fallback = event.is_fallback() || plan.use_fallback;
    let exec = event.execution.as_str();
    let (bundle_ref, source) = if fallback {
        let reference = plan.fallback_cert.clone().ok_or_else(|| {
            Error::InvalidInput(format!("{} has no fallback certificate", plan.cert_id))
        })?;
        if !deps.keystore.exists(&reference).await? {
            return Err(Error::InvalidInput(format!(
                "fallback certificate {reference} is not in the keystore"
            )));
        }
        (reference, "fallback".to_string())
    } else {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| Error::Transient(format!("key generation failed: {e}")))?;
        let mut names: Vec<String> = vec![plan.common_name.clone()];
        names.extend(
            plan.sans
                .iter()
                .filter(|s| **s != plan.common_name)
                .cloned(),
        );
        let mut params = rcgen::CertificateParams::new(names.clone())
            .map_err(|e| Error::InvalidInput(format!("certificate names are invalid: {e}")))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, plan.common_name.clone());
        let csr = params
            .serialize_request(&key)
            .and_then(|c| c.pem())
            .map_err(|e| Error::Transient(format!("CSR generation failed: {e}")))?;
        let chain = deps
            .issuer
            .issue(&IssueRequest {
                cert_id: plan.cert_id.clone(),
                issuer: plan.issuer.clone(),
                csr_pem: csr,
                common_name: plan.common_name.clone(),
                sans: names,
            })
            .await?;
        let facts = leaf_facts(&chain)?;
        let name = format!("{}/{}", plan.cert_id, facts.serial);
        let reference = deps
            .keystore
            .put_bundle(
                &name,
                Bundle {
                    chain_pem: chain,
                    key: SecretPem::new(key.serialize_pem()),
                },
            )
            .await?;
        if let Some(domain) = &plan.issuer.registered_domain {
            // Count issuances per registered domain for the ACME rate-limit check.
            for _ in 0..5 {
                let current = deps.store.get("issuances", domain).await?;
                let count = current
                    .as_ref()
                    .and_then(|v| v["count"].as_u64())
                    .unwrap_or(0);
                if deps
                    .store
                    .compare_and_swap(
                        "issuances",
                        domain,
                        current.as_ref(),
                        &json!({"count": count + 1}),
                    )
                    .await?
                {
                    break;
                }
            }
        }
        (reference, plan.issuer.method.as_str().to_string())
    };
    let bundle = deps.keystore.get_bundle(&bundle_ref).await?;
    let facts = leaf_facts(&bundle.chain_pem)?;
    drop(bundle);
    let out = RenewalOutput {
        bundle_ref: bundle_ref.clone(),
        fingerprint: facts.fingerprint.clone(),
        not_after: facts.not_after,
        serial: facts.serial.clone(),
        source: source.clone(),
        plan_hash: hash.clone(),
    };
    let ticket = &event.state.validation()?.ticket;
    deps.itsm
        .update(
            ticket,
            ACTOR,
            TicketUpdate {
                work_note: Some(format!(
                    "{} certificate ready: serial {}, SHA-256 {}, expires {} (bundle {}).",
                    if fallback { "Fallback" } else { "Renewed" },
                    facts.serial,
                    facts.fingerprint,
                    facts.not_after.to_rfc3339(),
                    bundle_ref
                )),
                ..TicketUpdate::default()
            },
        )
        .await?;
    record_audit(
        deps,
        exec,
        AuditKind::Action,
        ACTOR,
        json!({"action": if fallback { "select-fallback" } else { "issue" }, "planHash": hash, "source": source,
               "bundleRef": bundle_ref, "fingerprint": facts.fingerprint, "notAfter": facts.not_after, "serial": facts.serial}),
    )
    .await?;
    Ok(out)
}
