-- Each job's five link keys (schemas/job_companies.md, "The rule"): the job boards of its
-- job_url and apply_url, the registrable domains of its apply_url and job_url, and its
-- company name's key. joblake fills in `jobs` (rows with id, job_url, apply_url,
-- company_name and dt), `host_domains` (queries/host_domains.sql over the same jobs) and
-- `name_keys` (queries/name_keys.sql over them); the macros are queries/company_keys.sql's.
--
-- A host's domain and a name's key are worked out once per distinct host and name
-- (thousands), not once per job: each job looks them up.
SELECT h.id,
       joblake_listing_key_at(h.job_url, h.job_host) AS job_listing,
       joblake_listing_key_at(h.apply_url, h.apply_host) AS apply_listing,
       ad.domain AS apply_domain,
       jd.domain AS job_domain,
       n.key AS company_key,
       h.dt
FROM (SELECT id, job_url, apply_url, company_name, dt,
             joblake_host(job_url) AS job_host, joblake_host(apply_url) AS apply_host
      FROM {jobs}) AS h
LEFT JOIN {host_domains} AS ad ON ad.host = h.apply_host
LEFT JOIN {host_domains} AS jd ON jd.host = h.job_host
LEFT JOIN {name_keys} AS n ON n.company_name = h.company_name
