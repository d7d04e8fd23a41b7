#!/usr/bin/env bash
# make turnbench: duet's embedded TURN server against coturn, both driven by
# coturn's own load tools (Debian's coturn package: turnserver,
# turnutils_uclient, turnutils_peer) on loopback, in one run, alternating.
#
# For each load CLIENTSxRATE (clients, packets per second per client, of
# TURNBENCH_SIZE bytes), turnutils_uclient allocates CLIENTS relays on the
# server and sends each client's packets through its relay to
# turnutils_peer, which echoes them back through the relay: every packet
# crosses the server twice. Printed per server: packets sent and received
# back, loss, mean round trip, and the server process's CPU time (user +
# system, from /proc) per relayed packet (sent + received).
#
# The servers share the machine's cores with the load generator; compare the
# two servers' figures of one run (ratios), not absolute numbers across
# machines. Environment:
#   TURNBENCH_LOADS   loads, "CLIENTSxRATE ..." (default "50x200 100x500 200x1000")
#   TURNBENCH_SECONDS seconds of sending per run (default 2)
#   TURNBENCH_SIZE    packet size in bytes (default 1200)
#   TURNBENCH_ROUNDS  rounds; the order of the servers alternates (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."

LOADS=${TURNBENCH_LOADS:-"50x200 100x500 200x1000"}
SECONDS_PER_RUN=${TURNBENCH_SECONDS:-2}
SIZE=${TURNBENCH_SIZE:-1200}
ROUNDS=${TURNBENCH_ROUNDS:-1}

for tool in turnserver turnutils_uclient turnutils_peer; do
  command -v "$tool" >/dev/null || { echo "turnbench: $tool is missing: apt-get install -y coturn" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A free UDP port on 127.0.0.1 (the kernel picks; python3 is in Debian's base).
freeport() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Every uclient client is the same user (-u bench): duet's per-user
# allocation quota is raised past the largest load (coturn has none by
# default). The REST secret, as both servers take it: coturn's static-auth-secret is
# the string, duet's turn-secret file holds its bytes in hex.
secret=duet-turnbench-secret-0123456789
mkdir -p "$work/duet-data"
printf '%s\n' "$(printf '%s' "$secret" | od -An -tx1 | tr -d ' \n')" >"$work/duet-data/turn-secret"
chmod 600 "$work/duet-data/turn-secret"

go build -o "$work/duet" ./cmd/duet

coturn_port=$(freeport)
turnserver -n --listening-ip=127.0.0.1 --listening-port="$coturn_port" --relay-ip=127.0.0.1 \
  --use-auth-secret --static-auth-secret="$secret" --realm=duet --allow-loopback-peers \
  --no-cli --no-tls --no-dtls --no-tcp --no-tcp-relay --min-port=40000 --max-port=44999 \
  --log-file=stdout --simple-log >"$work/coturn.log" 2>&1 &
pids+=($!)
coturn_pid=$!

duet_port=$(freeport)
"$work/duet" relay --addr 127.0.0.1:0 --data-dir "$work/duet-data" --turn-listen "127.0.0.1:$duet_port" \
  --turn-allow-peers 127.0.0.0/8 --no-turn-tcp --turn-user-allocations 1000 --log-level warn >"$work/duet.log" 2>&1 &
pids+=($!)
duet_pid=$!

peer_port=$(freeport)
turnutils_peer -L 127.0.0.1 -p "$peer_port" >"$work/peer.log" 2>&1 &
pids+=($!)

# Wait until both servers answer an allocation.
probe() { turnutils_uclient -m 1 -n 1 -l 100 -e 127.0.0.1 -r "$peer_port" -W "$secret" -u probe -p "$1" -X -c 127.0.0.1 >/dev/null 2>&1; }
for i in $(seq 100); do
  if probe "$coturn_port" && probe "$duet_port"; then break; fi
  if [ "$i" = 100 ]; then echo "turnbench: the servers did not start:" >&2; cat "$work/coturn.log" "$work/duet.log" >&2; exit 1; fi
  sleep 0.1
done

ticks=$(getconf CLK_TCK)
cpu() { awk -v t="$ticks" '{ printf "%d", ($14 + $15) * 1000 / t }' "/proc/$1/stat"; } # ms

run() { # name port pid clients rate
  local name=$1 port=$2 pid=$3 clients=$4 rate=$5
  local n=$((rate * SECONDS_PER_RUN)) interval=$((1000 / rate))
  local c0 c1 out
  c0=$(cpu "$pid")
  out=$(turnutils_uclient -m "$clients" -n "$n" -l "$SIZE" -z "$interval" -e 127.0.0.1 -r "$peer_port" \
    -W "$secret" -u bench -p "$port" -X -c 127.0.0.1 2>&1 || true)
  c1=$(cpu "$pid")
  local sent recv lost rtt
  sent=$(sed -n 's/.*start_mclient: tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\).*/\1/p' <<<"$out" | tail -1)
  recv=$(sed -n 's/.*start_mclient: tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\).*/\2/p' <<<"$out" | tail -1)
  lost=$(sed -n 's/.*Total lost packets [0-9]* (\([0-9.]*\)%).*/\1/p' <<<"$out" | tail -1)
  rtt=$(sed -n 's/.*Average round trip delay \([0-9.]*\) ms.*/\1/p' <<<"$out" | tail -1)
  if [ -z "$sent" ] || [ -z "$recv" ]; then
    echo "turnbench: $name ${clients}x${rate}: turnutils_uclient gave no totals:" >&2
    tail -20 <<<"$out" >&2
    printf '%-7s %5d x %5d/s  failed\n' "$name" "$clients" "$rate"
    return
  fi
  local cpums=$((c1 - c0))
  awk -v name="$name" -v c="$clients" -v r="$rate" -v s="$sent" -v rc="$recv" -v lost="$lost" -v rtt="$rtt" -v cpu="$cpums" 'BEGIN {
    per = (s + rc) > 0 ? cpu * 1000 / (s + rc) : 0
    printf "%-7s %5d x %5d/s  sent %8d  back %8d  lost %6.2f%%  rtt %8.2f ms  server CPU %6.2f s  %5.2f us/packet\n", name, c, r, s, rc, (s > 0 ? (s - rc) * 100 / s : 0), rtt, cpu / 1000, per
  }'
}

echo "turnbench: ${SIZE}-byte packets, ${SECONDS_PER_RUN} s per run, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
  for load in $LOADS; do
    clients=${load%x*}
    rate=${load#*x}
    if [ $((round % 2)) = 1 ]; then
      run coturn "$coturn_port" "$coturn_pid" "$clients" "$rate"
      run duet "$duet_port" "$duet_pid" "$clients" "$rate"
    else
      run duet "$duet_port" "$duet_pid" "$clients" "$rate"
      run coturn "$coturn_port" "$coturn_pid" "$clients" "$rate"
    fi
  done
done
echo "turnbench: load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
