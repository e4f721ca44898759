#!/usr/bin/env bash
# The Chromium the browser tests drive (Playwright launches it by executable path; browser
# downloads are not used). `scripts/chromium.sh ensure` prints the executable's path:
#   TAXI_CHROMIUM when set (e.g. the CI runner's google-chrome), else the first of chromium,
#   chromium-browser, google-chrome on PATH; else, on Debian, it installs Debian's chromium package.
# Ubuntu's `chromium` package is a snap wrapper that does not run headless under a test runner:
# there it fails with that reason (set TAXI_CHROMIUM instead).
set -euo pipefail
ensure() {
  if [ -n "${TAXI_CHROMIUM:-}" ]; then
    [ -x "$TAXI_CHROMIUM" ] || { echo "TAXI_CHROMIUM=$TAXI_CHROMIUM is not an executable" >&2; exit 1; }
    echo "$TAXI_CHROMIUM"; return 0
  fi
  local name
  for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null; then command -v "$name"; return 0; fi
  done
  if ! grep -qi '^ID=debian' /etc/os-release 2>/dev/null; then
    echo "no chromium, chromium-browser or google-chrome on PATH, and this is not Debian (Ubuntu's chromium is a snap): install a Chromium or Chrome and set TAXI_CHROMIUM to its path" >&2
    exit 1
  fi
  echo "chromium not found: installing Debian's chromium package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null
  command -v chromium
}
case "${1:-ensure}" in
  ensure) ensure ;;
  *) echo "usage: $0 ensure" >&2; exit 2 ;;
esac
