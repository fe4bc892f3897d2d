#!/usr/bin/env bash
# Runs a command inside its own D-Bus session with its own unlocked gnome-keyring, in temp dirs:
# tests exercise the real Secret Service and never touch the developer's keyring or data.
set -euo pipefail

if [ -z "${CODEX_VAULT_TEST_SESSION:-}" ]; then
  export CODEX_VAULT_TEST_SESSION=1
  exec dbus-run-session -- "$0" "$@"
fi

tmp=$(mktemp -d -t codex-vault-test.XXXXXX)
cleanup() {
  [ -n "${GNOME_KEYRING_PID:-}" ] && kill "$GNOME_KEYRING_PID" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/xdg-data" "$tmp/runtime" "$tmp/vault" "$tmp/codex-home"
chmod 700 "$tmp/runtime"
export XDG_DATA_HOME="$tmp/xdg-data" XDG_CONFIG_HOME="$tmp/xdg-config" XDG_RUNTIME_DIR="$tmp/runtime"
# Defaults that keep anything that forgets to set its own dirs away from the user's data.
export CODEX_VAULT_HOME="$tmp/vault" CODEX_HOME="$tmp/codex-home"
eval "$(printf %s codex-vault-test | gnome-keyring-daemon --unlock --components=secrets)"
export GNOME_KEYRING_CONTROL GNOME_KEYRING_PID
"$@"
