//! The part of the `joblake` binary that decides without doing any I/O: `joblake.toml` and
//! the environment resolved into settings ([`config`]), how a command's end becomes its exit
//! code ([`outcome`]), the credit figures `status` and `report` plan with ([`credits`]), and
//! what `query` checks of its SQL ([`sql`]).
//!
//! A library of its own so that its unit tests compile only this, not the whole binary a
//! second time (the binary's target has `test = false`; its commands are tested end to end
//! in `tests/e2e`).

pub mod config;
pub mod credits;
pub mod outcome;
pub mod sql;
