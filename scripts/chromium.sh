#!/usr/bin/env bash
# Debian's chromium for the browser tests (Playwright drives it by executable path; browser
# downloads are not used). `scripts/chromium.sh ensure` installs the package when it is missing
# and prints the executable's path.
set -euo pipefail
ensure() {
  if ! command -v chromium >/dev/null; then
    echo "chromium not found: installing Debian's chromium package" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null
  fi
  command -v chromium
}
case "${1:-ensure}" in
  ensure) ensure ;;
  *) echo "usage: $0 ensure" >&2; exit 2 ;;
esac
