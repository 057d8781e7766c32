//! The receipt of a sent practice ("ricevuta"): what was sent, when, by whom, and the SHA-256
//! digest of the data and of each filing as queued for its institution, with each protocol
//! number as it arrives. A practice never sent has none (409).
//!
//! - `GET /pratiche/{id}/ricevuta`: the printable page;
//! - `GET /api/v1/practices/{id}/receipt`: the same facts as JSON, for business software.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use domain::delivery::DeliveryState;
use domain::practice::{Delivery, Practice};
use serde::Serialize;

use crate::acting::Acting;
use crate::error::ApiError;
use crate::extract::UserLang;
use crate::forms::Desk;
use crate::pages::{render, Tr};
use crate::AppState;

/// The receipt's facts, the same on the page and in the API.
#[derive(Debug, Clone, Serialize)]
pub struct Receipt {
    pub practice: String,
    pub reference: String,
    pub service: String,
    #[serde(with = "time::serde::rfc3339")]
    pub submitted_at: time::OffsetDateTime,
    /// Who answers for the practice, and who sent it (a collaborator under a sub-delegation).
    pub owner: String,
    pub actor: String,
    /// SHA-256 of the data sent (its JSON with keys in order).
    pub data_sha256: String,
    pub filings: Vec<ReceiptFiling>,
}

/// One recipient's filing on the receipt.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptFiling {
    pub institution: String,
    pub filing_kind: String,
    pub state: DeliveryState,
    /// Present once the institution gave it: only then has the procedure started there.
    pub protocol_number: Option<String>,
    /// SHA-256 of the filing's payload as queued for the institution.
    pub payload_sha256: String,
}

/// The receipt of `practice`, or 409 for one never sent.
pub fn receipt_of(practice: &Practice, deliveries: &[Delivery]) -> Result<Receipt, ApiError> {
    let (Some(reference), Some(submitted_at)) = (&practice.reference, practice.submitted_at) else {
        return Err(ApiError::WrongState(practice.state));
    };
    Ok(Receipt {
        practice: practice.id.to_string(),
        reference: reference.to_string(),
        service: practice.service_id.clone(),
        submitted_at,
        owner: practice.owner.to_string(),
        actor: practice.actor.to_string(),
        data_sha256: crate::api::data_digest(&practice.data),
        filings: deliveries
            .iter()
            .map(|d| ReceiptFiling {
                institution: d.institution.clone(),
                filing_kind: d.filing_kind.clone(),
                state: d.state(),
                protocol_number: d.status.protocol_number.clone(),
                payload_sha256: crate::follow::payload_digest(&d.payload),
            })
            .collect(),
    })
}

/// `GET /api/v1/practices/{id}/receipt`.
pub async fn api(
    State(app): State<AppState>,
    Acting(principal): Acting,
    Path(id): Path<String>,
) -> Result<Json<Receipt>, ApiError> {
    let (practice, deliveries) = crate::follow::load(&app, &principal, &id).await?;
    Ok(Json(receipt_of(&practice, &deliveries)?))
}

#[derive(Debug)]
pub struct ReceiptRow {
    institution: String,
    filing: String,
    protocol: String,
    state: String,
    digest: String,
}

#[derive(Template)]
#[template(path = "receipt.html")]
struct ReceiptPage<'a> {
    tr: Tr<'a>,
    id: String,
    service: String,
    reference: String,
    submitted: String,
    declarant: String,
    business: String,
    digest: String,
    rows: Vec<ReceiptRow>,
}

/// `GET /pratiche/{id}/ricevuta`: the receipt of a sent practice, for printing.
pub async fn page(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    desk: Desk,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let principal = desk.principal(&app).await?;
    let (practice, deliveries) = crate::follow::load(&app, &principal, &id).await?;
    let facts = receipt_of(&practice, &deliveries)?;
    let tr = Tr::acting(&app.translations, lang, &principal);
    let service = app.catalog.service(&practice.service_id);
    let rows = deliveries
        .iter()
        .zip(&facts.filings)
        .map(|(d, filed)| ReceiptRow {
            institution: crate::follow::institution_name(&app, &d.institution, lang),
            filing: service
                .and_then(|s| s.recipients.iter().find(|r| r.institution == d.institution))
                .and_then(|r| app.catalog.filing(r))
                .map_or_else(|| d.filing_kind.clone(), |f| f.title.get(lang).to_string()),
            protocol: d.status.protocol_number.clone().unwrap_or_else(|| tr.msg("practice-protocol-waiting")),
            state: tr.msg(&format!("delivery-state-{}", d.state().as_str())),
            digest: filed.payload_sha256.clone(),
        })
        .collect();
    let business = crate::pages::practice_business(&practice.data);
    let page = ReceiptPage {
        id: practice.id.to_string(),
        service: service.map_or_else(|| practice.service_id.clone(), |s| s.title.get(lang).to_string()),
        reference: facts.reference.clone(),
        submitted: domain::italian_display(facts.submitted_at),
        declarant: if practice.actor == practice.owner {
            practice.owner.to_string()
        } else {
            tr.fmt("receipt-on-behalf", &[("actor", practice.actor.to_string()), ("owner", practice.owner.to_string())])
        },
        business,
        digest: facts.data_sha256.clone(),
        rows,
        tr,
    };
    Ok(desk.finish(render(&page, StatusCode::OK)))
}
