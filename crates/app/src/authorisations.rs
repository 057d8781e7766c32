//! Whether a holder may operate online at each institution a service involves ("abilitazioni"),
//! as the institutions answer (cached by `delivery::authorisation`), asked before anything is
//! typed and checked again at submission.

use std::collections::BTreeMap;

use domain::authorisation::Authorisation;
use domain::catalog::Service;
use domain::identifiers::CodiceFiscale;
use serde::Serialize;

use crate::{AppError, Core, InstitutionRefusal};

/// Whether a holder can complete a service, as far as authorisations go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ServiceReadiness {
    /// `false` when some recipient says no; `null` when some could not be asked.
    pub complete: Option<bool>,
    /// Recipients where the holder may file for no business.
    pub missing: Vec<String>,
    /// Recipients that could not be asked.
    pub unknown: Vec<String>,
}

impl ServiceReadiness {
    /// From the holder's answers, by institution.
    pub fn of(service: &Service, answers: &BTreeMap<String, Authorisation>) -> Self {
        let allowed = |r: &&domain::catalog::Recipient| answers.get(&r.institution).and_then(|a| a.allows_any());
        let ids = |keep: &dyn Fn(Option<bool>) -> bool| -> Vec<String> {
            service.recipients.iter().filter(|r| keep(allowed(r))).map(|r| r.institution.clone()).collect()
        };
        let missing = ids(&|a| a == Some(false));
        let unknown = ids(&|a| a.is_none());
        let complete = if !missing.is_empty() {
            Some(false)
        } else if !unknown.is_empty() {
            None
        } else {
            Some(true)
        };
        Self { complete, missing, unknown }
    }
}

/// The holder's authorisations at every institution of the catalog, or `None` when this
/// portal does not check them.
pub async fn of_holder(core: &Core, holder: &CodiceFiscale) -> Option<BTreeMap<String, Authorisation>> {
    let checker = core.authorisations.as_ref()?;
    let all: Vec<String> = core.catalog.institutions.iter().map(|i| i.id.clone()).collect();
    Some(checker.check_all(&all, holder.as_str()).await.into_iter().collect())
}

/// The holder's answer at each recipient of `service`, in the service's order ("unknown" for
/// each when this portal does not check authorisations).
pub async fn for_service(core: &Core, service: &Service, holder: &CodiceFiscale) -> Vec<(String, Authorisation)> {
    let institutions: Vec<String> = service.recipients.iter().map(|r| r.institution.clone()).collect();
    match &core.authorisations {
        Some(checker) => checker.check_all(&institutions, holder.as_str()).await,
        None => institutions
            .into_iter()
            .map(|i| {
                let reason = "authorisations are not checked by this portal".to_string();
                (i, Authorisation::Unknown { reason })
            })
            .collect(),
    }
}

/// The recipients of the service where `holder` may not (or could not now be found to) file
/// for `business`, or for any business while none is chosen; empty when authorisations are
/// not checked here. The journey shows them on every page; sending refuses on them.
pub async fn refusals(
    core: &Core,
    holder: &CodiceFiscale,
    service_id: &str,
    business: Option<&String>,
) -> Vec<InstitutionRefusal> {
    let (Some(checker), Some(service)) = (&core.authorisations, core.catalog.service(service_id)) else {
        return Vec::new();
    };
    let institutions: Vec<String> = service.recipients.iter().map(|r| r.institution.clone()).collect();
    let answers = checker.check_all(&institutions, holder.as_str()).await;
    answers
        .into_iter()
        .filter_map(|(institution, answer)| {
            let allowed = match business {
                Some(b) => answer.allows(b),
                None => answer.allows_any(),
            };
            let status = match allowed {
                Some(true) => return None,
                Some(false) => "not_authorised",
                None => "unknown",
            };
            let known = core.catalog.institution(&institution);
            Some(InstitutionRefusal {
                name: known.map_or_else(|| domain::text::Text::same(&institution), |i| i.name.clone()),
                help: known.map(|i| i.authorisation_help.clone()).unwrap_or_default(),
                url: known.and_then(|i| i.authorisation_url.clone()),
                institution,
                status,
            })
        })
        .collect()
}

/// Refuses a submission unless `holder` may file for `business` at every recipient of the
/// service (when authorisations are checked here).
pub async fn check_submission(
    core: &Core,
    holder: &CodiceFiscale,
    service_id: &str,
    business: Option<&String>,
) -> Result<(), AppError> {
    let missing = refusals(core, holder, service_id, business).await;
    if missing.is_empty() {
        Ok(())
    } else {
        tracing::info!(%holder, business = ?business, refused = missing.len(), "submission refused: authorisation");
        Err(AppError::NotAuthorised { business: business.cloned().unwrap_or_default(), institutions: missing })
    }
}
