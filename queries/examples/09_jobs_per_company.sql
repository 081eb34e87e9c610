-- Open jobs per company, with how each job was linked to its career site.
SELECT c.name AS company,
       count(*) AS jobs,
       count(*) FILTER (WHERE l.matched_by = 'listing_url') AS by_listing_url,
       count(*) FILTER (WHERE l.matched_by = 'website') AS by_website,
       count(*) FILTER (WHERE l.matched_by = 'company_name') AS by_name
FROM job_companies AS l
JOIN career_sites AS c ON c.id = l.company_id
GROUP BY c.name
ORDER BY jobs DESC
LIMIT 20;
