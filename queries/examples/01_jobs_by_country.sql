-- Open jobs per country and seniority (latest version of each job), with the median
-- starting salary per currency ("US" and "United States" are one country).
SELECT CASE WHEN country IN ('US', 'USA', 'United States') THEN 'United States'
            ELSE coalesce(country, '(unknown)') END AS country,
       coalesce(seniority_level, '(unknown)') AS seniority,
       count(*) AS jobs,
       coalesce(salary_currency, '(none)') AS currency,
       round(median(salary_from)) AS median_salary_from
FROM jobs
GROUP BY ALL
ORDER BY jobs DESC
LIMIT 10;
