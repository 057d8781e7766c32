//! Compiling a practice in the browser ("compilazione"), and the help on every service and
//! field.
//!
//! The flow, all of it working without JavaScript:
//! 1. `GET /servizi/{id}`: the service, and before anything is typed whether the holder may
//!    file at each recipient; "start" (`POST /pratiche`) makes a draft, prefilled with the
//!    common data of the chosen business's last practice.
//! 2. `GET /pratiche/{id}/compila`: the task list: one section per group of common data, then
//!    one per recipient with fields of its own, each marked complete or not.
//! 3. `GET|POST /pratiche/{id}/sezioni/{section}`: one section's fields. Every save is a draft
//!    save: missing data is fine, an invalid value is not (an error summary at the top links
//!    to each field, the message sits beside it, and nothing is saved).
//! 4. `GET /pratiche/{id}/riepilogo`: "check your answers", then `POST /pratiche/{id}/invia`.
//!
//! The rules (what is valid, what may be sent, who may file) live in the domain and in the use
//! cases of [`app`]; these modules only turn them into pages: `shared` (the pieces every step
//! uses), `authorisation` (the not-authorised warning every step repeats), `start`,
//! `sections` (the task list and one section), `review` (check and send), `help`.

mod authorisation;
mod help;
mod review;
mod sections;
mod shared;
mod start;

pub use help::help;
pub use review::{destinations, review, send};
pub use sections::{save_section, section, tasks};
pub use shared::{input_id, sections, ErrorLink, FieldInput, FormSection};
pub use start::{service, start};
