//! What every step of compiling uses: the sections of a service, a field as a form input, the
//! error summary's links, the practice and its service.

use axum::response::{IntoResponse, Redirect, Response};
use domain::catalog::{FieldKind, Section, Service, ServiceField};
use domain::practice::{Practice, PracticeId};
use domain::validation::FieldError;
use domain::Lang;

use crate::acting::Principal;

use crate::error::ApiError;
use crate::AppState;

/// The HTML id of a field's input: `campo-` and the field id with dots as dashes.
pub fn input_id(field_id: &str) -> String {
    format!("campo-{}", field_id.replace('.', "-"))
}

/// One section of a service's form.
#[derive(Debug)]
pub struct FormSection<'s> {
    /// The dictionary group (`business`, `owner`, ...) or the recipient institution's id.
    pub id: String,
    pub title: String,
    pub fields: Vec<&'s ServiceField>,
}

/// The sections of a service, in the order they are compiled: common data by dictionary group
/// (in the catalog's field order), then each recipient's own fields.
pub fn sections<'s>(app: &AppState, service: &'s Service, lang: Lang) -> Vec<FormSection<'s>> {
    let mut out: Vec<FormSection<'s>> = Vec::new();
    // A derived field is never asked: its source stands for it.
    for field in service.fields.iter().filter(|f| service.derived_from(&f.spec.id).is_none()) {
        let id = match &field.section {
            Section::Common(group) | Section::Recipient(group) => group,
        };
        match out.iter_mut().find(|s| &s.id == id) {
            Some(section) => section.fields.push(field),
            None => out.push(FormSection {
                id: id.clone(),
                title: section_title(app, &field.section, lang),
                fields: vec![field],
            }),
        }
    }
    out
}

fn section_title(app: &AppState, section: &Section, lang: Lang) -> String {
    match section {
        Section::Common(group) => {
            let id = format!("section-{group}");
            if app.translations.has_message(lang, &id) {
                app.translations.message(lang, &id, &[])
            } else {
                // A group added to the catalog without a title of its own.
                app.translations.message(lang, "section-other", &[("group", group.clone())])
            }
        }
        Section::Recipient(institution) => {
            let name = app
                .core
                .catalog
                .institution(institution)
                .map_or_else(|| institution.clone(), |i| i.name.get(lang).into());
            app.translations.message(lang, "section-recipient", &[("institution", name)])
        }
    }
}

/// The limits the recipients' receivability rules always apply to a field, in words ("INAIL
/// chiede almeno 20 caratteri."), so that the hint says them before a refusal does.
fn institution_limits(app: &AppState, service: &Service, field: &str, lang: Lang) -> Vec<String> {
    use domain::receivability::Check;
    let cents = |n: i64| format!("{},{:02}", n / 100, (n % 100).abs());
    service
        .recipients
        .iter()
        .flat_map(|r| {
            r.rules.iter().filter(|rule| rule.field == field && rule.when.is_none()).map(move |rule| (r, rule))
        })
        .filter_map(|(r, rule)| {
            let (key, n) = match &rule.check {
                Check::MinLength(n) => ("form-hint-min-length", n.to_string()),
                Check::MaxLength(n) => ("form-hint-max-length", n.to_string()),
                Check::AtLeast(n) => ("form-hint-at-least", cents(*n)),
                Check::AtMost(n) => ("form-hint-at-most", cents(*n)),
                _ => return None,
            };
            let args = [("institution", r.name.get(lang).to_string()), ("n", n)];
            Some(app.translations.message(lang, key, &args))
        })
        .collect()
}

/// An example date the field would accept: a birth date of 1980 for a date in the past, else
/// a day inside the window the field allows around today.
fn plausible_date(rule: &domain::catalog::DateRule, today: time::Date) -> time::Date {
    if rule.not_future {
        return time::Date::from_calendar_date(1980, time::Month::March, 15).unwrap_or(today);
    }
    let earliest = rule.min_days_from_today.unwrap_or(0).max(0);
    let days = rule.max_days_from_today.map_or(earliest + 7, |latest| (earliest + 7).min(latest));
    today.checked_add(time::Duration::days(days)).unwrap_or(today)
}

/// A field as a form shows it.
#[derive(Debug)]
pub struct FieldInput {
    pub name: String,
    pub html_id: String,
    pub label: String,
    pub hint: Option<String>,
    pub help_href: Option<String>,
    /// `text`, `textarea` or `select`.
    pub control: &'static str,
    pub inputmode: &'static str,
    /// `short` for codes and dates, else empty.
    pub width: &'static str,
    pub value: String,
    pub options: Vec<(String, String)>,
    pub error: Option<String>,
    pub required: bool,
    pub max_length: usize,
}

impl FieldInput {
    pub fn new(app: &AppState, service: &Service, field: &ServiceField, value: &str, lang: Lang) -> Self {
        let spec = &field.spec;
        let (control, inputmode, width) = match &spec.kind {
            FieldKind::LongText => ("textarea", "", ""),
            FieldKind::Choice { .. } => ("select", "", ""),
            FieldKind::Cap | FieldKind::Integer { .. } => ("text", "numeric", "short"),
            FieldKind::Amount { .. } => ("text", "decimal", "short"),
            FieldKind::Email => ("text", "email", ""),
            FieldKind::Province | FieldKind::Date(_) | FieldKind::Ateco => ("text", "", "short"),
            FieldKind::PersonTaxCode { .. } | FieldKind::BusinessTaxCode | FieldKind::VatNumber => ("text", "", ""),
            FieldKind::Text => ("text", "", ""),
        };
        let mut hint = spec.hint.as_ref().map(|h| h.get(lang).to_string());
        for target in service.derived_of(&spec.id).filter_map(|t| service.field(t)) {
            let args = [
                ("field", target.spec.label.get(lang).to_string()),
                ("section", section_title(app, &target.section, lang)),
            ];
            let also = app.translations.message(lang, "form-hint-derived", &args);
            hint = Some(hint.map_or_else(|| also.clone(), |h| format!("{h} {also}")));
        }
        for limit in institution_limits(app, service, &spec.id, lang) {
            hint = Some(hint.map_or_else(|| limit.clone(), |h| format!("{h} {limit}")));
        }
        if let FieldKind::Date(rule) = &spec.kind {
            let format =
                crate::view::Tr::new(&app.translations, lang).date_hint(plausible_date(rule, app.core.today()));
            hint = Some(hint.map_or_else(|| format.clone(), |h| format!("{h} {format}")));
        }
        // Dates are stored as ISO and shown as Italians write them.
        let value = match spec.kind {
            FieldKind::Date(_) => domain::identifiers::display_date_value(value),
            _ => value.to_string(),
        };
        Self {
            name: spec.id.clone(),
            html_id: input_id(&spec.id),
            label: spec.label.get(lang).to_string(),
            hint,
            help_href: spec
                .help
                .as_ref()
                .map(|_| format!("/aiuto/servizi/{}#aiuto-{}", service.id, input_id(&spec.id))),
            control,
            inputmode,
            width,
            value,
            options: match &spec.kind {
                FieldKind::Choice { options } => {
                    options.iter().map(|o| (o.value.clone(), o.label.get(lang).to_string())).collect()
                }
                _ => Vec::new(),
            },
            error: None,
            required: spec.required,
            max_length: spec.max_length,
        }
    }

    /// `aria-describedby`: the hint and the error, when there are.
    pub fn described_by(&self) -> String {
        let mut ids = Vec::new();
        if self.hint.is_some() {
            ids.push(format!("{}-suggerimento", self.html_id));
        }
        if self.error.is_some() {
            ids.push(format!("{}-errore", self.html_id));
        }
        ids.join(" ")
    }
}

/// One entry of an error summary: a link to the field and what is wrong.
#[derive(Debug)]
pub struct ErrorLink {
    pub href: String,
    pub message: String,
}

pub(super) fn error_message(app: &AppState, service: &Service, error: &FieldError, lang: Lang) -> String {
    let label = service.field(&error.field).map(|f| &f.spec.label);
    app.translations.reason(lang, label, &error.field, &error.reason)
}

/// Loads a practice within the principal's reach, and its service; a malformed id is a
/// missing practice.
pub(super) async fn load(app: &AppState, principal: &Principal, id: &str) -> Result<(Practice, Service), ApiError> {
    let id = PracticeId::parse(id).ok_or(ApiError::NotFound)?;
    let practice = principal.practice(&app.core, id).await?;
    let service = app
        .core
        .catalog
        .service(&practice.service_id)
        .cloned()
        .ok_or_else(|| ApiError::UnknownService(practice.service_id.clone()))?;
    Ok((practice, service))
}

pub(super) fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}
