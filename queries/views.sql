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

-- Latest version per id: later run, then later page, then later row wins. joblake fills in
--   SELECT * FROM <table>_history
--   QUALIFY row_number() OVER (PARTITION BY id ORDER BY _run_id DESC, _page DESC, _row DESC) = 1
-- or, after `joblake compact`, the same result read from the snapshot it wrote (plus the
-- latest of any rows fetched since).
CREATE OR REPLACE VIEW career_sites AS
{career_sites_latest};

CREATE OR REPLACE VIEW jobs AS
{jobs_latest};

CREATE OR REPLACE VIEW companies AS
{companies_latest};

CREATE OR REPLACE VIEW runs AS
SELECT * FROM {runs_source};
