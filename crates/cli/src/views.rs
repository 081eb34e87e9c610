//! `joblake views`: (re)creates the DuckDB views.

use joblake_views::session;
use joblake_writer::Lake;

use crate::args::Cli;
use crate::outcome::{CmdResult, Failure, Outcome};

/// Runs `views`.
pub async fn views(cli: &Cli) -> CmdResult {
    let lake = Lake::open(&cli.lake, false)?;
    joblake_writer::format::check(&lake).await?;
    let db = session::duckdb_path(&lake, cli.duckdb.as_deref());
    session::rebuild_views(&lake, &db)
        .await
        .map_err(Failure::Failed)?;
    if !cli.quiet {
        eprintln!("views written to {}", db.display());
    }
    Ok(Outcome::Done)
}
