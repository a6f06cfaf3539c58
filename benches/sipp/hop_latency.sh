#!/usr/bin/env bash
# Server-internal forwarding latency (microseconds) from a loopback capture, for ANY proxy or B2BUA on
# TARGET (from ../shared/bench/kamailio-baseline/measure_hop_latency.sh). The server and the agent
# UAS(es) must already run (run.sh starts them).
#
#   hop_latency.sh RATE SECONDS OUTDIR [LABEL]
#   env: TARGET=127.0.0.1:5060 UAC_PORT=5061 DIDS=... (+ load_step.sh env)
#   KEEP_PCAP=1 keeps OUTDIR/LABEL.pcap (e.g. to look for output gaps: stalls of the server)
# Capturing costs CPU: use a moderate rate (e.g. 1000-2000 calls/s). Bounded: RATE x SECONDS calls.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
RATE="$1"; SECS="$2"; OUTDIR="$3"; LABEL="${4:-hoplat_r$1}"
TARGET="${TARGET:-127.0.0.1:5060}"; SPORT="${TARGET##*:}"; UAC_PORT="${UAC_PORT:-5061}"
mkdir -p "$OUTDIR"; OUTDIR="$(cd "$OUTDIR" && pwd)"
PCAP="$OUTDIR/$LABEL.pcap"
dumpcap -q -i lo -f "udp port $SPORT" -B 64 -w "$PCAP" > "$OUTDIR/$LABEL.dumpcap.log" 2>&1 &
DC=$!
sleep 1.5
"$HERE/load_step.sh" "$RATE" $(( RATE * SECS )) "$OUTDIR" "$LABEL" > /dev/null
sleep 1
kill "$DC"; wait "$DC" 2>/dev/null
python3 "$HERE/lib/hop_latency.py" "$PCAP" "$SPORT" "$UAC_PORT" | tee "$OUTDIR/$LABEL.txt"
[[ "${KEEP_PCAP:-0}" == 1 ]] || rm -f "$PCAP"
