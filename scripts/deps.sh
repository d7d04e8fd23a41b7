#!/usr/bin/env bash
# Installs what `make test` needs when it is missing, on a fresh Debian
# machine as root: gcc (for -race), ffmpeg (ffprobe checks recordings),
# chromium (browser tests), nftables and iproute2 (the NAT suite, nattest:
# network namespaces), nodejs and npm (the browser SDK's npm package,
# its TypeScript check and the example web app), coturn (make turnbench:
# turnserver, turnutils_uclient, turnutils_peer); then, with npm ci, the
# pinned dev tools of web/typecheck (tsc) and examples/web-app (esbuild)
# from their package-lock.json files, where they are missing or their lock
# file changed. Tests that need these tools fail, never skip, without them.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v gcc >/dev/null || need+=(gcc)
command -v git >/dev/null || need+=(git)
command -v ffprobe >/dev/null || need+=(ffmpeg)
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v nft >/dev/null || need+=(nftables)   # the NAT suite (nattest)
command -v ip >/dev/null || need+=(iproute2)
command -v turnutils_uclient >/dev/null || need+=(coturn)  # make turnbench
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing ${need[*]}; install them: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# npm ci where node_modules is missing or was installed from another lock
# file (a stamp beside it keeps a copy of the lock it came from).
for dir in web/typecheck examples/web-app; do
  [ -f "$dir/package-lock.json" ] || continue
  stamp="$dir/node_modules/.duet-lock"
  if [ -f "$stamp" ] && cmp -s "$stamp" "$dir/package-lock.json"; then
    continue
  fi
  echo "deps: npm ci in $dir"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=warn)
  cp "$dir/package-lock.json" "$stamp"
done
