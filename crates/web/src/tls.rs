//! The HTTPS listener: rustls with client certificates, one task per connection.
//!
//! The listener asks every client for a certificate. rustls verifies the chain against the
//! configured certifiers (TLS 1.2 and 1.3 only); a client without a certificate may still
//! connect (to see the health check or be told to log in), but a certificate that fails
//! verification ends the handshake. The card profile is read once per connection and handed to
//! every request on it as a [`PeerIdentity`]. A client that does not finish its handshake or
//! its request headers in time is dropped, so it cannot hold a slot.

use std::future::Future;
use std::io::BufReader;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use domain::Clock;
use hyper_util::rt::{TokioIo, TokioTimer};
use identity::card::holder_from_der;
use identity::revocation::Freshness;
use identity::{CardProfile, CardRefusal};
use rustls::pki_types::CertificateDer;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::extract::PeerIdentity;

/// How long a client has to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("reading {what}: {source}")]
    Pem { what: &'static str, source: std::io::Error },
    #[error("{0} holds no usable item")]
    Empty(&'static str),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

fn certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(pem.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|source| TlsSetupError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(TlsSetupError::Empty(what));
    }
    Ok(certs)
}

/// PEM texts the listener needs.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// The server's certificate chain.
    pub cert_chain_pem: String,
    pub key_pem: String,
    /// The certifiers whose cards are accepted.
    pub client_ca_pem: String,
    /// Their certificate revocation lists (PEM), if revocation is checked. With CRLs, a card
    /// from a certifier without one is refused (revocation status unknown).
    pub crl_pems: Vec<String>,
    /// How long a CRL past its `nextUpdate` is still used before its certifier's cards are
    /// refused (see `identity::revocation`).
    pub crl_grace: Duration,
}

impl TlsMaterial {
    /// Material without CRLs (revocation not checked), with a 24-hour grace for CRLs added later.
    pub fn new(cert_chain_pem: String, key_pem: String, client_ca_pem: String) -> Self {
        Self { cert_chain_pem, key_pem, client_ca_pem, crl_pems: Vec::new(), crl_grace: Duration::from_secs(24 * 3600) }
    }
}

/// A TLS configuration and the client-certificate verifier inside it (also used to check
/// certificates forwarded by a trusted proxy).
#[derive(Debug)]
pub struct TlsState {
    pub config: Arc<rustls::ServerConfig>,
    pub verifier: Arc<dyn ClientCertVerifier>,
}

/// The current TLS state, replaced in place when CRLs are reloaded: new connections use the
/// new one, open connections keep theirs.
#[derive(Debug)]
pub struct TlsHandle(std::sync::RwLock<Arc<TlsState>>);

impl TlsHandle {
    pub fn new(state: Arc<TlsState>) -> Arc<Self> {
        Arc::new(Self(std::sync::RwLock::new(state)))
    }

    pub fn current(&self) -> Option<Arc<TlsState>> {
        self.0.read().ok().map(|c| c.clone())
    }

    pub fn replace(&self, state: Arc<TlsState>) {
        if let Ok(mut current) = self.0.write() {
            *current = state;
        }
    }
}

/// Refuses cards whose certifier's CRL is past its grace period, then lets webpki verify
/// chain, validity, usage and revocation.
#[derive(Debug)]
struct StaleCrlGuard {
    inner: Arc<dyn ClientCertVerifier>,
    /// Issuer names (DER) whose CRL has expired beyond the grace period.
    expired_issuers: Vec<Vec<u8>>,
}

impl ClientCertVerifier for StaleCrlGuard {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Some(issuer) = identity::revocation::issuer_of(end_entity.as_ref()) {
            if self.expired_issuers.contains(&issuer) {
                return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredRevocationList));
            }
        }
        self.inner.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Builds the rustls configuration (ring provider, TLS 1.2 and 1.3, client certificates
/// requested and verified against `client_ca_pem` and the CRLs, as of `now`).
pub fn server_config(material: &TlsMaterial, now: time::OffsetDateTime) -> Result<Arc<TlsState>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in certs(&material.client_ca_pem, "client CA bundle")? {
        roots.add(ca)?;
    }
    let mut crls = Vec::new();
    let mut expired_issuers = Vec::new();
    for pem in &material.crl_pems {
        let before = crls.len();
        for crl in rustls_pemfile::crls(&mut BufReader::new(pem.as_bytes())) {
            let crl = crl.map_err(|source| TlsSetupError::Pem { what: "CRL", source })?;
            let info = identity::revocation::CrlInfo::from_der(crl.as_ref()).map_err(TlsSetupError::Verifier)?;
            match info.freshness(now, material.crl_grace) {
                Freshness::Fresh => {}
                Freshness::StaleInGrace => {
                    tracing::warn!(next_update = ?info.next_update, "a CRL is past its nextUpdate; still used within the grace period")
                }
                Freshness::Expired => {
                    tracing::error!(next_update = ?info.next_update, "a CRL expired beyond the grace period: its certifier's cards are refused");
                    expired_issuers.push(info.issuer.clone());
                }
            }
            crls.push(crl);
        }
        // A configured list that holds nothing is a broken download, never "nothing revoked".
        if crls.len() == before {
            return Err(TlsSetupError::Empty("CRL file"));
        }
    }
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).allow_unauthenticated();
    if !crls.is_empty() {
        builder = builder.with_crls(crls);
    }
    let inner = builder.build().map_err(|e| TlsSetupError::Verifier(e.to_string()))?;
    let verifier: Arc<dyn ClientCertVerifier> = Arc::new(StaleCrlGuard { inner, expired_issuers });
    let key = rustls_pemfile::private_key(&mut BufReader::new(material.key_pem.as_bytes()))
        .map_err(|source| TlsSetupError::Pem { what: "server key", source })?
        .ok_or(TlsSetupError::Empty("server key"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier.clone())
        .with_single_cert(certs(&material.cert_chain_pem, "server certificate")?, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(TlsState { config: Arc::new(config), verifier }))
}

/// What each connection needs to identify its client.
#[derive(Debug, Clone)]
pub struct PeerCheck {
    pub profile: CardProfile,
    pub clock: Arc<dyn Clock>,
}

impl PeerCheck {
    fn identify(&self, certs: Option<&[CertificateDer<'_>]>, peer: SocketAddr) -> PeerIdentity {
        let Some(leaf) = certs.and_then(|c| c.first()) else {
            return PeerIdentity::Anonymous;
        };
        match holder_from_der(leaf.as_ref(), &self.profile, self.clock.now()) {
            Ok(holder) => {
                tracing::info!(%peer, holder = %holder.tax_code, fingerprint = %holder.fingerprint, "smart card accepted");
                PeerIdentity::Card(holder)
            }
            Err(refusal) => {
                tracing::warn!(%peer, reason = refusal.code(), "smart card refused");
                PeerIdentity::Refused(refusal)
            }
        }
    }
}

/// The header in which a trusted TLS-terminating proxy forwards the client certificate, as
/// URL-encoded PEM (nginx: `proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;`).
pub const PROXY_CERT_HEADER: &str = "x-ssl-client-cert";

/// Where the client's certificate comes from.
#[derive(Debug, Clone)]
pub enum Front {
    /// This process terminates TLS and asks for the certificate itself.
    Direct,
    /// A TLS-terminating proxy at one of these addresses forwards the certificate in
    /// [`PROXY_CERT_HEADER`]; this listener speaks plain HTTP and drops connections from any
    /// other address. The forwarded certificate goes through the very same checks (chain,
    /// CRLs, card profile) as one presented directly.
    BehindProxy { trusted: Vec<std::net::IpAddr> },
}

/// Decodes nginx's URL-encoded PEM.
fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s).decode_utf8().ok().map(std::borrow::Cow::into_owned)
}

impl PeerCheck {
    /// Identifies the client from a certificate forwarded by the proxy.
    fn identify_forwarded(&self, header: Option<&str>, tls: &TlsHandle, peer: SocketAddr) -> PeerIdentity {
        let Some(value) = header else { return PeerIdentity::Anonymous };
        let der = percent_decode(value)
            .and_then(|pem| rustls_pemfile::certs(&mut BufReader::new(pem.as_bytes())).next())
            .and_then(Result::ok);
        let (Some(der), Some(state)) = (der, tls.current()) else {
            tracing::warn!(%peer, "forwarded certificate unreadable");
            return PeerIdentity::Refused(CardRefusal::Unparsable);
        };
        if let Err(e) = state.verifier.verify_client_cert(&der, &[], rustls::pki_types::UnixTime::now()) {
            tracing::warn!(%peer, error = %e, "forwarded certificate refused");
            return PeerIdentity::Refused(CardRefusal::NotVerified);
        }
        self.identify(Some(std::slice::from_ref(&der)), peer)
    }
}

/// Serves HTTP/1.1 on one connection, telling the app who the client is.
async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    identify: impl Fn(&hyper::Request<hyper::body::Incoming>) -> PeerIdentity + Send + Sync + 'static,
    app: Router,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        let identity = identify(&request);
        request.extensions_mut().insert(identity);
        request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        app.clone().call(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open requests finish (for
/// at most ten seconds). With [`Front::Direct`] every connection is TLS with client
/// certificates; with [`Front::BehindProxy`] it is plain HTTP from the proxy.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<TlsHandle>,
    front: Front,
    peer_check: PeerCheck,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (app, peer_check, watcher, tls) = (app.clone(), peer_check.clone(), graceful.watcher(), tls.clone());
        match &front {
            Front::Direct => {
                let Some(state) = tls.current() else {
                    tracing::error!("TLS configuration unavailable");
                    continue;
                };
                let acceptor = TlsAcceptor::from(state.config.clone());
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "TLS handshake refused");
                            return;
                        }
                        Err(_) => {
                            tracing::info!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let identity = peer_check.identify(stream.get_ref().1.peer_certificates(), peer);
                    let identify = move |request: &hyper::Request<hyper::body::Incoming>| {
                        if request.headers().contains_key(PROXY_CERT_HEADER) {
                            // Only a trusted proxy may vouch for a certificate.
                            tracing::warn!(%peer, "proxy certificate header from a client refused");
                            PeerIdentity::ForgedProxyHeader
                        } else {
                            identity.clone()
                        }
                    };
                    serve_connection(stream, peer, identify, app, watcher).await;
                });
            }
            Front::BehindProxy { trusted } => {
                if !trusted.contains(&peer.ip()) {
                    tracing::warn!(%peer, "connection from an address that is not a trusted proxy dropped");
                    continue;
                }
                tokio::spawn(async move {
                    let identify = move |request: &hyper::Request<hyper::body::Incoming>| {
                        let header = request.headers().get(PROXY_CERT_HEADER).and_then(|v| v.to_str().ok());
                        peer_check.identify_forwarded(header, &tls, peer)
                    };
                    serve_connection(tcp, peer, identify, app, watcher).await;
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections did not finish within 10 s of shutdown");
    }
}
