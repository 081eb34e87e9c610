# joblake — one profile (release) for build, test, demo and refresh. The target dir lives
# outside the checkout and is shared with CI.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/joblake-target
CARGO ?= cargo
# --workspace keeps feature resolution identical across runs, so nothing is rebuilt for nothing.
TEST_PACKAGES ?= --workspace
RELEASE := $(CARGO_TARGET_DIR)/release
BIN := $(RELEASE)/joblake

# What make fetches once lives here, outside the checkout: DuckDB's prebuilt library and its
# httpfs extension, and the Python test tools' virtual environment. CI uses a fresh one.
JOBLAKE_CACHE ?= $(HOME)/.cache/joblake

# Python test tools in a virtual environment of their own, made from the image's python3 with
# its own pip, so nothing installed on the machine by hand is seen (`make py-check` proves it).
# The stock DuckDB releases analysts run (the .duckdb file must open in them) go into the venv
# side by side (pip --target, one directory each, which the tests put on PYTHONPATH); pyarrow
# and polars (the notebooks' readers), deltalake (delta-rs, a Delta reader) and moto's S3 server
# into its site-packages.
PY_DIR ?= $(JOBLAKE_CACHE)/py
VENV := $(PY_DIR)/venv
VENV_PY := $(VENV)/bin/python
PIP := $(VENV_PY) -m pip --disable-pip-version-check --quiet --no-input
PY_DUCKDB_VERSIONS := 1.4.5 1.5.6
PY_DUCKDB_DIRS := $(foreach v,$(PY_DUCKDB_VERSIONS),$(VENV)/duckdb-$(v))
PY_TOOLS := pyarrow==26.0.1 polars==2.1.0 deltalake==1.6.6 moto[server]==5.2.5 pysail==0.7.2 pyspark-client==4.2.0
PY_STAMP := $(VENV)/.installed-3
export JOBLAKE_PYTHON := $(VENV_PY)
# The venv stands alone: nothing from the caller's Python settings reaches it.
unexport PYTHONPATH PYTHONHOME PYTHONUSERBASE
export JOBLAKE_PY_DUCKDB := $(PY_DUCKDB_DIRS)

# DuckDB 1.5.5 is linked, not compiled: the official libduckdb.so of its release pipeline
# (parquet and json built in), from the npm package that ships it, checked against
# crates/views/duckdb.sha256 (tools/duckdb-fetch). DUCKDB_LIB_DIR tells the duckdb crate where
# it is; `build` puts a copy beside the binary, which finds it there (rpath $ORIGIN).
DUCKDB_VERSION := 1.5.5
DUCKDB_DIR := $(JOBLAKE_CACHE)/duckdb-$(DUCKDB_VERSION)-r.5
export DUCKDB_LIB_DIR := $(DUCKDB_DIR)

# LINT=1 (.ci/run sets it): joblake's own crates are compiled by clippy-driver, rustc with
# clippy's lints, warnings denied (tools/clippy-rustc, cargo's RUSTC_WORKSPACE_WRAPPER), so
# `build` and `test` lint every target `make clippy` does (`build` then builds every binary,
# the bench's too, and every test target, in the one build graph that pip's install runs
# beside in .ci/run) without a second pass that checks each dependency again (about 250 CPU-s
# cold). Test harnesses are compiled at opt-level 1 (tools/clippy-rustc says why).
# Dependencies are compiled as without it; joblake's crates recompile when it changes.
LINT ?=
ifeq ($(LINT),1)
export RUSTC_WORKSPACE_WRAPPER := $(CURDIR)/tools/clippy-rustc
BUILD_BINS := --bins --tests
else
BUILD_BINS := --bin joblake
endif

.PHONY: build duckdb-lib duckdb-extensions venv py-tools py-check test refresh demo views status \
	check-fmt clippy bench bench-pacing dist check-dist

# The joblake binary and, beside it, DuckDB's library and extensions. `test` and `bench` build
# their targets on top (--workspace: features resolve alike in every build, so nothing is
# compiled twice). CARGO_FLAGS=--timings times a build crate by crate.
CARGO_FLAGS ?=
build: duckdb-lib duckdb-extensions
	$(CARGO) build --release --locked --workspace $(BUILD_BINS) $(CARGO_FLAGS)
	@tools/lay-out $(DUCKDB_DIR) $(RELEASE)

duckdb-lib:
	@tools/duckdb-fetch lib $(DUCKDB_DIR)

# DuckDB's httpfs extension, which joblake loads to read S3 lakes, and its delta extension
# (`delta_scan` in `joblake query`) are never downloaded at run time: tools/duckdb-fetch takes
# the signed builds from their PyPI wheels (with the venv's pip), and `build` lays them out
# beside the binary, where joblake looks for extensions first.
duckdb-extensions: $(VENV_PY)
	@tools/duckdb-fetch httpfs $(DUCKDB_DIR) $(VENV_PY)
	@tools/duckdb-fetch delta $(DUCKDB_DIR) $(VENV_PY)

venv: $(VENV_PY)

$(VENV_PY):
	@command -v python3 >/dev/null || { echo "make needs python3 (3.9 or newer) for its venv" >&2; exit 1; }
	@echo "creating the Python venv $(VENV)"
	@rm -rf $(VENV) && python3 -m venv $(VENV)

py-tools: $(PY_STAMP)

$(PY_STAMP): $(VENV_PY)
	@set -e; for v in $(PY_DUCKDB_VERSIONS); do \
	  echo "installing duckdb $$v (python) into $(VENV)/duckdb-$$v"; \
	  rm -rf $(VENV)/duckdb-$$v; $(PIP) install --target $(VENV)/duckdb-$$v duckdb==$$v; done
	@echo "installing $(PY_TOOLS) into $(VENV)"
	@$(PIP) install $(PY_TOOLS)
	@touch $@

# Fails when a test tool would come from anywhere but the venv: the image's or the user's
# site-packages, PYTHONPATH, another pip.
py-check: py-tools
	@$(VENV_PY) tools/check_venv.py $(VENV) $(PY_DUCKDB_DIRS)

# nextest (.config/nextest.toml): each test in a process of its own and every test binary's
# tests side by side, the slowest first; then the documentation's examples, which it cannot run.
TEST_THREADS ?= $(shell echo $$(( $$(nproc) + 1 )))
test: build py-check
	$(CARGO) nextest run --release --locked --no-fail-fast --test-threads $(TEST_THREADS) \
	  $(TEST_PACKAGES) $(CARGO_FLAGS)
	$(CARGO) test --release --locked --doc $(TEST_PACKAGES)

# The feeds, then the company profiles joblake.toml's [companies] chooses (none without it).
refresh: build
	$(BIN) refresh --enrich

views: build
	$(BIN) views

status: build
	$(BIN) status

# Benchmarks: the real binary against its simulator, figures into BENCHMARKS.md (crates/bench).
BENCH := $(RELEASE)/joblake-bench

# Ingest (1 M jobs, 200 k career sites, beside a fetch-only baseline; CPU, peak RSS, files)
# reading (5 M versions, 20 % superseded; 200 small runs; before and after compact), and
# recovering a killed run that staged 1 GiB (peak RSS).
bench: build py-tools
	$(CARGO) build --release --locked --workspace --bin joblake-bench
	$(BENCH) --joblake $(BIN) --label "make bench" ingest --jobs 1000000 --career-sites 200000
	$(BENCH) --joblake $(BIN) --label "make bench" read --versions 5000000 --small-runs 200
	$(BENCH) --joblake $(BIN) --label "make bench" recover --staged-bytes 1073741824

bench-pacing: build
	$(CARGO) build --release --locked --workspace --bin joblake-bench
	$(BENCH) --joblake $(BIN) --label "make bench-pacing" pacing --minutes 3 --rpm 100

check-fmt:
	$(CARGO) fmt --all -- --check

clippy: duckdb-lib
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

# The demo: simulator on a free loopback port, a first refresh, six simulated hours, an
# incremental refresh, then the example queries. Uses a throwaway lake under ./demo-lake.
DEMO_LAKE ?= demo-lake
demo: build
	@tools/demo $(BIN) $(DEMO_LAKE)

# One self-contained binary, DuckDB compiled into it from C++ source (about 80 minutes on 2
# cores, cold), for people who ship one file: dist/joblake needs no libduckdb.so beside it.
# S3 lakes still need the httpfs extension: `duckdb_extensions/` beside it, as `build` lays it out.
DIST_TARGET_DIR ?= $(HOME)/.cache/joblake-dist-target
dist:
	env -u DUCKDB_LIB_DIR CARGO_TARGET_DIR=$(DIST_TARGET_DIR) \
	  $(CARGO) build --release --locked -p joblake-cli --features bundled $(CARGO_FLAGS)
	@mkdir -p dist && cp $(DIST_TARGET_DIR)/release/joblake dist/joblake
	@echo "dist/joblake: $$(du -h dist/joblake | cut -f1), DuckDB $(DUCKDB_VERSION) compiled in"

# The demo against dist/joblake, checking first that it links no libduckdb.so.
check-dist: dist
	@! ldd dist/joblake | grep -q libduckdb || { echo "dist/joblake links libduckdb.so" >&2; exit 1; }
	@tools/demo $(abspath dist/joblake) $(DEMO_LAKE)
