//! What institutions tell the portal: `POST /institutions/v1/{institution}/events`, or the
//! `X-ReplyTo` address given with a filing, `…/filings/{filing id}/events`.
//!
//! Each request is ModI-signed by the institution (checked against the certificate configured
//! for it) and read through its channel profile's `[callback]` map: which filing
//! (`<practice>.<institution>.<revision>`), the message id, the protocol number, the outcome,
//! the reasons and fields. Messages are deduplicated by message id (or the body's digest); an
//! event older than what is known changes nothing; an unknown practice, or an institution whose
//! profile has no callbacks, gets 404 and changes nothing. The signed tokens' `jti` are
//! remembered in the store with the event, so a replay is refused (401) by every portal process
//! on the database, and a request that was not recorded (a 503) can be sent again.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use delivery::client::parse_filing_id;
use delivery::mapping::Answer;
use delivery::profile::Profile;
use domain::delivery::{fields_at_fault, DeliveryEvent, Rejection};
use domain::practice::PracticeId;
use serde::Serialize;

use std::sync::Arc;
use storage::{DeliveryKey, DeliveryUpdate, UsedToken};

use crate::error::ApiError;
use crate::AppState;

/// What the portal needs to take an institution's callbacks: its certificate and its profile.
#[derive(Debug)]
pub struct CallbackChannel {
    pub verifier: delivery::modi::Verifier,
    pub profile: Arc<Profile>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventAnswer {
    /// `applied`, `unchanged` (older than what is known) or `duplicate`.
    result: &'static str,
}

#[utoipa::path(
    post,
    path = "/institutions/v1/{institution}/events",
    tag = "institutions",
    operation_id = "institutionEvent",
    security(("modi" = [])),
    params(
        ("institution" = String, Path, description = "The institution's id."),
    ),
    request_body(content = Object, description = "The institution's own document, read through its channel profile (Sportello's own interface: message_id, filing_id, event, protocol_number, accepted, reasons, fields)."),
    responses(
        (status = 200, body = EventAnswer, description = "Taken: `applied`, `unchanged` or `duplicate`"),
        (status = 400, response = crate::openapi::ProblemAnswer),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 404, response = crate::openapi::ProblemAnswer),
        (status = 409, response = crate::openapi::ProblemAnswer),
        (status = 413, response = crate::openapi::ProblemAnswer),
        (status = 503, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `POST /institutions/v1/{institution}/events`: the filing is named in the body.
pub async fn event(
    State(app): State<AppState>,
    Path(institution): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<EventAnswer>, ApiError> {
    take(&app, &institution, None, &headers, &body).await
}

#[utoipa::path(
    post,
    path = "/institutions/v1/{institution}/filings/{filing}/events",
    tag = "institutions",
    operation_id = "institutionFilingEvent",
    security(("modi" = [])),
    params(
        ("institution" = String, Path, description = "The institution's id."),
        ("filing" = String, Path, description = "The filing named in the X-ReplyTo address given with it."),
    ),
    request_body(content = Object, description = "The institution's own document, read through its channel profile."),
    responses(
        (status = 200, body = EventAnswer, description = "Taken: `applied`, `unchanged` or `duplicate`"),
        (status = 400, response = crate::openapi::ProblemAnswer),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 404, response = crate::openapi::ProblemAnswer),
        (status = 409, response = crate::openapi::ProblemAnswer),
        (status = 413, response = crate::openapi::ProblemAnswer),
        (status = 503, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `POST /institutions/v1/{institution}/filings/{filing}/events`: the `X-ReplyTo` address given
/// to a NONBLOCK_PUSH_REST institution names the filing.
pub async fn filing_event(
    State(app): State<AppState>,
    Path((institution, filing)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<EventAnswer>, ApiError> {
    take(&app, &institution, Some(filing), &headers, &body).await
}

async fn take(
    app: &AppState,
    institution: &str,
    named_filing: Option<String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Json<EventAnswer>, ApiError> {
    let channel = app.callbacks.get(institution).ok_or(ApiError::NotFound)?;
    let verified = match channel.verifier.verify(headers, body) {
        Ok(verified) => verified,
        Err(e) => {
            tracing::warn!(%institution, error = %e, "institution callback refused");
            return Err(ApiError::BadSignature(e.to_string()));
        }
    };
    let callback = channel.profile.callback.as_ref().ok_or(ApiError::NotFound)?;
    let document = callback.answer.parse(body);
    if document == Answer::Unreadable {
        return Err(ApiError::MalformedJson(format!(
            "the callback's body is not {} as {institution}'s profile says",
            if callback.answer.format == delivery::mapping::Format::Xml { "XML" } else { "JSON" }
        )));
    }
    let in_body = callback.filing_id.as_ref().and_then(|p| document.text(p));
    let filing = filing_named(named_filing, in_body)?;
    let (practice, named_institution, revision) = parse_filing_id(&filing).ok_or(ApiError::NotFound)?;
    let practice_id = PracticeId::parse(&practice).ok_or(ApiError::NotFound)?;
    if named_institution != institution {
        return Err(ApiError::NotFound);
    }
    let message_id =
        callback.message_id.as_ref().and_then(|p| document.text(p)).unwrap_or_else(|| crate::sha256_hex(body));
    let news = callback.answer.read_answer(&document);
    let values = news.values.clone();
    let event = event_of(app, channel, institution, practice_id, news).await?;
    let kind = event_name(&event);
    let mut update = DeliveryUpdate::new(event, app.core.clock.now());
    update.message_id = Some(format!("{institution}:{message_id}"));
    update.revision = Some(revision);
    update.values = values;
    // The callback was verified above: kept as the institution signed it.
    update.evidence =
        delivery::evidence::Evidence::from_message(headers, body).and_then(|e| serde_json::to_value(e).ok());
    // Refused as a replay by the store, whichever portal process saw the tokens first.
    update.tokens = verified
        .tokens
        .into_iter()
        .map(|t| UsedToken {
            scope: format!("{institution}:{}", t.header),
            jti: t.jti,
            until_ms: t.replayable_until.saturating_mul(1000),
        })
        .collect();
    let key = DeliveryKey { practice_id, institution: institution.to_string() };
    let result = app::callbacks::record(&app.core, &key, &update, (kind, &message_id)).await?;
    Ok(Json(EventAnswer { result }))
}

/// The filing a callback is about: named by its address, its body, or both alike.
fn filing_named(in_address: Option<String>, in_body: Option<String>) -> Result<String, ApiError> {
    match (in_address, in_body) {
        (Some(path), Some(body)) if path != body => {
            Err(ApiError::WrongShape(format!("the address names filing {path}, the body {body}")))
        }
        (Some(id), _) | (None, Some(id)) => Ok(id),
        (None, None) => Err(ApiError::WrongShape("the callback does not name its filing".into())),
    }
}

/// What the institution's news means for the delivery: an outcome (a rejection naming the
/// catalog's fields at fault), or the protocol number of a filing taken in charge.
async fn event_of(
    app: &AppState,
    channel: &CallbackChannel,
    institution: &str,
    practice_id: PracticeId,
    news: delivery::mapping::News,
) -> Result<DeliveryEvent, ApiError> {
    Ok(match (news.accepted, news.protocol_number) {
        (Some(accepted), protocol_number) => {
            let rejection = if accepted {
                None
            } else {
                let paths: Vec<String> = news.paths.iter().map(|n| channel.profile.payload_path(n)).collect();
                let filing = app::callbacks::filing_of(&app.core, practice_id, institution).await?;
                let fields = filing.map_or_else(|| paths.clone(), |f| fields_at_fault(f, &paths));
                Some(Rejection { reasons: news.reasons, fields })
            };
            DeliveryEvent::Outcome { accepted, protocol_number, rejection }
        }
        (None, Some(protocol_number)) => DeliveryEvent::TakenInCharge { protocol_number },
        (None, None) => {
            return Err(ApiError::WrongShape(
                "the callback carries neither a protocol number nor an outcome the profile can read".into(),
            ))
        }
    })
}

fn event_name(event: &DeliveryEvent) -> &'static str {
    match event {
        DeliveryEvent::Outcome { .. } => "outcome",
        _ => "taken_in_charge",
    }
}
