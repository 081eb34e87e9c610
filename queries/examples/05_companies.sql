-- The enriched companies (`joblake enrich companies`) with their funding, average rating and
-- the jobs they post. Jobs carry no company id, so a job belongs to a company when its company
-- name matches (case and spacing aside) or when its apply/job URL is on the company's website
-- domain (careers.acme.com belongs to acme.com).
WITH company AS (
    SELECT c.id,
           c.name,
           c.funding_stage,
           c.total_funding_usd,
           len(c.funding_rounds) AS funding_rounds,
           round(list_avg(list_transform(c.ratings, r -> r.rating)), 2) AS avg_rating,
           lower(trim(c.name)) AS name_key,
           lower(regexp_extract(coalesce(c.website, s.website), '^(?:[a-z]+://)?(?:www\.)?([^/:?#]+)', 1)) AS domain
    FROM companies AS c
    JOIN career_sites AS s USING (id)
),
job AS (
    SELECT lower(trim(company_name)) AS name_key,
           lower(regexp_extract(coalesce(apply_url, job_url), '^(?:[a-z]+://)?(?:www\.)?([^/:?#]+)', 1)) AS host
    FROM jobs
)
SELECT company.name,
       company.funding_stage,
       company.total_funding_usd,
       company.funding_rounds,
       company.avg_rating,
       count(job.host) AS jobs
FROM company
LEFT JOIN job
  ON job.name_key = company.name_key
  OR (company.domain <> '' AND (job.host = company.domain OR job.host LIKE '%.' || company.domain))
GROUP BY ALL
ORDER BY jobs DESC, company.total_funding_usd DESC NULLS LAST
LIMIT 10;
