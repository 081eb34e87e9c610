-- Salaries per year (schemas/jobs.md, "Salaries per year"): the four columns `jobs` has
-- beyond its table's, worked out from the salary fields alone:
--   salary_period       hour, day, week, month or year: the first period word of
--                       salary_offered ("an hour", "/hr", "per month", "p.a.", ...); with
--                       none, 'year' when the larger figure is at least 20,000 in a currency
--                       other than those whose yearly pay runs to millions; else null;
--   salary_period_basis 'text' or 'amount': which of the two told the period;
--   salary_annual_from, salary_annual_to
--                       salary_from and salary_to (or, when both are null, the first two
--                       figures of salary_offered: "$25.50", "150,000", "€60.000", "45K")
--                       times the periods in a year: 2080 hours, 260 days, 52 weeks,
--                       12 months; in salary_currency.
--
-- joblake puts the rows in (jobs rows, with at least salary_offered, salary_from,
-- salary_to and salary_currency) where `worded` reads them, and gets them back with the four
-- columns after their own. The latest table (`<lake>/jobs_latest/`) keeps them: its writer
-- runs this over every file it writes there, so `jobs` reads them as they are; while a lake
-- has no latest table exact for its history, the `jobs` view runs it over the latest
-- versions it works out.
WITH worded AS (
    SELECT *,
           regexp_extract(lower(salary_offered), '\bhours?\b|hourly|\bhrs?\b|\bdays?\b|daily|per diem|\bweeks?\b|weekly|\bwk\b|\bmonths?\b|monthly|\bmo\b|\bmth\b|\bpcm\b|\byears?\b|yearly|annum|annual|\byr\b|\bp\.a\.|\bpa\b') AS _salary_word,
           CASE WHEN salary_from IS NULL AND salary_to IS NULL THEN
               list_transform(
                   regexp_extract_all(lower(salary_offered), '(?:\d{1,3}(?:[,.]\d{3})+|\d+)(?:[.,]\d{1,2})?(?:\s?k\b)?'),
                   lambda a: (regexp_replace(regexp_replace(a, '(?:[.,]\d{1,2})?(?:\s?k)?$', ''), '[^0-9]', '', 'g')::DOUBLE
                              + coalesce(TRY_CAST('0.' || regexp_extract(a, '[.,](\d{1,2})(?:\s?k)?$', 1) AS DOUBLE), 0))
                             * CASE WHEN a LIKE '%k' THEN 1000 ELSE 1 END)
           END AS _salary_figures
    FROM ({rows}) AS jobs_rows
),
figured AS (
    SELECT *,
           CASE WHEN _salary_figures IS NULL THEN salary_from
                WHEN len(_salary_figures) >= 2 OR lower(salary_offered) NOT LIKE '%up to%' THEN _salary_figures[1]
           END AS _salary_from,
           CASE WHEN _salary_figures IS NULL THEN salary_to
                WHEN len(_salary_figures) >= 2 THEN _salary_figures[2]
                WHEN lower(salary_offered) LIKE '%up to%' THEN _salary_figures[1]
           END AS _salary_to
    FROM worded
),
-- list_contains rather than IN (...): DuckDB plans an IN list of more than a few constants as a
-- join, which no query can leave out, so every query of `jobs` (a count, too) worked out every
-- row's salary; a function it can leave out when no column it makes is read.
perioded AS (
    SELECT *,
           CASE WHEN list_contains(['hour', 'hours', 'hourly', 'hr', 'hrs'], _salary_word) THEN 'hour'
                WHEN list_contains(['day', 'days', 'daily', 'per diem'], _salary_word) THEN 'day'
                WHEN list_contains(['week', 'weeks', 'weekly', 'wk'], _salary_word) THEN 'week'
                WHEN list_contains(['month', 'months', 'monthly', 'mo', 'mth', 'pcm'], _salary_word) THEN 'month'
                WHEN _salary_word <> '' THEN 'year'
                WHEN greatest(_salary_from, _salary_to) >= 20000
                     AND NOT list_contains(['JPY', 'KRW', 'INR', 'IDR', 'VND', 'HUF', 'CLP',
                         'COP', 'PKR', 'NGN', 'LKR', 'KZT', 'UGX', 'TZS', 'ISK', 'PYG', 'IRR',
                         'MNT', 'UZS', 'KHR', 'LAK', 'MMK'], salary_currency)
                     THEN 'year'
           END AS salary_period
    FROM figured
)
SELECT * EXCLUDE (_salary_word, _salary_figures, _salary_from, _salary_to),
       CASE WHEN _salary_word <> '' THEN 'text'
            WHEN salary_period IS NOT NULL THEN 'amount' END AS salary_period_basis,
       _salary_from * CASE salary_period WHEN 'hour' THEN 2080 WHEN 'day' THEN 260
           WHEN 'week' THEN 52 WHEN 'month' THEN 12 WHEN 'year' THEN 1 END AS salary_annual_from,
       _salary_to * CASE salary_period WHEN 'hour' THEN 2080 WHEN 'day' THEN 260
           WHEN 'week' THEN 52 WHEN 'month' THEN 12 WHEN 'year' THEN 1 END AS salary_annual_to
FROM perioded;
