#!/usr/bin/env bash
# Quick start: install and build everything (scripts/setup.sh), start berthd on its default
# paths (unless one already serves the socket), run the main job through it, and stop the
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
echo "==> the main job: store a blob in berthd's content store and read it back" >&2
blob="hello from berth, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
digest="sha256:$(printf '%s\n' "$blob" | sha256sum | cut -d' ' -f1)"
printf '%s\n' "$blob" | berth -n quickstart content ingest --expected-digest "$digest" quickstart-blob
berth -n quickstart content ls
berth -n quickstart content get "$digest"
