-- Each host of the jobs' URLs with its registrable domain (schemas/job_companies.md, "The
-- rule"), for queries/job_keys.sql. joblake fills in `jobs` (rows with job_url and apply_url).
SELECT host, joblake_domain_of_host(host) AS domain
FROM (SELECT joblake_host(job_url) AS host FROM {jobs}
      UNION
      SELECT joblake_host(apply_url) FROM {jobs})
WHERE host IS NOT NULL
