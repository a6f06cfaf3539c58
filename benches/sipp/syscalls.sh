#!/usr/bin/env bash
# Syscalls and CPU per call (issue 18, part 6): a fixed number of calls on loopback, counted twice.
#
#   benches/sipp/syscalls.sh                        # the edge, happy path, 2,000 calls at 200/s
#   SERVERS="edge kamailio" benches/sipp/syscalls.sh  # Kamailio beside it (its children are traced too)
#   EDGE_BIN=/path/to/other/oneinbox-edge benches/sipp/syscalls.sh   # another build (before/after)
#   STRACE=0 SERVERS="edge-base edge edge-base edge" EDGE_BASE_BIN=... benches/sipp/syscalls.sh   # CPU only,
#     alternating, to see the run-to-run noise of the CPU figures
#   (run it under the build lock: flock /tmp/build.lock benches/sipp/syscalls.sh)
#
# run.sh's PROFILE=syscalls mode: a fresh server and agent UASes per run; one untraced run for user and
# system CPU per call (/proc/PID/stat before and after), one under `strace -c -f` for syscalls per call
# by name. Bounded: SIPp stops after PROFILE_CALLS calls (-m) or a time-out; everything it starts is
# stopped by PID. Output: $OUT/syscalls.<server>_<path>.txt (and .strace.txt, strace's own table).
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
export PROFILE=syscalls
export SERVERS="${SERVERS:-edge}" PATHS="${PATHS:-happy}"
export PROFILE_RATE="${PROFILE_RATE:-200}" PROFILE_CALLS="${PROFILE_CALLS:-2000}"
export HOLD=0 HOPLAT=0 QUIET_WAIT_S="${QUIET_WAIT_S:-20}"
export OUT="${OUT:-/tmp/edge-bench/syscalls_$(date +%Y%m%d_%H%M%S)}"
exec "$HERE/run.sh"
