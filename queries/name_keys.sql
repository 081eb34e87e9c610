-- Each company name of the jobs with its key, normalised as matching compares names
-- (schemas/job_companies.md, "The rule"), for queries/job_keys.sql. joblake fills in `jobs`
-- (rows with company_name).
SELECT company_name, joblake_company_key(company_name) AS key
FROM (SELECT DISTINCT company_name FROM {jobs})
WHERE company_name IS NOT NULL
