//! Asking each institution whether a person may operate online there, and for which
//! businesses, with a cache: answers are kept for `ttl`; an institution that cannot be asked
//! is "unknown", kept only briefly so that it is asked again soon. The cache is bounded
//! ([`CACHE_CAPACITY`] answers, the least used evicted first), so no number of people asking
//! makes it grow without end; freshness is judged by the injected clock.

use std::collections::BTreeMap;

use std::sync::Arc;
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

/// How many answers (one per institution and person) are kept at most.
pub const CACHE_CAPACITY: u64 = 20_000;

type Answers = moka::sync::Cache<(String, String), (OffsetDateTime, Authorisation)>;

pub struct AuthorisationService {
    clients: Arc<BTreeMap<String, InstitutionClient>>,
    signer: Arc<Signer>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    cache: Answers,
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
        Self { clients, signer, clock, ttl, cache: answers(CACHE_CAPACITY, ttl) }
    }

    /// The same service keeping at most `capacity` answers.
    pub fn with_capacity(mut self, capacity: u64) -> Self {
        self.cache = answers(capacity, self.ttl);
        self
    }

    /// How many answers are kept now (after pending evictions).
    pub fn cached(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// What `institution` says about `tax_code`, from the cache when fresh.
    pub async fn check(&self, institution: &str, tax_code: &str) -> Authorisation {
        let key = (institution.to_string(), tax_code.to_string());
        let now = self.clock.now();
        if let Some((at, answer)) = self.cache.get(&key) {
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
        self.cache.insert(key, (now, answer.clone()));
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

/// A cache of at most `capacity` answers; none outlives the longest time an answer is fresh
/// (freshness itself is judged against the injected clock in [`AuthorisationService::check`]).
fn answers(capacity: u64, ttl: Duration) -> Answers {
    moka::sync::Cache::builder().max_capacity(capacity).time_to_live(ttl.max(UNKNOWN_TTL)).build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;
    use identity::test_pki::TestPki;

    #[derive(Debug)]
    struct Fixed(OffsetDateTime);
    impl Clock for Fixed {
        fn now(&self) -> OffsetDateTime {
            self.0
        }
    }

    #[derive(Debug)]
    struct Zero;
    impl Randomness for Zero {
        fn fill(&self, bytes: &mut [u8]) -> Result<(), domain::RandomnessUnavailable> {
            bytes.fill(0);
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_capacity_however_many_people_ask() {
        let pki = TestPki::generate("Authorisation test CA").expect("pki");
        let portal = pki.client("sportello").expect("portal");
        let clock: Arc<dyn Clock> = Arc::new(Fixed(OffsetDateTime::now_utc()));
        let signer =
            Signer::new("sportello", &portal.key_pem, &portal.cert_pem, clock.clone(), Arc::new(Zero)).expect("signer");
        let service = AuthorisationService::with_clients(
            Arc::new(BTreeMap::new()),
            Arc::new(signer),
            clock,
            Duration::from_secs(300),
        )
        .with_capacity(100);
        for n in 0..1_000 {
            let answer = service.check("inps", &format!("PERSON{n:010}")).await;
            assert!(matches!(answer, Authorisation::Unknown { .. }), "no channel for inps");
        }
        assert!(service.cached() <= 100, "{} answers kept", service.cached());
        assert!(service.cached() > 0);
    }
}
