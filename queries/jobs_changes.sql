-- What each run brought, per job id (schemas/changes.md): the version a run fetched of an id
-- (its last, when it fetched the id more than once) beside the version fetched before it.
-- 'new': the id's first version; 'reposted': the same job with another post date;
-- 'changed': other columns differ, changed_columns names them. A version fetched again with
-- nothing changed is no change. Columns are compared by their hash (hash(NULL) included),
-- so the window holds 8 bytes a column, not the rows. `dt` is the day the version was
-- fetched (the changes table's partition; the view leaves it out).
--
-- joblake fills in {versions}: jobs_history for the view and for writing the changes table
-- (`<lake>/jobs_changes/`) again; for a refresh's increment, the run's rows beside each of
-- their ids' last version before it, of which it keeps the rows of the run.
WITH version AS (
    SELECT * FROM (
        SELECT id, _run_id, _page, _row, _fetched_at, dt, post_date AS _post_date, {hashed}
        FROM {versions}
    )
    QUALIFY row_number() OVER (PARTITION BY id, _run_id ORDER BY _page DESC, _row DESC) = 1
),
compared AS (
    SELECT id, _run_id, _fetched_at, dt, _post_date,
           lag(_run_id) OVER w AS previous_run_id,
           lag(_post_date) OVER w AS previous_post_date,
           {compared}
    FROM version
    WINDOW w AS (PARTITION BY id ORDER BY _run_id)
),
listed AS (
    SELECT *, CASE WHEN previous_run_id IS NOT NULL
                   THEN [c FOR c IN [{flags}] IF c IS NOT NULL] END AS changed_columns
    FROM compared
)
SELECT id, _run_id, _fetched_at,
       CASE WHEN previous_run_id IS NULL THEN 'new'
            WHEN _post_date IS DISTINCT FROM previous_post_date THEN 'reposted'
            ELSE 'changed' END AS change,
       coalesce(changed_columns, []) AS changed_columns,
       previous_run_id, _post_date AS post_date, previous_post_date, dt
FROM listed
WHERE previous_run_id IS NULL OR len(changed_columns) > 0
