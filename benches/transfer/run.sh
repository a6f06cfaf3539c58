#!/usr/bin/env bash
# Transfer set-up time (issue 19): the release edge on loopback with SQLite and media anchored; this bench
# plays the carrier, the agent and the trunk over UDP and the agent REFERs every call to a number at
# RATE a second (benches/transfer/transfer.rs says what it measures). Loopback only; bounded: TRANSFERS
# calls at RATE plus about 6 s (default 1,500 at 100/s: about 20 s once built).
#
# Run it under the shared lock (it builds, then loads both cores):
#   flock /tmp/build.lock benches/transfer/run.sh
#   TRANSFERS=500 flock /tmp/build.lock benches/transfer/run.sh                        # a quick look
#   EDGE_BIN=/path/to/oneinbox-edge flock /tmp/build.lock benches/transfer/run.sh      # another build
#
# Knobs (environment): EDGE_BIN (default: the oneinbox-edge `cargo bench` builds with the release profile's
# settings, in $CARGO_TARGET_DIR/release), TRANSFERS=1500,
# RATE=100 (calls and REFERs a second), REFER_AFTER_MS=300 (REFER after its call's INVITE),
# ANSWER_MS=100 (trunk: 180 at once, 200 after this), HOLD_MS=200 (media on the new leg, then the caller
# hangs up), RTP_MS=20 (carrier packet interval), PROBE_US=200 (extra carrier packets after the trunk's 200
# until the trunk has media; 0: none), TRUNK_DIGEST=1 (the trunk challenges every INVITE, 407 digest, and the
# number has credentials), TRUNK_CPS=1000 (outbound.telnyx_cps: the trunk's pacing, see the README),
# EDGE_LOG_LEVEL=info, EDGE_RTP_PORTS=42000-45999, SIP_PORT=19460, API_PORT=19480, BENCH_PORT=19461 (the
# bench's 8 sockets from there), KEEP=1 (keep the edge's config and log).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_INCREMENTAL=0
exec cargo bench --bench transfer_setup
