//! Reading a smart-card (CNS) authentication certificate.

use domain::identifiers::CodiceFiscale;
use domain::validation::Reason;
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{OID_X509_COMMON_NAME, OID_X509_GIVEN_NAME, OID_X509_SERIALNUMBER, OID_X509_SURNAME};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

pub use crate::POLICY_CNS;
/// Certificate policy of the Carta d'Identità Elettronica.
pub const POLICY_CIE: &str = "1.3.76.47.4";
/// Policies some regional service cards use.
pub const POLICY_REGIONAL: [&str; 2] = ["1.3.159.6.1.3.2.10", "1.3.76.12.1.1.10.2.2.10"];

/// What a client certificate must show to be accepted as a smart card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardProfile {
    /// Dotted OIDs; the certificate must carry at least one of them.
    pub accepted_policies: Vec<String>,
}

impl Default for CardProfile {
    fn default() -> Self {
        let mut accepted_policies = vec![POLICY_CNS.to_string(), POLICY_CIE.to_string()];
        accepted_policies.extend(POLICY_REGIONAL.iter().map(|p| p.to_string()));
        Self { accepted_policies }
    }
}

/// The person a verified smart-card certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub tax_code: CodiceFiscale,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    /// SHA-256 of the certificate, lower-case hex: sessions are bound to it.
    pub fingerprint: String,
}

impl Holder {
    /// "Given Surname", or the codice fiscale when the certificate carries no names.
    pub fn display_name(&self) -> String {
        match (&self.given_name, &self.surname) {
            (Some(g), Some(s)) => format!("{g} {s}"),
            (Some(one), None) | (None, Some(one)) => one.clone(),
            (None, None) => self.tax_code.to_string(),
        }
    }
}

/// Why a certificate is not accepted as a smart card. Safe to log: no certificate content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardRefusal {
    #[error("the certificate cannot be parsed")]
    Unparsable,
    /// A forwarded certificate failed chain, validity or revocation checks.
    #[error("the certificate did not verify")]
    NotVerified,
    #[error("the certificate is not valid yet")]
    NotYetValid,
    #[error("the certificate has expired")]
    Expired,
    #[error("the certificate is not meant for client authentication")]
    NoClientAuth,
    #[error("the certificate carries none of the accepted smart-card policies")]
    NoAcceptedPolicy,
    #[error("the certificate names no codice fiscale")]
    NoTaxCode,
    #[error("the codice fiscale in the certificate is not valid ({})", .0.code())]
    InvalidTaxCode(Reason),
}

impl CardRefusal {
    /// Stable identifier, for logs and translated messages.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unparsable => "unparsable",
            Self::NotVerified => "not-verified",
            Self::NotYetValid => "not-yet-valid",
            Self::Expired => "expired",
            Self::NoClientAuth => "no-client-auth",
            Self::NoAcceptedPolicy => "no-accepted-policy",
            Self::NoTaxCode => "no-tax-code",
            Self::InvalidTaxCode(_) => "invalid-tax-code",
        }
    }
}

fn first_attribute(name: &X509Name<'_>, oid: &x509_parser::der_parser::Oid<'_>) -> Option<String> {
    name.iter_by_oid(oid).next().and_then(|a| a.as_str().ok()).map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The codice fiscale a certificate names: the CN's `CF/serial.hash` form first, then
/// `serialNumber` as `TINIT-CF` or `IT:CF`.
fn tax_code_text(cert: &X509Certificate<'_>) -> Option<String> {
    let subject = cert.subject();
    if let Some(cn) = first_attribute(subject, &OID_X509_COMMON_NAME) {
        if let Some((cf, _card)) = cn.split_once('/') {
            return Some(cf.to_string());
        }
    }
    let serial = first_attribute(subject, &OID_X509_SERIALNUMBER)?;
    serial.strip_prefix("TINIT-").or_else(|| serial.strip_prefix("IT:")).map(str::to_string)
}

/// Reads and checks a certificate that the TLS layer already verified against the trusted
/// certifiers.
pub fn holder_from_der(der: &[u8], profile: &CardProfile, now: OffsetDateTime) -> Result<Holder, CardRefusal> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| CardRefusal::Unparsable)?;
    let validity = cert.validity();
    if now < validity.not_before.to_datetime() {
        return Err(CardRefusal::NotYetValid);
    }
    if now > validity.not_after.to_datetime() {
        return Err(CardRefusal::Expired);
    }
    let mut client_auth = false;
    let mut policy_ok = false;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::ExtendedKeyUsage(eku) => client_auth = eku.client_auth,
            ParsedExtension::CertificatePolicies(policies) => {
                policy_ok = policies
                    .iter()
                    .any(|p| profile.accepted_policies.iter().any(|accepted| p.policy_id.to_id_string() == *accepted));
            }
            _ => {}
        }
    }
    if !client_auth {
        return Err(CardRefusal::NoClientAuth);
    }
    if !policy_ok {
        return Err(CardRefusal::NoAcceptedPolicy);
    }
    let text = tax_code_text(&cert).ok_or(CardRefusal::NoTaxCode)?;
    let tax_code = CodiceFiscale::parse(&text).map_err(CardRefusal::InvalidTaxCode)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    Ok(Holder {
        tax_code,
        given_name: first_attribute(cert.subject(), &OID_X509_GIVEN_NAME),
        surname: first_attribute(cert.subject(), &OID_X509_SURNAME),
        fingerprint: hex::encode(digest),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_pki::{CardSpec, TestPki};

    fn pki() -> TestPki {
        TestPki::generate("Sportello test CA").expect("pki")
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn cns_card_names_its_holder() {
        let pki = pki();
        let card = pki.card(&CardSpec::new("Utente", "DiProva", "RSSMRA45C12F205C")).expect("card");
        let holder = holder_from_der(&card.der, &CardProfile::default(), now()).expect("accepted");
        assert_eq!(holder.tax_code.as_str(), "RSSMRA45C12F205C");
        assert_eq!(holder.display_name(), "Utente DiProva");
        assert_eq!(holder.fingerprint.len(), 64);
    }

    #[test]
    fn serial_number_fallback_forms() {
        let pki = pki();
        for serial in ["TINIT-RSSMRA45C12F205C", "IT:RSSMRA45C12F205C"] {
            let mut spec = CardSpec::new("Mario", "Rossi", "");
            spec.common_name = Some("Mario Rossi".into());
            spec.serial_number = Some(serial.into());
            let card = pki.card(&spec).expect("card");
            let holder = holder_from_der(&card.der, &CardProfile::default(), now()).expect("accepted");
            assert_eq!(holder.tax_code.as_str(), "RSSMRA45C12F205C", "{serial}");
        }
    }

    #[test]
    fn refusals() {
        let pki = pki();
        let profile = CardProfile::default();
        let check = |spec: CardSpec| holder_from_der(&pki.card(&spec).expect("card").der, &profile, now());

        assert_eq!(
            check(CardSpec::new("A", "B", "FOXDRA26C24H872A")),
            Err(CardRefusal::InvalidTaxCode(Reason::PersonTaxCodeCheckCharacter))
        );
        let mut no_policy = CardSpec::new("A", "B", "RSSMRA45C12F205C");
        no_policy.policies = vec!["1.2.3.4".into()];
        assert_eq!(check(no_policy), Err(CardRefusal::NoAcceptedPolicy));
        let mut server_only = CardSpec::new("A", "B", "RSSMRA45C12F205C");
        server_only.client_auth = false;
        assert_eq!(check(server_only), Err(CardRefusal::NoClientAuth));
        let mut no_cf = CardSpec::new("A", "B", "");
        no_cf.common_name = Some("Just a name".into());
        assert_eq!(check(no_cf), Err(CardRefusal::NoTaxCode));
        let mut expired = CardSpec::new("A", "B", "RSSMRA45C12F205C");
        expired.not_after = now() - time::Duration::days(1);
        expired.not_before = now() - time::Duration::days(400);
        assert_eq!(check(expired), Err(CardRefusal::Expired));
        assert_eq!(holder_from_der(b"not a certificate", &profile, now()), Err(CardRefusal::Unparsable));
    }
}
