#!/usr/bin/env bash
# SIPp over TLS (issue 20), as a carrier and as a trunk, against the built edge on loopback:
#   tests/sipp/tls.sh [path/to/oneinbox-edge]
# Debian's SIPp is built without TLS (`sipp -v`: no TLS in its feature list, `-t l1` refused) and SIPp's
# source is not reachable from CI, so SIPp speaks TCP (`-t t1`) and stunnel carries it over TLS:
# - carrier: SIPp UAC -> stunnel (client mode, checks the edge's certificate against the test CA) -> the
#   edge's TLS listener ([sip] tls). Calls to agents complete, hung up by the carrier and by the agent (the
#   edge's BYE must come back over the carrier's one TLS connection: SIPp has no other way in).
# - trunk: the edge dials `sips:127.0.0.1:PORT` and `127.0.0.1:PORT;transport=tls` -> stunnel (server mode,
#   a certificate for 127.0.0.1 from the test CA, which the edge trusts through outbound.tls_extra_roots)
#   -> SIPp UAS over TCP. Calls placed by agents and through POST /v1/calls complete.
# Each run's call records, and the calls' SIP traces (GET /v1/calls/{id}/trace: transport `tls`, one
# connection), are checked. Bounded: every SIPp run has a call count and a timeout; everything started here
# is stopped by PID on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-$root/target/debug/oneinbox-edge}
[ -x "$bin" ] || { echo "edge binary not found at $bin (cargo build first)"; exit 1; }
command -v sipp >/dev/null || { echo "sipp not installed (apt-get install -y sip-tester)"; exit 1; }
command -v stunnel >/dev/null || { echo "stunnel not installed (apt-get install -y stunnel4)"; exit 1; }
command -v openssl >/dev/null || { echo "openssl not installed (apt-get install -y openssl)"; exit 1; }

# Ports: SIP UDP+TCP, API (+1), the edge's TLS listener (+2), the carrier's tunnel (+3) and SIPp (+4), the
# trunk's TLS address (+5) and SIPp (+6), agents (+7, +8), SIPp media from +1000.
edge_port=$((20000 + RANDOM % 20000))
tls_port=$((edge_port + 2)); carrier_tunnel=$((edge_port + 3)); carrier_sipp=$((edge_port + 4))
trunk_tls=$((edge_port + 5)); trunk_sipp=$((edge_port + 6)); pa=$((edge_port + 7)); ph=$((edge_port + 8))

# A test CA and a certificate for 127.0.0.1 it signed (ECDSA P-256), for the edge's listener and the trunk.
certs=$(mktemp -d /tmp/edge-tls-certs.XXXXXX)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=oneinbox-edge test CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  -keyout "$certs/ca.key" -out "$certs/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$certs/server.key" -out "$certs/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n' \
  > "$certs/server.ext"
openssl x509 -req -in "$certs/server.csr" -CA "$certs/ca.crt" -CAkey "$certs/ca.key" -CAcreateserial -days 2 \
  -extfile "$certs/server.ext" -out "$certs/server.crt" 2>/dev/null

edge_sip_extra="tls = \"127.0.0.1:$tls_port\"
tls_certificate = \"$certs/server.crt\"
tls_private_key = \"$certs/server.key\""
edge_outbound_extra="tls_extra_roots = [\"$certs/ca.crt\"]"
. "$root/tests/lib/edge.sh"

pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$certs"
}
trap 'cleanup; stop_edge' EXIT

# stunnel NAME config-lines...: in the foreground (so its PID is ours), logging to $work/stunnel-NAME.log.
stunnel_start() {
  local name=$1; shift
  { printf 'foreground = yes\npid =\ndebug = 6\n'; printf '%s\n' "$@"; } > "$work/stunnel-$name.conf"
  stunnel "$work/stunnel-$name.conf" > "$work/stunnel-$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do grep -q 'Configuration successful' "$work/stunnel-$name.log" && return 0; sleep 0.1; done
  echo "FAIL  stunnel $name did not start"; cat "$work/stunnel-$name.log"; exit 1
}
stunnel_start carrier "[carrier]" "client = yes" "accept = 127.0.0.1:$carrier_tunnel" "connect = 127.0.0.1:$tls_port" \
  "CAfile = $certs/ca.crt" "verifyChain = yes" "checkIP = 127.0.0.1"
stunnel_start trunk "[trunk]" "accept = 127.0.0.1:$trunk_tls" "connect = 127.0.0.1:$trunk_sipp" \
  "cert = $certs/server.crt" "key = $certs/server.key"

api() { # method path [json] -> body (an error: its body on stderr)
  local body
  body=$(curl -sS --fail-with-body -X "$1" "http://127.0.0.1:$api$2" -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' ${3:+--data "$3"}) || { echo "$1 $2: $body" >&2; return 1; }
  printf '%s\n' "$body"
}
json_id() { python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }

# Agents: SIPp UASes over UDP; one answers and waits for the BYE, one answers and hangs up after 300 ms.
answer_id=$(api POST /v1/agents "{\"name\":\"sipp-tls-answer\",\"sip_uri\":\"sip:agent@127.0.0.1:$pa\",\"max_concurrent_calls\":1000}" | json_id)
hangup_id=$(api POST /v1/agents "{\"name\":\"sipp-tls-hangup\",\"sip_uri\":\"sip:agent@127.0.0.1:$ph\",\"max_concurrent_calls\":1000}" | json_id)
{ echo SEQUENTIAL; for i in $(seq 100 109); do echo "+1415555$(printf %04d $i);"; done; } > "$work/dids_answer.csv"
{ echo SEQUENTIAL; for i in $(seq 100 109); do echo "+1628555$(printf %04d $i);"; done; } > "$work/dids_hangup.csv"
for n in $(tail -n +2 "$work/dids_answer.csv" | tr -d ';'); do
  api POST /v1/phone-numbers/purchase "{\"phone_number\":\"$n\",\"agent_id\":\"$answer_id\",\"inbound_routing\":{\"agent_id\":\"$answer_id\"}}" >/dev/null
done
for n in $(tail -n +2 "$work/dids_hangup.csv" | tr -d ';'); do
  api POST /v1/phone-numbers/purchase "{\"phone_number\":\"$n\",\"agent_id\":\"$hangup_id\",\"inbound_routing\":{\"agent_id\":\"$hangup_id\"}}" >/dev/null
done
i=0
for spec in "uas_agent.xml $pa" "uas_agent_hangup.xml $ph"; do
  set -- $spec
  mkdir -p "$work/agent-$1"
  (cd "$work/agent-$1" && exec timeout 600 sipp -sf "$here/$1" -i 127.0.0.1 -p "$2" -mp $((edge_port + 1000 + 20 * i)) \
     -nostdin -timeout 500s -trace_err >sipp.out 2>&1) &
  pids+=($!); i=$((i + 1))
done
sleep 1

passed=0; failed=0
ok() { echo "ok    $*"; passed=$((passed + 1)); }
fail() { echo "FAIL  $*"; failed=$((failed + 1)); }
screen() { grep -h 'Successful call' "$1"/*_screen.log 2>/dev/null | tail -1 | tr -s ' ' || true; }

# The carrier: SIPp over TCP into the tunnel; the Request-URI and To name the edge's TLS address.
carrier() { # name scenario dids count rate extra sipp args...
  local name=$1 sf=$2 dids=$3 n=$4 r=$5; shift 5
  local out="$work/$name"
  mkdir -p "$out"
  if (cd "$out" && timeout 120 sipp -sf "$here/$sf" "127.0.0.1:$tls_port" -rsa "127.0.0.1:$carrier_tunnel" -t t1 \
        -i 127.0.0.1 -p "$carrier_sipp" -mp $((edge_port + 1100)) -inf "$dids" -m "$n" -r "$r" \
        -timeout 100s -timeout_error -trace_err -trace_screen -nostdin "$@" > sipp.out 2>&1); then
    ok "$name: $(screen "$out")"
  else
    fail "$name (sipp exit $?)"; tail -n 20 "$out"/sipp.out "$out"/*errors.log 2>/dev/null || true
  fi
}
carrier tls_carrier_hangs_up_100 uac_tls_carrier.xml "$work/dids_answer.csv" 100 20 -d 200
carrier tls_carrier_edge_bye_50 uac_tls_carrier_edge_bye.xml "$work/dids_hangup.csv" 50 10

# The trunk: two numbers on the same TLS trunk, one written sips:, one ;transport=tls. 10 calls each from
# an agent on the agent network (127.0.0.2, UDP), hung up by the agent; then 5 through POST /v1/calls
# (trunk first, then the answering agent), hung up with DELETE /v1/calls/{id}. 25 calls at the trunk.
trunk_calls=25
mkdir -p "$work/trunk"
(cd "$work/trunk" && exec timeout 200 sipp -sf "$here/uas_trunk_tls.xml" -t t1 -i 127.0.0.1 -p "$trunk_sipp" \
   -mp $((edge_port + 1200)) -key tls_addr "127.0.0.1:$trunk_tls" -m "$trunk_calls" -nostdin -timeout 150s \
   -timeout_error -trace_err -trace_screen >sipp.out 2>&1) &
trunk_pid=$!; pids+=($trunk_pid)
out_agent=$(api POST /v1/agents "{\"name\":\"sipp-tls-outbound\",\"sip_uri\":\"sip:agent@127.0.0.1:$pa\",\"max_concurrent_calls\":1000}" | json_id)
api POST /v1/phone-numbers "{\"phone_number\":\"+13105550400\",\"provider\":\"telnyx\",\"agent_id\":\"$out_agent\",\"provider_config\":{\"trunk_address\":\"sips:127.0.0.1:$trunk_tls\"}}" >/dev/null
api POST /v1/phone-numbers "{\"phone_number\":\"+13105550401\",\"provider\":\"telnyx\",\"agent_id\":\"$out_agent\",\"provider_config\":{\"trunk_address\":\"127.0.0.1:$trunk_tls;transport=tls\"}}" >/dev/null
{ echo SEQUENTIAL; for i in $(seq 10 19); do echo "+13105550400;+442079460$i;"; echo "+13105550401;+442079461$i;"; done; } > "$work/trunk_calls.csv"
sleep 0.5
out=$work/tls_trunk_agent_calls_20; mkdir -p "$out"
if (cd "$out" && timeout 120 sipp -sf "$here/uac_agent_outbound.xml" 127.0.0.1:$port -i 127.0.0.2 -mp $((edge_port + 1300)) \
      -inf "$work/trunk_calls.csv" -m 20 -r 5 -d 300 -timeout 100s -timeout_error -trace_err -trace_screen -nostdin >sipp.out 2>&1); then
  ok "tls_trunk_agent_calls_20: $(screen "$out")"
else
  fail "tls_trunk_agent_calls_20"; tail -n 20 "$out"/sipp.out "$out"/*errors.log 2>/dev/null || true
fi
api_calls=()
for i in 1 2 3 4 5; do
  api_calls+=("$(api POST /v1/calls "{\"from\":\"+13105550400\",\"to\":\"+3314268500$i\",\"agent_id\":\"$out_agent\"}" | json_id)")
  sleep 0.1
done
live=0
for _ in $(seq 50); do
  live=0
  for id in "${api_calls[@]}"; do
    if api GET "/v1/calls/$id" | grep -q '"status":"in-progress"'; then live=$((live + 1)); fi
  done
  [ "$live" -eq 5 ] && break
  sleep 0.2
done
for id in "${api_calls[@]}"; do api DELETE "/v1/calls/$id" >/dev/null || true; done
if wait "$trunk_pid" && [ "$live" -eq 5 ]; then
  ok "tls_trunk_api_calls_5: 5 calls in progress, hung up through the API; trunk: $(screen "$work/trunk")"
else
  fail "tls_trunk_api_calls_5 ($live of 5 in progress)"; tail -n 20 "$work"/trunk/sipp.out "$work"/trunk/*errors.log 2>/dev/null || true
fi

# Records and traces: every call completed and answered by whom it should be, hung up by whom it should
# be; every message of a carrier or trunk leg went over TLS, each run's carrier leg over one connection,
# and the edge's own BYEs among them.
sleep 2
if python3 - "$api" "$key" "$carrier_tunnel" "$trunk_tls" <<'PY'
import json, sys, urllib.request
api, key, trunk_tls = sys.argv[1], sys.argv[2], sys.argv[4]
def get(path):
    req = urllib.request.Request(f"http://127.0.0.1:{api}{path}", headers={"Authorization": f"Bearer {key}"})
    return json.load(urllib.request.urlopen(req, timeout=10))
calls, cursor = [], None
while True:
    page = get("/v1/calls?limit=100" + (f"&cursor={cursor}" if cursor else ""))
    calls += page["data"]
    cursor = page.get("next_cursor")
    if not cursor:
        break
bad = []
inbound_answer = [c for c in calls if c["to"].startswith("+14155550")]
inbound_hangup = [c for c in calls if c["to"].startswith("+16285550")]
trunk_agent = [c for c in calls if c["to"].startswith("+4420794")]
trunk_api = [c for c in calls if c["to"].startswith("+33142685")]
checks = [
    ("carrier hangs up", inbound_answer, 100, "primary", "caller", "carrier", False),
    ("agent hangs up, the edge's BYE to the carrier", inbound_hangup, 50, "primary", "agent", "carrier", True),
    ("agent calls through the TLS trunk", trunk_agent, 20, "trunk", None, "trunk", True),
    ("API calls through the TLS trunk", trunk_api, 5, "trunk", "edge", "trunk", True),
]
for name, mine, n, answered, hung, tls_leg, edge_bye in checks:
    wrong = [c for c in mine if c["status"] != "completed" or c["answered_by"] != answered
             or (hung and c["hangup_by"] != hung)]
    if len(mine) != n or wrong:
        bad.append(f"{name}: {len(mine)} records (want {n}), {len(wrong)} not completed/answered by {answered}/hung up by {hung}: "
                   + json.dumps([{k: c.get(k) for k in ("to", "status", "answered_by", "hangup_by", "error")} for c in wrong[:2]]))
    peers, transports, byes = set(), set(), 0
    for c in mine:
        t = get(f"/v1/calls/{c['id']}/trace")
        legs = [l["leg"] for l in t["legs"] if l["leg"].startswith(tls_leg)]
        msgs = [m for m in t["messages"] if m["leg"] in legs]
        if not msgs:
            bad.append(f"{name}: {c['id']} has no {tls_leg} leg in its trace")
            continue
        transports |= {m["transport"] for m in msgs}
        peers |= {m["peer"] for m in msgs}
        byes += sum(1 for m in msgs if m["direction"] == "out" and m["start_line"].startswith("BYE "))
    if transports != {"tls"}:
        bad.append(f"{name}: {tls_leg} leg transports {sorted(transports)}, want only tls")
    # One TLS connection: the carrier's leg always from the tunnel's one source port; the trunk's to its address.
    if tls_leg == "carrier" and len(peers) != 1:
        bad.append(f"{name}: carrier leg over {len(peers)} connections {sorted(peers)[:4]}, want 1")
    if tls_leg == "trunk" and peers != {f"127.0.0.1:{trunk_tls}"}:
        bad.append(f"{name}: trunk leg peers {sorted(peers)}, want 127.0.0.1:{trunk_tls}")
    if edge_bye and byes < n:
        bad.append(f"{name}: {byes} BYEs sent by the edge over TLS, want {n}")
    print(f"      {name}: {len(mine)} records, {tls_leg} leg transport {','.join(sorted(transports))} from {','.join(sorted(peers))}, "
          f"{byes} BYEs sent by the edge on it")
for b in bad:
    print("      " + b[:600])
sys.exit(1 if bad else 0)
PY
then ok "tls_records_and_traces"; else fail "tls_records_and_traces"; fi

# What the tunnels say: the carrier's stunnel accepted the edge's certificate, the trunk's stunnel took the
# edge's connection; both spoke TLS 1.3 or 1.2.
for t in carrier trunk; do
  echo "      stunnel $t: $(grep -c 'accepted connection' "$work/stunnel-$t.log") connection(s), $(grep -o 'TLSv1\.[23]' "$work/stunnel-$t.log" | sort | uniq -c | tr -s ' ' | paste -sd, -)"
done
if grep -q 'Certificate accepted at depth=0: CN=127.0.0.1' "$work/stunnel-carrier.log"; then
  ok "tls_carrier_checked_edge_certificate"
else
  fail "tls_carrier_checked_edge_certificate"; tail -n 20 "$work/stunnel-carrier.log"
fi

if ! kill -0 "$edge_pid" 2>/dev/null; then fail "the edge exited during the runs"; cat "$work/edge.log"; fi
echo "sipp tls: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
