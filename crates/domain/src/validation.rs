//! Why a value was refused, as data: the field it concerns and a [`Reason`].
//!
//! The domain never formats messages. Each reason has a stable `code` (also the message id in
//! the web crate's translation files) and named arguments, so that the edge can say it in the
//! user's language.

use serde::Serialize;

use crate::text::Text;

/// Why one value is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "kebab-case")]
pub enum Reason {
    Required,
    UnknownField,
    TooLong {
        max: usize,
    },
    PersonTaxCodeFormat,
    PersonTaxCodeBirthDate,
    PersonTaxCodeCheckCharacter,
    /// The owner's codice fiscale does not encode the birth date given.
    PersonTaxCodeBirthMismatch,
    VatNumberFormat,
    VatNumberOffice,
    VatNumberCheckDigit,
    BusinessTaxCodeFormat,
    CompanyTaxCodeCheckDigit,
    CapFormat,
    ProvinceUnknown,
    AtecoFormat,
    EmailFormat,
    DateFormat,
    DateInFuture,
    /// Earlier than the earliest accepted date (ISO `YYYY-MM-DD`).
    DateTooEarly {
        min: String,
    },
    /// Later than the latest accepted date (ISO `YYYY-MM-DD`).
    DateTooLate {
        max: String,
    },
    IntegerFormat,
    AmountFormat,
    NumberTooSmall {
        min: i64,
    },
    NumberTooLarge {
        max: i64,
    },
    NotAnOption {
        options: String,
    },
    /// The value contains control characters.
    ControlCharacters,
    /// A correction to a rejected filing touches a field the institution did not fault.
    NotAtFault,
    /// A field the institution faulted is sent again unchanged.
    NotCorrected,
    /// No office of the institution is competent for this value (a province no chamber
    /// connected to the portal serves).
    NoOffice {
        institution: String,
    },
    /// An institution would refuse the filing on receipt, in its own words (a receivability
    /// rule of the catalog).
    Receivability {
        /// The institution's id in the catalog.
        institution: String,
        name: Text,
        message: Text,
    },
}

impl Reason {
    /// Stable identifier of the reason, e.g. `person-tax-code-check-character`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Required => "required",
            Self::UnknownField => "unknown-field",
            Self::TooLong { .. } => "too-long",
            Self::PersonTaxCodeFormat => "person-tax-code-format",
            Self::PersonTaxCodeBirthDate => "person-tax-code-birth-date",
            Self::PersonTaxCodeCheckCharacter => "person-tax-code-check-character",
            Self::PersonTaxCodeBirthMismatch => "person-tax-code-birth-mismatch",
            Self::VatNumberFormat => "vat-number-format",
            Self::VatNumberOffice => "vat-number-office",
            Self::VatNumberCheckDigit => "vat-number-check-digit",
            Self::BusinessTaxCodeFormat => "business-tax-code-format",
            Self::CompanyTaxCodeCheckDigit => "company-tax-code-check-digit",
            Self::CapFormat => "cap-format",
            Self::ProvinceUnknown => "province-unknown",
            Self::AtecoFormat => "ateco-format",
            Self::EmailFormat => "email-format",
            Self::DateFormat => "date-format",
            Self::DateInFuture => "date-in-future",
            Self::DateTooEarly { .. } => "date-too-early",
            Self::DateTooLate { .. } => "date-too-late",
            Self::IntegerFormat => "integer-format",
            Self::AmountFormat => "amount-format",
            Self::NumberTooSmall { .. } => "number-too-small",
            Self::NumberTooLarge { .. } => "number-too-large",
            Self::NotAnOption { .. } => "not-an-option",
            Self::ControlCharacters => "control-characters",
            Self::NotAtFault => "not-at-fault",
            Self::NotCorrected => "not-corrected",
            Self::NoOffice { .. } => "no-office",
            Self::Receivability { .. } => "receivability",
        }
    }

    /// Named arguments for the message, as strings.
    pub fn args(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::TooLong { max } => vec![("max", max.to_string())],
            Self::DateTooEarly { min } => vec![("min", min.clone())],
            Self::DateTooLate { max } => vec![("max", max.clone())],
            Self::NumberTooSmall { min } => vec![("min", min.to_string())],
            Self::NumberTooLarge { max } => vec![("max", max.to_string())],
            Self::NotAnOption { options } => vec![("options", options.clone())],
            Self::NoOffice { institution } => vec![("institution", institution.clone())],
            Self::Receivability { name, message, .. } => vec![
                ("institution_it", name.it.clone()),
                ("institution_en", name.en.clone()),
                ("message_it", message.it.clone()),
                ("message_en", message.en.clone()),
            ],
            _ => Vec::new(),
        }
    }
}

/// A refused value: which field and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field's id in the catalog, e.g. `owner.tax_code` or `inail.work_processes`.
    pub field: String,
    pub reason: Reason,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: Reason) -> Self {
        Self { field: field.into(), reason }
    }
}
