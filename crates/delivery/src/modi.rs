//! AgID ModI security patterns for REST calls between administrations.
//!
//! A signed request carries:
//! - `Authorization: Bearer <JWS>` (ID_AUTH_REST_02): `iss`, `sub`, `aud`, `iat`, `nbf`, `exp`
//!   and a unique `jti`, which the receiver remembers until it expires (anti-replay);
//! - `Digest: SHA-256=<base64>` of the body and `Agid-JWT-Signature` (INTEGRITY_REST_01), a JWS
//!   whose `signed_headers` claim lists the digest and content type as sent;
//! - `Agid-JWT-TrackingEvidence` (AUDIT_REST_01): who the request is made for (`userID`,
//!   `userLocation`, `LoA`).
//!
//! Every JWS is ES256 with the sender's certificate in `x5c`. The receiver verifies with the
//! sender's certificate it was configured with (never with the one in `x5c`), checks `aud`,
//! the time window against the injected clock, the `jti`, then the signed headers against the
//! real ones and the digest against the body. Any failure is a [`ModiError`], answered 401.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use domain::{Clock, Randomness};
use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const DIGEST: &str = "digest";
pub const SIGNATURE: &str = "agid-jwt-signature";
pub const TRACKING: &str = "agid-jwt-trackingevidence";

/// How long a signed request stays valid.
const VALIDITY_SECS: i64 = 60;
/// Tolerated clock difference between the two parties.
const LEEWAY_SECS: i64 = 30;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModiError {
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("header {0} is not a valid token: {1}")]
    BadToken(&'static str, String),
    #[error("token {0} is for another audience")]
    Audience(&'static str),
    #[error("token {0} has expired or is not valid yet")]
    Time(&'static str),
    #[error("token {0} was already used (replay)")]
    Replay(&'static str),
    #[error("the signed headers do not match the request: {0}")]
    SignedHeaders(String),
    #[error("the body does not match its digest")]
    Digest,
    #[error("key material: {0}")]
    Key(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct AuthClaims {
    iss: String,
    sub: String,
    aud: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct SignatureClaims {
    iss: String,
    aud: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
    signed_headers: Vec<HashMap<String, String>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[allow(non_snake_case)]
struct TrackingClaims {
    iss: String,
    aud: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
    userID: String,
    userLocation: String,
    LoA: String,
    /// The person responsible when `userID` acts under a sub-delegation (the grantor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    onBehalfOf: Option<String>,
}

/// Who a verified request was made by, and for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub issuer: String,
    pub user_id: String,
    /// Who the user acted for, under a sub-delegation.
    pub on_behalf_of: Option<String>,
    /// The tokens the request used, for a replay check kept outside this process.
    pub tokens: Vec<TokenUse>,
}

/// One token (`jti`) a verified request used, and until when a replay of it would still pass
/// the time checks: the receiver must refuse it again until then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUse {
    /// The header that carried it (`authorization`, `agid-jwt-signature`, …).
    pub header: &'static str,
    pub jti: String,
    /// Unix seconds.
    pub replayable_until: i64,
}

/// The DER of the first certificate in a PEM text.
pub fn first_cert_der(pem: &str) -> Result<Vec<u8>, ModiError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .ok_or_else(|| ModiError::Key("no certificate in PEM".into()))?
        .map(|c| c.as_ref().to_vec())
        .map_err(|e| ModiError::Key(e.to_string()))
}

/// Signs requests as one party (the portal, or an institution calling back).
pub struct Signer {
    issuer: String,
    key: EncodingKey,
    x5c: Vec<String>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Randomness>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl Signer {
    /// `key_pem`: PKCS#8 EC P-256 private key; `cert_pem`: its certificate.
    pub fn new(
        issuer: &str,
        key_pem: &str,
        cert_pem: &str,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Randomness>,
    ) -> Result<Self, ModiError> {
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .map_err(|e| ModiError::Key(e.to_string()))?
            .ok_or_else(|| ModiError::Key("no private key in PEM".into()))?;
        let key = match key {
            rustls::pki_types::PrivateKeyDer::Pkcs8(k) => EncodingKey::from_ec_der(k.secret_pkcs8_der()),
            _ => return Err(ModiError::Key("the signing key must be PKCS#8".into())),
        };
        Ok(Self { issuer: issuer.into(), key, x5c: vec![STANDARD.encode(first_cert_der(cert_pem)?)], clock, random })
    }

    fn jti(&self) -> Result<String, ModiError> {
        let mut bytes = [0u8; 16];
        self.random.fill(&mut bytes).map_err(|_| ModiError::Key("no randomness".into()))?;
        Ok(uuid::Builder::from_random_bytes(bytes).into_uuid().to_string())
    }

    fn jws<T: Serialize>(&self, claims: &T) -> Result<String, ModiError> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".into());
        header.x5c = Some(self.x5c.clone());
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|e| ModiError::Key(e.to_string()))
    }

    /// The ModI headers for a request with `body` to `audience`, made for user `user_id`.
    pub fn sign(
        &self,
        audience: &str,
        body: &[u8],
        content_type: &str,
        user_id: &str,
    ) -> Result<Vec<(&'static str, String)>, ModiError> {
        self.sign_on_behalf(audience, body, content_type, user_id, None)
    }

    /// Signs for `user_id` acting on behalf of `on_behalf_of` (a sub-delegation's grantor):
    /// the tracking evidence names both.
    pub fn sign_on_behalf(
        &self,
        audience: &str,
        body: &[u8],
        content_type: &str,
        user_id: &str,
        on_behalf_of: Option<&str>,
    ) -> Result<Vec<(&'static str, String)>, ModiError> {
        let now = self.clock.now().unix_timestamp();
        let exp = now + VALIDITY_SECS;
        let digest = digest_header(body);
        let auth = AuthClaims {
            iss: self.issuer.clone(),
            sub: self.issuer.clone(),
            aud: audience.into(),
            iat: now,
            nbf: now,
            exp,
            jti: self.jti()?,
        };
        let signature = SignatureClaims {
            iss: self.issuer.clone(),
            aud: audience.into(),
            iat: now,
            nbf: now,
            exp,
            jti: self.jti()?,
            signed_headers: vec![
                HashMap::from([(DIGEST.to_string(), digest.clone())]),
                HashMap::from([("content-type".to_string(), content_type.to_ascii_lowercase())]),
            ],
        };
        let tracking = TrackingClaims {
            iss: self.issuer.clone(),
            aud: audience.into(),
            iat: now,
            nbf: now,
            exp,
            jti: self.jti()?,
            userID: user_id.into(),
            userLocation: self.issuer.clone(),
            LoA: "LoA3".into(),
            onBehalfOf: on_behalf_of.map(str::to_string),
        };
        Ok(vec![
            ("authorization", format!("Bearer {}", self.jws(&auth)?)),
            (DIGEST, digest),
            (SIGNATURE, self.jws(&signature)?),
            (TRACKING, self.jws(&tracking)?),
            ("content-type", content_type.into()),
        ])
    }
}

/// `SHA-256=<base64>` of a body.
pub fn digest_header(body: &[u8]) -> String {
    format!("SHA-256={}", STANDARD.encode(ring::digest::digest(&ring::digest::SHA256, body)))
}

/// Verifies requests from one trusted sender, addressed to one audience.
pub struct Verifier {
    audience: String,
    key: DecodingKey,
    clock: Arc<dyn Clock>,
    /// `jti` seen, with their expiry, to refuse replays; `None` when the caller checks the
    /// [`Verified::tokens`] itself (a portal with several processes checks them in its store).
    seen: Option<Mutex<HashMap<String, i64>>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("audience", &self.audience).finish_non_exhaustive()
    }
}

impl Verifier {
    /// `sender_cert_pem`: the certificate the sender signs with.
    pub fn new(audience: &str, sender_cert_pem: &str, clock: Arc<dyn Clock>) -> Result<Self, ModiError> {
        let der = first_cert_der(sender_cert_pem)?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| ModiError::Key(format!("certificate: {e}")))?;
        let point = cert.public_key().subject_public_key.data.to_vec();
        Ok(Self {
            audience: audience.into(),
            key: DecodingKey::from_ec_der(&point),
            clock,
            seen: Some(Mutex::new(HashMap::new())),
        })
    }

    /// A verifier that leaves the replay check to its caller, which must refuse a request
    /// whose [`Verified::tokens`] were already used.
    pub fn replays_checked_by_caller(mut self) -> Self {
        self.seen = None;
        self
    }

    fn decode<T: for<'de> Deserialize<'de>>(&self, name: &'static str, token: &str) -> Result<T, ModiError> {
        let mut validation = Validation::new(Algorithm::ES256);
        // Time and audience are checked below against the injected clock.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<T>(token, &self.key, &validation)
            .map(|d| d.claims)
            .map_err(|e| ModiError::BadToken(name, e.to_string()))
    }

    fn check(
        &self,
        name: &'static str,
        aud: &str,
        (iat, nbf, exp): (i64, i64, i64),
        jti: &str,
    ) -> Result<TokenUse, ModiError> {
        if aud != self.audience {
            return Err(ModiError::Audience(name));
        }
        let now = self.clock.now().unix_timestamp();
        if exp + LEEWAY_SECS < now || nbf - LEEWAY_SECS > now || iat - LEEWAY_SECS > now || exp - iat > 3600 {
            return Err(ModiError::Time(name));
        }
        if let Some(seen) = &self.seen {
            let mut seen = seen.lock().map_err(|_| ModiError::Key("replay cache poisoned".into()))?;
            seen.retain(|_, expiry| *expiry + LEEWAY_SECS >= now);
            if seen.insert(format!("{name}:{jti}"), exp).is_some() {
                return Err(ModiError::Replay(name));
            }
        }
        Ok(TokenUse { header: name, jti: jti.to_string(), replayable_until: exp + LEEWAY_SECS })
    }

    /// Checks every ModI header of a request against its body.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Verified, ModiError> {
        let bearer =
            header(headers, "authorization")?.strip_prefix("Bearer ").ok_or(ModiError::Missing("authorization"))?;
        let auth: AuthClaims = self.decode("authorization", bearer)?;
        let token = self.check("authorization", &auth.aud, (auth.iat, auth.nbf, auth.exp), &auth.jti)?;
        let mut verified = self.verify_integrity(headers, body)?;
        verified.tokens.insert(0, token);
        Ok(verified)
    }

    /// Checks the integrity and audit headers only (INTEGRITY_REST_01, AUDIT_REST_01): for a
    /// request whose `Authorization` is a PDND voucher, checked by the receiver on its own.
    pub fn verify_integrity(&self, headers: &HeaderMap, body: &[u8]) -> Result<Verified, ModiError> {
        let header = |name: &'static str| header(headers, name);
        let signature: SignatureClaims = self.decode(SIGNATURE, header(SIGNATURE)?)?;
        let tracking: TrackingClaims = self.decode(TRACKING, header(TRACKING)?)?;
        let tokens = vec![
            self.check(SIGNATURE, &signature.aud, (signature.iat, signature.nbf, signature.exp), &signature.jti)?,
            self.check(TRACKING, &tracking.aud, (tracking.iat, tracking.nbf, tracking.exp), &tracking.jti)?,
        ];
        // The signed header values must be the ones actually sent.
        let mut signed_digest = false;
        for entry in &signature.signed_headers {
            for (name, value) in entry {
                let actual = headers
                    .get(name.as_str())
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| ModiError::SignedHeaders(format!("{name} is signed but absent")))?;
                let same = if name == "content-type" { actual.eq_ignore_ascii_case(value) } else { actual == value };
                if !same {
                    return Err(ModiError::SignedHeaders(format!("{name} differs from its signed value")));
                }
                signed_digest |= name == DIGEST;
            }
        }
        if !signed_digest {
            return Err(ModiError::SignedHeaders("the digest is not signed".into()));
        }
        if header(DIGEST)? != digest_header(body) {
            return Err(ModiError::Digest);
        }
        Ok(Verified { issuer: signature.iss, user_id: tracking.userID, on_behalf_of: tracking.onBehalfOf, tokens })
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, ModiError> {
    headers.get(name).and_then(|v| v.to_str().ok()).ok_or(ModiError::Missing(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity::test_pki::{CardSpec, TestPki};
    use time::OffsetDateTime;

    #[derive(Debug)]
    struct FixedClock(std::sync::Mutex<OffsetDateTime>);
    impl Clock for FixedClock {
        fn now(&self) -> OffsetDateTime {
            *self.0.lock().expect("clock")
        }
    }
    #[derive(Debug, Default)]
    struct Counter(std::sync::atomic::AtomicU8);
    impl Randomness for Counter {
        fn fill(&self, dest: &mut [u8]) -> Result<(), domain::RandomnessUnavailable> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            dest.iter_mut().enumerate().for_each(|(i, b)| *b = n.wrapping_add(i as u8));
            Ok(())
        }
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().expect("header value"));
        }
        map
    }

    fn parties() -> (Signer, Verifier, Arc<FixedClock>, String) {
        let pki = TestPki::generate("t").expect("pki");
        let portal = pki.card(&CardSpec::new("Sportello", "Portal", "RSSMRA45C12F205C")).expect("cert");
        let clock = Arc::new(FixedClock(std::sync::Mutex::new(OffsetDateTime::now_utc())));
        let signer =
            Signer::new("sportello", &portal.key_pem, &portal.cert_pem, clock.clone(), Arc::new(Counter::default()))
                .expect("signer");
        let verifier = Verifier::new("inps", &portal.cert_pem, clock.clone()).expect("verifier");
        let other = pki.card(&CardSpec::new("Other", "Party", "RSSMRA45C12F205C")).expect("cert");
        (signer, verifier, clock, other.cert_pem)
    }

    #[test]
    fn a_signed_request_verifies_once() {
        let (signer, verifier, _, _) = parties();
        let body = br#"{"a":1}"#;
        let h = headers(&signer.sign("inps", body, "application/json", "RSSMRA45C12F205C").expect("sign"));
        let verified = verifier.verify(&h, body).expect("valid");
        assert_eq!(
            (verified.issuer.as_str(), verified.user_id.as_str(), verified.on_behalf_of),
            ("sportello", "RSSMRA45C12F205C", None)
        );
        let headers: Vec<&str> = verified.tokens.iter().map(|t| t.header).collect();
        assert_eq!(headers, ["authorization", SIGNATURE, TRACKING], "every token is named for the caller's check");
        assert!(verified.tokens.iter().all(|t| !t.jti.is_empty() && t.replayable_until > 0));
        assert_eq!(verifier.verify(&h, body), Err(ModiError::Replay("authorization")));
    }

    #[test]
    fn a_verifier_can_leave_the_replay_check_to_its_caller() {
        let (signer, verifier, _, _) = parties();
        let verifier = verifier.replays_checked_by_caller();
        let body = br#"{"a":1}"#;
        let h = headers(&signer.sign("inps", body, "application/json", "RSSMRA45C12F205C").expect("sign"));
        let first = verifier.verify(&h, body).expect("valid");
        let again = verifier.verify(&h, body).expect("the caller decides");
        assert_eq!(first.tokens, again.tokens, "the same tokens, for the caller to refuse");
    }

    #[test]
    fn tampering_is_refused() {
        let (signer, verifier, clock, other_cert) = parties();
        let body = br#"{"a":1}"#;
        let fresh = || headers(&signer.sign("inps", body, "application/json", "X").expect("sign"));
        assert_eq!(verifier.verify(&fresh(), br#"{"a":2}"#), Err(ModiError::Digest));
        let mut h = fresh();
        h.insert("digest", digest_header(br#"{"a":2}"#).parse().expect("v"));
        assert!(matches!(verifier.verify(&h, br#"{"a":2}"#), Err(ModiError::SignedHeaders(_))));
        let mut h = fresh();
        h.insert("content-type", "text/plain".parse().expect("v"));
        assert!(matches!(verifier.verify(&h, body), Err(ModiError::SignedHeaders(_))));
        let mut h = fresh();
        let token = h.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        h.insert("authorization", format!("{}x", token).parse().expect("v"));
        assert!(matches!(verifier.verify(&h, body), Err(ModiError::BadToken("authorization", _))));
        let mut h = fresh();
        h.remove(TRACKING);
        assert_eq!(verifier.verify(&h, body), Err(ModiError::Missing(TRACKING)));
        let wrong_audience = headers(&signer.sign("inail", body, "application/json", "X").expect("sign"));
        assert_eq!(verifier.verify(&wrong_audience, body), Err(ModiError::Audience("authorization")));
        // Signed by someone else than the configured sender.
        let stranger = Verifier::new("inps", &other_cert, clock.clone()).expect("verifier");
        assert!(matches!(stranger.verify(&fresh(), body), Err(ModiError::BadToken(..))));
        // Too late.
        let h = fresh();
        *clock.0.lock().expect("clock") += time::Duration::seconds(VALIDITY_SECS + LEEWAY_SECS + 1);
        assert_eq!(verifier.verify(&h, body), Err(ModiError::Time("authorization")));
    }
}
