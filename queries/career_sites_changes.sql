-- What each run brought, per career site id (schemas/changes.md): as queries/jobs_changes.sql,
-- without reposts (a career site has no post date).
WITH version AS (
    SELECT * FROM (
        SELECT id, _run_id, _page, _row, _fetched_at, dt, {hashed}
        FROM {versions}
    )
    QUALIFY row_number() OVER (PARTITION BY id, _run_id ORDER BY _page DESC, _row DESC) = 1
),
compared AS (
    SELECT id, _run_id, _fetched_at, dt,
           lag(_run_id) OVER w AS previous_run_id,
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
       CASE WHEN previous_run_id IS NULL THEN 'new' ELSE 'changed' END AS change,
       coalesce(changed_columns, []) AS changed_columns,
       previous_run_id, dt
FROM listed
WHERE previous_run_id IS NULL OR len(changed_columns) > 0
