#!/usr/bin/env bash
# Property-based API check: schemathesis generates requests from the server's own OpenAPI
# document and fails on any 5xx or any response that does not match the documented schema.
#
# Usage: BASE_URL=http://127.0.0.1:8080 API_KEY=oik_... tests/api/schemathesis.sh
# Optional: MAX_EXAMPLES (default 20), TIME_LIMIT seconds (default 300),
#           SCHEMATHESIS_VENV (default ~/.cache/oneinbox-edge/schemathesis-venv, created on
#           first use when `schemathesis` is not on PATH).
# A dev server: cargo run -p edge-api --example dev_server -- 127.0.0.1:8089
set -euo pipefail

: "${BASE_URL:?set BASE_URL, e.g. http://127.0.0.1:8080}"
: "${API_KEY:?set API_KEY (oneinbox-edge keys create)}"
MAX_EXAMPLES="${MAX_EXAMPLES:-20}"
TIME_LIMIT="${TIME_LIMIT:-300}"
VENV="${SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/oneinbox-edge/schemathesis-venv}"

case "$BASE_URL" in
  http://127.*|http://localhost*|http://\[::1\]*) ;;
  *) echo "refusing non-loopback BASE_URL: $BASE_URL" >&2; exit 2 ;;
esac

if ! command -v schemathesis >/dev/null 2>&1; then
  if [ ! -x "$VENV/bin/schemathesis" ]; then
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet 'schemathesis>=4,<5'
  fi
  PATH="$VENV/bin:$PATH"
fi

# The spec is served unauthenticated; fail early and clearly if the server is not up.
curl -fsS --max-time 10 "$BASE_URL/v1/openapi.json" >/dev/null
# A rejected key would make every operation a (schema-conforming) 401 and prove nothing.
if ! curl -fsS --max-time 10 -o /dev/null -H "Authorization: Bearer $API_KEY" \
    "$BASE_URL/v1/agents?limit=1"; then
  echo "API_KEY is not accepted by $BASE_URL" >&2
  exit 2
fi

# Which refusals of schema-valid input are semantic (and so acceptable) is in schemathesis.toml.
config="$(cd "$(dirname "$0")" && pwd)/schemathesis.toml"
# Run from a scratch directory: schemathesis leaves state files in its working directory.
cd "$(mktemp -d)"
exec timeout --signal=INT --kill-after=30 "$TIME_LIMIT" \
  schemathesis --config-file "$config" run "$BASE_URL/v1/openapi.json" \
    --url "$BASE_URL" \
    --header "Authorization: Bearer $API_KEY" \
    --checks all \
    --max-examples "$MAX_EXAMPLES" \
    --request-timeout 10 \
    --generation-database none \
    --seed 1 \
    --no-color
