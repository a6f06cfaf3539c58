# Sourced by the shell test runners: starts the built edge on loopback with a fresh data dir.
# Sets: work (temp dir), port (SIP UDP+TCP), api (API port), edge_pid, key (an API key); stops the edge on exit.
# Needs: bin (path to oneinbox-edge). Optional: edge_port (the SIP port, else a random one), edge_sip_extra
# and edge_outbound_extra (TOML lines added to [sip] and [outbound], e.g. the TLS listener).
work=$(mktemp -d /tmp/edge-test.XXXXXX)
port=${edge_port:-$((20000 + RANDOM % 20000))}
api=$((port + 1))
cat > "$work/edge.toml" <<TOML
[sip]
udp = "127.0.0.1:$port"
tcp = "127.0.0.1:$port"
${edge_sip_extra:-}
[api]
listen = "127.0.0.1:$api"
[storage]
data_dir = "$work/data"
[log]
format = "human"
level = "warn"
[outbound]
telnyx_cps = 500
twilio_cps = 500
default_cps = 500
${edge_outbound_extra:-}
# The scripts register loopback BYO numbers as the operator would, with no provider account.
[security]
verify_number_ownership = false
# The SIPp agents and fake trunks of the tests listen on loopback.
internal_targets = ["127.0.0.0/8", "::1/128"]
# Provider APIs on a closed loopback port: tests never reach the internet.
[inventory.twilio]
base_url = "http://127.0.0.1:9"
[inventory.telnyx]
base_url = "http://127.0.0.1:9"
[[carriers]]
name = "sipp"
allow = ["127.0.0.1/32"]
# Agents placing outbound calls (SIPp UACs bound to 127.0.0.2).
[[agent_networks]]
name = "sipp-agents"
allow = ["127.0.0.2/32"]
TOML
"$bin" serve --config "$work/edge.toml" > "$work/edge.log" 2>&1 &
edge_pid=$!
# SIGTERM drains (calls up may finish); a second one after 5 s ends what is left with BYE, and whatever
# still runs after the BYEs' Timer F is killed.
stop_edge() {
  kill "$edge_pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$edge_pid" 2>/dev/null || break; sleep 0.1; done
  kill "$edge_pid" 2>/dev/null || true
  for _ in $(seq 400); do kill -0 "$edge_pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$edge_pid" 2>/dev/null || true
  wait "$edge_pid" 2>/dev/null || true
}
trap stop_edge EXIT
for _ in $(seq 1 100); do
  if (exec 3<>/dev/tcp/127.0.0.1/$api) 2>/dev/null; then break; fi
  sleep 0.1
done
key=$("$bin" keys create --config "$work/edge.toml" --name tests | tail -n 1)
