#!/usr/bin/env bash
# Carriers' own rules for outbound calls (issue 19 item 6), each enforced by a SIPp trunk on loopback:
#   tests/sipp/carriers.sh [path/to/oneinbox-edge]
# Per method: numbers registered through the API with the provider_config field it needs; 3 agent calls
# from the agent network (127.0.0.2) through a number that has it must be answered and completed, and one
# API call through a number of the same trunk without it must fail with an error that names the field.
# Bounded: a few calls per trunk, every SIPp run under a timeout; the edge is stopped on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-$root/target/debug/oneinbox-edge}
[ -x "$bin" ] || { echo "edge binary not found at $bin (cargo build first)"; exit 1; }
command -v sipp >/dev/null || { echo "sipp not installed (apt-get install -y sip-tester)"; exit 1; }

. "$root/tests/lib/edge.sh"

api() { # method path [json] -> body
  curl -sS --fail-with-body -X "$1" "http://127.0.0.1:$api$2" -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' ${3:+--data "$3"}
}
json_id() { python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
agent=$(api POST /v1/agents "{\"name\":\"sipp-carrier-rules\",\"sip_uri\":\"sip:agent@127.0.0.1:$((port + 30))\",\"max_concurrent_calls\":100}" | json_id)

passed=0; failed=0
# name scenario good_did good_config bad_did bad_config words_of_the_bad_call's_error
method() {
  local name=$1 sf=$2 good=$3 good_pc=$4 bad=$5 bad_pc=$6 words=$7
  local pt=$((port + 40 + passed + failed)) out="$work/$name"
  mkdir -p "$out/trunk" "$out/agent"
  local tp="127.0.0.1:$pt"
  api POST /v1/phone-numbers "{\"phone_number\":\"$good\",\"provider\":\"telnyx\",\"agent_id\":\"$agent\",\"provider_config\":{\"trunk_address\":\"$tp\"${good_pc:+,$good_pc}}}" > "$out/good.json"
  api POST /v1/phone-numbers "{\"phone_number\":\"$bad\",\"provider\":\"telnyx\",\"agent_id\":\"$agent\",\"provider_config\":{\"trunk_address\":\"$tp\"${bad_pc:+,$bad_pc}}}" >/dev/null
  (cd "$out/trunk" && exec timeout 120 sipp -sf "$here/$sf" -i 127.0.0.1 -p "$pt" -mp $((port + 1500 + 20 * (passed + failed))) \
     -m 4 -nostdin -timeout 90s -timeout_error -trace_err -trace_screen >sipp.out 2>&1) &
  local trunk_pid=$!
  { echo SEQUENTIAL; for i in 1 2 3; do echo "$good;+4420794600$i$((passed + failed));"; done; } > "$out/calls.csv"
  sleep 0.5
  local ok=1 why=""
  if ! (cd "$out/agent" && timeout 60 sipp -sf "$here/uac_agent_outbound.xml" 127.0.0.1:$port -i 127.0.0.2 \
        -mp $((port + 2500 + 20 * (passed + failed))) -inf "$out/calls.csv" -m 3 -r 5 -d 300 -timeout 50s -timeout_error \
        -trace_err -trace_screen -nostdin >sipp.out 2>&1); then
    ok=0; why="agent calls through $good failed"
  fi
  local id
  id=$(api POST /v1/calls "{\"from\":\"$bad\",\"to\":\"+33142685999\",\"agent_id\":\"$agent\"}" | json_id)
  sleep 1
  api GET "/v1/calls/$id" > "$out/bad_call.json"
  if ! python3 - "$out/bad_call.json" "$words" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
err = c.get("error") or {}
ok = c["status"] == "failed" and sys.argv[2] in err.get("message", "")
print(f"      refused call: status={c['status']} error={json.dumps(err)}")
sys.exit(0 if ok else 1)
PY
  then ok=0; why="${why:+$why; }the call without the field did not fail with '$words'"; fi
  if ! wait "$trunk_pid"; then ok=0; why="${why:+$why; }the SIPp trunk failed"; fi
  # The good calls are complete: answered by the trunk, hung up by the agent.
  if ! api GET "/v1/calls?limit=100" | python3 -c "
import json, sys
calls = [c for c in json.load(sys.stdin)['data'] if c['from'] == '$good']
good = [c for c in calls if c['status'] == 'completed' and c['answered_by'] == 'trunk']
sys.exit(0 if len(calls) == 3 and len(good) == 3 else 1)"; then ok=0; why="${why:+$why; }records of the good calls"; fi
  if [ "$ok" = 1 ]; then
    echo "ok    $name: 3 calls through $good completed; $(grep -h 'Successful call' "$out"/trunk/*_screen.log | tail -1 | tr -s ' ')"
    passed=$((passed + 1))
  else
    echo "FAIL  $name: $why"; tail -n 20 "$out"/trunk/sipp.out "$out"/trunk/*errors.log "$out"/agent/*errors.log 2>/dev/null || true
    failed=$((failed + 1))
  fi
}

# Telnyx credential/FQDN connection: digest plus X-Telnyx-Username; without credentials the 401 cannot be answered.
method telnyx_credentials uas_trunk_telnyx_credentials.xml \
  +13105550201 '"auth_username":"oneinbox","auth_password":"sipp-trunk-secret"' \
  +13105550301 '' "set auth_username and auth_password"
# Telnyx IP connection, token: X-Telnyx-Token on the INVITE; without it 403.
method telnyx_ip_token uas_trunk_telnyx_token.xml \
  +13105550211 '"ip_auth_token":"sipp-telnyx-token-0001"' \
  +13105550311 '' "needs provider_config.ip_auth_token"
# Telnyx IP connection, tech prefix: 7391 before the digits; without it 407.
method telnyx_ip_tech_prefix uas_trunk_telnyx_prefix.xml \
  +13105550221 '"tech_prefix":"7391"' \
  +13105550321 '' "tech_prefix or ip_auth_token it requires"
# Telnyx IP connection, P-Charge-Info with the number; without it 403.
method telnyx_ip_p_charge_info uas_trunk_telnyx_pci.xml \
  +13105550231 '"p_charge_info":true' \
  +13105550331 '' "provider_config.p_charge_info"

# The API never echoes the token back.
if grep -q "sipp-telnyx-token-0001" "$work"/telnyx_ip_token/good.json; then
  echo "FAIL  token echoed by the API"; failed=$((failed + 1))
else
  echo "ok    token_not_echoed: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["provider_config"])' "$work"/telnyx_ip_token/good.json)"
  passed=$((passed + 1))
fi

if ! kill -0 "$edge_pid" 2>/dev/null; then echo "FAIL  the edge exited during the runs"; cat "$work/edge.log"; failed=$((failed + 1)); fi
echo "sipp carriers: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
