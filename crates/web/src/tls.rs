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
use identity::CardProfile;
use rustls::pki_types::CertificateDer;
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
}

/// Builds the rustls configuration (ring provider, TLS 1.2 and 1.3, client certificates
/// requested and verified against `client_ca_pem`).
pub fn server_config(material: &TlsMaterial) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in certs(&material.client_ca_pem, "client CA bundle")? {
        roots.add(ca)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsSetupError::Verifier(e.to_string()))?;
    let key = rustls_pemfile::private_key(&mut BufReader::new(material.key_pem.as_bytes()))
        .map_err(|source| TlsSetupError::Pem { what: "server key", source })?
        .ok_or(TlsSetupError::Empty("server key"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&material.cert_chain_pem, "server certificate")?, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
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

/// Serves `app` over TLS on `listener` until `shutdown` completes, then lets open requests
/// finish (for at most ten seconds).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    peer_check: PeerCheck,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
) {
    let acceptor = TlsAcceptor::from(tls);
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
        let acceptor = acceptor.clone();
        let app = app.clone();
        let peer_check = peer_check.clone();
        let watcher = graceful.watcher();
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
            let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(identity.clone());
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                app.clone().call(request)
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections did not finish within 10 s of shutdown");
    }
}
