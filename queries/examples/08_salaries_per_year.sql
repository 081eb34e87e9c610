-- Yearly salary ranges per currency and period quoted, and the salaries that could not be put
-- per year (no period or no figure told: counted, never guessed).
SELECT salary_currency,
       coalesce(salary_period, '(not told)') AS salary_period,
       count(*) AS jobs,
       round(median(salary_annual_from)) AS median_annual_from,
       round(median(salary_annual_to)) AS median_annual_to
FROM jobs
WHERE salary_offered IS NOT NULL OR salary_from IS NOT NULL OR salary_to IS NOT NULL
GROUP BY ALL
ORDER BY jobs DESC;
