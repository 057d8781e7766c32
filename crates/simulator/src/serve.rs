//! Serving a simulated service over TLS, and signing its answers as an institution does.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Router;
use serde_json::json;
use tokio::net::TcpListener;

use crate::{problem, Sim};

/// Signs every answer as an institution does (ModI INTEGRITY_REST_01: `Digest` and
/// `Agid-JWT-Signature`), so that the portal can keep it as evidence.
pub(crate) async fn sign_answers(
    State(sim): State<Arc<Sim>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, "answer too large", json!([]));
    };
    let content_type = parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if let Ok(headers) = sim.signer.sign(&sim.settings.portal_id, &bytes, &content_type, &sim.settings.institution) {
        for (name, value) in headers {
            if name == delivery::modi::DIGEST || name == delivery::modi::SIGNATURE {
                if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
                    parts.headers.insert(name, value);
                }
            }
        }
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// TLS for a simulated service with `cert_pem`/`key_pem`, HTTP/1.1.
pub(crate) fn server_tls(cert_pem: &str, key_pem: &str) -> Result<rustls::ServerConfig, String> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_bytes()).filter_map(Result::ok).collect();
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no key".to_string())?;
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// Serves `app` over TLS on `listener`, in the background.
pub(crate) fn serve(listener: TcpListener, app: Router, tls: rustls::ServerConfig) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    tower::ServiceExt::oneshot(app.clone(), request)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
