#!/usr/bin/env bash
# Go tools the deployment checks use, built from the Go module proxy (no download site is needed)
# and cached across runs under ~/.cache/chicago-taxi/go (binaries, module and build caches).
#
# Usage: scripts/go_tool.sh path helm|actionlint|compose-config   print the binary's path, building it on first use
#        scripts/go_tool.sh run  helm|actionlint|compose-config ARGS...
# compose-config is `docker compose config` without Docker: deploy/compose/compose-config, a tiny main
# over compose-go (the loader Docker Compose itself uses), pinned by its go.mod and go.sum.
# Versions: HELM_VERSION (default v3.22.0), ACTIONLINT_VERSION (default v1.7.12).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cache="${TAXI_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chicago-taxi}/go"
helm_version="${HELM_VERSION:-v3.22.0}"
actionlint_version="${ACTIONLINT_VERSION:-v1.7.12}"

module_of() {
  case "$1" in
    helm) echo "helm.sh/helm/v3/cmd/helm@$helm_version" ;;
    actionlint) echo "github.com/rhysd/actionlint/cmd/actionlint@$actionlint_version" ;;
    # A module of this repository: its version is a hash of its sources, so an edit rebuilds it.
    compose-config) echo "./deploy/compose/compose-config@$(cd "$ROOT/deploy/compose/compose-config" && cat go.mod go.sum ./*.go | sha1sum | cut -c1-12)" ;;
    *) echo "unknown tool: $1 (helm, actionlint or compose-config)" >&2; exit 2 ;;
  esac
}

binary() {
  local name="$1" module version bin
  module=$(module_of "$name"); version="${module##*@}"
  bin="$cache/bin/$name-$version"
  if [ ! -x "$bin" ]; then
    command -v go >/dev/null || { echo "Go is needed to build $name ($module): install Go (golang from Debian, or go.dev)" >&2; exit 1; }
    echo "building $name $version from the Go module proxy (one time; cached in $cache)" >&2
    mkdir -p "$cache/bin" "$cache/tmp-$name"
    if [[ "$module" == ./* ]]; then
      (cd "$ROOT/${module%@*}" && GOMODCACHE="$cache/mod" GOCACHE="$cache/build" GOFLAGS=-mod=readonly CGO_ENABLED=0 \
        go build -o "$cache/tmp-$name/$name" .) >&2 || { echo "go build ${module%@*} failed" >&2; exit 1; }
    else
      GOBIN="$cache/tmp-$name" GOMODCACHE="$cache/mod" GOCACHE="$cache/build" GOFLAGS=-mod=mod CGO_ENABLED=0 \
        go install "$module" >&2 || { echo "go install $module failed" >&2; exit 1; }
    fi
    mv "$cache/tmp-$name/$name" "$bin"
    rmdir "$cache/tmp-$name" 2>/dev/null || true
  fi
  echo "$bin"
}

case "${1:-}" in
  path) binary "${2:?tool name}" ;;
  run) tool="${2:?tool name}"; shift 2; bin=$(binary "$tool"); exec "$bin" "$@" ;;
  *) echo "usage: $0 path|run helm|actionlint [ARGS...]" >&2; exit 2 ;;
esac
