-- What the last refresh of jobs brought: new jobs, changed ones (and which columns), reposts.
SELECT change, count(*) AS jobs, list_distinct(flatten(list(changed_columns))) AS columns_changed
FROM jobs_changes
WHERE _run_id = (SELECT max(run_id) FROM runs WHERE source = 'jobs' AND pages > 0)
GROUP BY change
ORDER BY change;

-- The same for the last day, whatever ran: WHERE _fetched_at >= now() - INTERVAL 1 DAY
