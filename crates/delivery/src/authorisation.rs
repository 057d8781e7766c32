//! Asking each institution whether a person may operate online there, and for which
//! businesses, with a cache: answers are kept for `ttl`; an institution that cannot be asked
//! is "unknown", kept only briefly so that it is asked again soon.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::authorisation::Authorisation;
use domain::{Clock, Randomness};
use time::OffsetDateTime;

use crate::channels::Channels;
use crate::client::InstitutionClient;
use crate::modi::Signer;
use crate::worker::WorkerSetupError;

/// How long an "unknown" answer is kept.
const UNKNOWN_TTL: Duration = Duration::from_secs(5);

pub struct AuthorisationService {
    clients: BTreeMap<String, InstitutionClient>,
    signer: Signer,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    cache: Mutex<HashMap<(String, String), (OffsetDateTime, Authorisation)>>,
}

impl std::fmt::Debug for AuthorisationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorisationService").field("institutions", &self.clients.keys()).finish_non_exhaustive()
    }
}

impl AuthorisationService {
    pub fn new(
        channels: &Channels,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Randomness>,
        ttl: Duration,
    ) -> Result<Self, WorkerSetupError> {
        let mut clients = BTreeMap::new();
        for (id, channel) in &channels.institutions {
            clients.insert(
                id.clone(),
                InstitutionClient::new(channel.clone(), &channels.certificate_pem, &channels.key_pem)?,
            );
        }
        let signer =
            Signer::new(&channels.portal_id, &channels.key_pem, &channels.certificate_pem, clock.clone(), random)?;
        Ok(Self { clients, signer, clock, ttl, cache: Mutex::new(HashMap::new()) })
    }

    /// What `institution` says about `tax_code`, from the cache when fresh.
    pub async fn check(&self, institution: &str, tax_code: &str) -> Authorisation {
        let key = (institution.to_string(), tax_code.to_string());
        let now = self.clock.now();
        if let Some((at, answer)) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            let ttl = if matches!(answer, Authorisation::Unknown { .. }) { UNKNOWN_TTL } else { self.ttl };
            if now - at < ttl {
                return answer;
            }
        }
        let answer = match self.clients.get(institution) {
            None => Authorisation::Unknown { reason: format!("no channel for {institution}") },
            Some(client) => match client.authorisations(tax_code, &self.signer).await {
                Ok(grants) => Authorisation::Known { grants },
                Err(reason) => Authorisation::Unknown { reason },
            },
        };
        tracing::info!(%institution, holder = %tax_code, answer = ?answer, "authorisation checked");
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, (now, answer.clone()));
        }
        answer
    }

    /// The answers of several institutions, asked at once.
    pub async fn check_all(&self, institutions: &[String], tax_code: &str) -> Vec<(String, Authorisation)> {
        let answers = futures_join_all(institutions.iter().map(|i| self.check(i, tax_code))).await;
        institutions.iter().cloned().zip(answers).collect()
    }
}

/// Runs futures concurrently and returns their outputs in order.
async fn futures_join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *output = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
