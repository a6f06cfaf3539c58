#!/usr/bin/env bash
# SIPp against the built edge on loopback: every scenario must complete every call.
#   tests/sipp/run.sh [path/to/oneinbox-edge]
# Bounded: each run has a call count (-m) and a global timeout; the edge is stopped on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-$root/target/debug/oneinbox-edge}
[ -x "$bin" ] || { echo "edge binary not found at $bin (cargo build first)"; exit 1; }
command -v sipp >/dev/null || { echo "sipp not installed (apt-get install -y sip-tester)"; exit 1; }

work=$(mktemp -d /tmp/edge-sipp.XXXXXX)
port=$((20000 + RANDOM % 20000))
api=$((port + 1))
cat > "$work/edge.toml" <<TOML
[sip]
udp = "127.0.0.1:$port"
tcp = "127.0.0.1:$port"
[api]
listen = "127.0.0.1:$api"
[storage]
data_dir = "$work/data"
[log]
format = "human"
level = "warn"
[[carriers]]
name = "sipp"
allow = ["127.0.0.0/8"]
TOML

"$bin" serve --config "$work/edge.toml" > "$work/edge.log" 2>&1 &
edge_pid=$!
cleanup() { kill "$edge_pid" 2>/dev/null || true; wait "$edge_pid" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then break; fi
  sleep 0.1
done

passed=0; failed=0
run() { # name, scenario, extra sipp args...
  local name=$1 sf=$2; shift 2
  local out="$work/$name"
  mkdir -p "$out"
  if (cd "$out" && timeout 180 sipp -sf "$here/$sf" 127.0.0.1:$port -i 127.0.0.1 \
        -timeout 150s -timeout_error -trace_stat -trace_err -nostdin "$@" > sipp.out 2>&1); then
    echo "ok    $name: $(grep -h 'Successful call' "$out"/*_screen.log 2>/dev/null | tail -1 | tr -s ' ' || true)"
    passed=$((passed + 1))
  else
    echo "FAIL  $name (sipp exit $?)"; tail -n 20 "$out"/sipp.out "$out"/*errors.log 2>/dev/null || true
    failed=$((failed + 1))
  fi
}

# Foundation: retransmissions through the transaction layer with 10% loss both ways.
run options_udp_lost10      options_uac.xml        -m 300 -r 100 -lost 10 -trace_screen
run info_481_udp_lost10     info_uac.xml           -m 300 -r 100 -lost 10 -trace_screen
run invite_404_udp_lost10   invite_reject_uac.xml  -m 200 -r 50  -lost 10 -trace_screen
# The same over TCP: no retransmissions, answers on the same connection.
run options_tcp             options_uac.xml        -m 300 -r 100 -t t1 -trace_screen
run invite_404_tcp          invite_reject_uac.xml  -m 100 -r 50  -t t1 -trace_screen

if ! kill -0 "$edge_pid" 2>/dev/null; then echo "FAIL  the edge exited during the runs"; cat "$work/edge.log"; failed=$((failed + 1)); fi
echo "sipp: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
