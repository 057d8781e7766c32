//! The intake's HTTP handlers: a filing received (checked, deduplicated, processed, answered),
//! its state asked for, and the `/_sim` routes the tests and the demo use.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use delivery::client::FilingEnvelope;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

use crate::{delegations, inps_xml, interfaces, problem, rules, Behaviour, Intake, Interface, Received, Sim};

pub(crate) async fn receive_filing(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let behaviour = sim.behaviour.lock().map(|b| b.clone()).unwrap_or_default();
    if behaviour.down {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "Servizio non disponibile", json!([]));
    }
    let verified = match sim.authenticate(&headers, &body) {
        Ok(verified) => verified,
        Err(e) => {
            tracing::info!(institution = %sim.settings.institution, error = %e, "authentication failed");
            return problem(StatusCode::UNAUTHORIZED, &e, json!([]));
        }
    };
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string) else {
        return problem(StatusCode::BAD_REQUEST, "Idempotency-Key mancante", json!([]));
    };
    let mut envelope = match interfaces::read_filing(sim.settings.interface, &body) {
        Ok(envelope) => envelope,
        Err(problems) => return problem(StatusCode::BAD_REQUEST, "Pratica non leggibile", json!(problems)),
    };
    if envelope.callback_url.is_empty() {
        envelope.callback_url = headers.get("x-replyto").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    }
    if verified.user_id != envelope.declarant || verified.on_behalf_of != envelope.on_behalf_of {
        return problem(
            StatusCode::UNAUTHORIZED,
            "ModI: la traccia (AUDIT_REST_01) non indica il dichiarante della pratica",
            json!([]),
        );
    }
    let digest = delivery::modi::digest_header(&body);
    {
        let Ok(mut ledger) = sim.ledger.lock() else {
            return problem(StatusCode::INTERNAL_SERVER_ERROR, "ledger", json!([]));
        };
        if let Some(intake) = ledger.by_key.get(&key) {
            let (seen_digest, done) = match intake {
                Intake::Done { digest, status, body, location } => {
                    (digest, Some((*status, body.clone(), location.clone())))
                }
                Intake::InFlight { digest } => (digest, None),
            };
            if *seen_digest != digest {
                return problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Idempotency-Key già usata con un'altra pratica",
                    json!([]),
                );
            }
            return match done {
                // The same request again: the first answer again.
                Some((status, body, location)) => answered(status, body, location),
                None => problem(StatusCode::CONFLICT, "Pratica già in lavorazione", json!([])),
            };
        }
        ledger.by_key.insert(key.clone(), Intake::InFlight { digest: digest.clone() });
    }
    // Processing goes on even if the portal hangs up: like a real institution, the filing is
    // taken whether or not the answer reaches the portal. A retry then gets the same answer.
    match tokio::spawn(process(sim, key, envelope, digest, behaviour)).await {
        Ok(response) => response,
        Err(_) => problem(StatusCode::INTERNAL_SERVER_ERROR, "processing failed", json!([])),
    }
}

pub(crate) async fn process(
    sim: Arc<Sim>,
    key: String,
    envelope: FilingEnvelope,
    digest: String,
    behaviour: Behaviour,
) -> Response {
    if behaviour.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(behaviour.delay_ms)).await;
    }
    if behaviour.failure_rate > 0.0 && sim.chance() < behaviour.failure_rate {
        if let Ok(mut ledger) = sim.ledger.lock() {
            ledger.by_key.remove(&key);
        }
        return problem(StatusCode::SERVICE_UNAVAILABLE, "Errore temporaneo", json!([]));
    }
    let mut broken = rules::broken(&behaviour.rules, &envelope.payload);
    if sim.settings.interface.checks_authorisation_on_receipt() {
        broken.extend(delegations::unauthorised(&behaviour, &envelope));
    }
    if sim.settings.interface != Interface::Sportello {
        return process_own_interface(&sim, key, envelope, digest, broken);
    }
    let (status, answer, accepted_protocol) = {
        let Ok(mut ledger) = sim.ledger.lock() else {
            return problem(StatusCode::INTERNAL_SERVER_ERROR, "ledger", json!([]));
        };
        if broken.is_empty() {
            let protocol = sim.next_protocol(&mut ledger);
            ledger.processed.push(Received::of(&envelope, Some(protocol.clone()), Vec::new()));
            let answer = if behaviour.protocol_in_answer {
                json!({ "status": "received", "protocol_number": protocol })
            } else {
                json!({ "status": "received" })
            };
            ledger.by_key.insert(
                key.clone(),
                Intake::Done { digest: digest.clone(), status: 202, body: answer.clone(), location: None },
            );
            sim.persist(&ledger);
            (StatusCode::ACCEPTED, answer, Some(protocol))
        } else {
            let answer = json!({ "type": "about:blank", "title": "Pratica respinta", "status": 422,
                                 "detail": "Pratica respinta in accettazione", "errors": broken });
            ledger.refused.push(Received::of(&envelope, None, broken));
            ledger.by_key.insert(
                key.clone(),
                Intake::Done { digest: digest.clone(), status: 422, body: answer.clone(), location: None },
            );
            sim.persist(&ledger);
            (StatusCode::UNPROCESSABLE_ENTITY, answer, None)
        }
    };
    if let (Some(protocol), true) = (accepted_protocol, behaviour.callbacks) {
        tokio::spawn(sim.clone().callback(envelope, protocol, true));
    }
    let mut response = (status, Json(answer)).into_response();
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        response.headers_mut().insert("content-type", axum::http::HeaderValue::from_static("application/problem+json"));
    }
    response
}

/// A filing taken by an institution with an interface of its own: recorded, answered as that
/// interface answers (see [`interfaces`]).
pub(crate) fn process_own_interface(
    sim: &Arc<Sim>,
    key: String,
    envelope: FilingEnvelope,
    digest: String,
    broken: Vec<Value>,
) -> Response {
    let interface = sim.settings.interface;
    let Ok(mut ledger) = sim.ledger.lock() else {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, "ledger", json!([]));
    };
    // A BLOCK_REST registry refuses on receipt; a pull institution takes everything and decides.
    let taken = broken.is_empty() || interface.decides_later();
    let protocol = taken.then(|| sim.next_protocol(&mut ledger));
    let handle = ledger.processed.len() + 1;
    let (status, body, location) =
        interfaces::answer(interface, protocol.as_deref(), &broken, handle, &envelope.payload, &sim.settings.register);
    let received = Received::of(&envelope, protocol, broken);
    if taken {
        ledger.processed.push(received);
    } else {
        ledger.refused.push(received);
    }
    ledger.by_key.insert(key, Intake::Done { digest, status, body: body.clone(), location: location.clone() });
    sim.persist(&ledger);
    let calls_back = sim.behaviour.lock().map(|b| b.callbacks).unwrap_or(true);
    let just_taken = ledger.processed.last().filter(|_| taken).cloned();
    if let (Interface::InpsXml, true, Some(taken)) = (interface, calls_back, just_taken) {
        tokio::spawn(inps_xml::call_back(sim.clone(), taken, envelope.callback_url));
    }
    answered(status, body, location)
}

/// An answer with its status and, when given, its `Location`.
pub(crate) fn answered(status: u16, body: Value, location: Option<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = match body {
        // An interface that answers in XML keeps its document as text.
        Value::String(xml) => (status, [("content-type", "application/xml")], xml).into_response(),
        json => (status, Json(json)).into_response(),
    };
    if let Some(location) = location.and_then(|l| axum::http::HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert("location", location);
    }
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        response.headers_mut().insert("content-type", axum::http::HeaderValue::from_static("application/problem+json"));
    }
    response
}

pub(crate) async fn filing_state(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if sim.behaviour.lock().map(|b| b.down).unwrap_or(false) {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "Servizio non disponibile", json!([]));
    }
    if let Err(e) = sim.authenticate(&headers, b"") {
        return problem(StatusCode::UNAUTHORIZED, &e, json!([]));
    }
    let found = sim.ledger.lock().ok().and_then(|l| l.processed.iter().find(|r| r.filing_id == id).cloned());
    match found {
        // Every filing taken is registered and, in this simulation, accepted.
        Some(r) => Json(json!({ "filing_id": r.filing_id, "protocol_number": r.protocol_number, "outcome": "accepted",
                                "reasons": [], "fields": [] }))
        .into_response(),
        None => problem(StatusCode::NOT_FOUND, "Pratica sconosciuta", json!([])),
    }
}

pub(crate) async fn list_delegations(State(sim): State<Arc<Sim>>) -> Response {
    let delegations = sim.ledger.lock().map(|l| l.delegations.clone()).unwrap_or_default();
    Json(json!({ "delegations": delegations })).into_response()
}

pub(crate) async fn list_received(State(sim): State<Arc<Sim>>) -> Response {
    let received = sim.ledger.lock().map(|l| l.processed.clone()).unwrap_or_default();
    Json(json!({ "count": received.len(), "filings": received })).into_response()
}

/// The current behaviour, so a test can read it, change it with `PUT` and put it back.
pub(crate) async fn get_behaviour(State(sim): State<Arc<Sim>>) -> Response {
    match sim.behaviour.lock() {
        Ok(b) => Json(b.clone()).into_response(),
        Err(_) => problem(StatusCode::INTERNAL_SERVER_ERROR, "behaviour", json!([])),
    }
}

pub(crate) async fn set_behaviour(State(sim): State<Arc<Sim>>, Json(b): Json<Behaviour>) -> Response {
    if let Ok(mut current) = sim.behaviour.lock() {
        *current = b.clone();
    }
    Json(b).into_response()
}
