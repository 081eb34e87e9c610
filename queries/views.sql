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

-- joblake_host's rule, quicker for the plain URLs most are: when `url` starts with `prefix`,
-- "http(s)://" and a host with no user, port or space, followed by a path, a query, a fragment
-- or nothing, that host (one match, no capture group: a capture costs RE2 three times as much);
-- else the rule's own expression.
CREATE OR REPLACE MACRO joblake_host_after(url, prefix) AS
    CASE WHEN prefix <> '' AND list_contains(['/', '?', '#', ''], substr(url, length(prefix) + 1, 1))
         THEN lower(substr(prefix, strpos(prefix, '://') + 3))
         ELSE lower(regexp_extract(url, '^\s*[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^/@?#]*@)?([^/:?#\s]+)', 1))
    END;

-- A URL's host, lowercased: after the scheme and any user, up to a port, a path, a query, a
-- fragment or a space ('' when the URL has none).
CREATE OR REPLACE MACRO joblake_host(url) AS
    joblake_host_after(url, regexp_extract(url, '^https?://[^/?#@:\s]*'));

-- The registrable domain: the host's last two labels, or three under a two-letter country's
-- second level (co.uk, com.br, co.jp). joblake_domain_of_host takes a host already extracted.
CREATE OR REPLACE MACRO joblake_domain_of_host(host) AS
    nullif(regexp_extract(host,
        '([^.]+\.(?:(?:co|com|org|net|ac|gov|edu|ne|or)\.[a-z]{2}|[^.]+))$', 1), '');

CREATE OR REPLACE MACRO joblake_domain(url) AS joblake_domain_of_host(joblake_host(url));

-- The job board a URL is on: its host, and on the hosts that keep many companies' boards
-- (boards.greenhouse.io/<company>) the first path segment too. joblake_listing_key_at takes
-- the URL's host already extracted (list_contains, not IN: see queries/jobs_salaries.sql).
CREATE OR REPLACE MACRO joblake_listing_key_at(url, host) AS
    CASE WHEN list_contains(['boards.greenhouse.io', 'job-boards.greenhouse.io', 'jobs.lever.co',
              'jobs.ashbyhq.com', 'jobs.smartrecruiters.com', 'apply.workable.com'], host)
         THEN host || '/' || lower(regexp_extract(url, '^[^:]+://[^/]+/([^/?#]+)', 1))
         ELSE nullif(host, '') END;

CREATE OR REPLACE MACRO joblake_listing_key(url) AS joblake_listing_key_at(url, joblake_host(url));

-- A company name as matching compares it: accents and case dropped, anything but letters and
-- digits a space, a leading "the" and trailing legal forms (Inc., Corp, LLC, GmbH, ...) gone.
CREATE OR REPLACE MACRO joblake_company_key(name) AS
    nullif(trim(regexp_replace(regexp_replace(
        trim(regexp_replace(lower(strip_accents(name)), '[^\p{L}\p{N}]+', ' ', 'g')),
        '^the ', ''),
        '( (inc|incorporated|corp|corporation|co|company|llc|llp|ltd|limited|gmbh|ag|sa|sas|bv|nv|plc|ltda|as|oy|ab|kk|pty|srl|spa|sp z o o))+$', '')), '');

CREATE OR REPLACE VIEW job_companies AS
WITH platforms(domain) AS (
    VALUES ('linkedin.com'), ('indeed.com'), ('glassdoor.com'), ('ziprecruiter.com'),
           ('greenhouse.io'), ('lever.co'), ('myworkdayjobs.com'), ('ashbyhq.com'),
           ('smartrecruiters.com'), ('bamboohr.com'), ('personio.de'), ('workable.com'),
           ('jobvite.com'), ('icims.com'), ('recruitee.com'), ('teamtailor.com'),
           ('breezy.hr'), ('monster.com'), ('careerbuilder.com'), ('dice.com'),
           ('simplyhired.com'), ('wellfound.com'), ('stepstone.de'), ('xing.com'),
           ('seek.com.au'), ('naukri.com')
),
site_keys AS (
    SELECT id AS company_id, 'listing_url' AS matched_by, joblake_listing_key(listing_url) AS key
    FROM career_sites
    UNION
    SELECT id, 'website', joblake_domain(website) FROM career_sites
    WHERE joblake_domain(website) NOT IN (SELECT domain FROM platforms)
    UNION
    SELECT id, 'company_name', joblake_company_key(name) FROM career_sites_history
),
unique_keys AS (
    SELECT matched_by, key, any_value(company_id) AS company_id
    FROM site_keys
    WHERE key IS NOT NULL
    GROUP BY matched_by, key
    HAVING count(DISTINCT company_id) = 1
),
-- One pass over the jobs: each URL's host extracted once, the five keys side by side, each
-- looked up among the unique keys; the first that names a site wins. A host's domain and a
-- name's key are worked out once per distinct host and name (thousands), not once per job.
hosts AS (
    SELECT id, job_url, apply_url, company_name,
           joblake_host(job_url) AS job_host, joblake_host(apply_url) AS apply_host
    FROM jobs
),
host_domains AS (
    SELECT host, joblake_domain_of_host(host) AS domain
    FROM (SELECT job_host AS host FROM hosts UNION SELECT apply_host FROM hosts)
    WHERE host IS NOT NULL
),
name_keys AS (
    SELECT company_name, joblake_company_key(company_name) AS key
    FROM (SELECT DISTINCT company_name FROM hosts)
    WHERE company_name IS NOT NULL
),
job_keys AS (
    SELECT h.id,
           joblake_listing_key_at(h.job_url, h.job_host) AS job_listing,
           joblake_listing_key_at(h.apply_url, h.apply_host) AS apply_listing,
           ad.domain AS apply_domain,
           jd.domain AS job_domain,
           n.key AS company_key
    FROM hosts AS h
    LEFT JOIN host_domains AS ad ON ad.host = h.apply_host
    LEFT JOIN host_domains AS jd ON jd.host = h.job_host
    LEFT JOIN name_keys AS n ON n.company_name = h.company_name
),
linked AS (
    SELECT j.id,
           coalesce(k1.company_id, k2.company_id, k3.company_id, k4.company_id, k5.company_id)
               AS company_id,
           CASE WHEN coalesce(k1.company_id, k2.company_id) IS NOT NULL THEN 'listing_url'
                WHEN coalesce(k3.company_id, k4.company_id) IS NOT NULL THEN 'website'
                WHEN k5.company_id IS NOT NULL THEN 'company_name' END AS matched_by
    FROM job_keys AS j
    LEFT JOIN unique_keys AS k1 ON k1.matched_by = 'listing_url' AND k1.key = j.job_listing
    LEFT JOIN unique_keys AS k2 ON k2.matched_by = 'listing_url' AND k2.key = j.apply_listing
    LEFT JOIN unique_keys AS k3 ON k3.matched_by = 'website' AND k3.key = j.apply_domain
    LEFT JOIN unique_keys AS k4 ON k4.matched_by = 'website' AND k4.key = j.job_domain
    LEFT JOIN unique_keys AS k5 ON k5.matched_by = 'company_name' AND k5.key = j.company_key
)
SELECT id, company_id, matched_by FROM linked WHERE company_id IS NOT NULL;
