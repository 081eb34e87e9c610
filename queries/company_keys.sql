-- The macros that give a job's and a career site's link keys (schemas/job_companies.md, "The
-- rule"). joblake puts them in lake.duckdb, for any query to use, and runs them where it
-- works out the job_company_keys table.

-- joblake_host's rule, quicker for the plain URLs most are: when `url` starts with `prefix`,
-- "http(s)://" and a host with no user, port or space, followed by a path, a query, a fragment
-- or nothing, that host (one match, no capture group: a capture costs RE2 three times as much);
-- else the rule's own expression.
CREATE OR REPLACE MACRO joblake_host_after(url, prefix) AS
    CASE WHEN prefix <> '' AND list_contains(['/', '?', '#', ''], substr(url, length(prefix) + 1, 1))
         THEN lower(substr(prefix, strpos(prefix, '://') + 3))
         ELSE lower(regexp_extract(url, '^\s*[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^/@?#]*@)?([^/:?#\s]+)', 1))
    END;

-- A URL's host, lowercased: after the scheme and any user, up to a port, a path, a query, a
-- fragment or a space ('' when the URL has none).
CREATE OR REPLACE MACRO joblake_host(url) AS
    joblake_host_after(url, regexp_extract(url, '^https?://[^/?#@:\s]*'));

-- The registrable domain: the host's last two labels, or three under a two-letter country's
-- second level (co.uk, com.br, co.jp). joblake_domain_of_host takes a host already extracted.
CREATE OR REPLACE MACRO joblake_domain_of_host(host) AS
    nullif(regexp_extract(host,
        '([^.]+\.(?:(?:co|com|org|net|ac|gov|edu|ne|or)\.[a-z]{2}|[^.]+))$', 1), '');

CREATE OR REPLACE MACRO joblake_domain(url) AS joblake_domain_of_host(joblake_host(url));

-- The job board a URL is on: its host, and on the hosts that keep many companies' boards
-- (boards.greenhouse.io/<company>) the first path segment too. joblake_listing_key_at takes
-- the URL's host already extracted (list_contains, not IN: see queries/jobs_salaries.sql).
CREATE OR REPLACE MACRO joblake_listing_key_at(url, host) AS
    CASE WHEN list_contains(['boards.greenhouse.io', 'job-boards.greenhouse.io', 'jobs.lever.co',
              'jobs.ashbyhq.com', 'jobs.smartrecruiters.com', 'apply.workable.com'], host)
         THEN host || '/' || lower(regexp_extract(url, '^[^:]+://[^/]+/([^/?#]+)', 1))
         ELSE nullif(host, '') END;

CREATE OR REPLACE MACRO joblake_listing_key(url) AS joblake_listing_key_at(url, joblake_host(url));

-- A company name as matching compares it: accents and case dropped, anything but letters and
-- digits a space, a leading "the" and trailing legal forms (Inc., Corp, LLC, GmbH, ...) gone.
CREATE OR REPLACE MACRO joblake_company_key(name) AS
    nullif(trim(regexp_replace(regexp_replace(
        trim(regexp_replace(lower(strip_accents(name)), '[^\p{L}\p{N}]+', ' ', 'g')),
        '^the ', ''),
        '( (inc|incorporated|corp|corporation|co|company|llc|llp|ltd|limited|gmbh|ag|sa|sas|bv|nv|plc|ltda|as|oy|ab|kk|pty|srl|spa|sp z o o))+$', '')), '');
