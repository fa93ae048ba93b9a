#!/usr/bin/env bash
# Installs everything berth needs on Debian 12 (run as root) and builds it:
# the real parts (runc, containerd + ctr, the containerd API reference, docker-registry,
# busybox-static, the CNI plugins with the iptables and iproute2 they drive), pnpm 12, the
# workspace dependencies (better-sqlite3 compiles from source against Node's own headers, so
# no download is needed) and every package.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

APT_PACKAGES=(runc containerd containernetworking-plugins iptables iproute2 gcc libc6-dev python3 golang-github-containerd-containerd-dev golang-go docker-registry busybox-static tmux openssl zstd protobuf-compiler)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian's containerd package enables its own service; berth's tests start daemons on temporary
# roots and never need it, so leave it as the system has it.

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "berth needs Node.js >= 20 (found $(node --version))" >&2
  exit 1
fi

if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version | cut -d. -f1)" != 12 ]; then
  log "npm install -g pnpm@12"
  npm install -g --silent pnpm@12 >/dev/null
fi

log "pnpm install"
# better-sqlite3 is built from source: point node-gyp at Node's installed headers.
export npm_config_nodedir=/usr
pnpm install --frozen-lockfile --reporter=append-only

log "pnpm build"
pnpm run --silent build
