//! What a certificate revocation list (CRL) says about its own freshness, and whom a
//! certificate was issued by: enough to apply the stale-CRL policy at the TLS listener.
//!
//! Policy: a CRL is used until its `nextUpdate`; after that it is *stale* but still used for a
//! grace period (the certifier may publish late, and refusing every card of a certifier is a
//! serious outage); past the grace period the portal fails closed and refuses every card of
//! that certifier until a fresh CRL is loaded.

use std::time::Duration;

use time::OffsetDateTime;
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

/// The parts of a CRL the policy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlInfo {
    /// The issuer's distinguished name, DER, as it appears in the certificates it issues.
    pub issuer: Vec<u8>,
    pub this_update: OffsetDateTime,
    pub next_update: Option<OffsetDateTime>,
    pub revoked: usize,
}

/// How fresh a CRL is at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    /// Past `nextUpdate`, within the grace period: still used, with a warning.
    StaleInGrace,
    /// Past the grace period: the certifier's cards are refused.
    Expired,
}

impl CrlInfo {
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, crl) = CertificateRevocationList::from_der(der).map_err(|e| format!("not a CRL: {e}"))?;
        Ok(Self {
            issuer: crl.issuer().as_raw().to_vec(),
            this_update: crl.last_update().to_datetime(),
            next_update: crl.next_update().map(|t| t.to_datetime()),
            revoked: crl.iter_revoked_certificates().count(),
        })
    }

    pub fn freshness(&self, now: OffsetDateTime, grace: Duration) -> Freshness {
        match self.next_update {
            None => Freshness::Fresh,
            Some(next) if now <= next => Freshness::Fresh,
            Some(next) if now <= next + grace => Freshness::StaleInGrace,
            Some(_) => Freshness::Expired,
        }
    }
}

/// The serial number (big-endian bytes) of the first certificate in a PEM text.
pub fn serial_of_pem(pem: &str) -> Option<Vec<u8>> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let (_, cert) = X509Certificate::from_der(&parsed.contents).ok()?;
    Some(cert.raw_serial().to_vec())
}

/// The issuer's distinguished name (DER) of a certificate.
pub fn issuer_of(cert_der: &[u8]) -> Option<Vec<u8>> {
    X509Certificate::from_der(cert_der).ok().map(|(_, c)| c.issuer().as_raw().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_pki::{CardSpec, TestPki};

    #[test]
    fn freshness_follows_next_update_and_grace() {
        let pki = TestPki::generate("t").expect("pki");
        let card = pki.card(&CardSpec::new("A", "B", "RSSMRA45C12F205C")).expect("card");
        let now = OffsetDateTime::now_utc();
        let pem = pki
            .crl(std::slice::from_ref(&card.serial), now - time::Duration::days(1), now + time::Duration::days(1))
            .expect("crl");
        let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
        let info = CrlInfo::from_der(&parsed.contents).expect("crl");
        assert_eq!(info.revoked, 1);
        assert_eq!(Some(info.issuer.clone()), issuer_of(&card.der));
        let grace = Duration::from_secs(3600);
        assert_eq!(info.freshness(now, grace), Freshness::Fresh);
        assert_eq!(
            info.freshness(now + time::Duration::days(1) + time::Duration::minutes(30), grace),
            Freshness::StaleInGrace
        );
        assert_eq!(info.freshness(now + time::Duration::days(2), grace), Freshness::Expired);
    }
}
