//! A throw-away PKI for the demo and the tests: a CA standing in for the card certifiers and
//! for the portal's own server certificate, and client certificates shaped like CNS cards.

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::POLICY_CNS;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Generation(#[from] rcgen::Error),
    #[error("PKCS#12 encoding failed: {0}")]
    Pkcs12(String),
    #[error("invalid certificate parameter: {0}")]
    Parameter(String),
}

/// A certificate with its private key.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    key_der: Vec<u8>,
    /// The certificate's serial number (big-endian bytes), to list it in a CRL.
    pub serial: Vec<u8>,
}

impl Issued {
    /// The certificate and key as a PKCS#12 file (AES-256, for browsers and OS key stores),
    /// with the CA certificate in the chain.
    pub fn to_pkcs12(&self, password: &str, ca_der: &[u8], friendly_name: &str) -> Result<Vec<u8>, PkiError> {
        use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
        let err = |e: p12_keystore::error::Error| PkiError::Pkcs12(e.to_string());
        let key = PrivateKey::from_der(&self.key_der).map_err(err)?;
        let chain = [Certificate::from_der(&self.der).map_err(err)?, Certificate::from_der(ca_der).map_err(err)?];
        let key_id = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &self.der).as_ref().to_vec();
        let mut store = KeyStore::new();
        store.add_entry(friendly_name, KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(key_id, key, chain)));
        store.writer(password).write().map_err(err)
    }
}

/// What to put in a test smart card.
#[derive(Debug, Clone)]
pub struct CardSpec {
    pub given_name: String,
    pub surname: String,
    /// Written into the CN as `CF/card.hash` unless `common_name` is set. Not checked here, so
    /// tests can make cards with invalid codes.
    pub tax_code: String,
    /// Overrides the CN entirely.
    pub common_name: Option<String>,
    /// The subject's `serialNumber` attribute, e.g. `TINIT-<CF>`.
    pub serial_number: Option<String>,
    pub card_number: String,
    pub policies: Vec<String>,
    pub client_auth: bool,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl CardSpec {
    /// A well-formed CNS card valid from yesterday for three years.
    pub fn new(given_name: &str, surname: &str, tax_code: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            given_name: given_name.into(),
            surname: surname.into(),
            tax_code: tax_code.into(),
            common_name: None,
            serial_number: None,
            card_number: "6120016461039008".into(),
            policies: vec![POLICY_CNS.to_string()],
            client_auth: true,
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(3 * 365),
        }
    }

    fn cn(&self) -> String {
        if let Some(cn) = &self.common_name {
            return cn.clone();
        }
        let digest =
            ring::digest::digest(&ring::digest::SHA256, format!("{}{}", self.tax_code, self.card_number).as_bytes());
        let hash = base64::engine::general_purpose::STANDARD.encode(&digest.as_ref()[..20]);
        format!("{}/{}.{}", self.tax_code, self.card_number, hash)
    }
}

/// DER for a CertificatePolicies extension value listing `oids` (no qualifiers).
fn certificate_policies_der(oids: &[String]) -> Result<Vec<u8>, PkiError> {
    fn der_len(len: usize) -> Vec<u8> {
        if len < 0x80 {
            vec![len as u8]
        } else {
            let bytes: Vec<u8> = len.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
            let mut out = vec![0x80 | bytes.len() as u8];
            out.extend(bytes);
            out
        }
    }
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend(der_len(content.len()));
        out.extend_from_slice(content);
        out
    }
    let mut infos = Vec::new();
    for oid in oids {
        let arcs: Vec<u64> = oid
            .split('.')
            .map(|a| a.parse::<u64>().map_err(|_| PkiError::Parameter(format!("bad OID {oid}"))))
            .collect::<Result<_, _>>()?;
        if arcs.len() < 2 || arcs[0] > 2 {
            return Err(PkiError::Parameter(format!("bad OID {oid}")));
        }
        let mut body = Vec::new();
        let mut push_arc = |mut v: u64| {
            let mut chunk = vec![(v & 0x7f) as u8];
            v >>= 7;
            while v > 0 {
                chunk.push(0x80 | (v & 0x7f) as u8);
                v >>= 7;
            }
            chunk.reverse();
            body.extend(chunk);
        };
        push_arc(arcs[0] * 40 + arcs[1]);
        for a in &arcs[2..] {
            push_arc(*a);
        }
        infos.extend(tlv(0x30, &tlv(0x06, &body)));
    }
    Ok(tlv(0x30, &infos))
}

/// OID arcs of X.520 attributes rcgen has no name for.
const GIVEN_NAME: [u64; 4] = [2, 5, 4, 42];
const SURNAME: [u64; 4] = [2, 5, 4, 4];
const SERIAL_NUMBER: [u64; 4] = [2, 5, 4, 5];
const CERTIFICATE_POLICIES: [u64; 4] = [2, 5, 29, 32];

/// A certification authority made for this run.
#[derive(Debug)]
pub struct TestPki {
    issuer: Issuer<'static, KeyPair>,
    pub ca: Issued,
    next_serial: std::cell::Cell<u64>,
}

impl TestPki {
    /// Generates a new CA named `name`, valid for ten years.
    pub fn generate(name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "IT");
        dn.push(DnType::OrganizationName, "Sportello demo (not a real certifier)");
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(2);
        params.not_after = now + Duration::days(3650);
        let cert = params.self_signed(&key)?;
        let ca = Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            serial: Vec::new(),
        };
        Ok(Self { issuer: Issuer::new(params, key), ca, next_serial: std::cell::Cell::new(1000) })
    }

    fn serial(&self) -> SerialNumber {
        let n = self.next_serial.get();
        self.next_serial.set(n + 1);
        SerialNumber::from(n.to_be_bytes().to_vec())
    }

    fn sign(&self, params: &CertificateParams) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            serial: params.serial_number.as_ref().map(|s| s.to_bytes()).unwrap_or_default(),
        })
    }

    /// Reloads a CA from its certificate and key (PEM), to issue more or sign CRLs later.
    pub fn load(ca_cert_pem: &str, ca_key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(ca_key_pem)?;
        let (_, parsed) = x509_parser::pem::parse_x509_pem(ca_cert_pem.as_bytes())
            .map_err(|e| PkiError::Parameter(format!("CA certificate: {e}")))?;
        let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, KeyPair::from_pem(ca_key_pem)?)?;
        let ca = Issued {
            cert_pem: ca_cert_pem.to_string(),
            key_pem: ca_key_pem.to_string(),
            der: parsed.contents,
            key_der: key.serialize_der(),
            serial: Vec::new(),
        };
        // Serials from the clock, so reissued certificates do not collide with earlier ones.
        let start = u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(1) << 16;
        Ok(Self { issuer, ca, next_serial: std::cell::Cell::new(start) })
    }

    /// A CRL (PEM) listing `revoked` serials, valid from `this_update` to `next_update`.
    pub fn crl(
        &self,
        revoked: &[Vec<u8>],
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<String, PkiError> {
        let params = rcgen::CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(
                u64::try_from(this_update.unix_timestamp()).unwrap_or(1).to_be_bytes().to_vec(),
            ),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from(serial.clone()),
                    revocation_time: this_update,
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }

    /// A TLS server certificate for these DNS names and IP addresses.
    pub fn server(&self, names: &[&str]) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, names.first().copied().unwrap_or("localhost"));
        params.distinguished_name = dn;
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName((*n).try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(825);
        params.serial_number = Some(self.serial());
        self.sign(&params)
    }

    /// A plain TLS client certificate for a service (the portal towards institutions).
    pub fn client(&self, common_name: &str) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Sportello demo");
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(825);
        params.serial_number = Some(self.serial());
        self.sign(&params)
    }

    /// A client certificate shaped like a CNS authentication certificate.
    pub fn card(&self, spec: &CardSpec) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "IT");
        dn.push(DnType::OrganizationName, "Sportello demo");
        dn.push(DnType::OrganizationalUnitName, "Carta Nazionale dei Servizi di prova");
        dn.push(DnType::CustomDnType(SURNAME.to_vec()), spec.surname.as_str());
        dn.push(DnType::CustomDnType(GIVEN_NAME.to_vec()), spec.given_name.as_str());
        if let Some(serial) = &spec.serial_number {
            dn.push(DnType::CustomDnType(SERIAL_NUMBER.to_vec()), serial.as_str());
        }
        dn.push(DnType::CommonName, spec.cn());
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = if spec.client_auth {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        } else {
            vec![ExtendedKeyUsagePurpose::ServerAuth]
        };
        if !spec.policies.is_empty() {
            params.custom_extensions.push(CustomExtension::from_oid_content(
                &CERTIFICATE_POLICIES,
                certificate_policies_der(&spec.policies)?,
            ));
        }
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.serial_number = Some(self.serial());
        self.sign(&params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_encode_as_der() {
        // SEQUENCE { SEQUENCE { OID 1.3.76.16.2.1 } }
        let der = certificate_policies_der(&["1.3.76.16.2.1".to_string()]).expect("der");
        assert_eq!(der, [0x30, 0x09, 0x30, 0x07, 0x06, 0x05, 0x2b, 0x4c, 0x10, 0x02, 0x01]);
    }

    #[test]
    fn pkcs12_opens_with_its_password() {
        let pki = TestPki::generate("t").expect("pki");
        let card = pki.card(&CardSpec::new("Utente", "DiProva", "RSSMRA45C12F205C")).expect("card");
        let p12 = card.to_pkcs12("secret", &pki.ca.der, "diprova").expect("p12");
        let store = p12_keystore::KeyStore::from_pkcs12(&p12, "secret", p12_keystore::Pkcs12ImportPolicy::default())
            .expect("opens");
        let (_, chain) = store.private_key_chain().expect("key chain");
        assert_eq!(chain.certs()[0].as_der(), card.der.as_slice());
        assert!(
            p12_keystore::KeyStore::from_pkcs12(&p12, "wrong", p12_keystore::Pkcs12ImportPolicy::default()).is_err()
        );
    }
}
