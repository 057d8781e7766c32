//! PDND Interoperabilità vouchers, for institutions whose e-services sit behind PDND.
//!
//! The portal asks PDND's token endpoint for a voucher with OAuth 2.0 `client_credentials` and a
//! signed client assertion (`iss` = `sub` = the client id, `aud` = PDND's client-assertion
//! audience, `purposeId`, `jti`, `iat`, `exp`, header `kid` of the key registered on PDND; RS256
//! for an RSA key as PDND's manual shows, ES256 for an EC key). The voucher goes as
//! `Authorization: Bearer` with the ModI integrity and audit headers (the client signs those as
//! ever). It is kept until shortly before it expires and used for every filing meanwhile;
//! refused by the institution (401), it is dropped and asked again once.
//!
//! PDND refusing to give one (a purpose not active, an unknown client: 4xx) is permanent for
//! the filing, which fails with PDND's reason; PDND unreachable or 5xx is transient.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::{Clock, Randomness};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// How the portal obtains vouchers for one institution (`[institutions.<id>.pdnd]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdndSettings {
    /// PDND's token endpoint, e.g. `https://auth.interop.pagopa.it/token.oauth2`.
    pub token_url: String,
    pub client_id: String,
    /// The purpose ("finalità") the e-service is used for.
    pub purpose_id: String,
    /// The `aud` of client assertions, as PDND publishes it.
    pub assertion_audience: String,
    /// The id of the client's key on PDND.
    pub kid: String,
    /// Trusted issuer of the token endpoint's TLS certificate.
    pub ca_pem: String,
    /// The key registered on PDND (PKCS#8, RSA or EC P-256).
    pub key_pem: String,
}

/// Why no voucher was had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoucherError {
    /// PDND said no: the filing cannot go until an operator or PDND acts.
    #[error("PDND refused the voucher: {0}")]
    Refused(String),
    /// PDND could not be asked now.
    #[error("PDND cannot be reached: {0}")]
    Unavailable(String),
    #[error("PDND client key: {0}")]
    Key(String),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    purpose_id: &'a str,
    jti: String,
    iat: i64,
    exp: i64,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: i64,
}

#[derive(Debug, Deserialize)]
struct TokenError {
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Debug, Clone)]
struct Voucher {
    token: String,
    renew_at: OffsetDateTime,
}

/// Gives vouchers for one institution's channel, from its cache or from PDND.
pub struct VoucherSource {
    settings: PdndSettings,
    key: EncodingKey,
    algorithm: Algorithm,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Randomness>,
    cached: Mutex<Option<Voucher>>,
}

impl std::fmt::Debug for VoucherSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoucherSource").field("client_id", &self.settings.client_id).finish_non_exhaustive()
    }
}

/// The signing key and its algorithm: an RSA key in PKCS#1 PEM (`RSA PRIVATE KEY`) signs
/// RS256, an EC P-256 key in PKCS#8 PEM signs ES256. The key is tried once here, so that a
/// wrong one is a setup error, not a failed filing.
fn signing_key(pem: &str) -> Result<(EncodingKey, Algorithm), VoucherError> {
    use rustls::pki_types::PrivateKeyDer;
    let key = rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| VoucherError::Key(e.to_string()))?
        .ok_or_else(|| VoucherError::Key("no private key in the PEM".into()))?;
    let (key, algorithm) = match key {
        PrivateKeyDer::Pkcs1(k) => (EncodingKey::from_rsa_der(k.secret_pkcs1_der()), Algorithm::RS256),
        PrivateKeyDer::Pkcs8(k) => (EncodingKey::from_ec_der(k.secret_pkcs8_der()), Algorithm::ES256),
        _ => return Err(VoucherError::Key("expected an RSA (PKCS#1) or EC P-256 (PKCS#8) key".into())),
    };
    jsonwebtoken::encode(&Header::new(algorithm), &serde_json::json!({}), &key)
        .map_err(|e| VoucherError::Key(format!("the key cannot sign {algorithm:?}: {e}")))?;
    Ok((key, algorithm))
}

impl VoucherSource {
    pub fn new(
        settings: PdndSettings,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Randomness>,
        timeout: Duration,
    ) -> Result<Self, VoucherError> {
        let (key, algorithm) = signing_key(&settings.key_pem)?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in rustls_pemfile::certs(&mut settings.ca_pem.as_bytes()).filter_map(Result::ok) {
            roots.add(ca).map_err(|e| VoucherError::Key(format!("PDND CA: {e}")))?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| VoucherError::Key(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
            .map_err(|e| VoucherError::Key(e.to_string()))?;
        Ok(Self { settings, key, algorithm, http, clock, random, cached: Mutex::new(None) })
    }

    pub fn settings(&self) -> &PdndSettings {
        &self.settings
    }

    /// A voucher: the cached one while it is not close to expiring, else a new one.
    pub async fn voucher(&self) -> Result<String, VoucherError> {
        let now = self.clock.now();
        if let Some(v) = self.cached.lock().ok().and_then(|c| c.clone()) {
            if now < v.renew_at {
                return Ok(v.token);
            }
        }
        let fresh = self.request().await?;
        let token = fresh.token.clone();
        if let Ok(mut cached) = self.cached.lock() {
            *cached = Some(fresh);
        }
        Ok(token)
    }

    /// Forgets `token` (the institution refused it), so that the next call asks PDND.
    pub fn drop_voucher(&self, token: &str) {
        if let Ok(mut cached) = self.cached.lock() {
            if cached.as_ref().is_some_and(|v| v.token == token) {
                *cached = None;
            }
        }
    }

    fn assertion(&self) -> Result<String, VoucherError> {
        let now = self.clock.now().unix_timestamp();
        let mut bytes = [0u8; 16];
        self.random.fill(&mut bytes).map_err(|_| VoucherError::Key("no randomness".into()))?;
        let claims = AssertionClaims {
            iss: &self.settings.client_id,
            sub: &self.settings.client_id,
            aud: &self.settings.assertion_audience,
            purpose_id: &self.settings.purpose_id,
            jti: uuid::Builder::from_random_bytes(bytes).into_uuid().to_string(),
            iat: now,
            exp: now + 300,
        };
        let mut header = Header::new(self.algorithm);
        header.typ = Some("JWT".into());
        header.kid = Some(self.settings.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| VoucherError::Key(e.to_string()))
    }

    async fn request(&self) -> Result<Voucher, VoucherError> {
        let assertion = self.assertion()?;
        let form = [
            ("client_id", self.settings.client_id.as_str()),
            ("client_assertion", assertion.as_str()),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("grant_type", "client_credentials"),
        ];
        let response = self
            .http
            .post(&self.settings.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| VoucherError::Unavailable(e.to_string()))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| VoucherError::Unavailable(e.to_string()))?;
        if status.is_client_error() {
            let why = serde_json::from_slice::<TokenError>(&body).ok();
            let why = why
                .map(|e| [e.error, e.error_description].into_iter().flatten().collect::<Vec<_>>().join(": "))
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| format!("HTTP {status}"));
            return Err(VoucherError::Refused(why));
        }
        if !status.is_success() {
            return Err(VoucherError::Unavailable(format!("HTTP {status}")));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| VoucherError::Unavailable(format!("an unreadable token answer: {e}")))?;
        // Renewed when a fifth of its life is left (at most a minute before it expires).
        let lifetime = answer.expires_in.max(1);
        let margin = (lifetime / 5).clamp(1, 60);
        let renew_at = self.clock.now() + time::Duration::seconds(lifetime - margin);
        Ok(Voucher { token: answer.access_token, renew_at })
    }
}
