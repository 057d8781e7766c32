//! The demo INPS's own interface: XML filings following its published schema
//! (`channels/inps.xsd`, the same file the portal's profile names), answered with a
//! `<ricevuta>`, then signed `<esito>` callbacks at the `X-ReplyTo` address
//! (NONBLOCK_PUSH_REST), and `GET /domande/{id}/esito` for a portal that asks.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use delivery::client::FilingEnvelope;
use serde_json::{json, Value};

use crate::{problem, Received, Sim};

/// INPS's published schema of its documents.
pub const SCHEMA: &str = include_str!("../../../channels/inps.xsd");
const NAMESPACE: &str = "urn:sportello:demo:inps:1";
const CONTENT_TYPE: &str = "application/xml";

/// A `<domanda>`, checked against the schema, read into the simulator's common form.
pub(crate) fn read_filing(body: &[u8]) -> Result<FilingEnvelope, Vec<String>> {
    delivery::xml::validate(SCHEMA, body)?;
    let (root, document) = delivery::xml::to_value(body)?;
    if root != "domanda" {
        return Err(vec![format!("a <{root}> is not a <domanda>")]);
    }
    let field = |name: &str| document.get(name).and_then(Value::as_str).map(str::to_string);
    let missing = |name: &str| vec![format!("<{name}> is missing")];
    Ok(FilingEnvelope {
        filing_id: field("identificativo").ok_or_else(|| missing("identificativo"))?,
        reference: field("riferimento").unwrap_or_default(),
        practice_id: String::new(),
        filing_kind: field("adempimento").unwrap_or_default(),
        declarant: field("dichiarante").ok_or_else(|| missing("dichiarante"))?,
        on_behalf_of: field("per_conto_di"),
        callback_url: String::new(),
        office: None,
        payload: document.get("dati").cloned().unwrap_or(Value::Null),
    })
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The 202's document.
pub(crate) fn receipt(handle: usize) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ricevuta xmlns=\"{NAMESPACE}\"><identificativo>DOM-{handle}</identificativo><stato>RICEVUTA</stato></ricevuta>"
    )
}

/// An `<esito>`: taken in charge (no `stato`) or the outcome with its reasons.
fn esito(institution: &str, received: &Received, outcome: bool) -> String {
    let protocol = escape(received.protocol_number.as_deref().unwrap_or_default());
    let filing = escape(&received.filing_id);
    let (event, state, message) = if outcome {
        ("ESITO", format!(" stato=\"{}\"", if received.accepted { "ACCOLTA" } else { "RESPINTA" }), "outcome")
    } else {
        ("PRESA_IN_CARICO", String::new(), "taken")
    };
    let reasons: String = received
        .reasons
        .iter()
        .map(|r| {
            let field = escape(r["path"].as_str().unwrap_or_default());
            format!("<motivo campo=\"{field}\">{}</motivo>", escape(r["message"].as_str().unwrap_or_default()))
        })
        .collect();
    let reasons = if outcome { reasons } else { String::new() };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<esito xmlns=\"{NAMESPACE}\" domanda=\"{filing}\" messaggio=\"{institution}:{message}:{filing}\" evento=\"{event}\"{state}><protocollo>{protocol}</protocollo>{reasons}</esito>"
    )
}

/// Calls the portal back at `reply_to`: taken in charge, then the outcome.
pub(crate) async fn call_back(sim: Arc<Sim>, received: Received, reply_to: String) {
    if reply_to.is_empty() {
        tracing::warn!(institution = %sim.settings.institution, "a filing without X-ReplyTo: nobody to call back");
        return;
    }
    let delay = Duration::from_millis(sim.behaviour.lock().map(|b| b.callback_delay_ms).unwrap_or(200));
    for outcome in [false, true] {
        tokio::time::sleep(delay).await;
        let body = esito(&sim.settings.institution, &received, outcome).into_bytes();
        sim.post_signed(&reply_to, &received.declarant, body, CONTENT_TYPE).await;
    }
}

/// `GET /domande/{id}/esito`: the outcome of a filing, as the callback gives it.
pub(crate) async fn outcome(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(refused) = sim.refuse_read(&headers) {
        return refused;
    }
    let found = sim.ledger.lock().ok().and_then(|l| l.processed.iter().find(|r| r.filing_id == id).cloned());
    match found {
        Some(received) => {
            (StatusCode::OK, [("content-type", CONTENT_TYPE)], esito(&sim.settings.institution, &received, true))
                .into_response()
        }
        None => problem(StatusCode::NOT_FOUND, "Domanda sconosciuta", json!([])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_own_documents_follow_its_schema() {
        let received = Received {
            filing_id: "p<1>.inps.0".into(),
            declarant: "RSSMRA45C12F205C".into(),
            on_behalf_of: None,
            filing_kind: "k".into(),
            reference: "SPT-1".into(),
            protocol_number: Some("INPS-AOO1-2026-0000001".into()),
            payload: Value::Null,
            accepted: false,
            reasons: vec![json!({"path": "azienda.pec", "message": "PEC \"non\" valida & altro"})],
            polls: 0,
        };
        for outcome in [false, true] {
            let text = esito("inps", &received, outcome);
            assert_eq!(delivery::xml::validate(SCHEMA, text.as_bytes()), Ok(()), "{text}");
        }
        assert_eq!(delivery::xml::validate(SCHEMA, receipt(3).as_bytes()), Ok(()));
    }
}
