//! What to fetch next and the loop that lands it.
//!
//! - [`checkpoint`]: what each table remembers between runs, and the rule for what a page
//!   does to it (watermarks, scans under way, backfill plans, 404s remembered);
//! - [`source`] and [`scan`]: a feed's client, how its scans start, dead-cursor restarts;
//! - [`backfill`]: a long range cut into windows the API can page through;
//! - [`profiles`]: company profiles, a page of one each;
//! - [`page_loop`]: the one loop that lands every page (fetch → stage → append → commit or
//!   abort → discard the staging), whatever it fetches;
//! - [`run`]: one run of one table, start to ledger entry; [`open`]: opening a table for
//!   writing, after committing what a killed run left.
//!
//! No DuckDB here: choosing which companies to enrich is the caller's (`joblake-views`).
#![deny(missing_docs)]

pub mod backfill;
pub mod checkpoint;
pub mod estimate;
pub mod open;
pub mod page_loop;
pub mod profiles;
pub mod run;
pub mod scan;
pub mod settings;
pub mod source;
pub mod summary;

pub use checkpoint::{Checkpoint, ProfilesCheckpoint, Task};
pub use open::{finish_killed_runs, mark_crashed_runs};
pub use run::{ProfileOptions, RunOptions, run_enrich, run_source};
pub use settings::{SourceSettings, api_of, base_url_env, page_sizes};
pub use source::Source;
pub use summary::{ProfileCounts, SourceSummary, WindowCounts};
