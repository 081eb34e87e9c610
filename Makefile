# joblake — one profile (release) for build, test, demo and refresh, so the bundled DuckDB
# compiles once. The target dir lives outside the checkout and is shared with CI.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/joblake-target
CARGO ?= cargo
# --workspace keeps feature resolution identical across runs, so the bundled DuckDB is never rebuilt.
TEST_PACKAGES ?= --workspace
BIN := $(CARGO_TARGET_DIR)/release/joblake

.PHONY: build test refresh demo views status check-fmt clippy

build:
	$(CARGO) build --release --locked -p joblake-cli

test:
	$(CARGO) test --release --locked $(TEST_PACKAGES)

refresh: build
	$(BIN) refresh

views: build
	$(BIN) views

status: build
	$(BIN) status

check-fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
