#!/usr/bin/env bash
# The DID set shared by the SIPp UAC (injection CSV) and the servers under test.
#   gen_data.sh DIR      (from ../shared/bench/kamailio-baseline/gen_data.sh, writing into DIR)
# N DIDs +14155550000.. (default 1000), each routed to PRIMARY (default 127.0.0.1:5070) then FALLBACK
# (127.0.0.1:5080). Writes DIR/dids.csv (SIPp -inf), DIR/did_routes.csv (server-neutral: the edge is
# provisioned from it through its API) and DIR/kamailio-db/{did,version} (Kamailio htable via db_text).
set -euo pipefail
DIR="$1"
N="${N:-1000}"
PRIMARY="${PRIMARY:-127.0.0.1:5070}"
FALLBACK="${FALLBACK:-127.0.0.1:5080}"
mkdir -p "$DIR/kamailio-db"

{
  echo "SEQUENTIAL"
  for ((i=0; i<N; i++)); do printf '+1415555%04d;\n' "$i"; done
} > "$DIR/dids.csv"

{
  echo "# did,primary,fallback"
  for ((i=0; i<N; i++)); do printf '+1415555%04d,%s,%s\n' "$i" "$PRIMARY" "$FALLBACK"; done
} > "$DIR/did_routes.csv"

DB="$DIR/kamailio-db"
{
  echo "id(int,auto) key_name(string) key_type(int) value_type(int) key_value(string) expires(int)"
  for ((i=0; i<N; i++)); do
    v="${PRIMARY}|${FALLBACK}"; v="${v//:/\\:}"
    printf '%d:+1415555%04d:0:0:%s:0\n' "$((i+1))" "$i" "$v"
  done
} > "$DB/did"
cat > "$DB/version" <<'EOV'
table_name(string) table_version(int)
did:2
htable:2
EOV
echo "generated $N DIDs in $DIR"
