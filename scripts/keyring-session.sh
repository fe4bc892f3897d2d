#!/usr/bin/env bash
# Runs a command inside its own D-Bus session with its own unlocked gnome-keyring, in temp dirs:
# tests exercise the real Secret Service and never touch the developer's keyring or data.
#
# gnome-keyring-daemon aborts when a client vanishes in the middle of a call (an upstream race,
# GNOME/gnome-keyring#196), and our crash tests kill clients with SIGKILL at random points. A
# desktop restarts the daemon (systemd's Restart=on-failure, or D-Bus activation); this session does
# the same through D-Bus activation: the session bus finds the service file below first (in
# $XDG_DATA_HOME, read before the system's), so the next call after a crash starts a fresh daemon,
# unlocked with the test password, on the same keyring files. Each restart is logged on stderr.
set -euo pipefail

if [ -z "${CODEX_VAULT_TEST_SESSION:-}" ]; then
  tmp=$(mktemp -d -t codex-vault-test.XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/xdg-data/dbus-1/services" "$tmp/runtime" "$tmp/vault" "$tmp/codex-home" "$tmp/bin"
  chmod 700 "$tmp/runtime"
  cat > "$tmp/bin/keyring-daemon" <<SH
#!/bin/sh
# Started by the session bus when org.freedesktop.secrets has no owner.
n=\$(cat "$tmp/keyring-starts" 2>/dev/null || echo 0); n=\$((n + 1)); echo "\$n" > "$tmp/keyring-starts"
[ "\$n" -gt 1 ] && echo "keyring-session: gnome-keyring-daemon (re)started by D-Bus activation, start \$n" >&2
printf %s codex-vault-test | exec gnome-keyring-daemon --foreground --unlock --components=secrets
SH
  chmod 755 "$tmp/bin/keyring-daemon"
  printf '[D-BUS Service]\nName=org.freedesktop.secrets\nExec=%s\n' "$tmp/bin/keyring-daemon" \
    > "$tmp/xdg-data/dbus-1/services/org.freedesktop.secrets.service"
  export CODEX_VAULT_TEST_SESSION="$tmp"
  export XDG_DATA_HOME="$tmp/xdg-data" XDG_CONFIG_HOME="$tmp/xdg-config" XDG_RUNTIME_DIR="$tmp/runtime"
  # Defaults that keep anything that forgets to set its own dirs away from the user's data.
  export CODEX_VAULT_HOME="$tmp/vault" CODEX_HOME="$tmp/codex-home"
  status=0
  dbus-run-session -- "$0" "$@" || status=$?
  starts=$(cat "$tmp/keyring-starts" 2>/dev/null || echo 0)
  [ "$starts" -gt 1 ] && echo "keyring-session: the keyring daemon was started $starts times (it aborted $((starts - 1)) times)" >&2
  exit "$status"
fi

# Inside the session bus: start the daemon now (the first call would too; this makes the first
# test's timing not include the start), then run the command.
dbus-send --session --print-reply=literal --dest=org.freedesktop.DBus /org/freedesktop/DBus \
  org.freedesktop.DBus.StartServiceByName string:org.freedesktop.secrets uint32:0 > /dev/null
"$@"
