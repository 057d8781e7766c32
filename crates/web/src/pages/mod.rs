//! The desk's pages, server-rendered (askama templates in `crates/web/templates`), Italian by
//! default and English with `?lang=en`, all working without JavaScript; one module per part
//! of the desk. Each handler reads its form or query, calls the use case in [`app`] and draws
//! the answer with [`crate::view`].
//!
//! - [`home`]: the desk's home, the catalog, the lists, the accessibility statement;
//! - [`compile`]: a practice from the service to "send" (task list, sections, check answers)
//!   and the help;
//! - [`practice`]: one practice followed: its recipients, a failed one sent again, a rejected
//!   one corrected, archive;
//! - [`receipt`]: the printable receipt; [`search`]: search and export;
//! - [`delegations`]: sub-delegations and the acts done on one's behalf.

pub mod compile;
pub mod delegations;
pub mod home;
mod pdf;
pub mod practice;
pub mod receipt;
pub mod search;
