# joblake — one profile (release) for build, test, demo and refresh, so the bundled DuckDB
# compiles once. The target dir lives outside the checkout and is shared with CI.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/joblake-target
CARGO ?= cargo
# --workspace keeps feature resolution identical across runs, so the bundled DuckDB is never rebuilt.
TEST_PACKAGES ?= --workspace
BIN := $(CARGO_TARGET_DIR)/release/joblake

.PHONY: build test py-tools duckdb-extensions refresh demo views status check-fmt clippy bench bench-pacing

build:
	$(CARGO) build --release --locked --workspace --all-targets

# Test tools from PyPI, each in its own --target dir (no venv, nothing system-wide): the stock
# DuckDB releases analysts run (the .duckdb file must open in them), pyarrow and polars (the
# notebooks' readers) and moto's S3 server. Installed once; bump PY_STAMP to reinstall.
PY_DIR ?= $(HOME)/.cache/joblake-py
PY_DUCKDB_VERSIONS := 1.4.5 1.5.6
PY_TOOLS := pyarrow==26.0.1 polars==2.1.0 moto[server]==5.2.5
PY_STAMP := $(PY_DIR)/.installed-1
PIP ?= python3 -m pip --disable-pip-version-check --quiet --no-input --root-user-action=ignore

py-tools: $(PY_STAMP)

$(PY_STAMP):
	@mkdir -p $(PY_DIR)
	@set -e; for v in $(PY_DUCKDB_VERSIONS); do \
	  echo "installing duckdb $$v (python) into $(PY_DIR)/duckdb-$$v"; \
	  $(PIP) install --upgrade --target $(PY_DIR)/duckdb-$$v duckdb==$$v; done
	@echo "installing $(PY_TOOLS) into $(PY_DIR)/tools"
	@$(PIP) install --upgrade --target $(PY_DIR)/tools $(PY_TOOLS)
	@touch $@

# DuckDB's httpfs extension, which the embedded DuckDB (1.5.5) loads to read S3 lakes. It is
# never downloaded at run time: this takes the signed build from its PyPI wheel and lays it out
# as a DuckDB extension directory, which every joblake command below is pointed at.
DUCKDB_VERSION := 1.5.5
DUCKDB_PLATFORM := linux_$(subst x86_64,amd64,$(subst aarch64,arm64,$(shell uname -m)))
DUCKDB_EXT_DIR ?= $(PY_DIR)/duckdb-extensions
HTTPFS := $(DUCKDB_EXT_DIR)/v$(DUCKDB_VERSION)/$(DUCKDB_PLATFORM)/httpfs.duckdb_extension
export JOBLAKE_DUCKDB_EXTENSIONS ?= $(DUCKDB_EXT_DIR)

duckdb-extensions: $(HTTPFS)

$(HTTPFS):
	@echo "installing DuckDB's httpfs $(DUCKDB_VERSION) (python wheel) into $(DUCKDB_EXT_DIR)"
	@$(PIP) install --upgrade --target $(PY_DIR)/httpfs-$(DUCKDB_VERSION) duckdb-extension-httpfs==$(DUCKDB_VERSION)
	@mkdir -p $(dir $@)
	@cp $(PY_DIR)/httpfs-$(DUCKDB_VERSION)/duckdb_extension_httpfs/extensions/v$(DUCKDB_VERSION)/httpfs.duckdb_extension $@
	@echo "JOBLAKE_DUCKDB_EXTENSIONS=$(DUCKDB_EXT_DIR)"

test: py-tools duckdb-extensions
	JOBLAKE_PY_DUCKDB="$(foreach v,$(PY_DUCKDB_VERSIONS),$(PY_DIR)/duckdb-$(v))" \
	JOBLAKE_PY_TOOLS="$(PY_DIR)/tools" \
	$(CARGO) test --release --locked $(TEST_PACKAGES)

# The feeds, then the company profiles joblake.toml's [companies] chooses (none without it).
refresh: build duckdb-extensions
	$(BIN) refresh --enrich

views: build duckdb-extensions
	$(BIN) views

status: build duckdb-extensions
	$(BIN) status

# Benchmarks: the real binary against its simulator, figures into BENCHMARKS.md (crates/bench).
BENCH := $(CARGO_TARGET_DIR)/release/joblake-bench

PY_BENCH_ENV := JOBLAKE_PY_DUCKDB="$(foreach v,$(PY_DUCKDB_VERSIONS),$(PY_DIR)/duckdb-$(v))"

# Ingest (1 M jobs, 200 k career sites, beside a fetch-only baseline; CPU, peak RSS, files)
# and reading (5 M versions, 20 % superseded; 200 small runs; before and after compact).
bench: build py-tools duckdb-extensions
	$(BENCH) --joblake $(BIN) --label "make bench" ingest --jobs 1000000 --career-sites 200000
	$(PY_BENCH_ENV) $(BENCH) --joblake $(BIN) --label "make bench" read --versions 5000000 --small-runs 200

bench-pacing: build
	$(BENCH) --joblake $(BIN) --label "make bench-pacing" pacing --minutes 3 --rpm 100

check-fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

# The demo: simulator on a free loopback port, a first refresh, six simulated hours, an
# incremental refresh, then the example queries. Uses a throwaway lake under ./demo-lake.
DEMO_LAKE ?= demo-lake
demo: build duckdb-extensions
	@rm -rf $(DEMO_LAKE) && mkdir -p $(DEMO_LAKE)
	@set -e; \
	$(BIN) simulate --port 0 --rows 500 --url-file $(DEMO_LAKE)/.sim-url >$(DEMO_LAKE)/.sim.log 2>&1 & sim=$$!; \
	trap 'kill $$sim 2>/dev/null' EXIT; \
	for i in $$(seq 50); do [ -s $(DEMO_LAKE)/.sim-url ] && break; sleep 0.1; done; \
	url=$$(cat $(DEMO_LAKE)/.sim-url); echo "simulator at $$url"; \
	export JOBO_API_KEY=jbe_test_joblake_demo SENTRION_API_KEY=sk_test_joblake_demo JOBO_BASE_URL=$$url SENTRION_BASE_URL=$$url; \
	echo "== first refresh"; $(BIN) refresh --lake $(DEMO_LAKE); \
	echo "== six simulated hours pass"; curl -fsS -X POST "$$url/_sim/advance?hours=6"; echo; \
	echo "== incremental refresh"; $(BIN) refresh --lake $(DEMO_LAKE); \
	echo "== company profiles of 25 fintech career sites"; $(BIN) enrich companies --lake $(DEMO_LAKE) --where "list_contains(industries, 'fintech')" --limit 25; \
	$(BIN) status --lake $(DEMO_LAKE); \
	for q in queries/examples/*.sql; do echo "== $$q"; $(BIN) query --lake $(DEMO_LAKE) -- "$$(cat $$q)"; done
