"""Fails unless every Python test tool comes from joblake's own venv (`make py-check`).

    <venv>/bin/python tools/check_venv.py <venv> [<duckdb dir> ...]

A tool found in the image's site-packages, the user's, a PYTHONPATH entry or another pip
would make `make test` pass here and fail on a fresh machine, so each is refused by name.
"""

import importlib.util
import json
import os
import site
import subprocess
import sys
import sysconfig

# The modules the tests import, in the venv's site-packages.
TOOLS = ("pip", "pyarrow", "polars", "deltalake", "pysail", "pyspark", "moto", "werkzeug", "boto3")


def inside(path, root):
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root + os.sep)


def main():
    venv, duckdb_dirs = sys.argv[1], sys.argv[2:]
    problems = []

    if not inside(sys.prefix, venv) or sys.prefix == sys.base_prefix:
        problems.append(f"{sys.executable} is not the venv {venv}'s python")
    cfg = os.path.join(venv, "pyvenv.cfg")
    with open(cfg) as f:
        if "include-system-site-packages = true" in f.read().replace("True", "true"):
            problems.append(f"{cfg} lets the venv see the image's site-packages")
    if site.ENABLE_USER_SITE:
        problems.append("the user's site-packages (~/.local) is on the path")
    for var in ("PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE"):
        if os.environ.get(var):
            problems.append(f"{var} is set ({os.environ[var]}): the venv must stand alone")

    # Every sys.path entry is the venv or the interpreter's own standard library.
    stdlib = {
        sysconfig.get_path(k, vars={"base": sys.base_prefix, "platbase": sys.base_prefix})
        for k in ("stdlib", "platstdlib")
    }
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        if not entry or entry == here or inside(entry, venv):
            continue
        if any(inside(entry, s) for s in stdlib) and "site-packages" not in entry:
            continue
        if entry.endswith(".zip") and not os.path.exists(entry):
            continue
        problems.append(f"sys.path has {entry}, outside the venv")

    for name in TOOLS:
        spec = importlib.util.find_spec(name)
        if spec is None:
            problems.append(f"{name} is not installed in the venv (run `make py-tools`)")
        elif not inside(spec.origin, venv):
            problems.append(f"{name} comes from {spec.origin}, outside the venv")

    # Each stock DuckDB, as the tests load it: its directory alone on PYTHONPATH.
    for d in duckdb_dirs:
        if not inside(d, venv):
            problems.append(f"the stock DuckDB {d} is outside the venv")
            continue
        out = subprocess.run(
            [sys.executable, "-c", "import duckdb, json; print(json.dumps(duckdb.__file__))"],
            env={**os.environ, "PYTHONPATH": d},
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            problems.append(f"duckdb does not import from {d}: {out.stderr.strip()[-300:]}")
        elif not inside(json.loads(out.stdout), d):
            problems.append(f"duckdb for {d} imports from {out.stdout.strip()}")

    check = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True
    )
    if check.returncode != 0:
        problems.append(f"pip check: {check.stdout.strip()}")

    if problems:
        print("the Python test tools do not stand alone in the venv " + venv + ":", file=sys.stderr)
        for p in problems:
            print("  - " + p, file=sys.stderr)
        print("remove the venv and run `make py-tools` again", file=sys.stderr)
        sys.exit(1)
    print(f"python test tools: {len(TOOLS)} modules and {len(duckdb_dirs)} DuckDB releases, all in {venv}")


if __name__ == "__main__":
    main()
