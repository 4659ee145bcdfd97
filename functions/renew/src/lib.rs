//! `renew`: under the approved plan (hash recomputed, drift refused), generate
//! a fresh key straight into the keystore, send a CSR through the inventory's
//! issuer path, and return the new bundle *by reference*. On the fallback
//! path, select the pre-provisioned fallback certificate instead.

use certops_core::ports::{Bundle, Deps, IssueRequest, SecretPem, Table, TicketUpdate};
use certops_core::workflow::{
    leaf_facts, plan_in_force, record_audit, require_approval, RenewalOutput, StepEvent,
};
use certops_core::{AuditKind, Error};
use serde_json::json;

pub mod acme_budget;
pub mod guardrails;
pub mod keys;

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
        let (key, names, chain) = issue_checked(deps, &plan).await?;
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
        acme_budget::after_issuance(deps, &plan.issuer, &names).await?;
        if let Some(domain) = &plan.issuer.registered_domain {
            // Count issuances per registered domain for the ACME rate-limit check.
            for _ in 0..5 {
                let current = deps.store.get(Table::Issuances, domain).await?;
                let count = current
                    .as_ref()
                    .and_then(|v| v["count"].as_u64())
                    .unwrap_or(0);
                if deps
                    .store
                    .compare_and_swap(
                        Table::Issuances,
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
                    "{} certificate ready: serial {}, SHA-256 {}, expires {} (bundle {}).{}",
                    if fallback { "Fallback" } else { "Renewed" },
                    facts.serial,
                    facts.fingerprint,
                    facts.not_after.to_rfc3339(),
                    bundle_ref,
                    fallback_reason(&event.state)
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

/// Generates the key (the plan's key type, else the inventory's), sends the CSR through the issuer with the
/// ACME ledger kept, and holds what comes back to the guardrails. Returns the key, the
/// planned names and the chain; nothing is stored when any of it fails.
async fn issue_checked(
    deps: &Deps,
    plan: &certops_core::Plan,
) -> Result<(rcgen::KeyPair, Vec<String>, String), Error> {
    // Validation fixed the key type a re-import target requires; older plans name none.
    let key_type = plan
        .key_type
        .or_else(|| {
            deps.config
                .inventory
                .get(&plan.cert_id)
                .and_then(|c| c.key_type)
        })
        .unwrap_or_default();
    let key = keys::generate(key_type)?;
    let sans: Vec<String> = plan.sans.iter().cloned().collect();
    let names = keys::planned_names(&plan.common_name, &sans);
    let csr = keys::csr(&key, &plan.common_name, &names)?;
    acme_budget::before_order(deps, &plan.issuer).await?;
    // RFC 9773 §5: the order names the certificate it replaces (the scan's ARI record).
    let replaces = if plan.issuer.method == certops_core::RenewalMethod::Acme {
        certops_core::renewal_info::load(deps.store.as_ref(), &plan.cert_id)
            .await?
            .map(|w| w.certificate_id)
    } else {
        None
    };
    let issued = deps
        .issuer
        .issue(&IssueRequest {
            cert_id: plan.cert_id.clone(),
            issuer: plan.issuer.clone(),
            csr_pem: csr,
            common_name: plan.common_name.clone(),
            sans: names.clone(),
            replaces,
        })
        .await;
    let chain = match issued {
        Ok(chain) => chain,
        Err(e) => {
            acme_budget::after_refusal(deps, &plan.issuer, &e).await?;
            return Err(e);
        }
    };
    let anchors = deps.issuer.trust_anchors_for(&plan.issuer).await?;
    guardrails::check(
        &chain,
        key.public_key_raw(),
        &names,
        anchors.as_deref(),
        deps.clock.now(),
    )?;
    Ok((key, names, chain))
}

/// Why the fallback is used, for the ticket: the renewal error the state machine caught
/// (e.g. the ACME CA's `rateLimited` problem and its `Retry-After`), or the validation's
/// rate-limit risk. Empty on the normal path.
fn fallback_reason(state: &certops_core::workflow::WorkflowState) -> String {
    if let Some(caught) = &state.renew_error {
        let message = serde_json::from_str::<serde_json::Value>(&caught.cause)
            .ok()
            .and_then(|v| v["errorMessage"].as_str().map(str::to_string))
            .unwrap_or_else(|| caught.cause.clone());
        return format!(" Renewal was not possible ({}): {message}", caught.error);
    }
    match state.validation() {
        Ok(v) if v.report.rate_limit_risk => {
            " Validation found the ACME rate-limit budget at risk; the fallback was planned."
                .to_string()
        }
        _ => String::new(),
    }
}

#[cfg(test)]
#[path = "../../validate/src/test_world.rs"]
mod test_world;

#[cfg(test)]
mod tests;
