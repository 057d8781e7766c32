//! The authorisation and delegation services of a simulated institution: who may file online
//! for which businesses, and sub-delegations notified by the portal, ModI-signed (behind PDND,
//! with a voucher). Sportello's own interface has `GET /authorisations/{tax_code}`, `POST
//! /delegations` and `DELETE /delegations/{id}`; the demo's INAIL ([`Interface::InailPull`])
//! speaks its own words:
//!
//! - `GET /abilitazioni/{codice_fiscale}` → `{codice_fiscale, abilitazioni: [{impresa, ruolo:
//!   TITOLARE | LEGALE_RAPPRESENTANTE | INTERMEDIARIO}]}`;
//! - `POST /deleghe` `{id_delega, delegante, delegato, imprese, valida_dal, valida_al}` → 201
//!   `{esito: "REGISTRATA", riferimento}` or 422 `{esito: "RIFIUTATA", motivo}`;
//! - `DELETE /deleghe/{id_delega}`.
//!
//! The demo's Registro Imprese ([`Interface::RegistroBlock`]) offers no look-up: it checks, on
//! receipt, that the person responsible for a filing may file for its business
//! ([`unauthorised`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use delivery::client::DelegationMessage;
use domain::authorisation::{Grant, Role};
use serde_json::Value;

use crate::interfaces::Interface;
use crate::{problem, RegisteredDelegation, Sim};

/// The payload path of the business a filing is for, in the registry's filings.
const BUSINESS_PATH: &str = "impresa.codice_fiscale";

/// The refusal on receipt of a filing whose responsible person may not file for its business
/// here (as a broken rule naming no field; the portal could not check it, the institution
/// offering no look-up).
pub(crate) fn unauthorised(behaviour: &crate::Behaviour, envelope: &delivery::client::FilingEnvelope) -> Option<Value> {
    let business = crate::rules::json_at(&envelope.payload, BUSINESS_PATH)?.as_str()?.trim().to_uppercase();
    if business.is_empty() {
        return None;
    }
    let responsible = envelope.on_behalf_of.as_deref().unwrap_or(&envelope.declarant).to_ascii_uppercase();
    let grants = behaviour.authorisations.get(&responsible).map(Vec::as_slice).unwrap_or_default();
    if grants.iter().any(|g| g.business.eq_ignore_ascii_case(&business)) {
        return None;
    }
    let message = format!("{responsible} non risulta abilitato a presentare pratiche per l'impresa {business}");
    // About the sender, not a field of the filing: no field at fault.
    Some(json!({ "path": null, "message": message, "published": false }))
}

fn inail_role(role: Role) -> &'static str {
    match role {
        Role::Owner => "TITOLARE",
        Role::LegalRepresentative => "LEGALE_RAPPRESENTANTE",
        Role::Intermediary => "INTERMEDIARIO",
    }
}

/// Who may file here for which businesses, in the institution's own shape.
fn grants_answer(interface: Interface, tax_code: &str, grants: &[Grant]) -> Value {
    match interface {
        Interface::InailPull => {
            let list: Vec<Value> =
                grants.iter().map(|g| json!({ "impresa": g.business, "ruolo": inail_role(g.role) })).collect();
            json!({ "codice_fiscale": tax_code, "abilitazioni": list })
        }
        _ => json!({ "tax_code": tax_code, "businesses": grants }),
    }
}

/// A delegation notice in the institution's own shape.
fn read_delegation(interface: Interface, body: &[u8]) -> Option<DelegationMessage> {
    if interface != Interface::InailPull {
        return serde_json::from_slice(body).ok();
    }
    let doc: Value = serde_json::from_slice(body).ok()?;
    let text = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
    let list = |k: &str| -> Option<Vec<String>> {
        doc.get(k)?.as_array()?.iter().map(|v| v.as_str().map(str::to_string)).collect()
    };
    Some(DelegationMessage {
        delegation_id: text("id_delega")?,
        grantor: text("delegante")?,
        delegate: text("delegato")?,
        businesses: list("imprese")?,
        services: Vec::new(),
        valid_from: text("valida_dal")?,
        valid_until: text("valida_al")?,
    })
}

/// "Registered with this reference" or "refused for this reason", in the institution's words.
fn delegation_answer(interface: Interface, outcome: Result<(StatusCode, String), String>) -> Response {
    let (status, body) = match (interface, outcome) {
        (Interface::InailPull, Ok((status, reference))) => {
            (status, json!({ "esito": "REGISTRATA", "riferimento": reference }))
        }
        (Interface::InailPull, Err(reason)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, json!({ "esito": "RIFIUTATA", "motivo": reason }))
        }
        (_, Ok((status, reference))) => (status, json!({ "status": "active", "reference": reference })),
        (_, Err(reason)) => (StatusCode::UNPROCESSABLE_ENTITY, json!({ "status": "refused", "reason": reason })),
    };
    (status, Json(body)).into_response()
}

pub(crate) async fn authorisations(
    State(sim): State<Arc<Sim>>,
    Path(tax_code): Path<String>,
    headers: HeaderMap,
) -> Response {
    let behaviour = sim.behaviour.lock().map(|b| b.clone()).unwrap_or_default();
    if behaviour.authorisations_down {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "Servizio abilitazioni non disponibile", json!([]));
    }
    if let Err(e) = sim.authenticate(&headers, b"") {
        return problem(StatusCode::UNAUTHORIZED, &e, json!([]));
    }
    let grants = behaviour.authorisations.get(&tax_code.to_ascii_uppercase()).cloned().unwrap_or_default();
    Json(grants_answer(sim.settings.interface, &tax_code, &grants)).into_response()
}

/// `POST /delegations`: registers a sub-delegation if the grantor may file here for every
/// business named; otherwise refuses it with the reason. The same delegation sent again gets
/// the same answer.
pub(crate) async fn register_delegation(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let behaviour = sim.behaviour.lock().map(|b| b.clone()).unwrap_or_default();
    if behaviour.down {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "Servizio non disponibile", json!([]));
    }
    let verified = match sim.authenticate(&headers, &body) {
        Ok(v) => v,
        Err(e) => return problem(StatusCode::UNAUTHORIZED, &e, json!([])),
    };
    let interface = sim.settings.interface;
    let Some(message) = read_delegation(interface, &body) else {
        return problem(StatusCode::BAD_REQUEST, "Delega non leggibile", json!([]));
    };
    if verified.user_id != message.grantor {
        return problem(StatusCode::UNAUTHORIZED, "ModI: la traccia non indica il delegante", json!([]));
    }
    let grants = behaviour.authorisations.get(&message.grantor.to_ascii_uppercase()).cloned().unwrap_or_default();
    if let Some(missing) =
        message.businesses.iter().find(|b| !grants.iter().any(|g| g.business.eq_ignore_ascii_case(b)))
    {
        let reason = format!("Il delegante non risulta abilitato presso l'ente per l'impresa {missing}");
        return delegation_answer(interface, Err(reason));
    }
    let Ok(mut ledger) = sim.ledger.lock() else {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, "ledger", json!([]));
    };
    if let Some(known) = ledger.delegations.get(&message.delegation_id) {
        return delegation_answer(interface, Ok((StatusCode::OK, known.reference.clone())));
    }
    let reference = format!("{}-DEL-{:05}", sim.settings.register, ledger.delegations.len() + 1);
    ledger.delegations.insert(
        message.delegation_id.clone(),
        RegisteredDelegation {
            reference: reference.clone(),
            grantor: message.grantor,
            delegate: message.delegate,
            businesses: message.businesses,
            revoked: false,
        },
    );
    sim.persist(&ledger);
    delegation_answer(interface, Ok((StatusCode::CREATED, reference)))
}

/// `DELETE /delegations/{id}`: the sub-delegation no longer holds.
pub(crate) async fn revoke_delegation(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let behaviour = sim.behaviour.lock().map(|b| b.clone()).unwrap_or_default();
    if behaviour.down {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "Servizio non disponibile", json!([]));
    }
    if let Err(e) = sim.authenticate(&headers, b"") {
        return problem(StatusCode::UNAUTHORIZED, &e, json!([]));
    }
    let Ok(mut ledger) = sim.ledger.lock() else {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, "ledger", json!([]));
    };
    match ledger.delegations.get_mut(&id) {
        Some(d) => {
            d.revoked = true;
            sim.persist(&ledger);
            StatusCode::NO_CONTENT.into_response()
        }
        None => problem(StatusCode::NOT_FOUND, "Delega sconosciuta", json!([])),
    }
}
