#!/usr/bin/env bash
# schemathesis against /v1/openapi.json of the built edge, with a valid key: no 5xx, no response that breaks
# the schema.   tests/api/run.sh [path/to/oneinbox-edge]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-$root/target/debug/oneinbox-edge}
. "$root/tests/lib/edge.sh"
# The document must be valid OpenAPI (a real validator, not only schemathesis' tolerant parser).
venv="${SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/oneinbox-edge/schemathesis-venv}"
if ! command -v openapi-spec-validator >/dev/null 2>&1; then
  [ -x "$venv/bin/pip" ] || { mkdir -p "$(dirname "$venv")"; python3 -m venv "$venv"; }
  [ -x "$venv/bin/openapi-spec-validator" ] || "$venv/bin/pip" install --quiet 'openapi-spec-validator>=0.7,<1'
  PATH="$venv/bin:$PATH"
fi
spec=$(mktemp)
curl -fsS "http://127.0.0.1:$api/v1/openapi.json" -o "$spec"
openapi-spec-validator "$spec"
rm -f "$spec"
# Some agents so that generated requests can reference real ids too.
curl -fsS -X POST "http://127.0.0.1:$api/v1/agents" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
  --data '{"name":"schema-agent","sip_uri":"sip:agent@127.0.0.1:5090"}' >/dev/null
BASE_URL="http://127.0.0.1:$api" API_KEY="$key" MAX_EXAMPLES="${MAX_EXAMPLES:-20}" TIME_LIMIT="${TIME_LIMIT:-400}" \
  "$here/schemathesis.sh"
