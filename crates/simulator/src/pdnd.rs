//! A simulated PDND Interoperabilità authorisation server, and the check an institution behind
//! it makes of the vouchers it is shown.
//!
//! `POST /token.oauth2` takes `client_credentials` with a client assertion signed by a
//! registered client's key (ES256), as PDND's manual describes: `iss` = `sub` = the client id,
//! `aud` = the client-assertion audience, `purposeId` a purpose active for that client, a fresh
//! `jti`, `iat`/`exp`. It answers `{access_token, token_type: "Bearer", expires_in}` with a
//! voucher (`typ: at+jwt`) signed with the server's own key and addressed (`aud`) to the
//! purpose's e-service, or 400 `{error, error_description}`. `GET /_sim/vouchers` lists what
//! it issued.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use domain::{Clock, Randomness};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;

use crate::SimError;

/// A client registered on the simulated PDND.
#[derive(Debug, Clone)]
pub struct PdndClient {
    /// The certificate of the key it signs assertions with.
    pub cert_pem: String,
    pub kid: String,
    /// Its active purposes → the e-service (the voucher's `aud`) each is for.
    pub purposes: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct PdndSettings {
    /// TLS and voucher-signing certificate and key (EC P-256).
    pub cert_pem: String,
    pub key_pem: String,
    pub assertion_audience: String,
    pub clients: BTreeMap<String, PdndClient>,
    pub voucher_lifetime: Duration,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Randomness>,
}

/// A voucher the server gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issued {
    pub jti: String,
    pub client_id: String,
    pub purpose_id: String,
    pub audience: String,
    pub exp: i64,
}

struct Pdnd {
    settings: PdndSettings,
    key: EncodingKey,
    clients: BTreeMap<String, DecodingKey>,
    seen_assertions: Mutex<HashSet<String>>,
    issued: Mutex<Vec<Issued>>,
}

/// A running simulated PDND.
#[derive(Clone)]
pub struct PdndHandle {
    pub addr: SocketAddr,
    pdnd: Arc<Pdnd>,
}

impl std::fmt::Debug for PdndHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PdndHandle").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl PdndHandle {
    pub fn token_url(&self) -> String {
        format!("https://{}/token.oauth2", self.addr)
    }

    /// Every voucher issued so far.
    pub fn issued(&self) -> Vec<Issued> {
        self.pdnd.issued.lock().map(|i| i.clone()).unwrap_or_default()
    }
}

/// The public key of a certificate, for ES256.
pub(crate) fn ec_key_of(cert_pem: &str) -> Result<DecodingKey, String> {
    let der = delivery::modi::first_cert_der(cert_pem).map_err(|e| e.to_string())?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| e.to_string())?;
    Ok(DecodingKey::from_ec_der(&cert.public_key().subject_public_key.data))
}

fn signing_key(key_pem: &str) -> Result<EncodingKey, String> {
    match rustls_pemfile::private_key(&mut key_pem.as_bytes()).map_err(|e| e.to_string())? {
        Some(rustls::pki_types::PrivateKeyDer::Pkcs8(k)) => Ok(EncodingKey::from_ec_der(k.secret_pkcs8_der())),
        _ => Err("the PDND key must be PKCS#8 EC".into()),
    }
}

/// Starts the simulated PDND on `listener`.
pub async fn start(listener: TcpListener, settings: PdndSettings) -> Result<PdndHandle, SimError> {
    let setup = |e: String| SimError::Setup(format!("pdnd: {e}"));
    let key = signing_key(&settings.key_pem).map_err(setup)?;
    let mut clients = BTreeMap::new();
    for (id, client) in &settings.clients {
        clients.insert(id.clone(), ec_key_of(&client.cert_pem).map_err(setup)?);
    }
    let tls = crate::server_tls(&settings.cert_pem, &settings.key_pem).map_err(setup)?;
    let addr = listener.local_addr().map_err(|e| setup(e.to_string()))?;
    let pdnd = Arc::new(Pdnd {
        settings,
        key,
        clients,
        seen_assertions: Mutex::new(HashSet::new()),
        issued: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/token.oauth2", post(token))
        .route("/_sim/vouchers", get(list_issued))
        .with_state(pdnd.clone());
    crate::serve(listener, app, tls);
    Ok(PdndHandle { addr, pdnd })
}

#[derive(Debug, Deserialize)]
struct TokenRequest {
    client_id: Option<String>,
    client_assertion: Option<String>,
    client_assertion_type: Option<String>,
    grant_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Assertion {
    iss: String,
    sub: String,
    aud: String,
    purpose_id: String,
    jti: String,
    iat: i64,
    exp: i64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VoucherClaims {
    iss: String,
    aud: String,
    sub: String,
    purpose_id: String,
    jti: String,
    iat: i64,
    nbf: i64,
    exp: i64,
}

fn refused(error: &str, description: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error, "error_description": description }))).into_response()
}

async fn token(State(pdnd): State<Arc<Pdnd>>, Form(request): Form<TokenRequest>) -> Response {
    if request.grant_type.as_deref() != Some("client_credentials") {
        return refused("unsupported_grant_type", "grant_type must be client_credentials");
    }
    if request.client_assertion_type.as_deref() != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
        return refused("invalid_request", "client_assertion_type must be jwt-bearer");
    }
    let (Some(client_id), Some(assertion)) = (request.client_id, request.client_assertion) else {
        return refused("invalid_request", "client_id and client_assertion are required");
    };
    let (Some(client), Some(key)) = (pdnd.settings.clients.get(&client_id), pdnd.clients.get(&client_id)) else {
        return refused("invalid_client", "unknown client");
    };
    let header = jsonwebtoken::decode_header(&assertion).ok();
    if header.and_then(|h| h.kid).as_deref() != Some(client.kid.as_str()) {
        return refused("invalid_client", "the assertion's kid is not the client's key");
    }
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = match jsonwebtoken::decode::<Assertion>(&assertion, key, &validation) {
        Ok(data) => data.claims,
        Err(e) => return refused("invalid_client", &format!("the client assertion does not verify: {e}")),
    };
    let now = pdnd.settings.clock.now().unix_timestamp();
    if claims.iss != client_id || claims.sub != client_id || claims.aud != pdnd.settings.assertion_audience {
        return refused("invalid_client", "iss, sub and aud must be the client id and the assertion audience");
    }
    if claims.exp < now || claims.iat > now + 30 || claims.exp - claims.iat > 3600 {
        return refused("invalid_client", "the client assertion has expired or is not valid yet");
    }
    if !pdnd.seen_assertions.lock().map(|mut s| s.insert(claims.jti.clone())).unwrap_or(false) {
        return refused("invalid_client", "the client assertion was already used");
    }
    let Some(audience) = client.purposes.get(&claims.purpose_id) else {
        return refused("unauthorized_client", &format!("purpose {} is not active for this client", claims.purpose_id));
    };
    let lifetime = i64::try_from(pdnd.settings.voucher_lifetime.as_secs()).unwrap_or(600).max(1);
    let mut bytes = [0u8; 16];
    if pdnd.settings.random.fill(&mut bytes).is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "temporarily_unavailable" }))).into_response();
    }
    let voucher = VoucherClaims {
        iss: "pdnd-sim".into(),
        aud: audience.clone(),
        sub: client_id.clone(),
        purpose_id: claims.purpose_id.clone(),
        jti: uuid::Builder::from_random_bytes(bytes).into_uuid().to_string(),
        iat: now,
        nbf: now,
        exp: now + lifetime,
    };
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some("pdnd-sim-1".into());
    let Ok(token) = jsonwebtoken::encode(&header, &voucher, &pdnd.key) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": "server_error" }))).into_response();
    };
    if let Ok(mut issued) = pdnd.issued.lock() {
        issued.push(Issued {
            jti: voucher.jti,
            client_id,
            purpose_id: voucher.purpose_id,
            audience: voucher.aud,
            exp: voucher.exp,
        });
    }
    Json(json!({ "access_token": token, "token_type": "Bearer", "expires_in": lifetime })).into_response()
}

async fn list_issued(State(pdnd): State<Arc<Pdnd>>) -> Response {
    Json(pdnd.issued.lock().map(|i| i.clone()).unwrap_or_default()).into_response()
}

/// How an institution behind PDND checks the voucher of a request.
pub struct VoucherCheck {
    key: DecodingKey,
    audience: String,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for VoucherCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoucherCheck").field("audience", &self.audience).finish_non_exhaustive()
    }
}

impl VoucherCheck {
    /// `pdnd_cert_pem`: the certificate PDND signs vouchers with; `audience`: this e-service.
    pub fn new(pdnd_cert_pem: &str, audience: &str, clock: Arc<dyn Clock>) -> Result<Self, String> {
        Ok(Self { key: ec_key_of(pdnd_cert_pem)?, audience: audience.to_string(), clock })
    }

    /// The voucher's `jti` if it is PDND's, for this e-service and in time; else why not.
    pub fn check(&self, headers: &HeaderMap, revoked: &[String]) -> Result<String, String> {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or("no PDND voucher")?;
        let header = jsonwebtoken::decode_header(bearer).map_err(|e| format!("not a voucher: {e}"))?;
        if header.typ.as_deref() != Some("at+jwt") {
            return Err("not a PDND voucher (typ)".into());
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<VoucherClaims>(bearer, &self.key, &validation)
            .map_err(|e| format!("the voucher does not verify: {e}"))?
            .claims;
        let now = self.clock.now().unix_timestamp();
        if claims.aud != self.audience {
            return Err("the voucher is for another e-service".into());
        }
        if claims.exp < now || claims.nbf > now + 30 {
            return Err("the voucher has expired".into());
        }
        if revoked.contains(&claims.jti) {
            return Err("the voucher was revoked".into());
        }
        Ok(claims.jti)
    }
}
