-- Career sites and jobs that have more than one version in the lake (changed between runs).
SELECT 'career_sites' AS table_name, count(*) AS ids_with_updates
FROM (SELECT id FROM career_sites_history GROUP BY id HAVING count(DISTINCT _run_id) > 1)
UNION ALL
SELECT 'jobs', count(*)
FROM (SELECT id FROM jobs_history GROUP BY id HAVING count(DISTINCT _run_id) > 1);
