#!/usr/bin/env bash
# One SIPp load step against ANY SIP server on loopback (from ../shared/bench/kamailio-baseline/
# run_sipp_load.sh). The server and its agent UASes must already run (run.sh starts them).
#
#   load_step.sh RATE COUNT OUTDIR LABEL
#
# env:
#   TARGET=127.0.0.1:5060     server under test (host:port)
#   DIDS=...                  SIPp injection file (gen_data.sh writes DIR/dids.csv)
#   LOCAL_IP=127.0.0.1 UAC_PORT=5061 UAC_MEDIA_PORT=9600
#   HOLD_MS=0                 time between ACK and BYE (sipp -d)
#   SERVER_PID=...            PID of the server (its descendants and threads are included)
#                             -> CPU%/RSS/PSS sampled at 1 Hz by lib/procmon.py
#   UAS_PIDS=pid,pid          SIPp UAS PIDs (CPU sampled)
#   EXTRA="k=v ..."           extra fields copied into the JSON summary
#   RECV_TIMEOUT_MS=8000      a call that waits longer for a response fails
#   SIPP_CPUS=1               optional: pin the UAC with taskset -c
#   SIPP_TRANSPORT=u1         SIPp -t (t1: one TCP connection)
#   RSA=host:port             optional: SIPp -rsa, where it sends (a TLS tunnel) when TARGET is the server's
#                             own address (the Request-URI's)
#   UAC_SCENARIO=uac_inbound.xml   (uac_inbound_tls.xml: the same saying TLS in Via and Contact)
#   TUNNEL_PID=...            optional: a TLS tunnel's PID, its CPU sampled as group "tunnel"
#
# Bounded: SIPp stops after COUNT calls (-m) or after COUNT/RATE + hold + 40 s (-timeout), whichever is
# first. Writes OUTDIR/LABEL.{stat.csv,rtt.csv,mon.csv,sipp.out} and appends one JSON line to
# OUTDIR/summary.jsonl (also printed).
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
RATE="$1"; COUNT="$2"; OUTDIR="$3"; LABEL="$4"
TARGET="${TARGET:-127.0.0.1:5060}"
LOCAL_IP="${LOCAL_IP:-127.0.0.1}"
UAC_PORT="${UAC_PORT:-5061}"
UAC_MEDIA_PORT="${UAC_MEDIA_PORT:-9600}"
HOLD_MS="${HOLD_MS:-0}"
DIDS="${DIDS:?DIDS=path/to/dids.csv (gen_data.sh)}"
RECV_TIMEOUT_MS="${RECV_TIMEOUT_MS:-8000}"
SIPP_TRANSPORT="${SIPP_TRANSPORT:-u1}"
UAC_SCENARIO="${UAC_SCENARIO:-uac_inbound.xml}"
RSA_ARGS=(); [[ -n "${RSA:-}" ]] && RSA_ARGS=(-rsa "$RSA")
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
cd "$OUTDIR"   # sipp writes its rtt trace into the cwd

dur_s=$(( (COUNT + RATE - 1) / RATE ))
limit=$(( RATE * (HOLD_MS / 1000 + 10) ))
(( limit < 20000 )) && limit=20000
gtimeout=$(( dur_s + HOLD_MS / 1000 + 40 ))

PIN=(); [[ -n "${SIPP_CPUS:-}" ]] && PIN=(taskset -c "$SIPP_CPUS")
"${PIN[@]}" sipp -sf "$HERE/scenarios/$UAC_SCENARIO" -inf "$DIDS" "$TARGET" "${RSA_ARGS[@]}" -t "$SIPP_TRANSPORT" \
  -i "$LOCAL_IP" -p "$UAC_PORT" -mp "$UAC_MEDIA_PORT" \
  -r "$RATE" -m "$COUNT" -d "$HOLD_MS" -l "$limit" \
  -recv_timeout "$RECV_TIMEOUT_MS" -timeout "${gtimeout}s" \
  -buff_size 4194304 -nostdin \
  -trace_stat -stf "$OUTDIR/$LABEL.stat.csv" -fd 1 \
  -trace_rtt -rtt_freq 100 \
  > "$OUTDIR/$LABEL.sipp.out" 2>&1 &
SIPP_PID=$!
MON_PID=""
if [[ -n "${SERVER_PID:-}" ]]; then
  groups=("server=$SERVER_PID" "uac=$SIPP_PID")
  [[ -n "${UAS_PIDS:-}" ]] && groups+=("uas=$UAS_PIDS")
  [[ -n "${TUNNEL_PID:-}" ]] && groups+=("tunnel=$TUNNEL_PID")
  python3 "$HERE/lib/procmon.py" "$OUTDIR/$LABEL.mon.csv" "${groups[@]}" &
  MON_PID=$!
fi
wait "$SIPP_PID"
rc=$?
# sipp names the rtt file after the scenario + its pid, in the cwd
rttf="$(ls -t "${UAC_SCENARIO%.xml}_${SIPP_PID}_rtt.csv" 2>/dev/null | head -1)"
[[ -n "$rttf" ]] && mv "$rttf" "$OUTDIR/$LABEL.rtt.csv"
[[ -n "$MON_PID" ]] && { kill "$MON_PID"; wait "$MON_PID" 2>/dev/null; }

[[ -s "$OUTDIR/$LABEL.mon.csv" ]] || MON_PID=""
python3 "$HERE/lib/summarize.py" --stat "$OUTDIR/$LABEL.stat.csv" \
  --rtt "$OUTDIR/$LABEL.rtt.csv" \
  ${MON_PID:+--mon "$OUTDIR/$LABEL.mon.csv"} \
  --label "$LABEL" --rate "$RATE" \
  --extra sipp_rc=$rc hold_ms=$HOLD_MS target=$TARGET ${EXTRA:-} \
  | tee -a "$OUTDIR/summary.jsonl"
