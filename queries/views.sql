-- The lake's views. joblake fills the {placeholders} with read_parquet(...) over the lake's
-- absolute paths (or, while a table has no file yet, a typed empty SELECT), so the views
-- work from any working directory. union_by_name lets files written before a column
-- existed sit beside newer ones.

CREATE OR REPLACE VIEW career_sites_history AS
SELECT * FROM {career_sites_source};

CREATE OR REPLACE VIEW jobs_history AS
SELECT * FROM {jobs_source};

-- Company profiles fetched by `joblake enrich companies` (or `refresh --enrich`).
CREATE OR REPLACE VIEW companies_history AS
SELECT * FROM {companies_source};

-- The rows of each latest table (`<lake>/<table>_latest/`, a Delta table) that its deletion
-- vectors delete, one table of (filename, file_row_number) per such table, written here once
-- from its log rather than read in every query (see below).
{deleted}

-- Latest version per id: later run, then later page, then later row wins. joblake fills in
--   SELECT * FROM <table>_history
--   QUALIFY row_number() OVER (PARTITION BY id ORDER BY _run_id DESC, _page DESC, _row DESC) = 1
-- or, once the table's latest table is exact for the history read here (every command that
-- commits rows keeps it so), the same result read from it: its files without the rows
-- _joblake_deleted_<table> names.
CREATE OR REPLACE VIEW career_sites AS
{career_sites_latest};

CREATE OR REPLACE VIEW jobs AS
{jobs_latest};

CREATE OR REPLACE VIEW companies AS
{companies_latest};

-- The run ledger. new_ids (ids whose first version came with the run) is counted from the
-- tables themselves when the view is read, so the run itself never pays for it and a run
-- killed before its end, whose pages the next run committed, is counted too. first_seen is,
-- for each table,
--   SELECT '<table>' AS source, run_id, count(*) AS new_ids
--   FROM (SELECT min(_run_id) AS run_id FROM <table>_history GROUP BY id) GROUP BY run_id
CREATE OR REPLACE VIEW runs AS
WITH first_seen AS (
{first_seen}
)
SELECT r.* REPLACE (CASE WHEN r.pages > 0 OR f.new_ids IS NOT NULL
                         THEN coalesce(f.new_ids, r.new_ids, 0) END AS new_ids)
FROM {runs_source} AS r
LEFT JOIN first_seen AS f ON f.source = r.source AND f.run_id = r.run_id;
