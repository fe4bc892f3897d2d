# Codex Vault. Quick start: `make run` (sets everything up, builds, launches) and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
UI_DIST := ui/dist/index.html
BIN := target/debug/codex-vault

.PHONY: run deps deps-test ui build test lint bindings test-rust bench-smoke e2e e2e-run soak bench package package-test clean
export PATH := $(CURDIR)/.cache/cargo-tools/bin:$(PATH)

run: build ## set up, build and launch the desktop app
	@if [ -z "$$DISPLAY$$WAYLAND_DISPLAY" ]; then \
	  echo "No display here: the desktop window needs one. Run the headless endpoint with: $(BIN) serve   (see $(BIN) --help)"; \
	  $(BIN) accounts list; \
	else \
	  $(BIN); \
	fi

deps:
	@scripts/ensure-deps.sh build

deps-test:
	@scripts/ensure-deps.sh test
	@scripts/ensure-codex-cli.sh
	@scripts/ensure-e2e-tools.sh
	@scripts/ensure-openai-sdk.sh

ui: deps
	cd ui && npm run build

build: ui
	$(CARGO) build -p codex-vault

# The fast tier CI runs: lint, every Rust test, the bench smoke, the UI's checks and tests, the
# WebDriver smoke. Runs inside its own D-Bus session + gnome-keyring (scripts/keyring-session.sh),
# never the developer's.
test: deps-test
	cd ui && npm run build && npm test
	$(MAKE) --no-print-directory bindings
	scripts/keyring-session.sh $(MAKE) --no-print-directory lint test-rust bench-smoke e2e-run

# The desktop app in a real WebKit window under Xvfb (tauri-driver + WebKitWebDriver).
e2e: deps-test ui
	$(CARGO) build -p codex-vault -p codex-vault-testkit
	scripts/keyring-session.sh $(MAKE) --no-print-directory e2e-run

# `make bench` at its smallest (half a second a cell, 2 s idle windows) on the debug binaries test-rust
# built: fails unless every row ran without a failed request and target/bench-smoke/results.json
# passes the schema check; no timing asserted. Inside the keyring session (`make test` gives one).
bench-smoke:
	$(CARGO) build -p codex-vault -p codex-vault-testkit --bins --example bench_core
	ulimit -n 65536 2>/dev/null || ulimit -n "$$(ulimit -Hn)"; \
	  timeout --kill-after=10 300 target/debug/bench --smoke --vault target/debug/codex-vault \
	  --fake target/debug/fake-openai --core target/debug/examples/bench_core --app target/debug/codex-vault

# Bounded: a hung WebDriver call must fail the run, not stall CI.
e2e-run:
	timeout --kill-after=10 600 .cache/e2e-venv/bin/python tests/e2e/smoke.py

# The long hardening runs (several minutes; `make test` runs short versions of the same tests):
# 60 kill -9 trials of `serve` in refresh storms, 500 streams for 60 s with an account revoked
# mid-run (RSS growth asserted < 10%), 4096 cases per hostile-input property. Seeds are fixed;
# CRASH_SEED / PROPTEST_SEED explore others.
soak: deps-test ui
	$(CARGO) build -p codex-vault -p codex-vault-testkit
	HARDEN_CRASH_TRIALS=$${HARDEN_CRASH_TRIALS:-60} HARDEN_SOAK_STREAMS=$${HARDEN_SOAK_STREAMS:-500} \
	HARDEN_SOAK_SECS=$${HARDEN_SOAK_SECS:-60} PROPTEST_CASES=$${PROPTEST_CASES:-4096} \
	  scripts/keyring-session.sh $(CARGO) test -p codex-vault --test it -- --nocapture \
	  hardening::crash:: hardening::soak:: hardening::inputs::

# The UI's types (ui/src/bindings) are generated from the Rust types by ts-rs when the lib's
# `export_bindings_*` tests run (TS_RS_EXPORT_DIR: .cargo/config.toml). Regenerated from scratch
# (so a removed type's file goes too); fails when the checked-in files differ, i.e. a Rust type
# changed without its regenerated file. Works in a fresh clone: it compares with the index.
bindings:
	rm -rf ui/src/bindings
	$(CARGO) test -p codex-vault --lib --quiet export_bindings
	@if ! git diff --quiet -- ui/src/bindings || [ -n "$$(git ls-files --others --exclude-standard -- ui/src/bindings)" ]; then \
	  git status --short -- ui/src/bindings; \
	  echo "ui/src/bindings is out of date with the Rust types: commit the regenerated files above"; \
	  exit 1; \
	fi

# The layering (Tauri only in desktop/, SQL only in store/, no import cycle between the core's
# modules), no core file over 600 lines, every
# *.md a source names present; then both feature sets: the desktop build and the headless core
# (`--no-default-features`, no WebKit).
lint:
	scripts/check-layers.sh
	python3 scripts/check-cycles.py
	scripts/check-tree.sh
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p codex-vault --no-default-features --all-targets -- -D warnings

# Tests run against the desktop binary (the one users run; its CLI is the same code).
test-rust:
	$(CARGO) build -p codex-vault -p codex-vault-testkit
	$(CARGO) test --workspace

# A release .deb (LTO, one codegen unit, stripped): target/release/bundle/deb/. Tauri's own CLI
# (from ui/node_modules) builds the UI, the binary with the desktop feature, and the package.
package: deps
	cd src-tauri && ../ui/node_modules/.bin/tauri build --bundles deb --ci
	@ls -l target/release/codex-vault target/release/bundle/deb/*.deb

# Installs the .deb on this machine, runs it from PATH and under Xvfb, then purges it (root/sudo).
package-test: deps-test
	@[ -n "$$(ls target/release/bundle/deb/*.deb 2>/dev/null)" ] || $(MAKE) --no-print-directory package
	scripts/package-test.sh

# Not part of `make test` (it takes minutes; `make test` runs bench-smoke): release binaries side
# by side in one run — endpoint overhead against direct and nginx (rows small, sse14, sse200,
# sse-static, turn80k), refresh amplification, 1,000-account scale, footprint, idle
# wake-ups of serve and of the app's core (Xvfb) and the cross-process pickup. Prints
# one table and writes target/bench/results.json (README.md § Benchmarks). BENCH_ARGS passes
# options to the driver, e.g. BENCH_ARGS="--secs 2 --idle-secs 20" for a quick look, or
# BENCH_ARGS="--only idle" for the idle wake-ups and the pickup alone.
BENCH_ARGS ?=
bench:
	@scripts/ensure-deps.sh bench
	$(CARGO) build --profile bench-release -p codex-vault --no-default-features --bins --examples
	$(CARGO) build --profile bench-release -p codex-vault-testkit --bins
	@# The idle app row runs the desktop app (default features) under Xvfb; built if missing
	@# (with the UI it embeds: a fresh clone has no ui/dist yet).
	test -x target/debug/codex-vault || { $(MAKE) --no-print-directory ui && $(CARGO) build -p codex-vault --bin codex-vault; }
	ulimit -n 65536 2>/dev/null || ulimit -n "$$(ulimit -Hn)"; \
	  scripts/keyring-session.sh target/bench-release/bench $(BENCH_ARGS)

clean:
	$(CARGO) clean
	rm -rf ui/dist ui/node_modules .cache
