//! The receipt of a sent practice ("ricevuta"): what was sent, when, by whom, and the SHA-256
//! digest of the data and of each filing as queued for its institution, with each protocol
//! number as it arrives. A practice never sent has none (409).
//!
//! - `GET /pratiche/{id}/ricevuta`: the printable page;
//! - `GET /pratiche/{id}/ricevuta.pdf`: the same as a PDF file to keep ([`super::pdf`]);
//! - `GET /api/v1/practices/{id}/receipt`: the same facts as JSON, for business software.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::pdf::Line;
use crate::error::ApiError;
use crate::extract::UserLang;
use crate::forms::Desk;
use crate::view::{render, Tr};
use crate::AppState;

pub use app::records::{receipt_of, Receipt, ReceiptFiling};

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

/// A person as the receipt names them: the name beside the codice fiscale when the portal
/// knows it (the card holder reading, or the owner named in the practice's data).
fn person(
    principal: &crate::acting::Principal,
    practice: &domain::practice::Practice,
    code: &domain::identifiers::CodiceFiscale,
) -> String {
    let from_data =
        practice.data.get("owner.tax_code").filter(|c| c.trim().eq_ignore_ascii_case(code.as_str())).map(|_| {
            let part = |k: &str| practice.data.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
            format!("{} {}", part("owner.given_name"), part("owner.surname")).trim().to_string()
        });
    let name = if &principal.actor.tax_code == code { Some(principal.actor.display_name()) } else { from_data };
    crate::view::business_label(name.as_deref(), Some(code.as_str()))
}

/// `GET /pratiche/{id}/ricevuta`: the receipt of a sent practice, for printing.
pub async fn page(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    desk: Desk,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let principal = desk.principal(&app).await?;
    let page = receipt_page(&app, lang, &principal, &id).await?;
    Ok(desk.finish(render(&page, StatusCode::OK)))
}

/// `GET /pratiche/{id}/ricevuta.pdf`: the same receipt as a PDF file to keep.
pub async fn pdf(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    desk: Desk,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let principal = desk.principal(&app).await?;
    let page = receipt_page(&app, lang, &principal, &id).await?;
    let tr = &page.tr;
    let title = format!("{} {}", tr.msg("receipt-title"), page.reference);
    let fact = |label: &str, value: &str| Line { text: format!("{}: {value}", tr.msg(label)), heading: false };
    let mut lines = vec![
        Line { text: title.clone(), heading: true },
        fact("practices-service", &page.service),
        fact("practices-reference", &page.reference),
        fact("practice-submitted", &page.submitted),
        fact("receipt-declarant", &page.declarant),
    ];
    if !page.business.is_empty() {
        lines.push(fact("receipt-business", &page.business));
    }
    lines.push(fact("receipt-digest", &page.digest));
    for r in &page.rows {
        lines.push(Line { text: String::new(), heading: false });
        lines.push(Line { text: format!("{}: {}", r.institution, r.filing), heading: true });
        lines.push(fact("practice-protocol", &r.protocol));
        lines.push(fact("practices-state", &r.state));
        lines.push(fact("receipt-filing-digest", &r.digest));
    }
    lines.push(Line { text: String::new(), heading: false });
    lines.push(Line { text: tr.msg("receipt-digest-note"), heading: false });
    let body = super::pdf::document(&title, &lines);
    let mut response = ([(header::CONTENT_TYPE, "application/pdf")], body).into_response();
    let filename = format!("ricevuta-{}.pdf", page.reference);
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(desk.finish(response))
}

/// The receipt's facts as the page and the PDF show them.
async fn receipt_page<'a>(
    app: &'a AppState,
    lang: domain::Lang,
    principal: &crate::acting::Principal,
    id: &str,
) -> Result<ReceiptPage<'a>, ApiError> {
    let (practice, deliveries) = crate::pages::practice::load(app, principal, id).await?;
    let facts = receipt_of(&practice, &deliveries)?;
    let tr = Tr::acting(&app.translations, lang, principal);
    let service = app.core.catalog.service(&practice.service_id);
    let rows = deliveries
        .iter()
        .zip(&facts.filings)
        .map(|(d, filed)| ReceiptRow {
            institution: app.institution_name(&d.institution, lang),
            filing: service
                .and_then(|s| s.recipients.iter().find(|r| r.institution == d.institution))
                .and_then(|r| app.core.catalog.filing(r))
                .map_or_else(|| d.filing_kind.clone(), |f| f.title.get(lang).to_string()),
            protocol: d.status.protocol_number.clone().unwrap_or_else(|| tr.msg("practice-protocol-waiting")),
            state: tr.msg(&format!("delivery-state-{}", d.state().as_str())),
            digest: filed.payload_sha256.clone(),
        })
        .collect();
    let business = crate::view::practice_business(&practice.data);
    Ok(ReceiptPage {
        id: practice.id.to_string(),
        service: service.map_or_else(|| practice.service_id.clone(), |s| s.title.get(lang).to_string()),
        reference: facts.reference.clone(),
        submitted: domain::italian_display(facts.submitted_at),
        declarant: if practice.actor == practice.owner {
            person(principal, &practice, &practice.owner)
        } else {
            let args = [
                ("actor", person(principal, &practice, &practice.actor)),
                ("owner", person(principal, &practice, &practice.owner)),
            ];
            tr.fmt("receipt-on-behalf", &args)
        },
        business,
        digest: facts.data_sha256.clone(),
        rows,
        tr,
    })
}
