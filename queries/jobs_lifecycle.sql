-- Per job id, its life in the lake (schemas/jobs_lifecycle.md): first and last fetched,
-- first and last post date, versions (its changes: new, changed or reposted), reposts,
-- fetches (every version, changed or not), valid_through of the version fetched last, the
-- UTC days it was first and last fetched (the history's `dt`), and days listed: from its
-- first post date (or, without one, the day it was first fetched) to the last day it was
-- fetched, never negative.
--
-- joblake fills in {history} (every version: jobs_history) and {changes} (their changes:
-- jobs_changes) for the view and for writing the lifecycle table (`<lake>/jobs_lifecycle/`)
-- again; a refresh fills in its run's rows and changes alone, and adds what it gets to each
-- id's row of the table (first and last taken across both, counts summed, valid_through the
-- run's).
--
-- Runs are numbered in order first, so that each id's aggregates are numbers and dates,
-- which DuckDB spills to disk, rather than texts and structs, which it must hold in memory.
-- The version fetched last is the one with the largest (run, page, row) as one HUGEINT.
WITH runs AS (
    SELECT _run_id, row_number() OVER (ORDER BY _run_id) AS run_no
    FROM (SELECT DISTINCT _run_id FROM {history})
),
fetched AS (
    SELECT id,
           min(_fetched_at) AS first_fetched_at,
           max(_fetched_at) AS last_fetched_at,
           min(run_no) AS first_run_no,
           max(run_no) AS last_run_no,
           min(post_date) AS first_post_date,
           max(post_date) AS last_post_date,
           count(*) AS fetches,
           arg_max(valid_through, run_no::HUGEINT << 64 | _page::HUGEINT << 32 | _row::HUGEINT)
               AS valid_through,
           min(dt) AS first_fetched_on,
           max(dt) AS last_fetched_on
    FROM {history} JOIN runs USING (_run_id)
    GROUP BY id
),
changed AS (
    SELECT id, count(*) AS versions, count(*) FILTER (WHERE change = 'reposted') AS reposts
    FROM {changes}
    GROUP BY id
)
SELECT id, first_fetched_at, last_fetched_at,
       f._run_id AS first_run_id, l._run_id AS last_run_id,
       first_post_date, last_post_date,
       coalesce(versions, 0) AS versions, coalesce(reposts, 0) AS reposts,
       fetches, valid_through, first_fetched_on, last_fetched_on,
       greatest(date_diff('day', coalesce(first_post_date, first_fetched_on), last_fetched_on), 0)
           AS days_listed
FROM fetched
JOIN runs AS f ON f.run_no = first_run_no
JOIN runs AS l ON l.run_no = last_run_no
LEFT JOIN changed USING (id)
