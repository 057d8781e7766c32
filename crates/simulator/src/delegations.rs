//! The authorisation and delegation services of a simulated institution: who may file online
//! for which businesses (`GET /authorisations/{tax_code}`), and sub-delegations notified by the
//! portal (`POST /delegations`, `DELETE /delegations/{id}`), all ModI-signed.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::{problem, RegisteredDelegation, Sim};

pub(crate) async fn authorisations(
    State(sim): State<Arc<Sim>>,
    Path(tax_code): Path<String>,
    headers: HeaderMap,
) -> Response {
    let behaviour = sim.behaviour.lock().map(|b| b.clone()).unwrap_or_default();
    if behaviour.authorisations_down {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "Servizio abilitazioni non disponibile", json!([]));
    }
    if let Err(e) = sim.verifier.verify(&headers, b"") {
        return problem(StatusCode::UNAUTHORIZED, &format!("ModI: {e}"), json!([]));
    }
    let grants = behaviour.authorisations.get(&tax_code.to_ascii_uppercase()).cloned().unwrap_or_default();
    Json(json!({ "tax_code": tax_code, "businesses": grants })).into_response()
}

/// `POST /delegations`: registers a sub-delegation if the grantor may file here for every
/// business named; otherwise refuses it with the reason. The same delegation sent again gets
/// the same answer.
pub(crate) async fn register_delegation(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let behaviour = sim.behaviour.lock().map(|b| b.clone()).unwrap_or_default();
    if behaviour.down {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "Servizio non disponibile", json!([]));
    }
    let verified = match sim.verifier.verify(&headers, &body) {
        Ok(v) => v,
        Err(e) => return problem(StatusCode::UNAUTHORIZED, &format!("ModI: {e}"), json!([])),
    };
    let Ok(message) = serde_json::from_slice::<delivery::client::DelegationMessage>(&body) else {
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
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "status": "refused", "reason": reason })))
            .into_response();
    }
    let Ok(mut ledger) = sim.ledger.lock() else {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, "ledger", json!([]));
    };
    if let Some(known) = ledger.delegations.get(&message.delegation_id) {
        return Json(json!({ "status": "active", "reference": known.reference })).into_response();
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
    (StatusCode::CREATED, Json(json!({ "status": "active", "reference": reference }))).into_response()
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
    if let Err(e) = sim.verifier.verify(&headers, b"") {
        return problem(StatusCode::UNAUTHORIZED, &format!("ModI: {e}"), json!([]));
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
