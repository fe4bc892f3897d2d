#!/usr/bin/env bash
# Installs the official OpenAI Python SDK (PyPI, pinned) into .cache/sdk-venv: the client nobody
# here wrote that the Chat Completions tests (src-tauri/tests/it/endpoint/chat_sdk.rs) drive the endpoint with.
set -euo pipefail
cd "$(dirname "$0")/.."
OPENAI_VERSION=3.51.0
if ! .cache/sdk-venv/bin/python -c "import openai, sys; sys.exit(openai.__version__ != '$OPENAI_VERSION')" 2>/dev/null; then
  echo "ensure-openai-sdk: installing openai $OPENAI_VERSION into .cache/sdk-venv"
  python3 -m venv .cache/sdk-venv
  .cache/sdk-venv/bin/pip install --quiet --disable-pip-version-check "openai==$OPENAI_VERSION"
fi
