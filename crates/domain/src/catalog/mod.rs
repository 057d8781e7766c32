//! The catalog of integrated services, loaded from declarative TOML files.
//!
//! A catalog is made of:
//! - a **dictionary** of common fields (`business.*`, `owner.*`, `seat.*`, ...) typed once per
//!   practice, and the life events that group services;
//! - **institutions**, each with the filing kinds it receives: the filing's own fields and a
//!   payload mapping that says which field fills which part of the filing sent;
//! - **services** ("servizi integrati"): a life event, the common fields collected, and one filing
//!   per recipient institution.
//!
//! [`Catalog::from_sources`] parses the texts and checks every cross-reference; each mistake is
//! reported with file, line and column. Reading the files is the caller's job (no I/O here).
//!
//! - [`model`]: what a checked catalog is (fields, institutions and their filings, services);
//! - `raw`: the shapes as written in the files; `build` (with `fields` and `services`): the
//!   checks that turn them into the model, every mistake with its place (`report`).

mod build;
mod fields;
mod model;
mod raw;
mod report;
mod services;

pub use crate::text::Text;
pub use model::*;

#[cfg(test)]
pub(crate) mod tests;
