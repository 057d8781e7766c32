//! What institutions tell the portal: `POST /institutions/v1/{institution}/events`.
//!
//! Each request is ModI-signed by the institution (checked against the certificate configured
//! for it) and names the filing by its id (`<practice>.<institution>.<revision>`). Messages are
//! deduplicated by `message_id`; an event older than what is known changes nothing; an unknown
//! practice gets 404 and changes nothing.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use delivery::client::parse_filing_id;
use domain::delivery::{fields_at_fault, DeliveryEvent, Rejection};
use domain::practice::PracticeId;
use serde::{Deserialize, Serialize};
use storage::{DeliveryKey, DeliveryUpdate, Recorded, StoreError};

use crate::error::ApiError;
use crate::AppState;

/// One event from an institution.
#[derive(Debug, Deserialize)]
pub struct InstitutionEvent {
    message_id: String,
    filing_id: String,
    /// `taken_in_charge` or `outcome`.
    event: String,
    protocol_number: Option<String>,
    accepted: Option<bool>,
    #[serde(default)]
    reasons: Vec<String>,
    /// Payload paths at fault.
    #[serde(default)]
    fields: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct EventAnswer {
    /// `applied`, `unchanged` (older than what is known) or `duplicate`.
    result: &'static str,
}

pub async fn event(
    State(app): State<AppState>,
    Path(institution): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<EventAnswer>, ApiError> {
    let verifier = app.callbacks.get(&institution).ok_or(ApiError::NotFound)?;
    if let Err(e) = verifier.verify(&headers, &body) {
        tracing::warn!(%institution, error = %e, "institution callback refused");
        return Err(ApiError::BadSignature(e.to_string()));
    }
    let message: InstitutionEvent = serde_json::from_slice(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::WrongShape(e.to_string()),
        _ => ApiError::MalformedJson(e.to_string()),
    })?;
    let (practice, named_institution, revision) = parse_filing_id(&message.filing_id).ok_or(ApiError::NotFound)?;
    let practice_id = PracticeId::parse(&practice).ok_or(ApiError::NotFound)?;
    if named_institution != institution {
        return Err(ApiError::NotFound);
    }
    let protocol_number = message.protocol_number.filter(|p| !p.trim().is_empty());
    let event = match (message.event.as_str(), protocol_number) {
        ("taken_in_charge", Some(protocol_number)) => DeliveryEvent::TakenInCharge { protocol_number },
        ("outcome", protocol_number) => {
            let accepted =
                message.accepted.ok_or_else(|| ApiError::WrongShape("an outcome needs `accepted`".into()))?;
            let rejection = if accepted {
                None
            } else {
                let service = app.store.service_of(practice_id).await?;
                let filing = app
                    .catalog
                    .service(&service)
                    .and_then(|s| s.recipients.iter().find(|r| r.institution == institution))
                    .and_then(|r| app.catalog.filing(r));
                let fields = filing.map_or_else(|| message.fields.clone(), |f| fields_at_fault(f, &message.fields));
                Some(Rejection { reasons: message.reasons, fields })
            };
            DeliveryEvent::Outcome { accepted, protocol_number, rejection }
        }
        (other, _) => {
            return Err(ApiError::WrongShape(format!(
                "event `{other}`: expected `taken_in_charge` (with protocol_number) or `outcome`"
            )))
        }
    };
    let mut update = DeliveryUpdate::new(event, app.clock.now());
    update.message_id = Some(format!("{institution}:{}", message.message_id));
    update.revision = Some(revision);
    let key = DeliveryKey { practice_id, institution: institution.clone() };
    let recorded = app.store.record(&key, &update).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::NotFound,
        other => ApiError::from(other),
    })?;
    let result = match recorded {
        Recorded::Applied(_) => "applied",
        Recorded::Unchanged | Recorded::LostLease => "unchanged",
        Recorded::Duplicate => "duplicate",
    };
    tracing::info!(%institution, practice = %practice_id, message = %message.message_id, result, "institution event");
    let actor = format!("institution:{institution}");
    let detail = serde_json::json!({
        "practice": practice_id.to_string(),
        "event": message.event,
        "message_id": message.message_id,
        "result": result,
    });
    crate::audit::record(&app, &actor, &actor, "callback", detail).await;
    Ok(Json(EventAnswer { result }))
}
