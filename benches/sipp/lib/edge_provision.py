#!/usr/bin/env python3
"""Provision the edge for the load runs through its REST API (as an operator would).

usage: edge_provision.py API_URL KEY ROUTES_CSV

ROUTES_CSV is data/did_routes.csv from gen_data.sh (did,primary,fallback as host:port): one agent per
distinct host:port (sip:agent@host:port, max_concurrent_calls at the API's limit), then every DID
bought from the local inventory with inbound_routing primary -> fallback. One keep-alive connection;
about 1,000 numbers in a few seconds.
"""
import http.client
import json
import sys
import urllib.parse

api, key, routes = sys.argv[1], sys.argv[2], sys.argv[3]
u = urllib.parse.urlparse(api)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
hdrs = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def call(method, path, body=None):
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=hdrs)
    r = conn.getresponse()
    data = r.read()
    if r.status >= 300:
        sys.exit(f"{method} {path}: {r.status} {data[:300]!r}")
    return json.loads(data) if data else None


rows = []
for line in open(routes):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    did, primary, fallback = line.split(",")
    rows.append((did, primary, fallback))

agents = {}
for hp in sorted({r[1] for r in rows} | {r[2] for r in rows}):
    a = call("POST", "/v1/agents", {"name": f"bench-{hp.replace(':', '-')}", "sip_uri": f"sip:agent@{hp}",
                                     "max_concurrent_calls": 10000})
    agents[hp] = a["id"]

for did, primary, fallback in rows:
    call("POST", "/v1/phone-numbers/purchase", {
        "phone_number": did,
        "agent_id": agents[primary],
        "inbound_routing": {"agent_id": agents[primary], "fallback": {"agent_id": agents[fallback]}},
    })
print(f"provisioned {len(agents)} agents, {len(rows)} numbers")
