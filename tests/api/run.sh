#!/usr/bin/env bash
# schemathesis against /v1/openapi.json of the built edge, with a valid key: no 5xx, no response that breaks
# the schema.   tests/api/run.sh [path/to/oneinbox-edge]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-$root/target/debug/oneinbox-edge}
. "$root/tests/lib/edge.sh"
# Some agents so that generated requests can reference real ids too.
curl -fsS -X POST "http://127.0.0.1:$api/v1/agents" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
  --data '{"name":"schema-agent","sip_uri":"sip:agent@127.0.0.1:5090"}' >/dev/null
BASE_URL="http://127.0.0.1:$api" API_KEY="$key" MAX_EXAMPLES="${MAX_EXAMPLES:-20}" TIME_LIMIT="${TIME_LIMIT:-400}" \
  "$here/schemathesis.sh"
