#!/usr/bin/env bash
# Installs the built .deb on this machine and checks it as a user would meet it:
#   dpkg -I lists the dependencies; apt installs it; `codex-vault` is on PATH and answers
#   --version and `accounts list --json` in a fresh data dir; the installed desktop binary opens
#   its window under Xvfb (screenshot in target/package/); `apt-get purge` leaves none of its files.
# Needs root (or sudo) for apt. Run by `make package-test` after `make package`.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "package-test: FAIL: $*" >&2; exit 1; }
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"

deb=$(ls -t target/release/bundle/deb/*.deb 2>/dev/null | head -1)
[ -n "$deb" ] || fail "no .deb in target/release/bundle/deb (run make package first)"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
pkg=$(dpkg-deb -f "$deb" Package)
echo "package-test: $deb ($pkg $version, $(du -h "$deb" | cut -f1))"

# 1. The control file names what the app needs at run time.
info=$(dpkg -I "$deb")
echo "$info" | sed -n '/Package:/,$p'
depends=$(dpkg-deb -f "$deb" Depends)
for d in libwebkit2gtk-4.1-0 libgtk-3-0 libayatana-appindicator3-1; do
  grep -q "$d" <<<"$depends" || fail "Depends lacks $d: $depends"
done
grep -q gnome-keyring <<<"$(dpkg-deb -f "$deb" Recommends)" || fail "Recommends lacks gnome-keyring"
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || fail "package version is not the workspace version $version"

# 2. Install it the way a user would (apt resolves the dependencies).
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "./$deb" >/dev/null
files=$(dpkg -L "$pkg")
trap '$sudo env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "$pkg" >/dev/null 2>&1 || true' EXIT

bin=$(command -v codex-vault) || fail "codex-vault is not on PATH after install"
[ "$bin" = /usr/bin/codex-vault ] || fail "codex-vault resolves to $bin, not the package's /usr/bin/codex-vault"
got=$(codex-vault --version)
[ "$got" = "codex-vault $version" ] || fail "--version says '$got', expected 'codex-vault $version'"
desktop=""
while IFS= read -r f; do
  grep -q "^Exec=codex-vault" "$f" && desktop=$f
done < <(grep '^/usr/share/applications/.*\.desktop$' <<<"$files")
[ -n "$desktop" ] || fail "no desktop entry that runs codex-vault"
for size in 16x16 32x32 48x48 128x128 256x256 512x512; do
  grep -q "/usr/share/icons/hicolor/$size/apps/" <<<"$files" || fail "no $size icon in the package"
done
echo "package-test: installed: $bin, $desktop, $(grep -c '/usr/share/icons/' <<<"$files") icon files"

# 3. Run it from PATH, in a private keyring session with a fresh data dir.
work=$(mktemp -d)
scripts/keyring-session.sh bash -c '
  set -euo pipefail
  export CODEX_VAULT_HOME="$1/vault" HOME="$1/home"
  mkdir -p "$HOME"
  out=$(codex-vault accounts list --json)
  [ "$(tr -d "[:space:]" <<<"$out")" = "[]" ] || { echo "accounts list --json said: $out" >&2; exit 1; }
  echo "package-test: accounts list --json from PATH: []"
  # The installed desktop binary opens its window under Xvfb.
  r=$(mktemp -u); mkfifo "$r"
  Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$r" 2>/dev/null & xvfb=$!
  read -r n <"$r"; rm -f "$r"
  export DISPLAY=":$n" WEBKIT_DISABLE_DMABUF_RENDERER=1
  /usr/bin/codex-vault 2>"$1/app.log" & app=$!
  for _ in $(seq 1 300); do
    xwininfo -root -tree 2>/dev/null | grep -q "\"Codex Vault\"" && break
    kill -0 $app 2>/dev/null || { cat "$1/app.log" >&2; echo "the app exited" >&2; exit 1; }
    sleep 0.1   # polling an X window list: there is no event to wait on from outside the app
  done
  xwininfo -root -tree | grep -q "\"Codex Vault\"" || { echo "no Codex Vault window after 30 s" >&2; exit 1; }
  sleep 2     # let WebKit paint before the screenshot (the picture is for people, nothing asserts on it)
  mkdir -p target/package
  import -display "$DISPLAY" -window root target/package/installed-app.png
  echo "package-test: window open; screenshot target/package/installed-app.png"
  kill $app; wait $app 2>/dev/null || true
  kill $xvfb
' _ "$work"
rm -rf "$work"

# 4. Purge removes every file the package installed.
$sudo env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "$pkg" >/dev/null
trap - EXIT
left=0
while IFS= read -r f; do
  [ -f "$f" ] || [ -L "$f" ] || continue
  echo "left behind: $f" >&2
  left=$((left + 1))
done <<<"$files"
[ "$left" = 0 ] || fail "$left files left after purge"
command -v codex-vault >/dev/null && fail "codex-vault still on PATH after purge"
echo "package-test: purged; no files left. OK"
