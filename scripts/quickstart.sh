#!/usr/bin/env bash
# Quick start: install and build everything (scripts/setup.sh), start berthd on its default
# paths (unless one already serves the socket), run a container through it (the main job:
# a busybox image built locally, `berth run --rm ... echo $((6*7))` prints 42), and stop the
# daemon this script started. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

ADDRESS=${BERTH_ADDRESS:-/run/berth/berth.sock}
berth() { bin/berth --address "$ADDRESS" "$@"; }

started=""
if ! berth version >/dev/null 2>&1; then
  mkdir -p /run/berth
  log=/run/berth/quickstart-berthd.log
  echo "==> starting berthd (log: $log)" >&2
  bin/berthd --address "$ADDRESS" >"$log" 2>&1 &
  started=$!
  trap 'kill -TERM "$started" 2>/dev/null; wait "$started" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    berth version >/dev/null 2>&1 && break
    kill -0 "$started" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
  done
fi

echo "==> berth version" >&2
berth version

# No registry is needed: build a busybox image locally and import it into berthd.
archive=$(mktemp --suffix=.tar)
image=$(node scripts/make-busybox-image.mjs "$archive")
echo "==> berth images import $image" >&2
berth -n quickstart images import "$archive" >/dev/null
rm -f "$archive"

echo "==> the main job: berth run --rm $image quickstart /bin/sh -c 'echo \$((6*7))'" >&2
berth -n quickstart run --rm "$image" "quickstart-$$" /bin/sh -c 'echo $((6*7))'
