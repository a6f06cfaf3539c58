#!/usr/bin/env bash
# Flood: idle TCP connections from strangers while a carrier keeps connecting (issue 16, "TCP lock-out").
# Loopback only; stops by itself after DURATION_S (default 60 s) plus start and stop (a few seconds).
#
# Run it under the shared lock (it builds, then loads both cores):
#   flock /tmp/build.lock benches/flood/tcp_idle.sh
#   EDGE_BIN=/tmp/edge-main/oneinbox-edge flock /tmp/build.lock benches/flood/tcp_idle.sh   # another build
#   (a build older than issue 17, which refuses its metrics_token key: add EDGE_LEGACY_CONFIG=1)
#
# Knobs (environment): EDGE_BIN (default: target/release/oneinbox-edge, built here first), STRANGERS=10000,
# STRANGER_ADDRS=500 (127.0.1.1, ..., 127.0.2.1, ...), RECONNECT_MS=1000 (a stranger whose connection the
# edge closed opens another this much later; 0: never), CARRIER_RATE=10 (new carrier connections a second,
# each one OPTIONS or INVITE), DURATION_S=60, SIP_PORT=19060, API_PORT=19080.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Each side holds a descriptor per connection: raise the soft limit as far as the hard one allows.
hard=$(ulimit -Hn)
ulimit -n "$hard"
want=$(( ${STRANGERS:-10000} + 1000 ))
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
    echo "open-files hard limit $hard is below $want: fewer connections than STRANGERS will be opened" >&2
fi

if [ -z "${EDGE_BIN:-}" ]; then
    cargo build --release --bin oneinbox-edge
fi
exec cargo bench --bench flood_tcp_idle
