//! The practice's use cases ("pratica"): start a draft, save it, submit it, send one recipient
//! again, archive and bring back, and the reads: one practice with its deliveries and events,
//! the lists, search, the desk's counts, the businesses one files for.
//!
//! Every act is checked against the principal's reach and scope before anything is stored,
//! and recorded in the audit trail after.

use domain::catalog::{FieldKind, Section, Service};
use domain::delivery::DeliveryState;
use domain::practice::{
    check_draft, prepare_correction, prepare_submission, validate_data, Delivery, Practice, PracticeData, PracticeId,
    PracticeState, SubmitError,
};
use domain::validation::{FieldError, Reason};
use storage::{PracticeQuery, PracticeSearch, SearchPage};

use crate::{AppError, Core, Principal};

fn service_of<'c>(core: &'c Core, practice: &Practice) -> Result<&'c Service, AppError> {
    core.catalog.service(&practice.service_id).ok_or_else(|| AppError::UnknownService(practice.service_id.clone()))
}

fn invalid(core: &Core, service_id: &str, errors: Vec<FieldError>) -> AppError {
    AppError::Validation { errors, service: core.catalog.service(service_id).cloned().map(Box::new) }
}

fn submit_error(core: &Core, service_id: &str, e: SubmitError) -> AppError {
    match e {
        SubmitError::Illegal(t) => AppError::WrongState(t.from),
        SubmitError::Invalid(errors) => invalid(core, service_id, errors),
        SubmitError::UnknownService(s) => AppError::UnknownService(s),
    }
}

fn check_draft_data(core: &Core, service: &Service, data: &PracticeData) -> Result<(), AppError> {
    let errors = check_draft(service, data, core.today());
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation { errors, service: Some(Box::new(service.clone())) })
    }
}

/// What still stops a draft from being sent (nothing for a practice whose service is gone).
pub fn draft_problems(core: &Core, practice: &Practice) -> Vec<FieldError> {
    let Some(service) = core.catalog.service(&practice.service_id) else { return Vec::new() };
    validate_data(service, &practice.data, core.today()).err().unwrap_or_default()
}

/// Starts a draft of `service_id` for the principal with whatever data is ready (none of it
/// invalid, none outside a delegation).
pub async fn start_draft(
    core: &Core,
    principal: &Principal,
    service_id: &str,
    data: PracticeData,
) -> Result<Practice, AppError> {
    let service = core.catalog.service(service_id).ok_or_else(|| AppError::UnknownService(service_id.to_string()))?;
    let mut data = data;
    service.derive(&mut data);
    // Out of a delegation's scope is refused before anything is said about the data.
    principal.check(core, &service.id, data.get("business.tax_code").map(String::as_str)).await?;
    check_draft_data(core, service, &data)?;
    let now = core.clock.now();
    let practice = Practice {
        id: PracticeId::from_random_bytes(core.random_id_bytes()?),
        owner: principal.owner.clone(),
        actor: principal.actor.tax_code.clone(),
        service_id: service.id.clone(),
        state: PracticeState::Draft,
        data,
        reference: None,
        needs_resend: false,
        created_at: now,
        updated_at: now,
        submitted_at: None,
    };
    core.store.create_draft(&practice).await?;
    tracing::info!(practice = %practice.id, service = %practice.service_id, actor = %principal.actor.tax_code, "draft created");
    let detail = serde_json::json!({ "practice": practice.id.to_string(), "service": practice.service_id });
    principal.audit(core, "draft_created", detail).await;
    Ok(practice)
}

/// Replaces a draft's data (none of it invalid, none outside a delegation).
pub async fn save_draft(
    core: &Core,
    principal: &Principal,
    id: PracticeId,
    data: &PracticeData,
) -> Result<Practice, AppError> {
    let practice = principal.practice(core, id).await?;
    if !practice.state.is_editable() {
        return Err(AppError::WrongState(practice.state));
    }
    let service = service_of(core, &practice)?;
    let mut data = data.clone();
    service.derive(&mut data);
    principal.check(core, &practice.service_id, data.get("business.tax_code").map(String::as_str)).await?;
    check_draft_data(core, service, &data)?;
    let updated = core.store.update_draft(&principal.owner, id, &data, core.clock.now()).await?;
    tracing::info!(practice = %id, actor = %principal.actor.tax_code, "draft saved");
    let detail = serde_json::json!({ "practice": id.to_string(), "fields": data.len() });
    principal.audit(core, "draft_saved", detail).await;
    Ok(updated)
}

/// Validates everything, checks the owner's authorisations at every recipient (a delegation
/// never adds to them), then assigns the reference number and queues one filing per
/// recipient, in one transaction.
pub async fn submit(core: &Core, principal: &Principal, id: PracticeId) -> Result<(Practice, Vec<Delivery>), AppError> {
    let practice = principal.practice(core, id).await?;
    let mut submission = prepare_submission(&practice, &core.catalog, core.clock.now())
        .map_err(|e| submit_error(core, &practice.service_id, e))?;
    let business = submission.data.get("business.tax_code");
    principal.check(core, &practice.service_id, business.map(String::as_str)).await?;
    crate::authorisations::check_submission(core, &principal.owner, &practice.service_id, business).await?;
    submission.actor = principal.actor.tax_code.clone();
    let submitted = core.store.submit(&principal.owner, id, &submission).await?;
    let deliveries = core.store.deliveries(&principal.owner, id).await?;
    tracing::info!(
        practice = %id,
        reference = ?submitted.reference.as_ref().map(ToString::to_string),
        recipients = deliveries.len(),
        actor = %principal.actor.tax_code,
        "practice submitted"
    );
    let detail = serde_json::json!({
        "practice": id.to_string(),
        "reference": submitted.reference.as_ref().map(ToString::to_string),
        "recipients": deliveries.iter().map(|d| d.institution.clone()).collect::<Vec<_>>(),
        "data_sha256": crate::digests::data_digest(&submitted.data),
    });
    principal.audit(core, "submitted", detail).await;
    Ok((submitted, deliveries))
}

/// Sends one recipient's filing again, and no other: a failed one (or one the institution is
/// silent on) unchanged, with no corrections allowed; a rejected one with `corrections` to the
/// fields at fault only.
pub async fn resend(
    core: &Core,
    principal: &Principal,
    id: PracticeId,
    institution: &str,
    corrections: &PracticeData,
) -> Result<(), AppError> {
    let practice = principal.practice(core, id).await?;
    principal.check_practice(core, &practice).await?;
    let deliveries = core.store.deliveries(&principal.owner, id).await?;
    let delivery = deliveries.iter().find(|d| d.institution == institution).ok_or(AppError::NotFound)?;
    let key = storage::DeliveryKey { practice_id: id, institution: institution.to_string() };
    let now = core.clock.now();
    match delivery.state() {
        DeliveryState::Failed | DeliveryState::NoNews => {
            if !corrections.is_empty() {
                let errors = corrections.keys().map(|k| FieldError::new(k, Reason::NotAtFault)).collect();
                return Err(invalid(core, &practice.service_id, errors));
            }
            core.store.resend(&principal.owner, &key, None, now).await?;
        }
        DeliveryState::Rejected => {
            let at_fault = delivery.status.rejection.as_ref().map(|r| r.fields.clone()).unwrap_or_default();
            let (data, payload) = prepare_correction(
                &practice,
                &core.catalog,
                institution,
                &at_fault,
                corrections,
                &delivery.payload,
                domain::italian_date(now),
            )
            .map_err(|e| submit_error(core, &practice.service_id, e))?;
            core.store.resend(&principal.owner, &key, Some((&data, &payload)), now).await?;
        }
        other => return Err(AppError::WrongDeliveryState(other)),
    }
    tracing::info!(practice = %id, %institution, actor = %principal.actor.tax_code, "delivery sent again");
    let detail = serde_json::json!({
        "practice": id.to_string(),
        "institution": institution,
        "corrected_fields": corrections.keys().collect::<Vec<_>>(),
    });
    principal.audit(core, "resent", detail).await;
    Ok(())
}

/// Archives a draft or a completed practice, or brings an archived one back (a practice on its
/// way cannot be archived).
pub async fn set_archived(
    core: &Core,
    principal: &Principal,
    id: PracticeId,
    archive: bool,
) -> Result<Practice, AppError> {
    let practice = principal.practice(core, id).await?;
    principal.check_practice(core, &practice).await?;
    let practice = core.store.set_archived(&principal.owner, id, archive, core.clock.now()).await?;
    tracing::info!(practice = %id, actor = %principal.actor.tax_code, archive, "archive changed");
    let action = if archive { "archived" } else { "unarchived" };
    principal.audit(core, action, serde_json::json!({ "practice": id.to_string() })).await;
    Ok(practice)
}

/// A practice with what happened to it: for a sent one, one delivery per recipient and every
/// event, oldest first.
#[derive(Debug, Clone)]
pub struct Followed {
    pub practice: Practice,
    /// Empty for a practice never sent.
    pub deliveries: Vec<Delivery>,
    pub timeline: Vec<storage::TimelineEntry>,
}

/// The principal's practice `id` with its deliveries and events ("not found" outside reach).
pub async fn follow(core: &Core, principal: &Principal, id: PracticeId) -> Result<Followed, AppError> {
    let practice = principal.practice(core, id).await?;
    if practice.reference.is_none() {
        return Ok(Followed { practice, deliveries: Vec::new(), timeline: Vec::new() });
    }
    let deliveries = core.store.deliveries(&principal.owner, id).await?;
    // The practice's state changes in the same transaction as the delivery that moves it:
    // read after its deliveries, it is never older than they are.
    let practice = principal.practice(core, id).await?;
    let timeline = core.store.timeline(&principal.owner, id).await?;
    Ok(Followed { practice, deliveries, timeline })
}

/// The principal's practice `id` and its deliveries, without the events.
pub async fn with_deliveries(
    core: &Core,
    principal: &Principal,
    id: PracticeId,
) -> Result<(Practice, Vec<Delivery>), AppError> {
    let practice = principal.practice(core, id).await?;
    let deliveries = core.store.deliveries(&principal.owner, id).await?;
    Ok((practice, deliveries))
}

/// The principal's practices in `state` (any when `None`), newest change first.
pub async fn list(
    core: &Core,
    principal: &Principal,
    state: Option<PracticeState>,
    limit: u32,
    offset: u32,
) -> Result<Vec<Practice>, AppError> {
    let query = PracticeQuery { state, limit, offset, scope: principal.scope_filter() };
    Ok(core.store.list(&principal.owner, &query).await?)
}

/// One page of what `search` finds within the principal's reach (`page_size` to a page): the
/// practices, the page shown and the last page. A page past the end (an old link, a hand-made
/// URL) shows the last.
pub async fn search(
    core: &Core,
    principal: &Principal,
    search: PracticeSearch,
    page: u32,
    page_size: u32,
) -> Result<(SearchPage, u32, u32), AppError> {
    let page = page.max(1);
    let search = PracticeSearch {
        offset: (page - 1).saturating_mul(page_size),
        limit: page_size,
        scope: principal.scope_filter(),
        ..search
    };
    let found = core.store.search(&principal.owner, &search).await?;
    let last_page = u32::try_from(found.total.div_ceil(u64::from(page_size.max(1)))).unwrap_or(u32::MAX).max(1);
    if page <= last_page {
        return Ok((found, page, last_page));
    }
    let search = PracticeSearch { offset: (last_page - 1).saturating_mul(page_size), ..search };
    Ok((core.store.search(&principal.owner, &search).await?, last_page, last_page))
}

/// The desk's home: the counts by state and what needs the owner (at most `actions` of each).
pub async fn desk_summary(core: &Core, principal: &Principal, actions: u32) -> Result<storage::DeskSummary, AppError> {
    Ok(core.store.desk_summary(&principal.owner, principal.scope_filter().as_ref(), actions).await?)
}

/// The businesses the principal sent practices for (newest first, with the name last sent),
/// never one only typed in a draft; then those
/// the institutions say the principal may file for; under a delegation, only its businesses.
pub async fn known_businesses(core: &Core, principal: &Principal) -> Result<Vec<(String, String)>, AppError> {
    let search = PracticeSearch {
        limit: PracticeQuery::MAX_LIMIT,
        sort: storage::SortKey::Submitted,
        descending: true,
        scope: principal.scope_filter(),
        ..Default::default()
    };
    let recent = core.store.search(&principal.owner, &search).await?;
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |code: String, name: String| {
        if !out.iter().any(|(c, _)| *c == code) {
            out.push((code, name));
        }
    };
    // Only what was sent: a business typed in a draft (a test, a typo) is nobody's yet.
    for p in recent.practices.iter().filter(|p| p.submitted_at.is_some()) {
        if let Some(code) = p.data.get("business.tax_code").map(|c| c.trim().to_uppercase()).filter(|c| !c.is_empty()) {
            add(code, p.data.get("business.name").cloned().unwrap_or_default());
        }
    }
    if let Some(d) = &principal.delegation {
        for code in &d.scope.businesses {
            add(code.clone(), String::new());
        }
        return Ok(out);
    }
    if let Some(answers) = crate::authorisations::of_holder(core, &principal.owner).await {
        for answer in answers.values() {
            for grant in answer.grants() {
                add(grant.business.trim().to_uppercase(), String::new());
            }
        }
    }
    Ok(out)
}

/// The data a new draft of `service` for `business` starts with: the business's code, and the
/// common data of its latest practice within the principal's reach that still holds today
/// (never an event's date, which belongs to that practice alone), only the fields the service
/// asks for.
pub async fn prefill(
    core: &Core,
    principal: &Principal,
    service: &Service,
    business: &str,
) -> Result<PracticeData, AppError> {
    let search = PracticeSearch {
        text: Some(business.to_string()),
        limit: 20,
        sort: storage::SortKey::Submitted,
        descending: true,
        scope: principal.scope_filter(),
        ..Default::default()
    };
    let found = core.store.search(&principal.owner, &search).await?;
    // The latest practice sent for it: an unsent draft proves nothing about the business.
    let last = found.practices.into_iter().find(|p| {
        p.submitted_at.is_some()
            && p.data.get("business.tax_code").is_some_and(|c| c.trim().eq_ignore_ascii_case(business))
    });
    let mut data = PracticeData::new();
    data.insert("business.tax_code".into(), business.to_string());
    let today = core.today();
    if let Some(last) = last {
        for field in service.fields.iter().filter(|f| matches!(f.section, Section::Common(_))) {
            let event_date = matches!(&field.spec.kind, FieldKind::Date(rule)
                if rule.min_days_from_today.is_some() || rule.max_days_from_today.is_some());
            if event_date {
                continue;
            }
            if let Some(value) = last.data.get(&field.spec.id).filter(|v| !v.trim().is_empty()) {
                if domain::practice::check_value(&field.spec, value, today).is_ok() {
                    data.insert(field.spec.id.clone(), value.clone());
                }
            }
        }
    }
    data.retain(|k, _| service.field(k).is_some());
    Ok(data)
}

/// The events of a practice the principal has already read, oldest first ("not found" for
/// one outside reach).
pub async fn timeline(
    core: &Core,
    principal: &Principal,
    practice: &Practice,
) -> Result<Vec<storage::TimelineEntry>, AppError> {
    if !principal.sees(practice) {
        return Err(AppError::NotFound);
    }
    Ok(core.store.timeline(&principal.owner, practice.id).await?)
}
