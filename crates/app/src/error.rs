//! What a use case can refuse, in the desk's terms. The web layer turns each variant into an
//! HTTP answer in one place (`web::error`); nothing here knows about HTTP.

use std::collections::BTreeMap;

use domain::catalog::Service;
use domain::delegation::{GrantError, OutOfScope};
use domain::delivery::DeliveryState;
use domain::practice::PracticeState;
use domain::text::Text;
use domain::validation::FieldError;
use storage::StoreError;

/// One institution that stops a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstitutionRefusal {
    pub institution: String,
    pub name: Text,
    /// `not_authorised`, or `unknown` when the institution could not be asked now.
    pub status: &'static str,
    /// How to obtain the authorisation, from the catalog.
    pub help: Text,
    /// The institution's page about it, from the catalog.
    pub url: Option<String>,
}

/// A refusal of a use case. Every refusal changes nothing.
#[derive(Debug, Clone)]
pub enum AppError {
    /// No such thing within the principal's reach (another holder's ids included: nothing
    /// leaks).
    NotFound,
    UnknownService(String),
    /// Fields that failed validation; the service gives labels to name them.
    Validation {
        errors: Vec<FieldError>,
        service: Option<Box<Service>>,
    },
    WrongState(PracticeState),
    WrongDeliveryState(DeliveryState),
    /// The holder may not file for this business at these institutions (or it cannot be
    /// known now): nothing was sent.
    NotAuthorised {
        business: String,
        institutions: Vec<InstitutionRefusal>,
    },
    /// An act on behalf of a grantor outside the sub-delegation (or after it ended).
    OutOfScope(OutOfScope),
    /// The sub-delegation had already ended.
    DelegationEnded,
    /// Someone acting on behalf of a grantor tried to grant: what one holds by delegation is
    /// not one's own to hand on.
    NoRedelegation,
    /// A grant that does not hold, every reason at once; `names` gives the catalog's names of
    /// the institutions and services the reasons mention.
    GrantRefused {
        errors: Vec<GrantError>,
        names: BTreeMap<String, Text>,
    },
    /// Input a use case cannot take, said in the caller's terms (`field: why`).
    BadInput(String),
    /// A signed request whose tokens were already used (by this or another portal process).
    Replayed,
    /// The database cannot be reached now: nothing was lost, the act may be repeated.
    Unavailable,
    /// A bug or stored data that cannot be read back; the details are in the log.
    Internal,
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound,
            StoreError::WrongState(state) => Self::WrongState(state),
            StoreError::WrongDeliveryState(state) => Self::WrongDeliveryState(state),
            StoreError::DelegationEnded => Self::DelegationEnded,
            StoreError::Unavailable(why) | StoreError::Contention(why) => {
                tracing::warn!(%why, "database unavailable");
                Self::Unavailable
            }
            StoreError::Database(e) => {
                tracing::error!(error = %e, "database failure");
                Self::Internal
            }
            e @ StoreError::MigrationChanged { .. } => {
                tracing::error!(error = %e, "database schema differs from this build");
                Self::Internal
            }
            StoreError::Corrupt(what) => {
                tracing::error!(%what, "stored data could not be read back");
                Self::Internal
            }
            StoreError::BadUrl(url) => {
                tracing::error!(%url, "database misconfigured");
                Self::Internal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_become_refusals_that_leak_nothing() {
        assert!(matches!(AppError::from(StoreError::NotFound), AppError::NotFound));
        assert!(matches!(
            AppError::from(StoreError::WrongState(PracticeState::Draft)),
            AppError::WrongState(PracticeState::Draft)
        ));
        assert!(matches!(AppError::from(StoreError::DelegationEnded), AppError::DelegationEnded));
        assert!(matches!(AppError::from(StoreError::from(sqlx::Error::PoolTimedOut)), AppError::Unavailable));
        assert!(matches!(AppError::from(StoreError::Contention("40P01".into())), AppError::Unavailable));
        assert!(matches!(AppError::from(StoreError::Database(sqlx::Error::RowNotFound)), AppError::Internal));
        assert!(matches!(AppError::from(StoreError::Corrupt("delivery state `x`".into())), AppError::Internal));
        assert!(matches!(AppError::from(StoreError::BadUrl("postgres://secret@host".into())), AppError::Internal));
    }
}
