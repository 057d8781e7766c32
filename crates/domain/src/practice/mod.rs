//! The practice ("pratica"): one user's procedure for one integrated service, and its
//! lifecycle from draft to submission.
//!
//! The rules live here so that no handler can bypass them: [`PracticeState::apply`] refuses an
//! illegal transition, [`check_draft`] says what a draft may hold, and [`prepare_submission`]
//! validates every field and builds one filing per recipient from the catalog's payload mapping.
//!
//! - [`model`]: the practice, its identifiers and states, a recipient's delivery;
//! - `values`: what a draft may hold and what a complete practice must (every field's rules);
//! - `submission`: the filings built from the data, submission and correction.

mod model;
mod submission;
mod values;

pub use model::*;
pub use submission::*;
pub use values::*;

#[cfg(test)]
mod tests;
