//! Delivery of filings to institutions.
//!
//! - [`modi`]: the AgID ModI headers that sign and authenticate every request between the
//!   portal and an institution, both ways;
//! - [`channels`]: per-institution settings (address, TLS trust, timeouts, retry policy), read
//!   from a TOML file; adding an institution is configuration;
//! - [`profile`] and [`mapping`]: an institution's own interface (interaction pattern, request
//!   templates, where its answers carry the protocol number and the outcome), by configuration;
//! - [`client`]: one HTTP call to an institution and what its answer means for the delivery;
//! - [`worker`]: the outbox worker that claims due deliveries, sends them and records answers.

pub mod authorisation;
pub mod channels;
pub mod client;
pub mod evidence;
pub mod mapping;
pub mod modi;
pub mod pdnd;
pub mod profile;
pub mod worker;
pub mod xml;
