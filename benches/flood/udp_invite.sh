#!/usr/bin/env bash
# Flood: stranger INVITEs over UDP while a carrier places real calls with SIPp (issue 16, "An INVITE flood
# from outside stops carrier calls"). Loopback only; each variant stops by itself (CALLS / CALL_RATE
# seconds of calls plus start and stop, about 30 s); the default five variants take about 3 minutes.
#
# Run it under the shared lock (it builds, then loads both cores):
#   flock /tmp/build.lock benches/flood/udp_invite.sh
#   EDGE_BIN=/tmp/edge-base/oneinbox-edge flock /tmp/build.lock benches/flood/udp_invite.sh   # another build
#   (a build older than issue 17, which refuses its [security] and metrics_token keys: add EDGE_LEGACY_CONFIG=1)
#
# Knobs (environment): EDGE_BIN (default: target/release/oneinbox-edge, built here first),
# VARIANTS="none reject:1 reject:1000 drop:1 drop:1000" (none: no flood; POLICY:N: routing.unknown_source =
# POLICY, the stranger sends from N addresses, 127.0.0.2 or 127.0.1.1, 127.0.1.2, ...), CALLS=3000,
# CALL_RATE=150, FLOOD_MAX=20000000 (datagrams per variant at most), FLOOD_RATE=0 (datagrams a second
# at most; 0: as fast as one thread can send), SIP_PORT=19260, API_PORT=19280,
# CARRIER_PORT=19261, AGENT_PORT=19270, MEDIA_PORT=19600, KEEP=1 (keep the SIPp and edge files).
# Needs SIPp: apt-get install -y sip-tester.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v sipp >/dev/null || { echo "sipp not installed (apt-get install -y sip-tester)" >&2; exit 1; }
if [ -z "${EDGE_BIN:-}" ]; then
    cargo build --release --bin oneinbox-edge
fi
exec cargo bench --bench flood_udp_invite
