-- Open jobs per country and seniority (latest version of each job).
SELECT coalesce(country, '(unknown)') AS country,
       coalesce(seniority_level, '(unknown)') AS seniority,
       count(*) AS jobs,
       round(avg(salary_from)) AS avg_salary_from
FROM jobs
GROUP BY ALL
ORDER BY jobs DESC
LIMIT 10;
