#!/usr/bin/env bash
# Installs what building and testing Codex Vault needs, only what is missing, saying what it does.
# Usage: scripts/ensure-deps.sh [build|test|bench]   (test adds the headless test tools and nginx for
# the bench smoke, bench nginx and an X server)
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-build}
# Tauri's build dependencies on Debian/Ubuntu (tauri.app prerequisites), plus what the app runs with.
pkgs=(build-essential pkg-config curl file ca-certificates libwebkit2gtk-4.1-dev libxdo-dev libssl-dev
      libayatana-appindicator3-dev librsvg2-dev dbus gnome-keyring libsecret-tools)
if [ "$mode" = bench ]; then
  # The idle row of the app's core runs the desktop app under an X server.
  pkgs+=(xvfb xauth)
  # Debian's nginx: the reverse-proxy baseline of `make bench` (BENCH_NO_NGINX=1 leaves it out).
  # On a host with systemd the package starts its own service on :80; the bench runs a private one.
  [ -n "${BENCH_NO_NGINX:-}" ] || pkgs+=(nginx)
fi
if [ "$mode" = test ]; then
  # Headless testing: a private D-Bus + keyring, an X server, WebKit's WebDriver for e2e.
  # nginx: the bench smoke (`make bench-smoke`) runs its reverse-proxy and static-upstream rows.
  pkgs+=(xvfb xauth x11-utils webkit2gtk-driver python3-venv imagemagick nginx)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "ensure-deps: missing system packages (${missing[*]}) and no apt-get: install them with your package manager." >&2
    exit 1
  fi
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    sudo="sudo"
    echo "ensure-deps: installing with sudo (you may be asked for your password)."
  fi
  echo "ensure-deps: installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "ensure-deps: cargo not found: install Rust from rustup.rs" >&2; exit 1; }
command -v npm >/dev/null || { echo "ensure-deps: npm not found: install Node.js 20.19 or newer" >&2; exit 1; }

# UI dependencies, from the lock file; again only when the lock changed since the last install.
if [ ! -f ui/node_modules/.package-lock.json ] || [ ui/package-lock.json -nt ui/node_modules/.package-lock.json ]; then
  echo "ensure-deps: installing UI dependencies (npm ci)"
  (cd ui && npm ci --no-audit --no-fund --loglevel=error)
fi
