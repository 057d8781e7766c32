//! Signed evidence: an institution's answer kept exactly as it signed it.
//!
//! Institutions sign what they send the portal with ModI INTEGRITY_REST_01: a `Digest` of the
//! body and an `Agid-JWT-Signature` JWS (ES256, their certificate) whose `signed_headers` list
//! that digest and the content type. Every answer, status answer and callback that carries
//! those headers is kept as [`Evidence`]: the body's bytes (base64), the two headers, the
//! content type. It goes into the practice's timeline and its export, and [`Evidence::verify`]
//! checks it offline against the institution's certificate: the signature, the digest against
//! the body, the content type. Time is not checked: evidence is read long after it was signed.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::modi::{digest_header, first_cert_der, DIGEST, SIGNATURE};

/// One signed answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub content_type: String,
    /// The body's bytes, base64.
    pub body: String,
    /// The `Digest` header as received.
    pub digest: String,
    /// The `Agid-JWT-Signature` JWS as received.
    pub signature: String,
}

#[derive(Debug, Deserialize)]
struct SignedClaims {
    iss: String,
    signed_headers: Vec<std::collections::HashMap<String, String>>,
}

impl Evidence {
    /// The evidence of a message with `headers` and `body`, if the sender signed it.
    pub fn from_message(headers: &HeaderMap, body: &[u8]) -> Option<Self> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        Some(Self {
            content_type: get("content-type").unwrap_or_default(),
            body: STANDARD.encode(body),
            digest: get(DIGEST)?,
            signature: get(SIGNATURE)?,
        })
    }

    /// The body as it was received.
    pub fn body_bytes(&self) -> Result<Vec<u8>, String> {
        STANDARD.decode(&self.body).map_err(|e| format!("the body is not base64: {e}"))
    }

    /// Checks the evidence against the certificate of the institution that signed it; the
    /// answer is who signed (`iss`).
    pub fn verify(&self, cert_pem: &str) -> Result<String, String> {
        let der = first_cert_der(cert_pem).map_err(|e| e.to_string())?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| format!("certificate: {e}"))?;
        let key = DecodingKey::from_ec_der(&cert.public_key().subject_public_key.data);
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<SignedClaims>(&self.signature, &key, &validation)
            .map_err(|e| format!("the signature does not verify with the institution's certificate: {e}"))?
            .claims;
        let signed = |name: &str| claims.signed_headers.iter().find_map(|h| h.get(name).cloned());
        if signed(DIGEST).as_deref() != Some(self.digest.as_str()) {
            return Err("the digest kept is not the one signed".into());
        }
        if signed("content-type").is_some_and(|t| !t.eq_ignore_ascii_case(&self.content_type)) {
            return Err("the content type kept is not the one signed".into());
        }
        if digest_header(&self.body_bytes()?) != self.digest {
            return Err("the body does not match its signed digest: it was changed".into());
        }
        Ok(claims.iss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modi::Signer;
    use domain::{Clock, Randomness};
    use identity::test_pki::{CardSpec, TestPki};
    use std::sync::Arc;

    #[derive(Debug)]
    struct Now;
    impl Clock for Now {
        fn now(&self) -> time::OffsetDateTime {
            time::OffsetDateTime::now_utc()
        }
    }
    #[derive(Debug)]
    struct Fixed;
    impl Randomness for Fixed {
        fn fill(&self, dest: &mut [u8]) -> Result<(), domain::RandomnessUnavailable> {
            dest.fill(7);
            Ok(())
        }
    }

    #[test]
    fn a_signed_answer_verifies_and_one_byte_changed_does_not() {
        let pki = TestPki::generate("t").expect("pki");
        let inps = pki.card(&CardSpec::new("Inps", "Ente", "RSSMRA45C12F205C")).expect("cert");
        let other = pki.card(&CardSpec::new("Altro", "Ente", "RSSMRA45C12F205C")).expect("cert");
        let signer =
            Signer::new("inps", &inps.key_pem, &inps.cert_pem, Arc::new(Now), Arc::new(Fixed)).expect("signer");
        let body = br#"{"protocollo":"INPS-1","esito":"ACCOLTA"}"#;
        let mut headers = HeaderMap::new();
        for (name, value) in signer.sign("sportello", body, "application/json", "inps").expect("sign") {
            headers.insert(name, value.parse().expect("value"));
        }
        let evidence = Evidence::from_message(&headers, body).expect("signed");
        assert_eq!(evidence.verify(&inps.cert_pem), Ok("inps".to_string()));
        assert!(evidence.verify(&other.cert_pem).is_err(), "another institution's certificate");
        let mut changed = body.to_vec();
        changed[15] ^= 1;
        let tampered = Evidence { body: STANDARD.encode(&changed), ..evidence.clone() };
        assert!(tampered.verify(&inps.cert_pem).expect_err("tampered").contains("was changed"));
        assert!(Evidence::from_message(&HeaderMap::new(), body).is_none(), "unsigned: no evidence");
    }
}
