#!/usr/bin/env bash
# The TFX runtime: a Debian 13 (trixie) root filesystem with tfx 1.21 in /opt/tfx-venv, built from
# pinned inputs and cached, and run with bubblewrap beside the Debian 12 host. `tfx` cannot sit in
# the main venv: ml-metadata 1.21's wheels need glibc 2.39 (the host has 2.36), and tfx 1.16, the
# last for older glibc, needs Python 3.10 and conflicts with Airflow 3.
#
#   scripts/tfx_runtime.sh build        debootstrap + apt packages + the locked venv (once per recipe)
#   scripts/tfx_runtime.sh check        import tfx, ml_metadata, tf.Transform and TFMA inside; print versions
#   scripts/tfx_runtime.sh run CMD...   run CMD inside (the repository's plugins/ read-only on PYTHONPATH)
#   scripts/tfx_runtime.sh path         print the root filesystem's path
#   scripts/tfx_runtime.sh clean        remove the cached runtimes
#
# The recipe is runtime/tfx/: the Debian release and mirror below, apt-packages.txt and
# requirements.lock. Its sha256 names the cache entry
# ($TAXI_TFX_RUNTIME_CACHE/<hash>, default /var/cache/chicago-taxi/tfx-runtime: outside /root, so a
# non-root user can run it), so a changed recipe builds a new runtime and an unchanged one is
# reused. pip's downloads are cached in $TAXI_TFX_RUNTIME_CACHE/pip across builds.
# runtime/tfx/Dockerfile is the same recipe for machines with a container engine.
#
# `run` binds, at the same paths inside as outside: the repository's plugins/ (read-only) and
# every directory named in TAXI_TFX_BIND (colon-separated, read-write), e.g. a pipeline root whose
# artifact URIs the host reads afterwards. Root is needed (debootstrap, and bwrap as root).
#
# In the TFX image (runtime/tfx/Dockerfile, target worker: Airflow and the project on this same
# runtime) the root filesystem is the runtime: TAXI_TFX_RUNTIME=image (the image sets it; unset,
# it is chosen when $TAXI_TFX_VENV/bin/python runs here) makes `run` execute CMD in place, the
# venv first on PATH and plugins/ on PYTHONPATH, with no bwrap and no root; `check` likewise,
# and `build` has nothing to build. TAXI_TFX_RUNTIME=bwrap forces the cached root filesystem.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RECIPE="$ROOT/runtime/tfx"
RELEASE="${TAXI_TFX_DEBIAN_RELEASE:-trixie}"
MIRROR="${TAXI_TFX_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE="${TAXI_TFX_RUNTIME_CACHE:-/var/cache/chicago-taxi/tfx-runtime}"
VENV=/opt/tfx-venv
# The venv when this root filesystem is the runtime (the image's; tests point it elsewhere).
IMAGE_VENV="${TAXI_TFX_VENV:-$VENV}"

recipe_hash() {
  { echo "$RELEASE $MIRROR"; grep -v '^#' "$RECIPE/apt-packages.txt"; grep -v '^#' "$RECIPE/requirements.lock"; } | sha256sum | cut -c1-16
}

need_tools() {
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v bwrap >/dev/null || missing+=(bubblewrap)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} (Debian packages)"
    apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# TAXI_TFX_BIND's directories (colon-separated), each made if missing, one per line.
bind_dirs() {
  local dir extra
  IFS=: read -r -a extra <<< "${TAXI_TFX_BIND:-}"
  for dir in "${extra[@]}"; do
    [ -n "$dir" ] || continue
    mkdir -p "$dir"
    echo "$dir"
  done
}

# bwrap into the runtime: its own /proc, /dev and /tmp, the host's resolver and CA bundle (pip
# goes through the same proxy as the host), plugins/ read-only, TAXI_TFX_BIND read-write.
inside() {
  local binds=() dir
  # the host's CA bundle over Debian's once ca-certificates is installed (not while apt installs it)
  [ ! -f "$ROOTFS/etc/ssl/certs/ca-certificates.crt" ] || binds+=(--ro-bind /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt)
  while read -r dir; do binds+=(--bind "$dir" "$dir"); done < <(bind_dirs)
  bwrap --bind "$ROOTFS" / --proc /proc --dev /dev --tmpfs /tmp \
    --ro-bind /etc/resolv.conf /etc/resolv.conf \
    --ro-bind "$ROOT/plugins" "$ROOT/plugins" \
    "${binds[@]}" \
    --bind "$CACHE/pip" /root/.cache/pip \
    --setenv PATH "$VENV/bin:/usr/local/bin:/usr/bin:/bin" \
    --setenv PYTHONPATH "$ROOT/plugins" --setenv PYTHONDONTWRITEBYTECODE 1 \
    --setenv HOME /root --unsetenv PIP_FIND_LINKS --unsetenv VIRTUAL_ENV \
    --unshare-pid --die-with-parent "$@"
}

build() {
  if [ -f "$RUNTIME/.complete" ]; then
    echo "TFX runtime ready: $ROOTFS (recipe $(recipe_hash))"
    return 0
  fi
  [ -f "$RECIPE/requirements.lock" ] || { echo "no TFX runtime recipe at $RECIPE (runtime/tfx/ of the repository)" >&2; exit 1; }
  [ "$(id -u)" = 0 ] || { echo "building the TFX runtime needs root (debootstrap)" >&2; exit 1; }
  need_tools
  rm -rf "$RUNTIME"
  mkdir -p "$RUNTIME" "$CACHE/pip"
  local started; started=$(date +%s)
  echo "[1/3] debootstrap --variant=minbase $RELEASE ($MIRROR)"
  debootstrap --variant=minbase "$RELEASE" "$ROOTFS" "$MIRROR" > "$RUNTIME/debootstrap.log" 2>&1 \
    || { tail -20 "$RUNTIME/debootstrap.log" >&2; exit 1; }
  mkdir -p "$ROOTFS/root/.cache/pip" "$ROOTFS$ROOT/plugins"
  echo "[2/3] apt packages: $(grep -v '^#' "$RECIPE/apt-packages.txt" | tr '\n' ' ')"
  inside env DEBIAN_FRONTEND=noninteractive sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $(grep -v '^#' "$RECIPE/apt-packages.txt" | tr '\n' ' ') && apt-get clean" \
    > "$RUNTIME/apt.log" 2>&1 || { tail -20 "$RUNTIME/apt.log" >&2; exit 1; }
  echo "[3/3] $VENV from runtime/tfx/requirements.lock ($(grep -c '==' "$RECIPE/requirements.lock") pins; pip's cache: $CACHE/pip)"
  cp "$RECIPE/requirements.lock" "$ROOTFS/opt/requirements.lock"
  inside sh -c "python3 -m venv $VENV && $VENV/bin/pip install -q --no-input -r /opt/requirements.lock" \
    > "$RUNTIME/pip.log" 2>&1 || { tail -20 "$RUNTIME/pip.log" >&2; exit 1; }
  recipe_hash > "$RUNTIME/.complete"
  echo "TFX runtime built in $(( $(date +%s) - started ))s: $ROOTFS ($(du -sh "$ROOTFS" | cut -f1))"
}

require_built() {
  [ -f "$RUNTIME/.complete" ] && { mkdir -p "$CACHE/pip"; return 0; }
  local why="no TFX runtime here: none is built for this recipe ($RUNTIME), and this is not the TFX image (no $IMAGE_VENV)"
  [ "$(id -u)" = 0 ] || why="$why, and building one needs root (you are uid $(id -u))"
  {
    echo "$why."
    echo "  On this machine, as root: make tfx-runtime (scripts/tfx_runtime.sh build), then run taxi_tfx again."
    echo "  In a deployment, taxi_tfx's component tasks run on the TFX image (runtime/tfx/Dockerfile, target worker):"
    echo "  CeleryExecutor, the '${TAXI_TFX_QUEUE:-tfx}' queue (compose: the airflow-worker-tfx service of the celery profile);"
    echo "  KubernetesExecutor, TAXI_TFX_IMAGE (their pods' image). The LocalExecutor runs them here."
  } >&2
  exit 1
}

# This root filesystem is the runtime (the TFX image): CMD in place, the venv first on PATH,
# plugins/ on PYTHONPATH, TAXI_TFX_BIND's directories made (they are already the same paths).
in_image() {
  [ -x "$IMAGE_VENV/bin/python" ] || { echo "TAXI_TFX_RUNTIME=image, but there is no TFX venv at $IMAGE_VENV: this is not the TFX image (runtime/tfx/Dockerfile)" >&2; exit 1; }
  bind_dirs > /dev/null
  exec env -u VIRTUAL_ENV -u PIP_FIND_LINKS PATH="$IMAGE_VENV/bin:$PATH" PYTHONPATH="$ROOT/plugins" PYTHONDONTWRITEBYTECODE=1 "$@"
}

case "${TAXI_TFX_RUNTIME:-}" in
  image | bwrap) MODE=$TAXI_TFX_RUNTIME ;;
  "") if "$IMAGE_VENV/bin/python" -c "" 2>/dev/null; then MODE=image; else MODE=bwrap; fi ;;
  *) echo "TAXI_TFX_RUNTIME=$TAXI_TFX_RUNTIME: expected image or bwrap (unset: image where $IMAGE_VENV runs)" >&2; exit 2 ;;
esac

CHECK="import sys, platform, tfx, ml_metadata, tensorflow as tf, tensorflow_transform as tft, tensorflow_model_analysis as tfma
print(f'Debian {open(\"/etc/debian_version\").read().strip()}, glibc {platform.libc_ver()[1]}, Python {sys.version.split()[0]}')
print(f'tfx {tfx.__version__}, ml-metadata {ml_metadata.__version__}, tensorflow {tf.__version__}, tensorflow-transform {tft.__version__}, tfma {tfma.__version__}')"

if [ "$MODE" = image ]; then
  case "${1:-}" in
    build) echo "TFX runtime: this root filesystem is the TFX image ($IMAGE_VENV, runtime/tfx/Dockerfile): nothing to build" ;;
    check) in_image python -c "$CHECK" ;;
    run) shift; in_image "$@" ;;
    path) echo / ;;
    clean) echo "TFX runtime: the TFX image's venv is part of the image: nothing to clean" ;;
    *) echo "usage: $0 build|check|run CMD...|path|clean" >&2; exit 2 ;;
  esac
  exit 0
fi

# The cached root filesystem of this recipe. The images carry no runtime/ (the project image has no
# runtime at all): there nothing is found, and `run` says where the runtime is instead.
if [ -f "$RECIPE/apt-packages.txt" ] && [ -f "$RECIPE/requirements.lock" ]; then
  RUNTIME="$CACHE/$(recipe_hash)"
else
  RUNTIME="$CACHE/<no recipe at $RECIPE>"
fi
ROOTFS="$RUNTIME/rootfs"
case "${1:-}" in
  build) build ;;
  check) require_built; inside python -c "$CHECK" ;;
  run) shift; require_built; inside "$@" ;;
  path) echo "$ROOTFS" ;;
  clean) rm -rf "$CACHE"; echo "removed $CACHE" ;;
  *) echo "usage: $0 build|check|run CMD...|path|clean" >&2; exit 2 ;;
esac
