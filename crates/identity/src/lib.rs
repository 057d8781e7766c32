//! Smart-card identity.
//!
//! - [`card`]: who a client certificate names, under the CNS profile: the holder's codice
//!   fiscale (from the CN `CF/card.hash`, or `serialNumber` `TINIT-CF` / `IT:CF`), names, and the
//!   profile checks (client-auth usage, an accepted certificate policy, validity dates).
//! - [`revocation`]: CRL freshness and the stale-CRL policy;
//! - [`test_pki`]: a throw-away PKI (CA, server certificate, smart-card-like client certificates)
//!   for the demo and the tests. Never used for real cards.
//!
//! Chain building and signature checks are rustls's job at the TLS listener; this crate reads
//! what a verified certificate says.

/// Certificate policy of the Carta Nazionale dei Servizi (at the root, so that the card
/// checks and the test PKI that issues such cards both read it without importing each other).
pub const POLICY_CNS: &str = "1.3.76.16.2.1";

pub mod card;
pub mod revocation;
#[cfg(any(test, feature = "test-pki"))]
pub mod test_pki;

pub use card::{CardProfile, CardRefusal, Holder};
