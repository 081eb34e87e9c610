-- How long jobs stay listed and how often they are reposted, per seniority.
SELECT j.seniority_level,
       count(*) AS jobs,
       round(avg(l.days_listed), 1) AS avg_days_listed,
       round(avg(l.reposts), 2) AS avg_reposts,
       count(*) FILTER (WHERE l.reposts > 0) AS reposted_jobs
FROM jobs_lifecycle AS l
JOIN jobs AS j USING (id)
GROUP BY j.seniority_level
ORDER BY jobs DESC;
