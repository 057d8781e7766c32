//! The outbox worker: claims due deliveries with a lease, sends each to its institution and
//! records the answer with the claim's fencing token.
//!
//! Runs inside `serve`/`demo` and as `sportello worker`; several workers may share one
//! PostgreSQL (claims use `SKIP LOCKED`). A worker that loses its lease (it was too slow, or
//! died and came back) cannot overwrite what a newer attempt recorded. A crash between the
//! commit of a submission and the send, or between the send and the recording of the answer,
//! leaves the delivery queued with its lease running out; the next claim sends it again with
//! the same idempotency key, and the institution answers as it did the first time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use domain::catalog::Catalog;
use domain::delivery::{fields_at_fault, DeliveryEvent, Rejection};
use domain::{Clock, Randomness};
use storage::{ClaimedDelivery, DeliveryQueue, DeliveryUpdate, Recorded};
use tokio::sync::watch;

use crate::channels::Channels;
use crate::client::{filing_id, FilingEnvelope, InstitutionClient, PollResult, SendResult};
use crate::mapping::News;
use crate::modi::Signer;

fn log_failed(result: Result<(), tokio::task::JoinError>) {
    if let Err(e) = result {
        tracing::error!(error = %e, "delivery task failed");
    }
}

/// Where a test may ask the worker to die, to prove crash safety (`SPORTELLO_CRASH_AT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After claiming, before sending.
    BeforeSend,
    /// After the institution answered, before recording the answer.
    AfterSend,
}

impl CrashPoint {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "before-send" => Some(Self::BeforeSend),
            "after-send" => Some(Self::AfterSend),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// How long a claim lasts; longer than any channel's timeout.
    pub lease: Duration,
    /// Deliveries and polls in flight at most (sent concurrently).
    pub batch: u32,
    /// Pause when nothing is due and nothing was announced: how late work that comes due
    /// with time (a retry, a poll) may be found.
    pub idle: Duration,
    pub crash_at: Option<CrashPoint>,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self { lease: Duration::from_secs(60), batch: 32, idle: Duration::from_secs(1), crash_at: None }
    }
}

/// Everything a worker needs.
#[derive(Clone)]
pub struct Worker {
    queue: Arc<dyn DeliveryQueue>,
    /// Sub-delegation notices go out through the same channels, when given.
    delegations: Option<Arc<dyn storage::DelegationStore>>,
    catalog: Arc<Catalog>,
    clients: Arc<BTreeMap<String, InstitutionClient>>,
    /// Clients for the offices of institutions that route by territory.
    office_clients: Arc<BTreeMap<(String, String), InstitutionClient>>,
    callback_base_url: String,
    signer: Arc<Signer>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Randomness>,
    settings: WorkerSettings,
    /// When silent deliveries were last looked for (unix milliseconds).
    last_sweep_ms: Arc<std::sync::atomic::AtomicI64>,
    /// Wakes the worker when a practice changes (new deliveries to send), when given.
    changes: Option<Arc<dyn storage::ChangeFeed>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("institutions", &self.clients.keys()).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerSetupError {
    #[error(transparent)]
    Channel(#[from] crate::channels::ChannelError),
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    #[error("signing key: {0}")]
    Signer(#[from] crate::modi::ModiError),
    #[error(transparent)]
    Voucher(#[from] crate::pdnd::VoucherError),
}

/// One client per institution and per office; those behind PDND share one voucher cache per
/// institution.
type Clients = (BTreeMap<String, InstitutionClient>, BTreeMap<(String, String), InstitutionClient>);

pub(crate) fn institution_clients(
    channels: &Channels,
    clock: &Arc<dyn Clock>,
    random: &Arc<dyn Randomness>,
) -> Result<Clients, WorkerSetupError> {
    let mut clients = BTreeMap::new();
    let mut office_clients = BTreeMap::new();
    for (id, channel) in &channels.institutions {
        let vouchers = match &channel.pdnd {
            Some(settings) => Some(Arc::new(crate::pdnd::VoucherSource::new(
                settings.clone(),
                clock.clone(),
                random.clone(),
                channel.timeout,
            )?)),
            None => None,
        };
        let client = |channel: Arc<crate::channels::Channel>| -> Result<InstitutionClient, WorkerSetupError> {
            let client = InstitutionClient::new(channel, &channels.certificate_pem, &channels.key_pem)?;
            Ok(match &vouchers {
                Some(source) => client.with_vouchers(source.clone()),
                None => client,
            })
        };
        clients.insert(id.clone(), client(channel.clone())?);
        for office in channel.offices.keys() {
            let Some(aimed) = channel.for_office(office) else { continue };
            office_clients.insert((id.clone(), office.clone()), client(Arc::new(aimed))?);
        }
    }
    Ok((clients, office_clients))
}

impl Worker {
    pub fn new(
        queue: Arc<dyn DeliveryQueue>,
        catalog: Arc<Catalog>,
        channels: &Channels,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Randomness>,
        settings: WorkerSettings,
    ) -> Result<Self, WorkerSetupError> {
        channels.require(catalog.institutions.iter().map(|i| i.id.as_str()))?;
        let (clients, office_clients) = institution_clients(channels, &clock, &random)?;
        let signer = Signer::new(
            &channels.portal_id,
            &channels.key_pem,
            &channels.certificate_pem,
            clock.clone(),
            random.clone(),
        )?;
        Ok(Self {
            queue,
            delegations: None,
            catalog,
            clients: Arc::new(clients),
            office_clients: Arc::new(office_clients),
            callback_base_url: channels.callback_base_url.clone(),
            signer: Arc::new(signer),
            clock,
            random,
            settings,
            last_sweep_ms: Arc::new(std::sync::atomic::AtomicI64::new(0)),
            changes: None,
        })
    }

    /// This worker's clients and signer, for look-ups that share their PDND vouchers (see
    /// [`crate::authorisation::AuthorisationService::with_clients`]).
    pub fn clients(&self) -> (Arc<BTreeMap<String, InstitutionClient>>, Arc<Signer>) {
        (self.clients.clone(), self.signer.clone())
    }

    /// Also tells institutions about sub-delegations granted and ended.
    pub fn with_delegations(mut self, store: Arc<dyn storage::DelegationStore>) -> Self {
        self.delegations = Some(store);
        self
    }

    /// Wakes as soon as a practice changes (a submission, a resend, a filing released) instead
    /// of waiting for its `idle` pause, which then only finds what comes due with time
    /// (retries, polls) and announcements that were lost.
    pub fn with_changes(mut self, feed: Arc<dyn storage::ChangeFeed>) -> Self {
        self.changes = Some(feed);
        self
    }

    /// Works until `shutdown` turns true, keeping up to `batch` deliveries and polls in flight:
    /// as soon as one finishes, more are claimed. Finishes the ones in hand before returning.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(institutions = self.clients.len(), "delivery worker started");
        let mut changes = self.changes.as_ref().map(|feed| feed.changes());
        let max = self.settings.batch.max(1) as usize;
        let mut tasks = tokio::task::JoinSet::new();
        while !*shutdown.borrow() {
            let free = max.saturating_sub(tasks.len());
            let started = if free == 0 {
                0
            } else {
                match self.start_due(&mut tasks, free).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "delivery worker could not claim; retrying");
                        0
                    }
                }
            };
            if started > 0 && tasks.len() < max {
                continue;
            }
            // Wait for a slot, new work, or the end.
            tokio::select! {
                Some(result) = tasks.join_next(), if !tasks.is_empty() => log_failed(result),
                () = next_change(&mut changes) => {}
                _ = tokio::time::sleep(self.settings.idle) => {}
                _ = shutdown.changed() => {}
            }
        }
        while let Some(result) = tasks.join_next().await {
            log_failed(result);
        }
        tracing::info!("delivery worker stopped");
    }

    /// Claims up to `room` due deliveries (then due polls) and starts handling them.
    async fn start_due(&self, tasks: &mut tokio::task::JoinSet<()>, room: usize) -> Result<usize, storage::StoreError> {
        let limit = u32::try_from(room).unwrap_or(u32::MAX);
        let claimed = self.queue.claim_due(self.clock.now(), self.settings.lease, limit).await?;
        let mut count = claimed.len();
        for delivery in claimed {
            let worker = self.clone();
            tasks.spawn(async move { worker.deliver(delivery).await });
        }
        if let Some(store) = &self.delegations {
            let room = u32::try_from(room.saturating_sub(count)).unwrap_or(0);
            if room > 0 {
                let notices = store.claim_delegation_notices(self.clock.now(), self.settings.lease, room).await?;
                count += notices.len();
                for notice in notices {
                    let worker = self.clone();
                    let store = store.clone();
                    tasks.spawn(async move { worker.notify(store.as_ref(), notice).await });
                }
            }
        }
        self.mark_silent().await?;
        for (institution, client) in self.clients.iter() {
            let Some(pace) = client.channel().poll_pace() else { continue };
            let room = u32::try_from(room.saturating_sub(count)).unwrap_or(0);
            if room == 0 {
                break;
            }
            let due = self.queue.claim_for_poll(institution, self.clock.now(), pace, room).await?;
            count += due.len();
            for item in due {
                let worker = self.clone();
                // Asked at the office it was sent to.
                let Some(client) = self.client_for(institution, item.office.as_deref()).cloned() else { continue };
                tasks.spawn(async move { worker.poll(&client, item).await });
            }
        }
        Ok(count)
    }

    /// The client that reaches `institution` at `office`: the office's own address when its
    /// channel has one, else the institution's (a national intake that takes every office's
    /// filings, told the office in the request).
    fn client_for(&self, institution: &str, office: Option<&str>) -> Option<&InstitutionClient> {
        office
            .and_then(|o| self.office_clients.get(&(institution.to_string(), o.to_string())))
            .or_else(|| self.clients.get(institution))
    }

    /// Marks "no news" the deliveries silent past their channel's deadline (at most once a
    /// second, whatever the pace of the loop).
    async fn mark_silent(&self) -> Result<(), storage::StoreError> {
        let now = self.clock.now();
        let now_ms = storage::unix_millis(now);
        let last = self.last_sweep_ms.load(std::sync::atomic::Ordering::Relaxed);
        if now_ms.saturating_sub(last) < 1_000 {
            return Ok(());
        }
        self.last_sweep_ms.store(now_ms, std::sync::atomic::Ordering::Relaxed);
        for (institution, client) in self.clients.iter() {
            let Some(deadline) = client.channel().no_news_after() else { continue };
            for item in self.queue.silent_since(institution, now - deadline, 100).await? {
                let mut update = DeliveryUpdate::new(DeliveryEvent::NoNews, now);
                update.revision = Some(item.revision);
                self.queue.record(&item.key, &update).await?;
                tracing::warn!(practice = %item.key.practice_id, %institution, "no news from the institution past the deadline");
            }
        }
        Ok(())
    }

    /// What an institution's news means for the delivery.
    fn event_for(&self, news: News, service_id: &str, institution: &str, client: &InstitutionClient) -> DeliveryEvent {
        match news.accepted {
            Some(accepted) => DeliveryEvent::Outcome {
                accepted,
                protocol_number: news.protocol_number,
                rejection: (!accepted).then(|| Rejection {
                    fields: self.fields_at_fault(service_id, institution, client, &news.paths),
                    reasons: news.reasons,
                }),
            },
            None => match news.protocol_number {
                Some(protocol_number) => DeliveryEvent::TakenInCharge { protocol_number },
                None => DeliveryEvent::Sent { protocol_number: None },
            },
        }
    }

    /// The catalog fields behind the institution's names of fields at fault.
    fn fields_at_fault(
        &self,
        service_id: &str,
        institution: &str,
        client: &InstitutionClient,
        names: &[String],
    ) -> Vec<String> {
        let paths: Vec<String> = names.iter().map(|n| client.channel().profile.payload_path(n)).collect();
        self.filing_of(service_id, institution).map_or_else(|| paths.clone(), |f| fields_at_fault(f, &paths))
    }

    /// Tells one institution about a delegation granted or ended, and records its answer.
    async fn notify(&self, store: &dyn storage::DelegationStore, notice: storage::DelegationNotice) {
        use crate::client::{DelegationMessage, DelegationResult};
        use storage::{NoticeAnswer, NoticeKind};
        let d = &notice.delegation;
        let rfc3339 =
            |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let message = DelegationMessage {
            delegation_id: d.id.to_string(),
            grantor: d.grantor.to_string(),
            delegate: d.delegate.to_string(),
            businesses: d.scope.businesses.iter().cloned().collect(),
            services: d.scope.services.iter().cloned().collect(),
            valid_from: rfc3339(d.valid_from),
            valid_until: rfc3339(d.valid_until),
        };
        let result = match (self.clients.get(&notice.institution), notice.kind) {
            (None, _) => DelegationResult::Refused { reason: format!("no channel for {}", notice.institution) },
            (Some(client), NoticeKind::Grant) => client.grant_delegation(&message, &self.signer).await,
            (Some(client), NoticeKind::Revoke) => client.revoke_delegation(&message, &self.signer).await,
        };
        tracing::info!(delegation = %d.id, institution = %notice.institution, kind = ?notice.kind, ?result, "delegation notice");
        let answer = match result {
            DelegationResult::Active { reference } => NoticeAnswer::Active { reference },
            DelegationResult::Refused { reason } => NoticeAnswer::Refused { reason },
            DelegationResult::Revoked => NoticeAnswer::Revoked,
            DelegationResult::Retry(reason) => {
                // 1 s, 2 s, 4 s ... up to 5 minutes, with jitter.
                let base = 2f64.powi(i32::try_from(notice.attempts.min(9)).unwrap_or(9)).min(300.0);
                let wait = Duration::from_secs_f64(base * (0.5 + self.jitter()));
                NoticeAnswer::Retry { at: self.clock.now() + wait, reason }
            }
        };
        if let Err(e) = store.record_notice(d.id, &notice.institution, notice.kind, &answer).await {
            // The lease runs out and the notice goes again.
            tracing::error!(error = %e, "could not record a delegation notice");
        }
    }

    /// Aborts at `point` when asked to, in a build with the `crash-points` feature only.
    #[cfg(feature = "crash-points")]
    fn crash_if(&self, point: CrashPoint) {
        if self.settings.crash_at == Some(point) {
            tracing::error!(?point, "crashing on purpose (SPORTELLO_CRASH_AT)");
            std::process::abort();
        }
    }

    #[cfg(not(feature = "crash-points"))]
    fn crash_if(&self, point: CrashPoint) {
        if self.settings.crash_at == Some(point) {
            tracing::warn!(?point, "crash points are not in this build: ignored");
        }
    }

    fn jitter(&self) -> f64 {
        let mut b = [0u8; 4];
        match self.random.fill(&mut b) {
            Ok(()) => f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0),
            Err(_) => 0.5,
        }
    }

    async fn deliver(&self, delivery: ClaimedDelivery) {
        let institution = delivery.key.institution.clone();
        let Some(client) = self.client_for(&institution, delivery.office.as_deref()) else {
            // An office without a channel of its own: never sent to another office.
            let failed = DeliveryEvent::Failed {
                reason: format!(
                    "no channel for {institution}{}",
                    delivery.office.as_ref().map(|o| format!(" ({o})")).unwrap_or_default()
                ),
            };
            let mut update = DeliveryUpdate::new(failed, self.clock.now());
            update.fence = Some(delivery.fence);
            self.record(&delivery, update).await;
            return;
        };
        let envelope = FilingEnvelope {
            filing_id: filing_id(&delivery.key.practice_id.to_string(), &institution, delivery.revision),
            reference: delivery.reference.clone(),
            practice_id: delivery.key.practice_id.to_string(),
            filing_kind: delivery.filing_kind.clone(),
            declarant: delivery.actor.to_string(),
            on_behalf_of: (delivery.actor != delivery.owner).then(|| delivery.owner.to_string()),
            office: delivery.office.clone(),
            callback_url: format!("{}/institutions/v1/{institution}/events", self.callback_base_url),
            payload: delivery.payload.clone(),
        };
        let context = template_context(&envelope, &institution, None);
        let reply_to =
            format!("{}/institutions/v1/{institution}/filings/{}/events", self.callback_base_url, envelope.filing_id);
        self.crash_if(CrashPoint::BeforeSend);
        let result = client.send(&envelope, &context, &reply_to, &self.signer).await;
        self.crash_if(CrashPoint::AfterSend);
        tracing::info!(filing = %envelope.filing_id, attempt = delivery.attempts, ?result, "filing sent");
        let mut status_url = None;
        let mut values = BTreeMap::new();
        let mut evidence = None;
        let (event, next_at) = match result {
            SendResult::Taken { news, status_url: location } => {
                status_url = location;
                values = news.values.clone();
                evidence = news.evidence.clone();
                let event = match news.accepted {
                    None => DeliveryEvent::Sent { protocol_number: news.protocol_number },
                    Some(_) => self.event_for(news, &delivery.service_id, &institution, client),
                };
                // An institution that does not call back (or not in time) is asked for news later.
                let first_poll = client.channel().first_poll_after().map(|i| self.clock.now() + i);
                (event, first_poll)
            }
            SendResult::Rejected { reasons, paths, evidence: signed } => {
                evidence = signed;
                let fields = self.fields_at_fault(&delivery.service_id, &institution, client, &paths);
                (DeliveryEvent::RejectedOnReceipt(Rejection { reasons, fields }), None)
            }
            SendResult::Permanent(reason) => (DeliveryEvent::Failed { reason }, None),
            SendResult::Misconfigured(reason) => {
                tracing::error!(%institution, profile = %client.channel().profile.name, %reason, "channel profile cannot make the request; nothing was sent");
                (DeliveryEvent::Failed { reason: format!("configuration of the channel: {reason}") }, None)
            }
            SendResult::Transient(reason) => {
                match client.channel().retry.next_delay(delivery.attempts, self.jitter()) {
                    Some(delay) => (DeliveryEvent::TransientFailure { reason }, Some(self.clock.now() + delay)),
                    None => (
                        DeliveryEvent::Failed {
                            reason: format!("{reason} (gave up after {} attempts)", delivery.attempts),
                        },
                        None,
                    ),
                }
            }
        };
        let mut update = DeliveryUpdate::new(event, self.clock.now());
        update.fence = Some(delivery.fence);
        update.next_at = next_at;
        update.status_url = status_url;
        update.values = values;
        update.evidence = evidence.and_then(|e| serde_json::to_value(e).ok());
        self.record(&delivery, update).await;
    }

    /// The filing kind a service sends to an institution, to map payload paths back to fields.
    fn filing_of(&self, service_id: &str, institution: &str) -> Option<&domain::catalog::FilingKind> {
        let service = self.catalog.service(service_id)?;
        let recipient = service.recipients.iter().find(|r| r.institution == institution)?;
        self.catalog.filing(recipient)
    }

    /// Asks an institution about a filing it has and records what is new.
    async fn poll(&self, client: &InstitutionClient, item: storage::PollItem) {
        let id = filing_id(&item.key.practice_id.to_string(), &item.key.institution, item.revision);
        let context = serde_json::json!({
            "filing": { "id": id, "reference": item.reference, "practice_id": item.key.practice_id.to_string(),
                        "kind": item.filing_kind },
            "institution": item.key.institution,
            "status_url": item.status_url,
        });
        let news = match client.poll(&context, item.owner.as_str(), &self.signer).await {
            PollResult::Pending => return,
            PollResult::Unanswered(reason) => {
                tracing::info!(filing = %id, %reason, "poll unanswered; asking again later");
                return;
            }
            PollResult::News(news) => news,
        };
        let values = news.values.clone();
        let evidence = news.evidence.clone().and_then(|e| serde_json::to_value(e).ok());
        let event = self.event_for(news, &item.service_id, &item.key.institution, client);
        let mut update = DeliveryUpdate::new(event, self.clock.now());
        update.revision = Some(item.revision);
        update.values = values;
        update.evidence = evidence;
        if let Err(e) = self.queue.record(&item.key, &update).await {
            tracing::error!(error = %e, filing = %id, "could not record a poll answer");
        }
    }

    async fn record(&self, delivery: &ClaimedDelivery, update: DeliveryUpdate) {
        match self.queue.record(&delivery.key, &update).await {
            Ok(Recorded::LostLease) => {
                tracing::warn!(practice = %delivery.key.practice_id, institution = %delivery.key.institution, "lease lost; result discarded")
            }
            Ok(_) => {}
            // The lease will run out and the delivery will be tried again, same key.
            Err(e) => tracing::error!(error = %e, "could not record a delivery result"),
        }
    }
}

/// What a filing's templates see (see [`crate::profile`]).
pub fn template_context(envelope: &FilingEnvelope, institution: &str, status_url: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "filing": {
            "id": envelope.filing_id,
            "reference": envelope.reference,
            "practice_id": envelope.practice_id,
            "kind": envelope.filing_kind,
            "declarant": envelope.declarant,
            "on_behalf_of": envelope.on_behalf_of,
            "callback_url": envelope.callback_url,
            "office": envelope.office,
        },
        "payload": envelope.payload,
        "envelope": envelope,
        "institution": institution,
        "status_url": status_url,
    })
}

/// Waits for the next announced change, then takes every other one already waiting (one look
/// at the queue serves them all); never returns without a feed or once it closed.
async fn next_change(changes: &mut Option<tokio::sync::broadcast::Receiver<domain::practice::PracticeId>>) {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let Some(receiver) = changes.as_mut() else { return std::future::pending().await };
    if let Err(RecvError::Closed) = receiver.recv().await {
        *changes = None;
        return std::future::pending().await;
    }
    while !matches!(receiver.try_recv(), Err(TryRecvError::Empty | TryRecvError::Closed)) {}
}
