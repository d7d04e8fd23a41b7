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
# back, loss, mean round trip, the server process's CPU time (user +
# system, from /proc) per relayed packet (sent + received), and where lost
# packets were dropped: by the kernel at the server's own sockets (full
# receive buffers: "at server"), at turnutils_peer's socket ("at peer"); the
# rest is lost at the load generator's sockets.
#
# The servers share the machine's cores with the load generator; compare the
# two servers' figures of one run (ratios), not absolute numbers across
# machines. Environment:
#   TURNBENCH_LOADS   loads, "CLIENTSxRATE ..." (default "50x200 100x500 200x1000")
#   TURNBENCH_SECONDS seconds of sending per run (default 2)
#   TURNBENCH_SIZE    packet size in bytes (default 1200)
#   TURNBENCH_ROUNDS  rounds; the order of the servers rotates (default 1)
#   TURNBENCH_BASE    a git revision: its duet runs too, as "duet@REV", so that
#                     a change is measured before and after in the same run
#
# Each run's clients bind a loopback address of their own (127.0.0.2, .3,
# ...): a client port the kernel hands out again must not meet an
# allocation a previous run left on a server (437 Allocation Mismatch).
set -euo pipefail
cd "$(dirname "$0")/.."

LOADS=${TURNBENCH_LOADS:-"50x200 100x500 200x1000"}
SECONDS_PER_RUN=${TURNBENCH_SECONDS:-2}
SIZE=${TURNBENCH_SIZE:-1200}
ROUNDS=${TURNBENCH_ROUNDS:-1}
BASE=${TURNBENCH_BASE:-}

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

# Every uclient client is the same user (-u bench), makes two allocations
# (it deletes one), and a run's allocations outlive it (their 10-minute
# lifetime): duet's allocation quotas, per user and in all, are raised past
# two for every client of every run and round, plus the probes (coturn has
# none by default). The REST secret, as both servers take it: coturn's static-auth-secret is
# the string, duet's turn-secret file holds its bytes in hex.
secret=duet-turnbench-secret-0123456789
secret_hex=$(printf '%s' "$secret" | od -An -tx1 | tr -d ' \n')
quota=100
for load in $LOADS; do quota=$((quota + 2 * ${load%x*} * ROUNDS)); done

go build -o "$work/duet" ./cmd/duet
if [ -n "$BASE" ]; then
  mkdir "$work/base"
  git archive "$BASE" | tar -x -C "$work/base"
  (cd "$work/base" && go build -o "$work/duet-base" ./cmd/duet)
fi

names=() ports=() spids=()
serve() { # name port pid
  names+=("$1") ports+=("$2") spids+=("$3") pids+=("$3")
}

port=$(freeport)
turnserver -n --listening-ip=127.0.0.1 --listening-port="$port" --relay-ip=127.0.0.1 \
  --use-auth-secret --static-auth-secret="$secret" --realm=duet --allow-loopback-peers \
  --no-cli --no-tls --no-dtls --no-tcp --no-tcp-relay --min-port=40000 --max-port=44999 \
  --log-file=stdout --simple-log >"$work/coturn.log" 2>&1 &
serve coturn "$port" $!

duet() { # name binary
  local port data="$work/data-${#names[@]}"
  port=$(freeport)
  mkdir -p "$data"
  (umask 077 && printf '%s\n' "$secret_hex" >"$data/turn-secret")
  "$2" relay --addr 127.0.0.1:0 --data-dir "$data" --turn-listen "127.0.0.1:$port" \
    --turn-allow-peers 127.0.0.0/8 --no-turn-tcp --turn-user-allocations "$quota" --turn-allocations "$quota" --log-level warn >"$data.log" 2>&1 &
  serve "$1" "$port" $!
}
duet duet "$work/duet"
if [ -n "$BASE" ]; then
  duet "duet@$BASE" "$work/duet-base"
fi

peer_port=$(freeport)
turnutils_peer -L 127.0.0.1 -p "$peer_port" >"$work/peer.log" 2>&1 &
peer_pid=$!
pids+=($!)

# Wait until every server answers an allocation.
probe() { turnutils_uclient -m 1 -n 1 -l 100 -e 127.0.0.1 -r "$peer_port" -W "$secret" -u probe -p "$1" -X -c 127.0.0.1 >/dev/null 2>&1; }
for i in $(seq 100); do
  up=1
  for p in "${ports[@]}"; do probe "$p" || { up=0; break; }; done
  [ "$up" = 1 ] && break
  if [ "$i" = 100 ]; then echo "turnbench: the servers did not start:" >&2; cat "$work"/*.log >&2; exit 1; fi
  sleep 0.1
done

# "inode drops" for every UDP socket process $1 holds (/proc/net/udp's
# per-socket count of datagrams the kernel dropped for a full buffer).
sockdrops() {
  local own
  # (a descriptor closing while find walks the directory is not an error)
  own=$(find "/proc/$1/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null | tr -dc '0-9\n' || true)
  awk -v own="$own" 'BEGIN { n = split(own, a); for (i = 1; i <= n; i++) o[a[i]] = 1 }
    FNR > 1 && ($10 in o) { print $10, $NF }' /proc/net/udp /proc/net/udp6
}
# Datagrams dropped between two sockdrops snapshots (files $1, $2); a
# socket opened in between counts from zero.
dropped() {
  awk 'FILENAME == ARGV[1] { b[$1] = $2; next } { d += $2 - ($1 in b ? b[$1] : 0) } END { print d + 0 }' "$1" "$2"
}

ticks=$(getconf CLK_TCK)
cpu() { awk -v t="$ticks" '{ printf "%d", ($14 + $15) * 1000 / t }' "/proc/$1/stat"; } # ms

runs=0
run() { # name port pid clients rate
  local name=$1 port=$2 pid=$3 clients=$4 rate=$5
  local n=$((rate * SECONDS_PER_RUN)) interval=$((1000 / rate))
  local c0 c1 out
  runs=$((runs + 1))
  sockdrops "$pid" >"$work/sd0"
  sockdrops "$peer_pid" >"$work/pd0"
  c0=$(cpu "$pid")
  out=$(turnutils_uclient -m "$clients" -n "$n" -l "$SIZE" -z "$interval" -e 127.0.0.1 -r "$peer_port" \
    -W "$secret" -u bench -p "$port" -X -c -L "127.0.$((runs / 250)).$((runs % 250 + 2))" 127.0.0.1 2>&1 || true)
  c1=$(cpu "$pid")
  sockdrops "$pid" >"$work/sd1"
  sockdrops "$peer_pid" >"$work/pd1"
  local sdrop pdrop
  sdrop=$(dropped "$work/sd0" "$work/sd1")
  pdrop=$(dropped "$work/pd0" "$work/pd1")
  local sent recv lost rtt
  sent=$(sed -n 's/.*start_mclient: tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\).*/\1/p' <<<"$out" | tail -1)
  recv=$(sed -n 's/.*start_mclient: tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\).*/\2/p' <<<"$out" | tail -1)
  lost=$(sed -n 's/.*Total lost packets [0-9]* (\([0-9.]*\)%).*/\1/p' <<<"$out" | tail -1)
  rtt=$(sed -n 's/.*Average round trip delay \([0-9.]*\) ms.*/\1/p' <<<"$out" | tail -1)
  if [ -z "$sent" ] || [ -z "$recv" ]; then
    echo "turnbench: $name ${clients}x${rate}: turnutils_uclient gave no totals:" >&2
    tail -20 <<<"$out" >&2
    printf '%-14s %5d x %5d/s  failed\n' "$name" "$clients" "$rate"
    return
  fi
  local cpums=$((c1 - c0))
  awk -v name="$name" -v c="$clients" -v r="$rate" -v s="$sent" -v rc="$recv" -v lost="$lost" -v rtt="$rtt" -v cpu="$cpums" -v sd="$sdrop" -v pd="$pdrop" 'BEGIN {
    per = (s + rc) > 0 ? cpu * 1000 / (s + rc) : 0
    printf "%-14s %5d x %5d/s  sent %8d  back %8d  lost %6.2f%% (at server %d, at peer %d)  rtt %8.2f ms  server CPU %6.2f s  %5.2f us/packet\n", name, c, r, s, rc, (s > 0 ? (s - rc) * 100 / s : 0), sd, pd, rtt, cpu / 1000, per
  }'
}

echo "turnbench: ${SIZE}-byte packets, ${SECONDS_PER_RUN} s per run, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
  for load in $LOADS; do
    clients=${load%x*}
    rate=${load#*x}
    # The servers take turns going first: round r starts with server r-1.
    for k in $(seq 0 $((${#names[@]} - 1))); do
      i=$(((round - 1 + k) % ${#names[@]}))
      run "${names[$i]}" "${ports[$i]}" "${spids[$i]}" "$clients" "$rate"
    done
  done
done
echo "turnbench: load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
