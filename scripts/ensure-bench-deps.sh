#!/usr/bin/env bash
# Installs what `make bench` needs beyond the build deps, only what is missing, saying what it does:
# Debian's nginx (the reverse-proxy baseline column). Set BENCH_NO_NGINX=1 to skip it (the bench
# then leaves that column out with a note). Note: on a host with systemd, Debian's package starts
# its own nginx service on :80; the bench never uses it (it runs a private one from a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-deps.sh build

pkgs=()
if [ -z "${BENCH_NO_NGINX:-}" ]; then
  pkgs+=(nginx)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "ensure-bench-deps: no apt-get: install ${missing[*]} with your package manager (or set BENCH_NO_NGINX=1)." >&2
    exit 1
  fi
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    sudo="sudo"
    echo "ensure-bench-deps: installing with sudo (you may be asked for your password)."
  fi
  echo "ensure-bench-deps: installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
