//! The not-authorised warning of the journey: on the task list, every section and check
//! answers, which recipient would refuse the owner for this practice's business, what to do
//! there and where, and that the draft is kept; "Invia" is withheld while one says no.

use domain::practice::Practice;
use domain::Lang;

use app::InstitutionRefusal;

use crate::acting::Principal;
use crate::view::Tr;
use crate::AppState;

/// One recipient the owner cannot (or could not now be found to) file at.
#[derive(Debug)]
pub struct AuthorisationLine {
    pub text: String,
    /// The institution's page on obtaining the authorisation, with its link text.
    pub link: Option<(String, String)>,
}

/// What the journey's pages say about authorisations for one practice.
#[derive(Debug, Default)]
pub struct AuthorisationWarning {
    pub title: String,
    pub lines: Vec<AuthorisationLine>,
    /// Some recipient said no: the practice cannot be sent yet (the draft is kept).
    pub blocks: bool,
}

/// Asks (through the authorisation cache) every recipient of the practice's service about the
/// owner and the business the practice names.
pub async fn warning(
    app: &AppState,
    tr: &Tr<'_>,
    lang: Lang,
    principal: &Principal,
    practice: &Practice,
) -> AuthorisationWarning {
    let business = practice.data.get("business.tax_code");
    let refusals = app::authorisations::refusals(&app.core, &principal.owner, &practice.service_id, business).await;
    from_refusals(tr, lang, principal, practice, &refusals)
}

/// The warning for refusals already known (a refused send).
pub fn from_refusals(
    tr: &Tr<'_>,
    lang: Lang,
    principal: &Principal,
    practice: &Practice,
    refusals: &[InstitutionRefusal],
) -> AuthorisationWarning {
    let code = practice.data.get("business.tax_code").map(|c| c.trim().to_uppercase()).filter(|c| !c.is_empty());
    // No business yet, or the owner's own (a sole trader): the owner lacks the access itself.
    let own = code.as_deref().is_none_or(|c| c == principal.owner.as_str());
    let business = crate::view::practice_business(&practice.data);
    let lines: Vec<AuthorisationLine> = refusals
        .iter()
        .map(|r| {
            let institution = r.name.get(lang).to_string();
            let key = match (r.status, own) {
                ("unknown", _) => "journey-authorisation-unknown",
                (_, true) => "journey-authorisation-missing-own",
                (_, false) => "journey-authorisation-missing",
            };
            let args = [
                ("institution", institution.clone()),
                ("business", business.clone()),
                ("help", r.help.get(lang).to_string()),
            ];
            let link = r
                .url
                .clone()
                .filter(|_| r.status != "unknown")
                .map(|url| (url, tr.fmt("journey-authorisation-link", &[("institution", institution.clone())])));
            AuthorisationLine { text: tr.fmt(key, &args), link }
        })
        .collect();
    let blocks = refusals.iter().any(|r| r.status != "unknown");
    let title =
        if blocks { tr.msg("journey-not-authorised-title") } else { tr.msg("journey-authorisation-unknown-title") };
    AuthorisationWarning { title, lines, blocks }
}
