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
    clients: Arc<BTreeMap<String, InstitutionClient>>,
    signer: Arc<Signer>,
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
        // Behind PDND, look-ups present vouchers like filings do.
        let (clients, _offices) = crate::worker::institution_clients(channels, &clock, &random)?;
        let signer =
            Signer::new(&channels.portal_id, &channels.key_pem, &channels.certificate_pem, clock.clone(), random)?;
        Ok(Self::with_clients(Arc::new(clients), Arc::new(signer), clock, ttl))
    }

    /// A service asking through clients already made (the worker's, so that one PDND voucher
    /// serves filings and look-ups alike).
    pub fn with_clients(
        clients: Arc<BTreeMap<String, InstitutionClient>>,
        signer: Arc<Signer>,
        clock: Arc<dyn Clock>,
        ttl: Duration,
    ) -> Self {
        Self { clients, signer, clock, ttl, cache: Mutex::new(HashMap::new()) }
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
            Some(client) => client.authorisations(tax_code, &self.signer).await,
        };
        tracing::info!(%institution, holder = %tax_code, answer = ?answer, "authorisation checked");
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, (now, answer.clone()));
        }
        answer
    }

    /// The answers of several institutions, asked at once, in the order given.
    pub async fn check_all(self: &Arc<Self>, institutions: &[String], tax_code: &str) -> Vec<(String, Authorisation)> {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, institution) in institutions.iter().enumerate() {
            let (service, institution, tax_code) = (self.clone(), institution.clone(), tax_code.to_string());
            tasks.spawn(async move { (i, service.check(&institution, &tax_code).await) });
        }
        let mut answers: Vec<Option<Authorisation>> = vec![None; institutions.len()];
        while let Some(joined) = tasks.join_next().await {
            if let Ok((i, answer)) = joined {
                answers[i] = Some(answer);
            }
        }
        institutions
            .iter()
            .cloned()
            .zip(answers)
            .map(|(institution, answer)| {
                let answer = answer.unwrap_or_else(|| Authorisation::Unknown { reason: "the check failed".into() });
                (institution, answer)
            })
            .collect()
    }
}
