#!/usr/bin/env bash
# Installs the real Codex CLI (npm @openai/codex) into .cache/codex-cli for the interoperability tests.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.169.0
dir=.cache/codex-cli
if [ -x "$dir/node_modules/.bin/codex" ] && grep -q "\"version\": \"$version\"" "$dir/node_modules/@openai/codex/package.json" 2>/dev/null; then
  exit 0
fi
echo "ensure-codex-cli: installing @openai/codex@$version into $dir"
mkdir -p "$dir"
npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "@openai/codex@$version"
