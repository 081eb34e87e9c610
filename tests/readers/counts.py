"""Counts what a stock reader sees in a joblake lake, as one JSON line on stdout.

    python3 counts.py duckdb  <lake.duckdb>   # the views, in whatever DuckDB is on PYTHONPATH
    python3 counts.py pyarrow <lake dir>      # the Parquet, as a pyarrow hive dataset
    python3 counts.py polars  <lake dir>      # the Parquet, as a polars lazy scan

Run from any working directory: the views must not depend on it.
"""

import json
import os
import sys

TABLES = ("career_sites", "jobs")


def by_duckdb(path):
    import duckdb

    con = duckdb.connect(path, read_only=True)
    out = {"version": duckdb.__version__}
    for view in TABLES + tuple(t + "_history" for t in TABLES) + ("runs",):
        out[view] = con.sql(f"SELECT count(*) FROM {view}").fetchone()[0]
    for t in TABLES:
        out[t + "_ids"] = con.sql(f"SELECT count(DISTINCT id) FROM {t}").fetchone()[0]
    return out


def by_pyarrow(lake):
    import pyarrow.dataset as ds

    out = {}
    for t in TABLES:
        table = ds.dataset(os.path.join(lake, t), format="parquet", partitioning="hive").to_table()
        out[t + "_history"] = table.num_rows
        out[t + "_ids"] = len(set(table.column("id").to_pylist()))
        out[t + "_dt_is_partition"] = "dt" in table.column_names
    return out


def by_polars(lake):
    import polars as pl

    out = {}
    for t in TABLES:
        frame = pl.scan_parquet(os.path.join(lake, t, "**", "*.parquet"), hive_partitioning=True)
        counts = frame.select(pl.len().alias("rows"), pl.col("id").n_unique().alias("ids")).collect()
        out[t + "_history"] = counts["rows"][0]
        out[t + "_ids"] = counts["ids"][0]
    return out


if __name__ == "__main__":
    reader, target = sys.argv[1], sys.argv[2]
    os.chdir("/")
    result = {"duckdb": by_duckdb, "pyarrow": by_pyarrow, "polars": by_polars}[reader](target)
    print(json.dumps(result))
