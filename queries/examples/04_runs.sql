-- The run ledger: what each refresh fetched and what it cost.
SELECT run_id, source, status, pages, rows, new_ids, retries, http_429, credits_used, credits_balance, files
FROM runs
ORDER BY run_id, source;
