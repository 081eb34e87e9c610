-- Which career site each job links to (schemas/job_companies.md): each of `keys` (a job's
-- keys, as queries/job_keys.sql gives them, and any other columns, which are kept) with
-- company_id and matched_by, the first of its keys that names a site among `site_keys`
-- (queries/site_keys.sql): its job board (job_url's, else apply_url's), then its domain
-- (apply_url's, else job_url's), then its company name. Both are null for a job no key links.
WITH unique_keys AS (
{site_keys}
)
SELECT j.*,
       coalesce(k1.company_id, k2.company_id, k3.company_id, k4.company_id, k5.company_id)
           AS company_id,
       CASE WHEN coalesce(k1.company_id, k2.company_id) IS NOT NULL THEN 'listing_url'
            WHEN coalesce(k3.company_id, k4.company_id) IS NOT NULL THEN 'website'
            WHEN k5.company_id IS NOT NULL THEN 'company_name' END AS matched_by
FROM {keys} AS j
LEFT JOIN unique_keys AS k1 ON k1.matched_by = 'listing_url' AND k1.key = j.job_listing
LEFT JOIN unique_keys AS k2 ON k2.matched_by = 'listing_url' AND k2.key = j.apply_listing
LEFT JOIN unique_keys AS k3 ON k3.matched_by = 'website' AND k3.key = j.apply_domain
LEFT JOIN unique_keys AS k4 ON k4.matched_by = 'website' AND k4.key = j.job_domain
LEFT JOIN unique_keys AS k5 ON k5.matched_by = 'company_name' AND k5.key = j.company_key
