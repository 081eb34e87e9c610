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

CREATE OR REPLACE VIEW companies AS
{companies_latest};

-- The run ledger. new_ids (ids whose first version came with the run) is counted from the
-- tables themselves when the view is read, so the run itself never pays for it and a run
-- killed before its end, whose pages the next run committed, is counted too. first_seen is,
-- for each table,
--   SELECT '<table>' AS source, run_id, count(*) AS new_ids
--   FROM (SELECT min(_run_id) AS run_id FROM <table>_history GROUP BY id) GROUP BY run_id
-- or, for a table whose changes table is exact (below), the same count from its `new` changes
-- (an id's first version is its `new` change), which spares every query of `runs` the
-- window over every version.
CREATE OR REPLACE VIEW runs AS
WITH first_seen AS (
{first_seen}
)
SELECT r.* REPLACE (CASE WHEN r.pages > 0 OR f.new_ids IS NOT NULL
                         THEN coalesce(f.new_ids, r.new_ids, 0) END AS new_ids)
FROM {runs_source} AS r
LEFT JOIN first_seen AS f ON f.source = r.source AND f.run_id = r.run_id;

-- The latest version of every id with four more columns, salary_period,
-- salary_period_basis, salary_annual_from and salary_annual_to (schemas/jobs.md, "Salaries
-- per year"): queries/jobs_salaries.sql over its rows. joblake fills in the latest table's
-- rows, which keep those columns, or, while it has none exact for the history, that SQL over
-- the latest versions worked out as above.
CREATE OR REPLACE VIEW jobs AS
{jobs};

-- What each run brought, per id (schemas/changes.md): queries/jobs_changes.sql and
-- queries/career_sites_changes.sql over the history, or, once the table's changes table
-- (`<lake>/<table>_changes/`, a Delta table every refresh appends its runs' changes to) is
-- exact for the history read here, the same rows read from it.
CREATE OR REPLACE VIEW jobs_changes AS
{jobs_changes};

CREATE OR REPLACE VIEW career_sites_changes AS
{career_sites_changes};

-- Per job id, its life in the lake (schemas/jobs_lifecycle.md): queries/jobs_lifecycle.sql
-- over jobs_history and jobs_changes, or, once the lifecycle table (`<lake>/jobs_lifecycle/`,
-- a Delta table every refresh merges its runs into) is exact for the history read here, the
-- same rows read from it: its files without the rows _joblake_deleted_jobs_lifecycle names.
CREATE OR REPLACE VIEW jobs_lifecycle AS
{jobs_lifecycle};

-- Which company each job belongs to (schemas/job_companies.md): the career site (whose id is
-- also its company profile's) that one of the job's keys names, and no other site does:
--   1. listing_url:  the job's URL, or else its apply URL, is on the site's job board (same
--                    host, and for boards that keep many companies on one host, such as
--                    boards.greenhouse.io/<company>, the same first path segment);
--   2. website:      the apply URL's domain, or else the job URL's, is the site's website
--                    domain (job boards and ATS hosts, which serve many companies, never);
--   3. company_name: the company name, normalised by joblake_company_key, is a name the site
--                    has had, and no other site's.
-- A job that no key names, or names more than one site, has no row.

-- The macros of the link keys (queries/company_keys.sql): joblake_host, joblake_domain,
-- joblake_listing_key, joblake_company_key and the forms that take a host already extracted.
{company_key_macros}

-- joblake fills in the job_companies view's SELECT: the linked rows of the job_company_keys
-- table (`<lake>/job_company_keys/`, a Delta table of every job's keys and link, which every
-- command that commits rows keeps exact) when it is exact for the histories read here, else
--   SELECT id, company_id, matched_by FROM (<queries/job_companies.sql>)
--   WHERE matched_by IS NOT NULL
-- with the keys of queries/job_keys.sql over jobs (its lookups queries/host_domains.sql and
-- queries/name_keys.sql as CTEs) and those of queries/site_keys.sql over career_sites and
-- career_sites_history.
CREATE OR REPLACE VIEW job_companies AS
{job_companies};
