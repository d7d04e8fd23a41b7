#!/usr/bin/env bash
# make fwdbench: the relay's forwarding with duet loadtest, a fresh `duet
# relay --no-turn` on loopback per run, the relay's and the generator's
# processes on this machine's cores. With FWDBENCH_BASE=REV that revision's
# relay runs too, alternating with this one in one run (the generator is
# always this revision's duet loadtest), so that a change is measured before
# and after under the same conditions. Printed per run: the relay, the load
# average, and duet loadtest's envelopes, latency (from each envelope's due
# time; how late the generator wrote them; write to arrival), relay CPU per
# envelope, the generator's own garbage collections while sending (none
# unless its memory grew past --gc-headroom) and its own CPU per envelope
# (it shares the cores with the relay), and failures. Compare the figures of one run, not absolute
# numbers across machines. Environment:
#   FWDBENCH_SESSIONS  sessions (default 5000)
#   FWDBENCH_RATE      envelopes per second (default 10000)
#   FWDBENCH_DURATION  sending time (default 10s)
#   FWDBENCH_ROUNDS    rounds (default 2)
#   FWDBENCH_BASE      a git revision whose relay alternates with this one's
#   FWDBENCH_FLOOR     forwarders of cmd/fwdfloor run in each round too, at the
#                      same sessions, rate and duration: the CPU a forwarder
#                      that only moves frames spends here, under the relay's
#                      figure (default "poller c goroutines"; c is
#                      scripts/fwdfloor.c, built when cc is here; "" skips);
#                      their generator spins to spend the CPU per frame that
#                      the round's duet loadtest spent, so that the cores are
#                      as busy
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS=${FWDBENCH_SESSIONS:-5000}
RATE=${FWDBENCH_RATE:-10000}
DURATION=${FWDBENCH_DURATION:-10s}
ROUNDS=${FWDBENCH_ROUNDS:-2}
BASE=${FWDBENCH_BASE:-}
FLOOR=${FWDBENCH_FLOOR-poller c goroutines}

work=$(mktemp -d)
relay_pid=
cleanup() {
  if [ -n "$relay_pid" ]; then kill "$relay_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/duet" ./cmd/duet
floors=()
if [ -n "$FLOOR" ]; then
  go build -o "$work/fwdfloor" ./cmd/fwdfloor
  for f in $FLOOR; do
    case $f in
    c)
      if command -v cc >/dev/null; then
        cc -O2 -o "$work/fwdfloor-c" scripts/fwdfloor.c
        floors+=("$work/fwdfloor-c")
      else
        echo "fwdbench: no C compiler (apt-get install -y gcc): the C floor does not run" >&2
      fi
      ;;
    *) floors+=("$f") ;;
    esac
  done
fi
relays=("$work/duet")
names=(duet)
if [ -n "$BASE" ]; then
  mkdir "$work/base"
  git archive "$BASE" | tar -x -C "$work/base"
  (cd "$work/base" && go build -o "$work/duet-base" ./cmd/duet)
  relays+=("$work/duet-base")
  names+=("duet@$BASE")
fi

# A free TCP port on 127.0.0.1 (the kernel picks; python3 is in Debian's base).
freeport() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

for round in $(seq "$ROUNDS"); do
  for i in "${!relays[@]}"; do
    # The base first in odd rounds: neither relay always runs first.
    if [ $((round % 2)) = 1 ] && [ ${#relays[@]} = 2 ]; then i=$((1 - i)); fi
    port=$(freeport)
    data="$work/data-$round-$i"
    mkdir "$data"
    "${relays[$i]}" relay --addr "127.0.0.1:$port" --no-turn --data-dir "$data" --log-level warn >"$data.log" 2>&1 &
    relay_pid=$!
    for t in $(seq 100); do
      curl -sf "http://127.0.0.1:$port/metrics" >/dev/null && break
      if [ "$t" = 100 ]; then echo "fwdbench: the relay did not start:" >&2; cat "$data.log" >&2; exit 1; fi
      sleep 0.1
    done
    echo "== round $round: ${names[$i]}, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    "$work/duet" loadtest --relay "http://127.0.0.1:$port" --sessions "$SESSIONS" --rate "$RATE" --duration "$DURATION" 2>/dev/null |
      grep -E '^(envelopes|latency|  written|  write->read|relay CPU|generator|failures|  )' | tee "$work/out" || true
    if [ "$i" = 0 ]; then # the floors' generators spend what this one did
      gen_cpu=$(sed -n 's/^generator CPU .*: \([0-9.]*\) µs per envelope.*/\1/p' "$work/out")
    fi
    kill "$relay_pid"
    wait "$relay_pid" 2>/dev/null || true
    relay_pid=
    rm -rf "$data"
  done
  for f in "${floors[@]}"; do
    echo "== round $round: floor ${f##*/}, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    "$work/fwdfloor" -forwarder "$f" -sessions "$SESSIONS" -rate "$RATE" -duration "$DURATION" -generator-cpu "${gen_cpu:-0}us"
  done
done
