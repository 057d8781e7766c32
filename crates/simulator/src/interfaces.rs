//! The interfaces a simulated institution can speak, so that the portal's channel profiles are
//! tried against institutions that do not speak Sportello's own protocol:
//!
//! | interface | intake | answer |
//! |---|---|---|
//! | [`Interface::Sportello`] | `POST /filings`, Sportello's envelope | 202, then callbacks; `GET /filings/{id}` |
//! | [`Interface::RegistroBlock`] | `POST /pratiche` `{pratica: {...}, dati: {...}}` | BLOCK_REST: 201 `{protocollo, esito: "ISCRITTA", rea: {ufficio, numero}}` or 422 `{esito: "RESPINTA", errori: [{campo, descrizione}]}` |
//! | [`Interface::InpsXml`] | `POST /domande`, an XML `domanda` following `channels/inps.xsd` | NONBLOCK_PUSH_REST: 202 `<ricevuta>`, then signed XML `<esito>` callbacks at `X-ReplyTo` (taken in charge, then `ACCOLTA` / `RESPINTA` with `<motivo campo>`); `GET /domande/{id}/esito` |
//! | [`Interface::InailPull`] | `POST /denunce` `{identificativo, ..., denuncia: {...}}` | NONBLOCK_PULL_REST: 202 + `Location: /denunce/{n}/stato`; the status answers `IN_LAVORAZIONE` a few times, then 303 to `/denunce/{n}/esito`: `{esito: "ACCOLTA" | "RESPINTA", protocollo, codice_ditta, motivi: [{campo, messaggio}]}` |

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use delivery::client::FilingEnvelope;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

use crate::{problem, Sim};

/// Which interface a simulated institution speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interface {
    #[default]
    Sportello,
    RegistroBlock,
    InailPull,
    InpsXml,
}

impl Interface {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sportello" => Some(Self::Sportello),
            "registro-block" => Some(Self::RegistroBlock),
            "inail-pull" => Some(Self::InailPull),
            "inps-xml" => Some(Self::InpsXml),
            _ => None,
        }
    }

    /// The path filings are posted to.
    pub fn intake_path(self) -> &'static str {
        match self {
            Self::Sportello => "/filings",
            Self::RegistroBlock => "/pratiche",
            Self::InailPull => "/denunce",
            Self::InpsXml => "/domande",
        }
    }

    /// Offers no authorisation look-up: checks on receipt who may file for the business.
    pub fn checks_authorisation_on_receipt(self) -> bool {
        self == Self::RegistroBlock
    }

    /// Takes every well-formed filing and decides afterwards (a rule broken is a rejection
    /// in the outcome, not a refusal on receipt).
    pub fn decides_later(self) -> bool {
        matches!(self, Self::InailPull | Self::InpsXml)
    }
}

fn text(doc: &Value, pointer: &str) -> Option<String> {
    doc.pointer(pointer).and_then(Value::as_str).map(str::to_string)
}

/// The filing in the institution's own shape, read into the simulator's common form.
pub(crate) fn read_filing(interface: Interface, body: &[u8]) -> Result<FilingEnvelope, Vec<String>> {
    let unreadable = || vec!["the filing is not in this institution's format".to_string()];
    match interface {
        Interface::Sportello => serde_json::from_slice(body).map_err(|e| vec![e.to_string()]),
        Interface::InpsXml => crate::inps_xml::read_filing(body),
        _ => read_json_filing(interface, body).ok_or_else(unreadable),
    }
}

fn read_json_filing(interface: Interface, body: &[u8]) -> Option<FilingEnvelope> {
    let doc: Value = serde_json::from_slice(body).ok()?;
    let (head, payload) = match interface {
        Interface::RegistroBlock => ("/pratica", doc.pointer("/dati")?.clone()),
        _ => ("", doc.pointer("/denuncia")?.clone()),
    };
    let field = |name: &str| text(&doc, &format!("{head}/{name}"));
    Some(FilingEnvelope {
        filing_id: field("identificativo")?,
        reference: field("riferimento").unwrap_or_default(),
        practice_id: String::new(),
        filing_kind: field("adempimento").unwrap_or_default(),
        declarant: field("dichiarante")?,
        on_behalf_of: field("per_conto_di"),
        callback_url: String::new(),
        office: field("ufficio"),
        payload,
    })
}

/// A decision on a filing, as the interface writes it: status, body, `Location`.
pub(crate) fn answer(
    interface: Interface,
    protocol: Option<&str>,
    broken: &[Value],
    handle: usize,
    payload: &Value,
    register: &str,
) -> (u16, Value, Option<String>) {
    match interface {
        Interface::Sportello => unreachable_interface(),
        Interface::RegistroBlock => match protocol {
            Some(protocol) => {
                let office = payload
                    .pointer("/sede/provincia")
                    .and_then(Value::as_str)
                    .map(str::to_ascii_uppercase)
                    .unwrap_or_else(|| register.rsplit('-').nth(1).unwrap_or("RM").to_string());
                let rea = json!({ "ufficio": office, "numero": format!("{:07}", 1_000_000 + handle) });
                (201, json!({ "protocollo": protocol, "esito": "ISCRITTA", "rea": rea }), None)
            }
            None => {
                let errors: Vec<Value> =
                    broken.iter().map(|b| json!({ "campo": b["path"], "descrizione": b["message"] })).collect();
                (422, json!({ "esito": "RESPINTA", "errori": errors }), None)
            }
        },
        Interface::InailPull => (202, json!({ "stato": "RICEVUTA" }), Some(format!("/denunce/{handle}/stato"))),
        Interface::InpsXml => (202, Value::String(crate::inps_xml::receipt(handle)), None),
    }
}

#[cold]
fn unreachable_interface() -> (u16, Value, Option<String>) {
    (500, json!({ "title": "interface" }), None)
}

/// `GET /denunce/{n}/stato`: "in lavorazione" for the first polls, then 303 to the outcome.
pub(crate) async fn pull_status(State(sim): State<Arc<Sim>>, Path(n): Path<usize>, headers: HeaderMap) -> Response {
    if let Some(refused) = sim.refuse_read(&headers) {
        return refused;
    }
    let pending_polls = sim.behaviour.lock().map(|b| b.pending_polls).unwrap_or(0);
    let Ok(mut ledger) = sim.ledger.lock() else {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, "ledger", json!([]));
    };
    let Some(received) = n.checked_sub(1).and_then(|i| ledger.processed.get_mut(i)) else {
        return problem(StatusCode::NOT_FOUND, "Denuncia sconosciuta", json!([]));
    };
    received.polls += 1;
    let polls = received.polls;
    sim.persist(&ledger);
    if polls <= pending_polls {
        return Json(json!({ "stato": "IN_LAVORAZIONE" })).into_response();
    }
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = axum::http::HeaderValue::from_str(&format!("/denunce/{n}/esito")) {
        response.headers_mut().insert("location", location);
    }
    response
}

/// `GET /denunce/{n}/esito`: the outcome, with the protocol number and the codice ditta.
pub(crate) async fn pull_outcome(State(sim): State<Arc<Sim>>, Path(n): Path<usize>, headers: HeaderMap) -> Response {
    if let Some(refused) = sim.refuse_read(&headers) {
        return refused;
    }
    let found = sim.ledger.lock().ok().and_then(|l| n.checked_sub(1).and_then(|i| l.processed.get(i).cloned()));
    let Some(r) = found else {
        return problem(StatusCode::NOT_FOUND, "Denuncia sconosciuta", json!([]));
    };
    let reasons: Vec<Value> =
        r.reasons.iter().map(|b| json!({ "campo": b["path"], "messaggio": b["message"] })).collect();
    Json(json!({
        "identificativo": r.filing_id,
        "esito": if r.accepted { "ACCOLTA" } else { "RESPINTA" },
        "protocollo": r.protocol_number,
        "codice_ditta": r.accepted.then(|| format!("{:09}", 100_000_000 + n)),
        "motivi": reasons,
    }))
    .into_response()
}
