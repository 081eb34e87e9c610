-- The keys that link a job to a career site (schemas/job_companies.md, "The rule"): each
-- career site's job board (listing_url), website domain (website) and every name it has had
-- (company_name), keeping only the keys that name exactly one site: a key two sites share
-- links nothing. joblake fills in `career_sites` (the latest version of every site) and
-- `career_sites_history` (every version); the macros are queries/company_keys.sql's.
WITH platforms(domain) AS (
    VALUES ('linkedin.com'), ('indeed.com'), ('glassdoor.com'), ('ziprecruiter.com'),
           ('greenhouse.io'), ('lever.co'), ('myworkdayjobs.com'), ('ashbyhq.com'),
           ('smartrecruiters.com'), ('bamboohr.com'), ('personio.de'), ('workable.com'),
           ('jobvite.com'), ('icims.com'), ('recruitee.com'), ('teamtailor.com'),
           ('breezy.hr'), ('monster.com'), ('careerbuilder.com'), ('dice.com'),
           ('simplyhired.com'), ('wellfound.com'), ('stepstone.de'), ('xing.com'),
           ('seek.com.au'), ('naukri.com')
),
site_keys AS (
    SELECT id AS company_id, 'listing_url' AS matched_by, joblake_listing_key(listing_url) AS key
    FROM {career_sites}
    UNION
    SELECT id, 'website', joblake_domain(website) FROM {career_sites}
    WHERE joblake_domain(website) NOT IN (SELECT domain FROM platforms)
    UNION
    SELECT id, 'company_name', joblake_company_key(name) FROM {career_sites_history}
)
SELECT matched_by, key, any_value(company_id) AS company_id
FROM site_keys
WHERE key IS NOT NULL
GROUP BY matched_by, key
HAVING count(DISTINCT company_id) = 1
