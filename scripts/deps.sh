#!/usr/bin/env bash
# Installs what `make test` needs when it is missing, on a fresh Debian
# machine as root. Tests that need these tools fail (never skip) without them.
set -euo pipefail
need=()
command -v gcc >/dev/null || need+=(gcc)     # -race needs cgo
command -v git >/dev/null || need+=(git)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing ${need[*]}; install them (apt-get install -y ${need[*]})" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
