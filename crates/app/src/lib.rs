//! Sportello's use cases, one function per act of the desk, whoever asks: the pages and the
//! JSON API (`web`) are thin adapters over this crate, so no rule is written twice.
//!
//! Each use case takes who acts (a [`Principal`]: the card holder, and the grantor whose
//! practices are touched under a sub-delegation) and typed input, checks authority and scope,
//! lets the store make the act durable, writes the audit record, and answers with domain
//! values or an [`AppError`].
//!
//! - [`practices`]: start a draft, save, submit, send one recipient again (corrected after a
//!   rejection), archive and bring back, read, list, search;
//! - [`records`]: what a holder keeps: the receipt with its digests, the export;
//! - [`authorisations`]: whether the holder may file at each institution a service involves;
//! - [`callbacks`]: an institution's answer recorded against its delivery, once;
//! - [`delegations`]: grant, list, revoke, renounce, act on behalf, the acts done on one's
//!   behalf;
//! - [`principal`]: who a request acts for, and the checks of a delegation's scope;
//! - [`audit`]: the audit trail's writer; [`digests`]: the SHA-256 digests of what is sent.
//!
//! Imports go one way: `digests`, `audit` ← `principal` ← `authorisations` ← the use-case
//! modules (`practices` ← `records`, `delegations`).

pub mod audit;
pub mod authorisations;
pub mod callbacks;
pub mod delegations;
pub mod digests;
pub mod error;
pub mod practices;
pub mod principal;
pub mod records;

use std::sync::Arc;

use domain::catalog::Catalog;
use domain::{Clock, Lang, Randomness};
use storage::Store;

pub use digests::sha256_hex;
pub use error::{AppError, InstitutionRefusal};
pub use principal::{DelegationPolicy, Principal, Selector};

/// What every use case works on, injected: the store, the catalog, the clock, randomness, the
/// institutions' answers on authorisations and the sub-delegation settings.
#[derive(Debug, Clone)]
pub struct Core {
    pub store: Arc<dyn Store>,
    pub catalog: Arc<Catalog>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Randomness>,
    /// Asks institutions who may file there. `None` without delivery channels: then nothing
    /// can be sent anyway, and authorisations are not checked.
    pub authorisations: Option<Arc<delivery::authorisation::AuthorisationService>>,
    pub delegation_policy: Arc<DelegationPolicy>,
}

impl Core {
    /// Today in Italy.
    pub fn today(&self) -> time::Date {
        domain::italian_date(self.clock.now())
    }

    /// Sixteen random bytes, for a new id.
    pub fn random_id_bytes(&self) -> Result<[u8; 16], AppError> {
        let mut bytes = [0u8; 16];
        self.random.fill(&mut bytes).map_err(|_| {
            tracing::error!("the random generator failed");
            AppError::Internal
        })?;
        Ok(bytes)
    }

    /// An institution's name in `lang` (its id when the catalog does not know it).
    pub fn institution_name(&self, id: &str, lang: Lang) -> String {
        self.catalog.institution(id).map_or_else(|| id.to_string(), |i| i.name.get(lang).to_string())
    }

    /// A service's title in `lang` (its id when the catalog does not know it).
    pub fn service_title(&self, id: &str, lang: Lang) -> String {
        self.catalog.service(id).map_or_else(|| id.to_string(), |s| s.title.get(lang).to_string())
    }
}
