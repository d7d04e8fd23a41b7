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
# file (a stamp beside it keeps a copy of the lock it came from). Safe to run
# several times at once (make test in two shells, a test run while another
# installs): a lock per directory lets one install at a time (the others
# wait, then find the stamp fresh), and the install goes into a new
# directory beside it (same depth, so the file:../sdk link resolves alike)
# that takes node_modules' place in one rename: a reader sees the old tree
# or the new one, never one npm ci has emptied or half filled.
fresh() { [ -f "$1/node_modules/.duet-lock" ] && cmp -s "$1/node_modules/.duet-lock" "$1/package-lock.json"; }
for dir in web/typecheck examples/web-app; do
  [ -f "$dir/package-lock.json" ] || continue
  fresh "$dir" && continue
  parent=$(dirname "$dir") name=$(basename "$dir")
  (
    flock 9
    fresh "$dir" && exit 0
    echo "deps: npm ci in $dir"
    tmp=$(mktemp -d "$parent/.npm-install-$name.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    cp "$dir/package.json" "$dir/package-lock.json" "$tmp/"
    (cd "$tmp" && npm ci --no-audit --no-fund --loglevel=warn)
    cp "$dir/package-lock.json" "$tmp/node_modules/.duet-lock"
    # Swap the trees in one step where the kernel can (renameat2 with
    # RENAME_EXCHANGE, by its syscall number on x86_64 and arm64), else by
    # two renames in one process (the tree is missing for microseconds).
    # perl-base is essential on Debian. The old tree ends in $tmp.
    perl -MPOSIX -e 'my ($cur, $new, $old) = @ARGV;
      my $nr = {x86_64 => 316, aarch64 => 276}->{(POSIX::uname())[4]};
      exit 0 if -e $cur && $nr && syscall($nr, -100, $new, -100, $cur, 2) == 0;
      rename($cur, $old) or !-e $cur or die "rename $cur: $!\n";
      rename($new, $cur) or die "rename $new: $!\n"' "$dir/node_modules" "$tmp/node_modules" "$tmp/old"
  ) 9>"$parent/.npm-install-$name.lock"
done
