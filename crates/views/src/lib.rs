//! The one crate that links DuckDB: it builds the lake's DuckDB file of views and runs SQL
//! on it. Everything else in joblake builds and tests without DuckDB.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use duckdb::{AccessMode, Config, Connection};

/// The storage format written into the DuckDB file: old enough for the DuckDB 1.4 and 1.5
/// CLIs analysts still run, new enough for everything the views use.
pub const STORAGE_VERSION: &str = "v1.4.0";

/// What can go wrong with the DuckDB file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// DuckDB refused a statement.
    #[error("DuckDB: {0}")]
    Duck(#[from] duckdb::Error),
    /// The file could not be put in place.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// There is no DuckDB file yet.
    #[error("no DuckDB file at {0}; run `joblake refresh` or `joblake views` first")]
    Missing(PathBuf),
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Writes a fresh DuckDB file at `db` holding exactly the objects `statements` create, then
/// swaps it in with one rename: a reader never sees a file with half the views, and an
/// analyst holding the old file open is not in the way.
pub fn rebuild(db: &Path, statements: &[String]) -> Result<()> {
    let io = |context: String| move |source| Error::Io { context, source };
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
    }
    let tmp = db.with_extension(format!("duckdb.tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_file(wal(&tmp));
    let alias = db
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("lake")
        .to_string();
    let result = (|| -> Result<()> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(&format!(
            "ATTACH {} AS {} (STORAGE_VERSION '{STORAGE_VERSION}'); USE {};",
            literal(&tmp.display().to_string()),
            ident(&alias),
            ident(&alias)
        ))?;
        for sql in statements {
            conn.execute_batch(sql)?;
        }
        conn.execute_batch(&format!(
            "CHECKPOINT {}; USE memory; DETACH {};",
            ident(&alias),
            ident(&alias)
        ))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(wal(&tmp));
        return Err(e);
    }
    let _ = std::fs::remove_file(wal(db));
    std::fs::rename(&tmp, db).map_err(io(format!(
        "cannot move the new views into {}",
        db.display()
    )))
}

fn wal(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".wal");
    PathBuf::from(s)
}

/// Runs one SQL statement against the views, read-only, and returns its rows.
pub fn query(db: &Path, sql: &str) -> Result<Vec<RecordBatch>> {
    let conn = open_read_only(db)?;
    let mut stmt = conn.prepare(sql)?;
    Ok(stmt.query_arrow([])?.collect())
}

/// Runs `setup` (e.g. the view statements) on a fresh in-memory database, then `sql`:
/// for readers such as `status` that must not depend on the DuckDB file being current.
pub fn query_fresh(setup: &str, sql: &str) -> Result<Vec<RecordBatch>> {
    let conn = Connection::open_in_memory()?;
    conn.execute_batch(setup)?;
    let mut stmt = conn.prepare(sql)?;
    Ok(stmt.query_arrow([])?.collect())
}

/// Opens the DuckDB file read-only, so a query never blocks a refresh or another reader.
pub fn open_read_only(db: &Path) -> Result<Connection> {
    if !db.is_file() {
        return Err(Error::Missing(db.to_path_buf()));
    }
    let config = Config::default().access_mode(AccessMode::ReadOnly)?;
    Ok(Connection::open_with_flags(db, config)?)
}

/// Quotes an SQL string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Quotes an SQL identifier.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuild_replaces_the_file_and_query_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lake.duckdb");
        rebuild(&db, &["CREATE VIEW v AS SELECT 1 AS x".into()]).unwrap();
        rebuild(&db, &["CREATE VIEW v AS SELECT 2 AS x".into()]).unwrap();
        let batches = query(&db, "SELECT x FROM v").unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(text.contains('2') && !text.contains('1'), "{text}");
    }

    #[test]
    fn a_failed_rebuild_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lake.duckdb");
        rebuild(&db, &["CREATE VIEW v AS SELECT 1 AS x".into()]).unwrap();
        assert!(rebuild(&db, &["CREATE VIEW broken AS SELECT FROM nowhere".into()]).is_err());
        assert_eq!(query(&db, "SELECT x FROM v").unwrap()[0].num_rows(), 1);
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temp file left behind");
    }

    #[test]
    fn quoting_escapes() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let err = query(Path::new("/nonexistent/x.duckdb"), "SELECT 1").unwrap_err();
        assert!(err.to_string().contains("joblake refresh"));
    }
}
