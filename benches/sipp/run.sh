#!/usr/bin/env bash
# SIPp load harness: the edge and Kamailio (the anchor) side by side, alternating, on loopback.
# Adapted from ../shared/bench/kamailio-baseline/run_kamailio_baseline.sh (see benches/README.md).
#
#   benches/sipp/run.sh                       # everything: sweeps, refine, hop latency, hold (~30-40 min)
#   SERVERS=edge PATHS=happy RATES="1000 2000" HOLD=0 HOPLAT=0 benches/sipp/run.sh   # a quick look
#
# For each path (happy: primary agent answers; failover: primary answers 503, fallback answers) and each
# rate of RATES, every server of SERVERS in turn is started fresh with fresh agent UASes and takes one
# bounded step (RATE x DUR calls, SIPp -m and -timeout), then is stopped: the servers alternate at every
# rate, so a noisy minute hits both. A server that fails a rate badly (over STOP_FAIL_PCT failed, or under
# 80 % of the rate achieved) leaves that path's sweep. Then REFINE bisection steps per server and path
# between its last passing and first failing rate, again alternating. A step passes with failed calls
# under PASS_FAIL_PCT (0.1 %) and achieved calls/s >= 95 % of the rate.
# Then (HOPLAT=1) per-hop forwarding times from a capture at HOPLAT_RATE, and (HOLD=1) the hold test:
# calls held HOLD_MS at HOLD_RATE for HOLD_RUN_S seconds of call generation (media anchored on the edge).
#
# Printed per step: offered/achieved calls/s, ok/failed calls, retransmissions, setup (INVITE -> 200 at
# the UAC) p50/p99 ms, CPU (% of one core) of the server, the SIPp UAC and UASes and everything else,
# server CPU per 1,000 calls/s, server RSS. Results: $OUT/steps.tsv, summary.jsonl, report.md.
#
# env knobs:
#   SERVERS="edge kamailio" (also: edge-redis = the edge with [cluster] limits on EDGE_REDIS_URL
#   (default redis://127.0.0.1:6379), every hop asking Redis; edge-sig = the edge with media off; edge-base = EDGE_BASE_BIN, e.g.
#   the binary before a change, so before/after alternate in one run; edge-notrace = the edge with
#   [observability] trace = false, so tracing's cost shows in one run; edge-s1 / edge-s2 = the edge with
#   [runtime] engine_shards = 1 / 2 and as many worker threads, so the two alternate in one run; edge-tcp /
#   edge-tls = the edge with the carrier over TCP (SIPp -t t1 to [sip] tcp) / over TLS (SIPp -t t1 through a
#   stunnel client to [sip] tls, TUNNEL_CPUS optional pinning; Debian's SIPp has no TLS), agents over UDP
#   as always, so UDP, TCP and TLS carriers alternate in one run; stunnel's CPU is reported apart)  PATHS="happy failover"  RATES="1000 2000 3000 4000 5000 6000 7000 8000"
#   DUR=10 (seconds of call generation per step)  REFINE=2  PASS_FAIL_PCT=0.1  STOP_FAIL_PCT=5
#   EDGE_BIN=target/release/oneinbox-edge  EDGE_MEDIA=1 (0: [media] enabled=false, SDP passes through; edge-s1/edge-s2 only)
#   EDGE_RTP_PORTS=10000-65000  EDGE_QUARANTINE_MS=1000 (port reuse quarantine; see README)
#   EDGE_MAX_TX=1000000 (sip.max_transactions; Kamailio gets SHM_MB of shared memory likewise)
#   EDGE_LOG_LEVEL=info (log.level, as shipped; runs 1-5 used warn)
#   EDGE_SOCKET_CACHE (media.socket_cache, port pairs kept bound for reuse; unset: the edge's default)
#   EDGE_MEDIA_WORKERS (media.workers, media worker processes past the edge's own open files; unset: 0)
#   KAM_NCHILD=2 (Kamailio UDP workers)  SHM_MB=4096 PKG_MB=16
#   HOPLAT=1 HOPLAT_RATE=2000 HOPLAT_SECS=5
#   HOLD=1 HOLD_RATE=350 HOLD_MS=30000 HOLD_RUN_S=45 HOLD_SERVERS="$SERVERS edge-sig"
#   EDGE_HOLD_RATE (edge with media: default HOLD_RATE with HOLD_WORKERS, else the rate whose sockets
#   fit the open-files limit)  HOLD_WORKERS=2 (media.workers of the anchored edge in the hold test)
#   QUIET_BUSY=20 (a step starts once the box, with nothing of ours running, is under this % busy, and
#   LOAD_MAX=1.0 load1 ... or after QUIET_WAIT_S=90 s; load1 and foreign CPU are recorded per step)
#   OUT=/tmp/edge-bench/run_<date>   SIPP_CPUS / SERVER_CPUS (taskset -c pinning, optional)
#   SERVER_NICE (optional, e.g. -5: every server runs at that nice value, above the SIPp processes)
#   PROFILE=callgrind|perf|syscalls|blast (one mode instead of the sweeps; see each block below)
#   PROFILE_IDLE=1 (callgrind: an idle window first, reported apart)  BLAST_BIN=benches/blast/target/release/sip-blast
# Everything started here is stopped by PID (trap on exit).
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SERVERS="${SERVERS:-edge kamailio}"
PATHS="${PATHS:-happy failover}"
RATES="${RATES-1000 2000 3000 4000 5000 6000 7000 8000}"  # RATES= (empty): no sweep
DUR="${DUR:-10}"
REFINE="${REFINE:-2}"
PASS_FAIL_PCT="${PASS_FAIL_PCT:-0.1}"
STOP_FAIL_PCT="${STOP_FAIL_PCT:-5}"
EDGE_BIN="${EDGE_BIN:-$ROOT/target/release/oneinbox-edge}"
EDGE_MEDIA="${EDGE_MEDIA:-1}"
EDGE_RTP_PORTS="${EDGE_RTP_PORTS:-10000-65000}"
EDGE_QUARANTINE_MS="${EDGE_QUARANTINE_MS:-1000}"
# Transactions linger 32 s after their final answer (RFC 6026 Accepted, Timer J), about three per call:
# the default 200,000 holds 2,000 calls/s sustained; a step at 7,000 calls/s needs ~210,000 after 10 s.
EDGE_MAX_TX="${EDGE_MAX_TX:-1000000}"
KAM_NCHILD="${KAM_NCHILD:-2}"
SHM_MB="${SHM_MB:-4096}"
PKG_MB="${PKG_MB:-16}"
HOPLAT="${HOPLAT:-1}"
HOPLAT_RATE="${HOPLAT_RATE:-2000}"
HOPLAT_SECS="${HOPLAT_SECS:-5}"
HOLD="${HOLD:-1}"
HOLD_RATE="${HOLD_RATE:-350}"
HOLD_MS="${HOLD_MS:-30000}"
HOLD_RUN_S="${HOLD_RUN_S:-45}"
HOLD_SERVERS="${HOLD_SERVERS:-$SERVERS edge-sig}"
QUIET_BUSY="${QUIET_BUSY:-20}"
LOAD_MAX="${LOAD_MAX:-1.0}"
QUIET_WAIT_S="${QUIET_WAIT_S:-90}"
EDGE_WRAP=(); KAM_WRAP=()
SERVER_PIN=(); [[ -n "${SERVER_CPUS:-}" ]] && SERVER_PIN=(taskset -c "$SERVER_CPUS")
# SERVER_NICE: run every server (edge and Kamailio alike) at this nice value, e.g. -5, so the load
# generators sharing the two cores do not preempt it (a production edge has no SIPp beside it).
[[ -n "${SERVER_NICE:-}" ]] && SERVER_PIN=(nice -n "$SERVER_NICE" "${SERVER_PIN[@]}")
SIPP_PIN=(); [[ -n "${SIPP_CPUS:-}" ]] && SIPP_PIN=(taskset -c "$SIPP_CPUS")
export SIPP_CPUS="${SIPP_CPUS:-}"
OUT="${OUT:-/tmp/edge-bench/run_$(date +%Y%m%d_%H%M%S)}"
# Ports away from SIPp's and the test suite's defaults (5060/5061), below the edge's RTP range.
SIP_PORT="${SIP_PORT:-9060}"
export UAC_PORT="${UAC_PORT:-9061}"
export UAC_MEDIA_PORT="${UAC_MEDIA_PORT:-9600}"   # SIPp's default 6000 is taken by other SIPp runs
PRIMARY_PORT="${PRIMARY_PORT:-9070}"
FALLBACK_PORT="${FALLBACK_PORT:-9080}"
EDGE_API_PORT="${EDGE_API_PORT:-18080}"
TLS_PORT="${TLS_PORT:-9062}"          # edge-tls: the edge's TLS listener
TUNNEL_PORT="${TUNNEL_PORT:-9063}"    # edge-tls: the stunnel client SIPp connects to
CTL="unix:/tmp/kamailio_bench_ctl"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
exec > >(tee -a "$OUT/run.log") 2>&1
DATA="$OUT/data"
export DIDS="$DATA/dids.csv"
export TARGET="127.0.0.1:$SIP_PORT"

log() { echo "[$(date +%H:%M:%S)] $*"; }

SERVER_PID=""; SERVER_NAME=""; UAS_LIST=()

# ---------------------------------------------------------------- the edge
EDGE_DIR="$OUT/edge"
edge_config() {  # $1 data dir, $2 media on (1/0), $3 quarantine ms -> config file path on stdout
  local cfg="$EDGE_DIR/edge-$(basename "$1")-m$2${EDGE_SHARDS:+-s$EDGE_SHARDS}${EDGE_TRACE:+-t$EDGE_TRACE}${EDGE_CARRIER:+-$EDGE_CARRIER}.toml"
  local media=false; [[ "$2" == 1 ]] && media=true
  local runtime=""
  [[ -n "${EDGE_SHARDS:-}" ]] && runtime=$'[runtime]\nengine_shards = '"$EDGE_SHARDS"$'\nworker_threads = '"$EDGE_SHARDS"
  # edge-tcp / edge-tls: the carrier's listener (the agents stay on UDP)
  local tcp=off tls=""
  [[ "${EDGE_CARRIER:-udp}" == tcp ]] && tcp="127.0.0.1:$SIP_PORT"
  [[ "${EDGE_CARRIER:-udp}" == tls ]] && tls="tls = \"127.0.0.1:$TLS_PORT\"
tls_certificate = \"$TLS_DIR/server.crt\"
tls_private_key = \"$TLS_DIR/server.key\""
  local cluster=""   # edge-redis: [cluster] limits on Redis, under a prefix of this start's own
  [[ -n "${EDGE_CLUSTER:-}" ]] && cluster=$'[cluster]\nredis_url = "'"$EDGE_CLUSTER"$'"\nkey_prefix = "bench:'"$$:$RANDOM"$':"'
  cat > "$cfg" <<TOML
$runtime
[sip]
udp = "127.0.0.1:$SIP_PORT"
tcp = "$tcp"
$tls
max_transactions = $EDGE_MAX_TX
[api]
listen = "127.0.0.1:$EDGE_API_PORT"
metrics_token = "bench-metrics-token-0123456789"
[storage]
data_dir = "$1"
[secrets]
key = "0000000000000000000000000000000000000000000000000000000000000001"
[log]
format = "human"
level = "${EDGE_LOG_LEVEL:-info}"
[media]
enabled = $media
bind_ip = "127.0.0.1"
public_ip = "127.0.0.1"
rtp_ports = "$EDGE_RTP_PORTS"
port_quarantine_ms = $3
media_timeout_s = 300
${EDGE_SOCKET_CACHE:+socket_cache = $EDGE_SOCKET_CACHE}
${EDGE_MEDIA_WORKERS:+workers = $EDGE_MEDIA_WORKERS}
[observability]
trace = ${EDGE_TRACE:-true}
[security]
# The SIPp agents listen on loopback.
internal_targets = ["127.0.0.0/8"]
[inventory]
provider = "local"
[[inventory.ranges]]
country = "US"
area_code = "415"
first = "+14155550000"
last = "+14155559999"
[[carriers]]
name = "sipp"
allow = ["127.0.0.1/32"]
$cluster
TOML
  echo "$cfg"
}

edge_wait_up() {
  local _
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$EDGE_API_PORT/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  log "edge failed to start"; tail -20 "$EDGE_DIR/edge.log"; exit 1
}

# Provisioned once through the API into a template data dir; every start copies it into a fresh dir so
# each step begins with the same database (no call rows from earlier steps).
edge_template() {
  local tpl="$EDGE_DIR/template" cfg key
  rm -rf "$tpl"; mkdir -p "$tpl"
  cfg=$(edge_config "$tpl" 0 "$EDGE_QUARANTINE_MS")
  "$EDGE_BIN" serve --config "$cfg" >> "$EDGE_DIR/edge.log" 2>&1 &
  SERVER_PID=$!; SERVER_NAME=edge
  edge_wait_up
  key=$("$EDGE_BIN" keys create --config "$cfg" --name bench | tail -n 1)
  python3 "$HERE/lib/edge_provision.py" "http://127.0.0.1:$EDGE_API_PORT" "$key" "$DATA/did_routes.csv" \
    || { log "provisioning failed"; exit 1; }
  echo "$key" > "$EDGE_DIR/api_key"
  stop_server
}

start_edge() {  # $1 media (1/0), $2 quarantine ms, [$3 binary]
  local run="$EDGE_DIR/run" cfg
  rm -rf "$run"; cp -a "$EDGE_DIR/template" "$run"
  cfg=$(edge_config "$run" "$1" "$2")
  ( exec "${SERVER_PIN[@]}" "${EDGE_WRAP[@]}" "${3:-$EDGE_BIN}" serve --config "$cfg" >> "$EDGE_DIR/edge.log" 2>&1 ) &
  SERVER_PID=$!; SERVER_NAME=edge
  edge_wait_up
}

edge_metrics() {  # a few counters from /metrics, one line
  curl -sf -H "Authorization: Bearer bench-metrics-token-0123456789" "http://127.0.0.1:$EDGE_API_PORT/metrics" 2>/dev/null | awk '
    /^edge_udp_dropped_overload_total /{printf "udp_dropped=%s ", $2}
    /^edge_call_records_dropped_total /{printf "records_dropped=%s ", $2}
    /^edge_trace_dropped_total /{printf "trace_dropped=%s ", $2}
    /^edge_sip_retransmissions_absorbed_total /{printf "retrans_absorbed=%s ", $2}
    /^edge_sip_overload_rejected_total /{printf "overload_503=%s ", $2}
    /^edge_active_calls /{printf "active_calls=%s ", $2}
    /^edge_tls_handshakes_total /{printf "tls_handshakes=%s ", $2}
    /^edge_calls_total\{outcome="(primary|fallback|voicemail|rejected)"\}/{
      o=$1; sub(/.*outcome="/, "", o); sub(/".*/, "", o); printf "%s=%s ", o, $2}'
}

# ---------------------------------------------------------------- Kamailio
start_kamailio() {  # extra kamailio args (-A WITH_DIALOG)
  rm -f /tmp/kamailio_bench_ctl
  ( cd "$OUT" && exec "${SERVER_PIN[@]}" "${KAM_WRAP[@]}" kamailio -f "$HERE/kamailio/kamailio.cfg" -DD -E -m "$SHM_MB" -M "$PKG_MB" \
      -A "NCHILD=$KAM_NCHILD" -A "DBURL=\"text://$DATA/kamailio-db\"" \
      -A "LISTEN=udp:127.0.0.1:$SIP_PORT" -A "ALIAS=\"127.0.0.1:$SIP_PORT\"" "$@" \
      >> "$OUT/kamailio.log" 2>&1 ) &
  SERVER_PID=$!; SERVER_NAME=kamailio
  local _
  for _ in $(seq "${KAM_START_TRIES:-50}"); do
    kamcmd -s "$CTL" core.version >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  log "kamailio failed to start"; tail "$OUT/kamailio.log"; exit 1
}

kam_metrics() {
  kamcmd -s "$CTL" core.shmmem 2>/dev/null | awk '/max_used/{printf "shm_max_used_kb=%d ", $2/1024}'
}

# ---------------------------------------------------------------- edge-tls: the carrier's TLS tunnel
# Debian's SIPp is built without TLS: SIPp speaks TCP to a local stunnel in client mode, which holds the one
# TLS connection to the edge (certificate checked against the run's own CA) as a TLS carrier would.
TLS_DIR="$OUT/tls"; TUNNEL_PID=""
tls_certs() {
  [[ -s "$TLS_DIR/server.crt" ]] && return 0
  mkdir -p "$TLS_DIR"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$TLS_DIR/server.key" -out "$TLS_DIR/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$TLS_DIR/ext"
  openssl x509 -req -in "$TLS_DIR/server.csr" -CA "$TLS_DIR/ca.crt" -CAkey "$TLS_DIR/ca.key" -CAcreateserial \
    -days 2 -extfile "$TLS_DIR/ext" -out "$TLS_DIR/server.crt" 2>/dev/null
}
start_tunnel() {
  command -v stunnel >/dev/null || { log "edge-tls needs stunnel (apt-get install -y stunnel4)"; exit 1; }
  printf 'foreground = yes\npid =\ndebug = 5\n[carrier]\nclient = yes\naccept = 127.0.0.1:%s\nconnect = 127.0.0.1:%s\nCAfile = %s\nverifyChain = yes\ncheckIP = 127.0.0.1\n' \
    "$TUNNEL_PORT" "$TLS_PORT" "$TLS_DIR/ca.crt" > "$TLS_DIR/stunnel.conf"
  local pin=(); [[ -n "${TUNNEL_CPUS:-}" ]] && pin=(taskset -c "$TUNNEL_CPUS")
  : > "$TLS_DIR/stunnel.log"
  ( exec "${pin[@]}" stunnel "$TLS_DIR/stunnel.conf" > "$TLS_DIR/stunnel.log" 2>&1 ) &
  TUNNEL_PID=$!
  local _
  for _ in $(seq 50); do
    grep -q 'Configuration successful' "$TLS_DIR/stunnel.log" && return 0
    sleep 0.1
  done
  log "stunnel failed to start"; tail "$TLS_DIR/stunnel.log"; exit 1
}
stop_tunnel() {
  [[ -n "$TUNNEL_PID" ]] || return 0
  kill "$TUNNEL_PID" 2>/dev/null; wait "$TUNNEL_PID" 2>/dev/null
  TUNNEL_PID=""
}

stop_server() {
  stop_tunnel
  [[ -n "$SERVER_PID" ]] || return 0
  kill "$SERVER_PID" 2>/dev/null
  local _
  for _ in $(seq "${STOP_TRIES:-100}"); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$SERVER_PID" 2>/dev/null && kill -9 "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=""; SERVER_NAME=""
}

# ---------------------------------------------------------------- agents (SIPp UASes)
start_uas() {   # $1 scenario, $2 port, $3 media port
  local out pid
  out=$(cd "$OUT" && "${SIPP_PIN[@]}" sipp -sf "$HERE/scenarios/$1" -i 127.0.0.1 -p "$2" -mp "$3" \
        -buff_size 4194304 -bg 2>&1)
  pid=$(sed -n 's/.*PID=\[\([0-9]*\)\].*/\1/p' <<<"$out")
  [[ -n "$pid" ]] || { log "UAS $1:$2 failed: $out"; exit 1; }
  UAS_LIST+=("$pid")
}

stop_uas() {
  local p _
  for p in "${UAS_LIST[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${UAS_LIST[@]}"; do
    for _ in $(seq 25); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
  done
  UAS_LIST=()
}

start_agents() {  # $1 happy|failover
  if [[ "$1" == failover ]]; then
    start_uas uas_busy.xml "$PRIMARY_PORT" 9700      # primary answers 503
  else
    start_uas uas_agent.xml "$PRIMARY_PORT" 9700     # primary answers
  fi
  start_uas uas_agent.xml "$FALLBACK_PORT" 9800      # fallback answers
  sleep 0.5
}

cleanup() { stop_uas; stop_server; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# fresh server + agents for one step. Servers: edge (media anchored, the product default), edge-sig
# (the edge with [media] enabled = false: signalling only, SDP passed through, like Kamailio), kamailio.
fresh() {  # $1 server, $2 path, [$3 hold]
  stop_uas; stop_server; sleep 1
  case "$1" in
    edge) start_edge 1 "$EDGE_QUARANTINE_MS" ;;
    edge-sig) start_edge 0 "$EDGE_QUARANTINE_MS" ;;
    edge-s1) EDGE_SHARDS=1 start_edge "$EDGE_MEDIA" "$EDGE_QUARANTINE_MS" ;;   # EDGE_MEDIA=0: signalling only
    edge-s2) EDGE_SHARDS=2 start_edge "$EDGE_MEDIA" "$EDGE_QUARANTINE_MS" ;;
    edge-redis) EDGE_CLUSTER="${EDGE_REDIS_URL:-redis://127.0.0.1:6379}" start_edge 1 "$EDGE_QUARANTINE_MS" ;;
    edge-notrace) EDGE_TRACE=false start_edge 1 "$EDGE_QUARANTINE_MS" ;;   # per-call SIP traces off
    edge-base) start_edge 1 "$EDGE_QUARANTINE_MS" "${EDGE_BASE_BIN:?EDGE_BASE_BIN=another oneinbox-edge binary}" ;;
    edge-tcp) EDGE_CARRIER=tcp start_edge 1 "$EDGE_QUARANTINE_MS" ;;
    edge-tls) tls_certs; EDGE_CARRIER=tls start_edge 1 "$EDGE_QUARANTINE_MS"; start_tunnel ;;
    kamailio) if [[ "${3:-}" == hold ]]; then start_kamailio -A WITH_DIALOG; else start_kamailio; fi ;;
    *) log "unknown server $1"; exit 1 ;;
  esac
  [[ "${PROFILE:-}" == blast ]] || start_agents "$2"   # sip-blast plays the agent itself
}

# Wait for a quiet box: our servers are down between steps, so what is busy is someone else.
wait_quiet() {
  local t0=$SECONDS busy load
  while :; do
    busy=$(python3 - <<'PY'
import os, time
def s():
    v = [int(x) for x in open('/proc/stat').readline().split()[1:]]
    return sum(v), v[3] + v[4]
a = s(); time.sleep(1.0); b = s()
d = b[0] - a[0]
print(int(100.0 * os.cpu_count() * (d - (b[1] - a[1])) / d) if d else 0)
PY
)
    load=$(cut -d' ' -f1 /proc/loadavg)
    if (( busy < QUIET_BUSY )) && awk -v l="$load" -v m="$LOAD_MAX" 'BEGIN{exit !(l < m)}'; then return 0; fi
    if (( SECONDS - t0 >= QUIET_WAIT_S )); then
      log "  (box not quiet after ${QUIET_WAIT_S}s: busy ${busy}% load1 $load; measuring anyway, noted in the row)"
      return 0
    fi
    sleep 2
  done
}

printf 'label\tserver\tpath\trate\tcps_offered\tcps_achieved\tok\tfailed\tfail_pct\tretrans\tsetup_p50_ms\tsetup_p90_ms\tsetup_p99_ms\tsetup_p999_ms\tsetup_max_ms\tcpu_server\tcpu_server_sys\tcpu_per_kcps\tcpu_uac\tcpu_uas\tcpu_other\tserver_rss_kb\tserver_pss_kb\tserver_stats\tload1\tverdict\n' > "$OUT/steps.tsv"

# one step on a fresh server; sets LAST_VERDICT (pass / fail / stop)
step() {  # $1 server $2 path $3 rate $4 tag
  local srv="$1" path="$2" rate="$3" tag="$4"
  local label="${tag}_${srv}_${path}_r${rate}"
  wait_quiet
  fresh "$srv" "$path"
  log "step $label (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  local json stats
  local carrier=()   # edge-tcp / edge-tls: SIPp over TCP, to the edge or into the tunnel
  case "$srv" in
    edge-tcp) carrier=(SIPP_TRANSPORT=t1) ;;
    edge-tls) carrier=(SIPP_TRANSPORT=t1 TARGET="127.0.0.1:$TLS_PORT" RSA="127.0.0.1:$TUNNEL_PORT"
                       UAC_SCENARIO=uac_inbound_tls.xml TUNNEL_PID="$TUNNEL_PID") ;;
  esac
  json=$(env "${carrier[@]}" SERVER_PID="$SERVER_PID" UAS_PIDS="$(IFS=,; echo "${UAS_LIST[*]}")" \
         EXTRA="server=$srv path=$path phase=$tag" \
         "$HERE/load_step.sh" "$rate" $(( rate * DUR )) "$OUT" "$label" | tail -1)
  if [[ "$srv" == edge* ]]; then stats=$(edge_metrics); else stats=$(kam_metrics); fi
  # stunnel's CPU (% of one core), apart from the server's
  [[ "$srv" == edge-tls ]] && stats+="$(python3 -c 'import json,sys; print("tunnel_cpu=%s " % json.loads(sys.argv[1]).get("cpu_tunnel_mean"))' "$json" 2>/dev/null)"
  stop_uas; stop_server
  python3 - "$json" "$PASS_FAIL_PCT" "$STOP_FAIL_PCT" "$stats" "$label" "$srv" "$path" "$rate" <<'PY' >> "$OUT/steps.tsv"
import json, sys
pf = float(sys.argv[2]); sf = float(sys.argv[3])
try:
    r = json.loads(sys.argv[1])
except ValueError:  # SIPp did not run (see LABEL.sipp.out): a failed step
    r = {'label': sys.argv[5], 'server': sys.argv[6], 'path': sys.argv[7], 'rate_target': float(sys.argv[8]),
         'calls_ok': 0, 'calls_failed': 0, 'retrans': 0, 'fail_pct': None}
ach = r.get('cps_achieved') or 0
ok = r.get('fail_pct') is not None and r['fail_pct'] < pf and ach >= 0.95 * r['rate_target']
bad = (r.get('fail_pct') if r.get('fail_pct') is not None else 100) > sf or ach < 0.8 * r['rate_target']
# the edge losing call records (writer queue full) or datagrams (engine queue full) fails the step
lost = [kv for kv in sys.argv[4].split() if kv.split('=')[0] in ('records_dropped', 'udp_dropped')
        and kv.split('=')[-1] not in ('0', '')]
ok = ok and not lost
verdict = 'pass' if ok else ('stop' if bad else 'fail')
print('\t'.join(str(x) for x in (r['label'], r['server'], r['path'], r['rate_target'],
      r.get('cps_offered'), r.get('cps_achieved'), r['calls_ok'], r['calls_failed'], r.get('fail_pct'),
      r['retrans'], r.get('setup_ms_p50'), r.get('setup_ms_p90'), r.get('setup_ms_p99'), r.get('setup_ms_p99.9'),
      r.get('setup_ms_max'), r.get('cpu_server_mean'), r.get('cpu_server_sys_mean'), r.get('server_cpu_per_kcps'), r.get('cpu_uac_mean'),
      r.get('cpu_uas_mean'), r.get('cpu_other_est_mean'), r.get('server_rss_kb_max'), r.get('server_pss_kb_max'),
      sys.argv[4].strip(), r.get('load1_start'), verdict)))
PY
  LAST_VERDICT=$(tail -1 "$OUT/steps.tsv" | awk -F'\t' '{print $NF}')
  log "  -> $(tail -1 "$OUT/steps.tsv" | awk -F'\t' '{printf "%s %s: offered=%s achieved=%s ok=%s failed=%s (%s%%) retrans=%s setup p50/p99=%s/%s ms | CPU server=%s%% (kernel %s%%; %s%%/kcps) uac=%s%% uas=%s%% other=%s%% | RSS=%s kB | %s => %s", $2,$3,$5,$6,$7,$8,$9,$10,$11,$13,$16,$17,$18,$19,$20,$21,$22,$24,$NF}')"
}

log "output: $OUT"
log "machine: $(nproc) cores,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), load $(cut -d' ' -f1-3 /proc/loadavg)"
log "sipp: $(sipp -v 2>&1 | grep -o 'SIPp v[^ ]*' | head -1)  kamailio: $(kamailio -v 2>/dev/null | head -1)"
log "servers: $SERVERS  paths: $PATHS  rates: $RATES  dur: ${DUR}s  kamailio children: $KAM_NCHILD  edge media: $EDGE_MEDIA (ports $EDGE_RTP_PORTS, quarantine ${EDGE_QUARANTINE_MS} ms)"
PRIMARY="127.0.0.1:$PRIMARY_PORT" FALLBACK="127.0.0.1:$FALLBACK_PORT" "$HERE/gen_data.sh" "$DATA" > /dev/null
NEED_EDGE=" $SERVERS "; [[ "$HOLD" == 1 ]] && NEED_EDGE+="$HOLD_SERVERS "
if [[ "$NEED_EDGE" == *" edge"* ]]; then
  [[ -x "$EDGE_BIN" ]] || { log "no edge binary at $EDGE_BIN (cargo build --release)"; exit 1; }
  mkdir -p "$EDGE_DIR"
  log "edge: $("$EDGE_BIN" --version 2>/dev/null) ($EDGE_BIN, built $(date -r "$EDGE_BIN" '+%F %T'))"
  edge_template
  log "edge provisioned: $(wc -l < "$DATA/did_routes.csv") routes"
fi

# ---------------------------------------------------------------- PROFILE=callgrind: instructions per call
# The edge runs under callgrind; counters are zeroed once it is up and dumped after PROFILE_CALLS calls
# at PROFILE_RATE (SIPp drives it as in a step), so the profile holds the calls only, not the startup
# (PROFILE_IDLE=1: and an idle window of the same length before them, to take off). Kamailio: every
# one of its processes (valgrind follows a fork), summed, loaded run less an idle run of the same length
# (below; SHM_MB 256 under valgrind).
if [[ "${PROFILE:-}" == callgrind ]]; then
  PROFILE_RATE="${PROFILE_RATE:-50}"; PROFILE_CALLS="${PROFILE_CALLS:-1000}"
  for path in $PATHS; do
    for s in $SERVERS; do
      if [[ "$s" == kamailio ]]; then
        # callgrind_control cannot reach Kamailio's forked workers (valgrind starts no gdbserver in a
        # forked child), so instead of zeroing and dumping: two runs of the same length, one with the
        # calls and one idle, every process's counts written at exit and summed; the difference is the
        # calls' (start-up and shutdown cancel out, timers nearly so).
        cg="$OUT/callgrind.kamailio_${path}"
        declare -A KTOT=()
        for phase in load idle; do
          KAM_WRAP=(valgrind --tool=callgrind --callgrind-out-file="$cg.$phase.%p" --dump-instr=no --collect-jumps=no)
          SHM_MB_SAVED=$SHM_MB; SHM_MB=256
          KAM_START_TRIES=600 fresh kamailio "$path"
          SHM_MB=$SHM_MB_SAVED
          t0=$(date +%s.%N)
          sleep 3
          if [[ "$phase" == load ]]; then
            SERVER_PID="$SERVER_PID" EXTRA="server=$s path=$path phase=profile" \
              "$HERE/load_step.sh" "$PROFILE_RATE" "$PROFILE_CALLS" "$OUT" "profile_${s}_${path}" | tail -1 > /dev/null
            sleep 3
            kelapsed=$(python3 -c "import time; print(round(time.time() - $t0 - 3, 2))")
            ok=$(python3 -c "import json,sys; print(json.loads(open('$OUT/summary.jsonl').readlines()[-1])['calls_ok'])")
          else
            sleep "$kelapsed"
          fi
          stop_uas; STOP_TRIES=600 stop_server
          KAM_WRAP=()
          total=0; n_files=0
          for f in "$cg.$phase".*; do
            [[ "$f" == *.txt ]] && continue
            n=$(callgrind_annotate "$f" 2>/dev/null | grep -m1 'PROGRAM TOTALS' | awk '{gsub(",","",$1); print $1}')
            total=$(( total + ${n:-0} )); n_files=$(( n_files + 1 ))
          done
          KTOT[$phase]=$total
          log "PROFILE $s $path $phase: $total instructions over $n_files processes"
        done
        log "PROFILE $s $path: $ok calls, $(( KTOT[load] - KTOT[idle] )) instructions (loaded $((KTOT[load])) - idle $((KTOT[idle]))) => $(( (KTOT[load] - KTOT[idle]) / (ok > 0 ? ok : 1) )) per call"
        continue
      fi
      [[ "$s" == edge* ]] || continue
      cg="$OUT/callgrind.${s}_${path}"
      EDGE_WRAP=(valgrind --tool=callgrind --callgrind-out-file="$cg.%p" --dump-instr=no --collect-jumps=no)
      fresh "$s" "$path"
      sleep 1
      callgrind_control -z "$SERVER_PID" > /dev/null
      if [[ "${PROFILE_IDLE:-0}" == 1 ]]; then
        # PROFILE_IDLE=1: first an idle window as long as the loaded one will be (calls / rate + 3 s),
        # dumped apart (dump 1), so its count (timers, the runtime's wake-ups) can be taken off the calls'.
        sleep $(( (PROFILE_CALLS + PROFILE_RATE - 1) / PROFILE_RATE + 3 ))
        callgrind_control -d "$SERVER_PID" > /dev/null   # dumps and zeroes
      fi
      SERVER_PID="$SERVER_PID" EXTRA="server=$s path=$path phase=profile" \
        "$HERE/load_step.sh" "$PROFILE_RATE" "$PROFILE_CALLS" "$OUT" "profile_${s}_${path}" | tail -1 > /dev/null
      sleep 3
      callgrind_control -d "$SERVER_PID" > /dev/null
      sleep 1
      f="$cg.$SERVER_PID.1"   # the dump holds the calls; $cg.PID (written at exit) the shutdown
      idle_total=0
      if [[ "${PROFILE_IDLE:-0}" == 1 ]]; then
        callgrind_annotate "$f" > "$cg.idle.self.txt" 2>/dev/null
        idle_total=$(grep -m1 'PROGRAM TOTALS' "$cg.idle.self.txt" | awk '{gsub(",","",$1); print $1}')
        f="$cg.$SERVER_PID.2"
      fi
      stop_uas; stop_server
      EDGE_WRAP=()
      ok=$(python3 -c "import json,sys; print(json.loads(open('$OUT/summary.jsonl').readlines()[-1])['calls_ok'])")
      callgrind_annotate --inclusive=yes "$f" > "$cg.inclusive.txt" 2>/dev/null
      callgrind_annotate "$f" > "$cg.self.txt" 2>/dev/null
      total=$(grep -m1 'PROGRAM TOTALS' "$cg.self.txt" | awk '{gsub(",","",$1); print $1}')
      log "PROFILE $s $path: $ok calls, $total instructions => $(( total / (ok > 0 ? ok : 1) )) per call ($f)"
      [[ "${PROFILE_IDLE:-0}" == 1 ]] && log "PROFILE $s $path: idle window $idle_total instructions; less idle: $(( (total - idle_total) / (ok > 0 ? ok : 1) )) per call"
    done
  done
  exit 0
fi

# ---------------------------------------------------------------- PROFILE=blast: the load generator off the CPU budget
# benches/blast (sip-blast, std + libc, no scenario engine) plays the carrier and the agent of the happy
# path with the messages of the SIPp scenarios, at a fraction of SIPp's CPU, so the server gets most of
# the box: for the engine-shard scaling figure on a 2-core box. Edge servers only (the carrier follows no
# Record-Route). Per rate of RATES, each server of SERVERS in turn on a fresh start takes RATE x DUR calls;
# a server leaves the sweep at its first failing rate (failed >= PASS_FAIL_PCT, under 95 % of the rate,
# or a datagram or call record dropped). One JSON line per step in $OUT/blast.jsonl: calls done / failed,
# achieved calls/s, setup p50/p99, the server's CPU (and per thread) and sip-blast's own CPU.
if [[ "${PROFILE:-}" == blast ]]; then
  BLAST_BIN="${BLAST_BIN:-$ROOT/benches/blast/target/release/sip-blast}"
  [[ -x "$BLAST_BIN" ]] || { log "no sip-blast at $BLAST_BIN (cargo build --release --manifest-path benches/blast/Cargo.toml)"; exit 1; }
  declare -A BOUT
  for rate in $RATES; do
    for s in $SERVERS; do
      [[ "$s" == edge* ]] || { log "PROFILE=blast: $s skipped (edge servers only)"; continue; }
      [[ "${BOUT[$s]:-0}" == 1 ]] && continue
      wait_quiet
      fresh "$s" happy
      log "blast $s at $rate calls/s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
      json=$("${SIPP_PIN[@]}" "$BLAST_BIN" --target "$TARGET" --uac "127.0.0.1:$UAC_PORT" --agent "127.0.0.1:$PRIMARY_PORT" \
        --dids "$DIDS" --rate "$rate" --calls $(( rate * DUR )) --server-pid "$SERVER_PID" --label "blast_${s}_r${rate}")
      stats=$(edge_metrics)
      stop_server
      line=$(python3 - "$json" "$stats" "$PASS_FAIL_PCT" "$s" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); stats = sys.argv[2].split(); pf = float(sys.argv[3])
r['server'] = sys.argv[4]
r['server_stats'] = ' '.join(stats)
lost = [kv for kv in stats if kv.split('=')[0] in ('records_dropped', 'udp_dropped') and kv.split('=')[-1] not in ('0', '')]
r['verdict'] = 'pass' if r['fail_pct'] < pf and r['cps_achieved'] >= 0.95 * r['rate_target'] and not lost else 'fail'
print(json.dumps(r))
PY
)
      echo "$line" >> "$OUT/blast.jsonl"
      log "  -> $(python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(f\"{r['server']} {r['rate_target']:.0f}: done={r['done']} failed={r['failed_final']}+{r['unfinished']} unfinished ({r['fail_pct']}%) achieved={r['cps_achieved']} setup p50/p99={r['setup_ms_p50']}/{r['setup_ms_p99']} ms | CPU server={r['cpu_server']}% ({r['cpu_server_per_kcps']}%/kcps) threads={r['server_threads']} blast={r['cpu_blast']}% other={r.get('cpu_other')}% | {r['server_stats']} => {r['verdict']}\")" "$line")"
      [[ "$line" == *'"verdict": "pass"'* ]] || BOUT[$s]=1
    done
  done
  exit 0
fi

# ---------------------------------------------------------------- PROFILE=perf: where the CPU goes, kernel too
# perf samples the edge (user and kernel stacks) during one step at PROFILE_RATE for PROFILE_SECS.
if [[ "${PROFILE:-}" == perf ]]; then
  PROFILE_RATE="${PROFILE_RATE:-2000}"; PROFILE_SECS="${PROFILE_SECS:-8}"
  for path in $PATHS; do
    for s in $SERVERS; do
      pd="$OUT/perf.${s}_${path}"
      fresh "$s" "$path"
      pids="$SERVER_PID"; for c in $(pgrep -P "$SERVER_PID"); do pids+=",$c"; done
      # PERF_ARGS="-e sched:sched_wakeup -g" shows who wakes whom (thread hand-offs) instead of CPU samples.
      perf record ${PERF_ARGS:--F 1999 -g} -o "$pd.data" -p "$pids" \
        > "$pd.log" 2>&1 &
      PERF_PID=$!
      SERVER_PID="$SERVER_PID" EXTRA="server=$s path=$path phase=perf" \
        "$HERE/load_step.sh" "$PROFILE_RATE" $(( PROFILE_RATE * PROFILE_SECS )) "$OUT" "perf_${s}_${path}" | tail -1 > /dev/null
      kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null
      stop_uas; stop_server
      perf report -i "$pd.data" --no-children --sort dso,sym --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' \
        | grep -E '^ +[0-9]' | head -60 > "$pd.self.txt"
      perf report -i "$pd.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' > "$pd.dso.txt"
      log "PERF $s $path: $pd.self.txt"; head -25 "$pd.self.txt"; cat "$pd.dso.txt"
    done
  done
  exit 0
fi

# ---------------------------------------------------------------- PROFILE=syscalls: the kernel's share
# Per server and path, two runs of PROFILE_CALLS calls at PROFILE_RATE on a fresh server: the first
# untraced, for the CPU (user and system, from /proc/PID/stat of the server and its children before and
# after); the second under `strace -c -f` attached to the same processes, for the syscalls by name
# (strace slows what it traces, so its run gives counts, not times). benches/sipp/syscalls.sh drives it.
if [[ "${PROFILE:-}" == syscalls ]]; then
  PROFILE_RATE="${PROFILE_RATE:-200}"; PROFILE_CALLS="${PROFILE_CALLS:-2000}"
  tree_pids() {  # $1 pid -> it and its descendants, one per line
    echo "$1"; local c; for c in $(pgrep -P "$1"); do tree_pids "$c"; done
  }
  cpu_ticks() {  # utime stime (clock ticks) summed over the pids given (threads included)
    local p; for p in "$@"; do cat "/proc/$p/stat" 2>/dev/null; done \
      | awk '{sub(/^.*\) /, ""); u += $12; s += $13} END {printf "%d %d\n", u, s}'
  }
  hz=$(getconf CLK_TCK)
  for path in $PATHS; do
    for s in $SERVERS; do
      sc="$OUT/syscalls.${s}_${path}"
      # Run 1: CPU, untraced.
      wait_quiet
      fresh "$s" "$path"; sleep 1
      mapfile -t pids < <(tree_pids "$SERVER_PID")
      read -r u0 s0 < <(cpu_ticks "${pids[@]}")
      SERVER_PID="$SERVER_PID" EXTRA="server=$s path=$path phase=syscalls_cpu" \
        "$HERE/load_step.sh" "$PROFILE_RATE" "$PROFILE_CALLS" "$OUT" "syscpu_${s}_${path}" | tail -1 > /dev/null
      sleep 2   # the last BYEs' transactions and records settle
      read -r u1 s1 < <(cpu_ticks "${pids[@]}")
      ok_cpu=$(python3 -c "import json; print(json.loads(open('$OUT/summary.jsonl').readlines()[-1])['calls_ok'])")
      stop_uas; stop_server
      if [[ "${STRACE:-1}" == 0 ]]; then  # CPU only (more runs in the time, e.g. to see the noise)
        python3 -c "import sys; u0, s0, u1, s1, hz, n = map(int, sys.argv[1:7]); print(f'CPU {sys.argv[7]} {sys.argv[8]}: {n} calls, user {1000*(u1-u0)/hz/max(n,1):.3f} ms, system {1000*(s1-s0)/hz/max(n,1):.3f} ms per call')" \
          "$u0" "$s0" "$u1" "$s1" "$hz" "$ok_cpu" "$s" "$path" | tee -a "$OUT/cpu.txt"
        continue
      fi
      # Run 2: syscalls by name, under strace.
      wait_quiet
      fresh "$s" "$path"; sleep 1
      spids=(); for p in $(tree_pids "$SERVER_PID"); do spids+=(-p "$p"); done
      strace -c -f -S calls -o "$sc.strace.txt" "${spids[@]}" 2> "$sc.strace.log" &
      STRACE_PID=$!
      sleep 1
      SERVER_PID="$SERVER_PID" EXTRA="server=$s path=$path phase=syscalls_count" \
        "$HERE/load_step.sh" "$PROFILE_RATE" "$PROFILE_CALLS" "$OUT" "syscount_${s}_${path}" | tail -1 > /dev/null
      sleep 2
      kill -INT "$STRACE_PID"; wait "$STRACE_PID" 2>/dev/null
      ok_cnt=$(python3 -c "import json; print(json.loads(open('$OUT/summary.jsonl').readlines()[-1])['calls_ok'])")
      stop_uas; stop_server
      python3 - "$sc.strace.txt" "$ok_cnt" "$ok_cpu" "$u0" "$s0" "$u1" "$s1" "$hz" "$s" "$path" <<'PY' | tee "$sc.txt"
import sys
f, ok_cnt, ok_cpu, u0, s0, u1, s1, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *map(int, sys.argv[4:9])
srv, path = sys.argv[9], sys.argv[10]
rows = []
for line in open(f):
    c = line.split()
    # % time, seconds, usecs/call, calls, [errors], syscall
    if len(c) >= 5 and c[0][0].isdigit() and c[-1] != 'total' and c[3].isdigit():
        rows.append((c[-1], int(c[3])))
total = sum(n for _, n in rows)
per = lambda n: n / max(ok_cnt, 1)
ms = lambda t: 1000.0 * t / hz / max(ok_cpu, 1)
print(f"SYSCALLS {srv} {path}: {ok_cnt} calls traced, {total} syscalls => {per(total):.2f} per call; "
      f"CPU ({ok_cpu} calls untraced): user {ms(u1 - u0):.3f} ms, system {ms(s1 - s0):.3f} ms per call")
for name, n in sorted(rows, key=lambda r: -r[1]):
    print(f"  {name:<18} {per(n):8.2f} per call ({n})")
PY
    done
  done
  exit 0
fi

declare -A BEST FIRSTFAIL OUTP
# ---------------------------------------------------------------- sweeps, alternating servers per rate
for path in $PATHS; do
  for s in $SERVERS; do BEST[$s.$path]=0; FIRSTFAIL[$s.$path]=0; OUTP[$s.$path]=0; done
  for rate in $RATES; do
    for s in $SERVERS; do
      [[ "${OUTP[$s.$path]}" == 1 ]] && continue
      step "$s" "$path" "$rate" sweep
      if [[ "$LAST_VERDICT" == pass ]]; then
        BEST[$s.$path]=$rate
      else
        [[ "${FIRSTFAIL[$s.$path]}" == 0 ]] && FIRSTFAIL[$s.$path]=$rate
        OUTP[$s.$path]=1   # the sweep stops at the first failure; refine bisects below it
      fi
    done
  done
  # ---------------------------------------------------------------- refine (bisection), alternating
  for ((i=0; i<REFINE; i++)); do
    for s in $SERVERS; do
      lo=${BEST[$s.$path]}; hi=${FIRSTFAIL[$s.$path]}
      (( hi == 0 )) && continue
      mid=$(( (lo + hi) / 2 / 100 * 100 ))
      (( mid <= lo || mid >= hi )) && continue
      step "$s" "$path" "$mid" refine
      if [[ "$LAST_VERDICT" == pass ]]; then BEST[$s.$path]=$mid; else FIRSTFAIL[$s.$path]=$mid; fi
    done
  done
  for s in $SERVERS; do
    log "MAX $s $path: ${BEST[$s.$path]} calls/s passing (first failing: ${FIRSTFAIL[$s.$path]})"
    printf '%s\t%s\t%s\t%s\n' "$s" "$path" "${BEST[$s.$path]}" "${FIRSTFAIL[$s.$path]}" >> "$OUT/max_rates.tsv"
  done
done

# ---------------------------------------------------------------- per-hop forwarding time (capture)
if [[ "$HOPLAT" == 1 ]]; then
  for path in $PATHS; do
    for s in $SERVERS; do
      wait_quiet
      fresh "$s" "$path"
      log "hop latency $s $path at $HOPLAT_RATE calls/s (capture on lo):"
      SERVER_PID="" "$HERE/hop_latency.sh" "$HOPLAT_RATE" "$HOPLAT_SECS" "$OUT" "hoplat_${s}_${path}_r${HOPLAT_RATE}"
      stop_uas; stop_server
    done
  done
fi

# ---------------------------------------------------------------- hold test
# The edge anchors media with two RTP+RTCP port pairs per call = 4 sockets: past its own open-files
# limit they go to HOLD_WORKERS media worker processes (media.workers), each with a limit of its own;
# with HOLD_WORKERS=0 the rate is cut to what one process's limit fits (EDGE_HOLD_RATE). edge-sig holds
# the same calls without media (signalling state only), as Kamailio's dialog module does. The edge's
# memory is summed over its processes (the workers are its children), Kamailio's PSS likewise.
HOLD_WORKERS="${HOLD_WORKERS:-2}"
if [[ "$HOLD" == 1 ]]; then
  nofile=$(ulimit -n)
  fit=$(( (nofile - 1000) / 4 / (HOLD_MS / 1000 + 2) ))
  (( HOLD_WORKERS > 0 )) && fit=$HOLD_RATE
  EDGE_HOLD_RATE="${EDGE_HOLD_RATE:-$(( HOLD_RATE < fit ? HOLD_RATE : fit ))}"
  for s in $HOLD_SERVERS; do
    rate=$HOLD_RATE; [[ "$s" == edge ]] && rate=$EDGE_HOLD_RATE
    wait_quiet
    if [[ "$s" == edge ]]; then EDGE_MEDIA_WORKERS=$HOLD_WORKERS fresh "$s" happy hold; else fresh "$s" happy hold; fi
    sleep 2
    mem=Rss; [[ "$s" == kamailio ]] && mem=Pss
    idle=0; for p in $(pgrep -P "$SERVER_PID") "$SERVER_PID"; do
      idle=$(( idle + $(awk "/^$mem:/{print \$2}" "/proc/$p/smaps_rollup" 2>/dev/null || echo 0) )); done
    log "hold test $s: $rate calls/s x ${HOLD_MS} ms hold, ${HOLD_RUN_S}s of call generation (idle $([[ $s == kamailio ]] && echo PSS || echo RSS) ${idle} kB, open files limit $nofile)"
    ( while kill -0 "$SERVER_PID" 2>/dev/null; do
        if [[ "$s" == edge* ]]; then
          kids=$(pgrep -P "$SERVER_PID" | tr '\n' ' ')
          echo "$(date +%s) $(curl -sf "http://127.0.0.1:$EDGE_API_PORT/healthz") rss_kb=$(awk '/^Rss:/{print $2}' /proc/$SERVER_PID/smaps_rollup 2>/dev/null) fds=$(ls /proc/$SERVER_PID/fd 2>/dev/null | wc -l) workers:$(for k in $kids; do echo -n " pid $k rss_kb=$(awk '/^Rss:/{print $2}' /proc/$k/smaps_rollup 2>/dev/null) fds=$(ls /proc/$k/fd 2>/dev/null | wc -l)"; done)"
        else
          echo "$(date +%s) $(kamcmd -s "$CTL" stats.get_statistics active_dialogs 2>/dev/null | tr -d '\n ')"
        fi
        sleep 2
      done ) > "$OUT/hold_${s}_stats.txt" 2>&1 &
    STATS_PID=$!
    json=$(SERVER_PID="$SERVER_PID" UAS_PIDS="$(IFS=,; echo "${UAS_LIST[*]}")" HOLD_MS="$HOLD_MS" \
      EXTRA="server=$s path=happy_hold phase=hold idle_kb=$idle" RECV_TIMEOUT_MS=8000 \
      "$HERE/load_step.sh" "$rate" $(( rate * HOLD_RUN_S )) "$OUT" "hold_${s}_r${rate}_h${HOLD_MS}" | tail -1)
    kill "$STATS_PID" 2>/dev/null; wait "$STATS_PID" 2>/dev/null
    [[ "$s" == edge* ]] && log "  $s: $(edge_metrics)"
    stop_uas; stop_server
    python3 - "$json" "$s" <<'PY' | tee -a "$OUT/hold.txt"
import json, sys
r = json.loads(sys.argv[1]); s = sys.argv[2]
idle = int(r.get('idle_kb') or 0)
peak = r.get('server_pss_kb_max') if s == 'kamailio' else r.get('server_rss_kb_max')
cc = r.get('current_calls_max') or 0
per = (peak - idle) / cc if cc and peak else None
if per is None:
    print(f"HOLD {s}: {json.dumps(r)}")
else:
    print(f"HOLD {s}: rate {r['rate_target']:.0f}/s, peak concurrent calls {cc}, ok {r['calls_ok']}, "
          f"failed {r['calls_failed']}, retrans {r['retrans']}, setup p99 {r.get('setup_ms_p99')} ms, "
          f"CPU {r.get('cpu_server_mean')}%, peak {'PSS' if s == 'kamailio' else 'RSS'} {peak} kB "
          f"(idle {idle} kB) => {per:.1f} kB per concurrent call")
PY
  done
fi

python3 "$HERE/lib/report.py" "$OUT" > "$OUT/report.md" 2>/dev/null || true
log "done: $OUT (report.md, steps.tsv, summary.jsonl)"
