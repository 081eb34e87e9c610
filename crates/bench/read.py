"""The reading benchmark's DuckDB side, run with the stock DuckDB analysts use.

    python3 read.py grow <lake> <base.parquet> <ids> <superseded>
        writes <lake>/jobs/ as a joblake lake would hold it: <ids> jobs fetched by one run and
        <superseded> of them fetched again, changed, by a later run; real rows from
        <base.parquet> (a joblake jobs file), ids made unique per copy
    python3 read.py time <lake.duckdb>
        times the queries over the history and the latest-version view (best of 5), as JSON
    python3 read.py time-analyst <lake.duckdb>
        times the analysts' views (changes, lifecycle, salaries, companies), as JSON
"""

import json
import os
import sys
import time

import duckdb

QUERIES = {
    "count": "SELECT count(*) FROM {v}",
    "analyst": (
        "SELECT country, seniority_level, count(*) AS n FROM {v} "
        "WHERE post_date >= current_date - 30 GROUP BY ALL ORDER BY n DESC"
    ),
}

def example(name):
    """The first statement of one of `queries/examples/`."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "queries", "examples", name)
    with open(path) as f:
        return f.read().split(";")[0]


# The analysts' views (schemas/), each timed beside `SELECT count(*) FROM jobs_history`.
ANALYST_VIEWS = {
    "jobs_changes": "SELECT count(*) FROM jobs_changes",
    # As analysts are told to ask it: the example query, the last refresh found in `runs`.
    "jobs_changes, last run": example("06_changes_since_last_refresh.sql"),
    "jobs_lifecycle": "SELECT count(*) FROM jobs_lifecycle",
    "jobs salaries per year": (
        "SELECT salary_currency, salary_period, count(*), median(salary_annual_from) "
        "FROM jobs GROUP BY ALL"
    ),
    "job_companies": "SELECT count(*) FROM job_companies",
}

ROW_GROUP = 122880


def run_id(day, n):
    return f"202611{day:02d}T{n // 3600 % 24:02d}{n // 60 % 60:02d}{n % 60:02d}000Z"


def write(con, select, lake, dt, run):
    """Writes a file laid out as joblake's writer lays its files out: zstd, row groups of
    122 880 rows, pages of about 1 MB and a page index (pyarrow's writer, as arrow-rs does;
    DuckDB's would write pages as large as a column's row group and no page index)."""
    import pyarrow.parquet as pq

    d = os.path.join(lake, "jobs", f"dt={dt}")
    os.makedirs(d, exist_ok=True)
    rel = con.sql(select)
    reader = (getattr(rel, "to_arrow_reader", None) or rel.fetch_record_batch)(ROW_GROUP)
    with pq.ParquetWriter(
        f"{d}/part-{run}-000001.parquet", reader.schema, compression="zstd", write_page_index=True
    ) as out:
        for batch in reader:
            out.write_batch(batch, row_group_size=ROW_GROUP)


def base_view(con, base):
    # Every column of the real file (`dt` is the partition directory's, not in the file).
    con.sql(
        f"CREATE OR REPLACE VIEW base AS SELECT * FROM read_parquet('{base}', hive_partitioning = false)"
    )
    return con.sql("SELECT count(*) FROM base").fetchone()[0]


def grow(lake, base, ids, superseded):
    con = duckdb.connect()
    n = base_view(con, base)
    copies = -(-ids // n)
    first = run_id(1, 1)
    con.sql(
        f"""CREATE VIEW v1 AS
        SELECT base.* REPLACE (id || '-' || c::VARCHAR AS id, '{first}' AS _run_id)
        FROM base, range({copies}) t(c)
        LIMIT {ids}"""
    )
    write(con, "SELECT * FROM v1", lake, "2026-11-01", first)
    later = run_id(2, 1)
    write(
        con,
        f"""SELECT * REPLACE ('{later}' AS _run_id, job_title || ' (updated)' AS job_title)
        FROM v1 USING SAMPLE reservoir({superseded} ROWS) REPEATABLE (7)""",
        lake,
        "2026-11-02",
        later,
    )


def timed(con, sql, runs=5):
    con.sql(sql).fetchall()  # warm: footers and OS cache, as for an analyst's second query
    best = None
    for _ in range(runs):
        t = time.perf_counter()
        con.sql(sql).fetchall()
        s = time.perf_counter() - t
        best = s if best is None else min(best, s)
    return best


def time_views(db):
    con = duckdb.connect(db, read_only=True)
    out = {"duckdb": duckdb.__version__}
    for name, q in QUERIES.items():
        for view in ("jobs_history", "jobs"):
            out[f"{name}:{view}"] = timed(con, q.format(v=view))
    out["rows:jobs_history"] = con.sql("SELECT count(*) FROM jobs_history").fetchone()[0]
    out["rows:jobs"] = con.sql("SELECT count(*) FROM jobs").fetchone()[0]
    return out


def time_analyst_views(db):
    """Each analyst view beside a count of the history (best of 2: some take seconds)."""
    con = duckdb.connect(db, read_only=True)
    out = {"duckdb": duckdb.__version__, "count:jobs_history": timed(con, QUERIES["count"].format(v="jobs_history"))}
    for name, sql in ANALYST_VIEWS.items():
        out[name] = timed(con, sql, runs=2)
    return out


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "grow":
        grow(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif cmd == "time":
        print(json.dumps(time_views(sys.argv[2])))
    elif cmd == "time-analyst":
        print(json.dumps(time_analyst_views(sys.argv[2])))
