#!/usr/bin/env bash
# Installs the real Codex CLI (npm @openai/codex) for the interoperability tests: every version we
# support, each in .cache/codex-cli-<version> (tests run against each). 0.169.0 also stays at
# .cache/codex-cli, where older tests and tools look for the default one.
set -euo pipefail
cd "$(dirname "$0")/.."
versions=(0.169.0 0.171.0)
install() { # <version> <dir>
  local version=$1 dir=$2
  if [ -x "$dir/node_modules/.bin/codex" ] && grep -q "\"version\": \"$version\"" "$dir/node_modules/@openai/codex/package.json" 2>/dev/null; then
    return 0
  fi
  echo "ensure-codex-cli: installing @openai/codex@$version into $dir"
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "@openai/codex@$version"
}
for v in "${versions[@]}"; do install "$v" ".cache/codex-cli-$v"; done
install "${versions[0]}" .cache/codex-cli
