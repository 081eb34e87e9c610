-- Which applicant tracking systems the tracked career sites run on.
SELECT ats, count(*) AS career_sites, count(*) FILTER (WHERE website IS NULL) AS without_website
FROM career_sites
GROUP BY ats
ORDER BY career_sites DESC
LIMIT 10;
