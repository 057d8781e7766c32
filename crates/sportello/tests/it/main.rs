//! Integration tests of the `sportello` crate, in one test binary to keep builds short.

#![allow(clippy::expect_used, clippy::unwrap_used)] // Tests may fail loudly.

mod api;
mod cards;
mod cli;
mod crash;
mod delegations;
mod delivery;
mod desk;
mod doors;
mod inps_channel;
mod interfaces;
mod receivability;
