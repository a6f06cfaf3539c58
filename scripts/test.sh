#!/usr/bin/env bash
# Every test of oneinbox-edge, with its set-up, on a fresh Debian machine or CI:
#   scripts/test.sh
# 1. installs what the tests use (SIPp, stunnel, baresip, espeak-ng for voicemail greetings, curl) when missing; 2. makes sure PostgreSQL is up (the store suite runs
# against it for real) and Redis (the cluster limits); 3. cargo test for the whole workspace; 4. schemathesis against the running edge's
# OpenAPI; 5. SIPp scenarios against the built binary (over UDP, TCP and, through stunnel, TLS); 6. the interop suite: real SIP user agents (baresip)
# as carrier and agents, audio checked by frequency both ways.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v sipp >/dev/null || missing+=(sip-tester)
# tests/sipp/tls.sh: Debian's SIPp has no TLS; stunnel carries its TCP over TLS to and from the edge.
command -v stunnel >/dev/null || missing+=(stunnel4)
command -v pg_isready >/dev/null || missing+=(postgresql)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v curl >/dev/null || missing+=(curl)
# tests/tls.rs checks that a TLS 1.1 client is refused with `openssl s_client`.
command -v openssl >/dev/null || missing+=(openssl)
# tests/ui_ladder.rs loads the ladder page in headless Chromium.
command -v chromium >/dev/null || missing+=(chromium)
# tests/cluster_limits.rs: the [cluster] limits on Redis (127.0.0.1:6379), and a redis-server of its own
# started on a free port to see a node recover by itself.
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# baresip without its recommended GUI and video front-ends: the interop suite needs only baresip-core.
if ! command -v baresip >/dev/null; then
  echo "== installing baresip"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends baresip
fi

export EDGE_TEST_POSTGRES_URL=${EDGE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  echo "== starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
  for _ in $(seq 1 50); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.2; done
  pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432"; exit 1; }
fi

if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  echo "== starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && break; sleep 0.2; done
  (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null || { echo "Redis is not reachable on 127.0.0.1:6379"; exit 1; }
fi

echo "== cargo test (workspace)"
cargo test --workspace --all-targets

cargo build --bin oneinbox-edge

echo "== schemathesis against /v1/openapi.json"
tests/api/run.sh target/debug/oneinbox-edge

echo "== SIPp scenarios"
tests/sipp/run.sh target/debug/oneinbox-edge

echo "== SIPp trunks enforcing each carrier's own outbound authentication"
tests/sipp/carriers.sh target/debug/oneinbox-edge

echo "== SIPp over TLS (through stunnel) as a carrier and as a trunk"
timeout 300 tests/sipp/tls.sh target/debug/oneinbox-edge

echo "== interop: baresip as carrier and agents (tests/interop)"
timeout 300 python3 tests/interop/run.py target/debug/oneinbox-edge
