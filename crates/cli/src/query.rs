//! `joblake query`: SQL on the views with the embedded DuckDB.

use joblake_views::session;
use joblake_writer::Lake;

use crate::args::{Cli, Format};
use crate::outcome::{CmdResult, Failure, Outcome};
use crate::output;

/// Runs `query`: the rows as a table, CSV or JSON (`--json` wins).
pub async fn query(cli: &Cli, sql: &str, format: Format) -> CmdResult {
    if joblake_cli::sql::holds_no_statement(sql) {
        return Err(Failure::Usage(anyhow::anyhow!(
            "no SQL statement given; for example: joblake query \"SELECT count(*) FROM jobs\""
        )));
    }
    let lake = Lake::open(&cli.lake, false)?;
    joblake_writer::format::check(&lake).await?;
    let db = session::duckdb_path(&lake, cli.duckdb.as_deref());
    let batches = session::query(&lake, &db, sql).await?;
    output::batches(&batches, if cli.json { Format::Json } else { format })?;
    Ok(Outcome::Done)
}
