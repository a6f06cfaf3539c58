#!/usr/bin/env bash
# SIP over TLS (issue 20): the edge's memory per idle TLS connection next to plain TCP, and TLS handshakes
# per second of the edge's CPU. Loopback only; stops by itself (three fresh edges, ~30 s once built).
#
#   flock /tmp/build.lock benches/tls/run.sh
#   CONNS=5000 CLIENTS=8 HANDSHAKE_S=20 flock /tmp/build.lock benches/tls/run.sh
#   EDGE_BIN=/path/to/oneinbox-edge flock /tmp/build.lock benches/tls/run.sh   # another build
set -euo pipefail
cd "$(dirname "$0")/../.."
# Each idle connection holds a descriptor on both sides.
ulimit -n "$(ulimit -Hn)"
exec cargo bench --bench tls_idle
