#!/usr/bin/env bash
# SIPp against the built edge on loopback: every scenario must complete every call.
#   tests/sipp/run.sh [path/to/oneinbox-edge]
# Bounded: each run has a call count (-m) and a global timeout; the edge is stopped on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-$root/target/debug/oneinbox-edge}
[ -x "$bin" ] || { echo "edge binary not found at $bin (cargo build first)"; exit 1; }
command -v sipp >/dev/null || { echo "sipp not installed (apt-get install -y sip-tester)"; exit 1; }

. "$root/tests/lib/edge.sh"

passed=0; failed=0
run() { # name, scenario, extra sipp args...
  local name=$1 sf=$2; shift 2
  local out="$work/$name"
  mkdir -p "$out"
  if (cd "$out" && timeout 180 sipp -sf "$here/$sf" 127.0.0.1:$port -i 127.0.0.1 \
        -timeout 150s -timeout_error -trace_stat -trace_err -nostdin "$@" > sipp.out 2>&1); then
    echo "ok    $name: $(grep -h 'Successful call' "$out"/*_screen.log 2>/dev/null | tail -1 | tr -s ' ' || true)"
    passed=$((passed + 1))
  else
    echo "FAIL  $name (sipp exit $?)"; tail -n 20 "$out"/sipp.out "$out"/*errors.log 2>/dev/null || true
    failed=$((failed + 1))
  fi
}

# Foundation: retransmissions through the transaction layer with 10% loss both ways.
run options_udp_lost10      options_uac.xml        -m 300 -r 100 -lost 10 -trace_screen
run info_481_udp_lost10     info_uac.xml           -m 300 -r 100 -lost 10 -trace_screen
run invite_404_udp_lost10   invite_reject_uac.xml  -m 200 -r 50  -lost 10 -trace_screen
# The same over TCP: no retransmissions, answers on the same connection.
run options_tcp             options_uac.xml        -m 300 -r 100 -t t1 -trace_screen
run invite_404_tcp          invite_reject_uac.xml  -m 100 -r 50  -t t1 -trace_screen

# Inbound calls through the B2BUA: agents are SIPp UASes; numbers and agents are set up through the API.
pa=$((port + 10)); pb=$((port + 11)); ps=$((port + 12)); pr=$((port + 13))
api() { # method path [json] -> body
  curl -sS --fail-with-body -X "$1" "http://127.0.0.1:$api$2" -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' ${3:+--data "$3"}
}
json_id() { python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
answer_id=$(api POST /v1/agents "{\"name\":\"sipp-answer\",\"sip_uri\":\"sip:agent@127.0.0.1:$pa\",\"max_concurrent_calls\":10000}" | json_id)
busy_id=$(api POST /v1/agents "{\"name\":\"sipp-503\",\"sip_uri\":\"sip:agent@127.0.0.1:$pb\",\"max_concurrent_calls\":10000}" | json_id)
rtp_id=$(api POST /v1/agents "{\"name\":\"sipp-rtp\",\"sip_uri\":\"sip:agent@127.0.0.1:$pr\",\"max_concurrent_calls\":10000}" | json_id)
silent_id=$(api POST /v1/agents "{\"name\":\"sipp-silent\",\"sip_uri\":\"sip:agent@127.0.0.1:$ps\",\"max_concurrent_calls\":10000}" | json_id)
{ echo SEQUENTIAL; for i in $(seq 100 119); do echo "+1415555$(printf %04d $i);"; done; } > "$work/dids_primary.csv"
{ echo SEQUENTIAL; for i in $(seq 100 119); do echo "+1628555$(printf %04d $i);"; done; } > "$work/dids_failover.csv"
{ echo SEQUENTIAL; for i in $(seq 100 109); do echo "+1650555$(printf %04d $i);"; done; } > "$work/dids_silent.csv"
{ echo SEQUENTIAL; for i in $(seq 100 109); do echo "+1707555$(printf %04d $i);"; done; } > "$work/dids_voicemail.csv"
{ echo SEQUENTIAL; for i in $(seq 100 104); do echo "+1408555$(printf %04d $i);agent;"; done; } > "$work/dids_rtp_agent.csv"
{ echo SEQUENTIAL; for i in $(tail -n +2 "$work/dids_voicemail.csv" | tr -d ';' | head -5); do echo "$i;voicemail;"; done; } > "$work/dids_rtp_voicemail.csv"
for n in $(tail -n +2 "$work/dids_voicemail.csv" | tr -d ';'); do
  api POST /v1/phone-numbers/purchase "{\"phone_number\":\"$n\",\"agent_id\":\"$busy_id\",\"inbound_routing\":{\"agent_id\":\"$busy_id\",\"voicemail_message\":\"Please leave a message.\"}}" >/dev/null
done
for n in $(tail -n +2 "$work/dids_rtp_agent.csv" | cut -d';' -f1); do
  api POST /v1/phone-numbers/purchase "{\"phone_number\":\"$n\",\"agent_id\":\"$rtp_id\",\"inbound_routing\":{\"agent_id\":\"$rtp_id\"}}" >/dev/null
done
for n in $(tail -n +2 "$work/dids_primary.csv" | tr -d ';'); do
  api POST /v1/phone-numbers/purchase "{\"phone_number\":\"$n\",\"agent_id\":\"$answer_id\",\"inbound_routing\":{\"agent_id\":\"$answer_id\"}}" >/dev/null
done
for n in $(tail -n +2 "$work/dids_failover.csv" | tr -d ';'); do
  api POST /v1/phone-numbers/purchase "{\"phone_number\":\"$n\",\"agent_id\":\"$busy_id\",\"inbound_routing\":{\"agent_id\":\"$busy_id\",\"fallback\":{\"agent_id\":\"$answer_id\"}}}" >/dev/null
done
for n in $(tail -n +2 "$work/dids_silent.csv" | tr -d ';'); do
  api POST /v1/phone-numbers/purchase "{\"phone_number\":\"$n\",\"agent_id\":\"$silent_id\",\"inbound_routing\":{\"agent_id\":\"$silent_id\",\"fallback\":{\"agent_id\":\"$answer_id\"}}}" >/dev/null
done
agent_pids=""
i=0
for spec in "uas_agent.xml $pa" "uas_busy.xml $pb" "uas_silent.xml $ps" "uas_agent_rtp.xml $pr"; do
  set -- $spec
  # Media ports well apart: SIPp takes the -mp port and the ones next to it (RTCP, video).
  mp=$((port + 1000 + 20 * i)); i=$((i + 1))
  mkdir -p "$work/agent-$1"
  (cd "$work/agent-$1" && exec timeout 900 sipp -sf "$here/$1" -i 127.0.0.1 -p "$2" -mp "$mp" -nostdin \
     -timeout 600s -trace_err >sipp.out 2>&1) &
  agent_pids="$agent_pids $!"
done
sleep 1
for p in $agent_pids; do
  if ! kill -0 "$p" 2>/dev/null; then
    echo "FAIL  an agent UAS did not start:"; tail -n 5 "$work"/agent-*/sipp.out; exit 1
  fi
done
cleanup_agents() { for p in $agent_pids; do pkill -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done; }
trap 'cleanup_agents; stop_edge' EXIT

run inbound_primary_1000    uac_inbound.xml -inf "$work/dids_primary.csv"  -m 1000 -r 100 -d 0 -trace_screen
run inbound_failover_1000   uac_inbound.xml -inf "$work/dids_failover.csv" -m 1000 -r 100 -d 0 -trace_screen
# A silent primary: each call waits the 2 s setup timeout, then the fallback answers.
run inbound_silent_failover uac_inbound.xml -inf "$work/dids_silent.csv"   -m 100  -r 20  -d 0 -trace_screen
# No agent can take these: the edge answers with voicemail; the caller hangs up at once.
run inbound_voicemail_200   uac_inbound.xml -inf "$work/dids_voicemail.csv" -m 200 -r 20 -d 0 -trace_screen
# Real audio (A-law speech, then # as RFC 4733): through the relay to an agent, and into voicemail, where
# the # ends the recording and the edge hangs up.
run rtp_agent               uac_rtp.xml -inf "$work/dids_rtp_agent.csv"     -m 5 -r 1 -mp $((port + 3000)) -trace_screen
run rtp_voicemail           uac_rtp.xml -inf "$work/dids_rtp_voicemail.csv" -m 5 -r 1 -mp $((port + 4000)) -trace_screen

# Outbound through a SIPp trunk that challenges with 401 and checks our Authorization with its own
# verifyauth: 20 calls placed by agents from the agent network (127.0.0.2), then 20 through POST /v1/calls,
# bridged to the answering SIPp agent once the trunk answers and hung up with DELETE /v1/calls/{id}.
pt=$((port + 14))
mkdir -p "$work/trunk"
(cd "$work/trunk" && exec timeout 300 sipp -sf "$here/uas_trunk_401.xml" -i 127.0.0.1 -p "$pt" -mp $((port + 1200)) \
   -m 40 -nostdin -timeout 240s -timeout_error -trace_err -trace_screen >sipp.out 2>&1) &
trunk_pid=$!
out_agent=$(api POST /v1/agents "{\"name\":\"sipp-outbound\",\"sip_uri\":\"sip:agent@127.0.0.1:$pa\",\"max_concurrent_calls\":10000}" | json_id)
api POST /v1/phone-numbers "{\"phone_number\":\"+13105550100\",\"provider\":\"telnyx\",\"agent_id\":\"$out_agent\",\"provider_config\":{\"trunk_address\":\"127.0.0.1:$pt\",\"auth_username\":\"oneinbox\",\"auth_password\":\"sipp-trunk-secret\"}}" >/dev/null
{ echo SEQUENTIAL; for i in $(seq 100 119); do echo "+13105550100;+44207946$(printf %04d $i);"; done; } > "$work/agent_calls.csv"
sleep 0.5
out=$work/agent_outbound_20; mkdir -p "$out"
if (cd "$out" && timeout 120 sipp -sf "$here/uac_agent_outbound.xml" 127.0.0.1:$port -i 127.0.0.2 -mp $((port + 1300)) -inf "$work/agent_calls.csv" \
      -m 20 -r 5 -d 300 -timeout 100s -timeout_error -trace_err -trace_screen -nostdin >sipp.out 2>&1); then
  echo "ok    agent_outbound_20: $(grep -h 'Successful call' "$out"/*_screen.log | tail -1 | tr -s ' ')"; passed=$((passed + 1))
else
  echo "FAIL  agent_outbound_20"; tail -n 20 "$out"/sipp.out "$out"/*errors.log 2>/dev/null || true; failed=$((failed + 1))
fi
api_calls=()
for i in $(seq 100 119); do
  id=$(api POST /v1/calls "{\"from\":\"+13105550100\",\"to\":\"+33142685$(printf %03d $i)\",\"agent_id\":\"$out_agent\"}" | json_id) || true
  api_calls+=("$id")
  sleep 0.1
done
sleep 2
live=0
for id in "${api_calls[@]}"; do
  [ -n "$id" ] || continue
  if api GET "/v1/calls/$id" | grep -q '"status":"in-progress"'; then live=$((live + 1)); fi
  api DELETE "/v1/calls/$id" >/dev/null || true
done
if wait "$trunk_pid" && [ "$live" -eq 20 ]; then
  echo "ok    api_outbound_20: 20 calls in progress, hung up through the API; trunk: $(grep -h 'Successful call' "$work"/trunk/*_screen.log | tail -1 | tr -s ' ')"
  passed=$((passed + 1))
else
  echo "FAIL  api_outbound_20 ($live of 20 in progress)"; tail -n 20 "$work"/trunk/sipp.out "$work"/trunk/*errors.log 2>/dev/null || true
  failed=$((failed + 1))
fi

# Every call of the inbound runs has a complete record: ended, completed, answered by the expected hop.
sleep 1
if python3 - "$api" "$key" <<'PY'
import json, sys, urllib.request
api, key = sys.argv[1], sys.argv[2]
calls, cursor = [], None
while True:
    url = f"http://127.0.0.1:{api}/v1/calls?limit=100" + (f"&cursor={cursor}" if cursor else "")
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    page = json.load(urllib.request.urlopen(req, timeout=10))
    calls += page["data"]
    cursor = page.get("next_cursor")
    if not cursor:
        break
want = {"+1415": ("primary", 1000), "+1628": ("fallback", 1000), "+1650": ("fallback", 100),
        "+1707": ("voicemail", 205), "+1408": ("primary", 5), "+4420": ("trunk", 20), "+3314": ("trunk", 20)}
bad = [c for c in calls if c["status"] != "completed" or not c["ended_at"] or not c["hops"] or c["hangup_by"] not in ("caller", "edge")]
for prefix, (route, n) in want.items():
    mine = [c for c in calls if c["to"].startswith(prefix)]
    if len(mine) != n or any(c["answered_by"] != route for c in mine):
        bad.append({"prefix": prefix, "records": len(mine), "want": n})
vm, cursor = [], None
while True:
    url = f"http://127.0.0.1:{api}/v1/voicemails?limit=100" + (f"&cursor={cursor}" if cursor else "")
    page = json.load(urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"}), timeout=10))
    vm += page["data"]
    cursor = page.get("next_cursor")
    if not cursor:
        break
if len(vm) != 205:
    bad.append({"voicemails": len(vm), "want": 205})
if sum(1 for v in vm if v["ended_by"] == "dtmf-hash") != 5:
    bad.append({"voicemails ended by #": sum(1 for v in vm if v["ended_by"] == "dtmf-hash"), "want": 5})
from collections import Counter
print("answered_by:", Counter((c["to"][:5], c["answered_by"]) for c in calls))
print(f"call records: {len(calls)} stored, {len(vm)} voicemails, {len(bad)} incomplete or wrong")
for b in bad[:5]:
    print(json.dumps(b)[:400])
sys.exit(1 if bad else 0)
PY
then echo "ok    call_records_complete"; passed=$((passed + 1)); else echo "FAIL  call_records_complete"; failed=$((failed + 1)); fi

if ! kill -0 "$edge_pid" 2>/dev/null; then echo "FAIL  the edge exited during the runs"; cat "$work/edge.log"; failed=$((failed + 1)); fi
echo "sipp: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
