#!/usr/bin/env bash
# Installs the WebDriver e2e tools into .cache: tauri-driver (crates.io) and Python Selenium (PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .cache/cargo-tools/bin/tauri-driver ]; then
  echo "ensure-e2e-tools: installing tauri-driver 2.x into .cache/cargo-tools"
  # '^2' matters: 3.0 alphas are published too.
  cargo install tauri-driver --locked --version '^2' --root .cache/cargo-tools --quiet
fi
if [ ! -x .cache/e2e-venv/bin/python ] || ! .cache/e2e-venv/bin/python -c 'import selenium' 2>/dev/null; then
  echo "ensure-e2e-tools: installing selenium into .cache/e2e-venv"
  python3 -m venv .cache/e2e-venv
  .cache/e2e-venv/bin/pip install --quiet --disable-pip-version-check 'selenium>=4.20,<5'
fi
