"""Counts what a stock reader sees in a joblake lake, as one JSON line on stdout.

    python3 counts.py duckdb  <lake.duckdb>   # the views, in whatever DuckDB is on PYTHONPATH
    python3 counts.py pyarrow <lake dir>      # the Parquet, as a pyarrow hive dataset
    python3 counts.py polars  <lake dir>      # the Parquet, as a polars lazy scan
    python3 counts.py deltalake <lake dir|s3://bucket/prefix>   # the Delta tables (delta-rs)
    python3 counts.py polars-delta <lake dir|s3://…>  # the Delta tables, polars' scan_delta
    python3 counts.py sail <lake dir|s3://…>  # the Delta tables through Spark Connect (pysail)
    python3 counts.py deltalake-as-of <lake> '{"jobs": 3, …}'  # the Delta tables at versions
    python3 counts.py pyarrow-s3 s3://bucket/prefix   # the Parquet on S3 (AWS_* settings),
                                              # with the list of ids

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
    # The analysts' views (macros, lambdas, windows) run in every release too.
    for view in ("jobs_changes", "career_sites_changes", "jobs_lifecycle", "job_companies"):
        out[view] = con.sql(f"SELECT count(*) FROM {view}").fetchone()[0]
    out["jobs_per_year"] = con.sql("SELECT count(salary_annual_from) FROM jobs").fetchone()[0]
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


def by_pyarrow_s3(url):
    """Reads an S3 lake with pyarrow's own S3 client, configured from the AWS_* variables."""
    import pyarrow.dataset as ds
    import pyarrow.fs as fs

    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    s3 = fs.S3FileSystem(
        access_key=os.environ["AWS_ACCESS_KEY_ID"],
        secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region=os.environ.get("AWS_REGION", "us-east-1"),
        endpoint_override=endpoint.split("://")[-1] or None,
        scheme=endpoint.split("://")[0] if endpoint else "https",
    )
    root = url.removeprefix("s3://").rstrip("/")
    out = {}
    for t in TABLES:
        table = ds.dataset(f"{root}/{t}", filesystem=s3, format="parquet", partitioning="hive").to_table()
        ids = set(table.column("id").to_pylist())
        out[t + "_history"] = table.num_rows
        out[t + "_ids"] = len(ids)
        out[t + "_id_list"] = sorted(ids)
    return out


def by_polars(lake):
    import polars as pl

    out = {}
    for t in TABLES:
        # dt=*/: the Delta log's own Parquet checkpoints lie in _delta_log/, beside them.
        frame = pl.scan_parquet(os.path.join(lake, t, "dt=*", "*.parquet"), hive_partitioning=True)
        counts = frame.select(pl.len().alias("rows"), pl.col("id").n_unique().alias("ids")).collect()
        out[t + "_history"] = counts["rows"][0]
        out[t + "_ids"] = counts["ids"][0]
    return out


def storage_options():
    """delta-rs' S3 settings, from the AWS_* variables (none for a local lake)."""
    options = {}
    for var, key in (
        ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL"),
        ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
        ("AWS_REGION", "AWS_REGION"),
    ):
        if os.environ.get(var):
            options[key] = os.environ[var]
    if os.environ.get("AWS_ALLOW_HTTP") in ("true", "1"):
        options["AWS_ALLOW_HTTP"] = "true"
    return options


def delta_tables(lake, latest=True):
    """Each history table, and each latest table (`<table>_latest`)."""
    for t in TABLES:
        yield t, f"{lake.rstrip('/')}/{t}"
    if latest:
        for t in TABLES:
            yield t + "_latest", f"{lake.rstrip('/')}/{t}_latest"


def summary(t, ids):
    """Counts, plus the sorted (id, _run_id, _page, _row) of every version, compared row by
    row with what the views hold."""
    return {t + "_history": len(ids), t + "_ids": len({i[0] for i in ids}), t + "_versions": sorted(ids)}


def rows_of(data):
    return list(zip(*(data.column(c).to_pylist() for c in data.column_names)))


def by_deltalake(lake):
    import pyarrow as pa
    from deltalake import DeltaTable, QueryBuilder

    out = {}
    for t, uri in delta_tables(lake):
        table = DeltaTable(uri, storage_options=storage_options() or None)
        if t.endswith("_latest"):
            # Its deletion vectors: delta-rs reads them through its query engine (DataFusion);
            # its pyarrow path refuses the table.
            result = QueryBuilder().register("t", table).execute("SELECT id, _run_id, _page, _row FROM t")
            data = pa.table(result.read_all())
        else:
            data = table.to_pyarrow_table(columns=["id", "_run_id", "_page", "_row"])
        out.update(summary(t, rows_of(data)))
        out[t + "_version"] = table.version()
    # The changes tables: (id, _run_id, change, previous_run_id) of every change.
    for t in TABLES:
        uri = f"{lake.rstrip('/')}/{t}_changes"
        if "://" not in uri and not os.path.isdir(uri):
            continue
        table = DeltaTable(uri, storage_options=storage_options() or None)
        data = table.to_pyarrow_table(columns=["id", "_run_id", "change", "previous_run_id"])
        out[t + "_changes"] = sorted(rows_of(data), key=lambda r: (r[0], r[1]))
    # The tables of one row per job, their deletion vectors read through DataFusion: the
    # lifecycle table, and job_company_keys (every job's link, null when none).
    for name, columns in (
        ("jobs_lifecycle", "id, versions, reposts, fetches, last_run_id"),
        ("job_company_keys", "id, company_id, matched_by"),
    ):
        uri = f"{lake.rstrip('/')}/{name}"
        if "://" not in uri and not os.path.isdir(uri):
            continue
        table = DeltaTable(uri, storage_options=storage_options() or None)
        result = QueryBuilder().register("t", table).execute(f"SELECT {columns} FROM t")
        rows = rows_of(pa.table(result.read_all()))
        out[name] = [list(r) for r in sorted(rows, key=lambda r: r[0])]
    return out


def by_sail(lake):
    """Spark's DataFrame API over Spark Connect, served in-process by Sail (pysail)."""
    from pysail.spark import SparkConnectServer
    from pyspark.sql import SparkSession

    server = SparkConnectServer("127.0.0.1", 0)
    server.start(background=True)
    _, port = server.listening_address
    spark = SparkSession.builder.remote(f"sc://127.0.0.1:{port}").getOrCreate()
    out = {}
    try:
        for t, uri in delta_tables(lake):
            if "://" not in uri:
                uri = "file://" + os.path.abspath(uri)
            frame = spark.read.format("delta").load(uri).select("id", "_run_id", "_page", "_row")
            out.update(summary(t, [tuple(r) for r in frame.collect()]))
    finally:
        spark.stop()
        server.stop()
    return out


def by_deltalake_as_of(lake, versions):
    """The Delta tables as of the versions given per table (time travel)."""
    from deltalake import DeltaTable

    out = {}
    for t, uri in delta_tables(lake, latest=False):
        table = DeltaTable(uri, version=versions[t], storage_options=storage_options() or None)
        data = table.to_pyarrow_table(columns=["id", "_run_id", "_page", "_row"])
        out.update(summary(t, rows_of(data)))
    return out


def by_polars_delta(lake):
    import polars as pl

    out = {}
    for t, uri in delta_tables(lake):
        frame = pl.scan_delta(uri, storage_options=storage_options() or None)
        data = frame.select("id", "_run_id", "_page", "_row").collect()
        out.update(summary(t, list(data.iter_rows())))
    return out


if __name__ == "__main__":
    reader, target = sys.argv[1], sys.argv[2]
    os.chdir("/")
    readers = {
        "duckdb": by_duckdb,
        "pyarrow": by_pyarrow,
        "pyarrow-s3": by_pyarrow_s3,
        "polars": by_polars,
        "deltalake": by_deltalake,
        "polars-delta": by_polars_delta,
        "sail": by_sail,
    }
    if reader == "deltalake-as-of":
        result = by_deltalake_as_of(target, json.loads(sys.argv[3]))
    else:
        result = readers[reader](target)
    print(json.dumps(result))
    sys.stdout.flush()
    # Ends here, before the interpreter's teardown: deltalake 1.6.6 beside pyarrow 26 aborts
    # there now and then ("terminate called without an active exception") once all is read.
    os._exit(0)
