#!/usr/bin/env python3
"""Per-hop forwarding latency of a SIP proxy or B2BUA from a loopback capture.

usage: hop_latency.py CAPTURE.pcap [SERVER_PORT=5060] [UAC_PORT=5061]

(From ../shared/bench/kamailio-baseline/lib/hop_latency.py, which pairs the legs by Call-ID: that works
for a proxy only.) The carrier UAC puts its Call-ID into X-Bench-Call-ID; a proxy passes the header on and
the edge copies the carrier's X- headers into the agent leg's INVITE, so each agent leg (its own Call-ID
for a B2BUA) is tied to the carrier call by that INVITE, and the agent leg's responses, ACK and BYE by its
Call-ID. The payloads are read from the capture (tshark -e udp.payload) and parsed here.
  invite_fwd : INVITE in (UAC->server)        -> first INVITE out (server->agent)
  final_fwd  : 200 INVITE in (agent->server)  -> 200 INVITE out (server->UAC)
  ring_fwd, ack_fwd, bye_fwd, bye200_fwd: the same for 180, ACK, BYE, 200 to BYE
  invite_fwd2: INVITE in -> INVITE to the 2nd agent (failover; includes the primary's 503 round trip)
Times in microseconds (kernel capture timestamps).
"""
import collections
import math
import subprocess
import sys

cap = sys.argv[1]
SP = int(sys.argv[2]) if len(sys.argv) > 2 else 5060
UP = int(sys.argv[3]) if len(sys.argv) > 3 else 5061
proc = subprocess.Popen(['tshark', '-r', cap, '-T', 'fields', '-E', 'separator=|',
                         '-e', 'frame.time_epoch', '-e', 'udp.srcport', '-e', 'udp.dstport', '-e', 'udp.payload'],
                        stdout=subprocess.PIPE, text=True)


def parse(payload):
    """(method or None, status or None, Call-ID, CSeq method, X-Bench-Call-ID or None)"""
    try:
        raw = bytes.fromhex(payload.replace(':', ''))
    except ValueError:
        return None
    head = raw.split(b'\r\n\r\n', 1)[0].decode('latin-1').split('\r\n')
    if not head or not head[0]:
        return None
    first = head[0].split(' ')
    if first[0] == 'SIP/2.0':
        meth, code = None, first[1] if len(first) > 1 else ''
    else:
        meth, code = first[0], None
    cid = cseqm = bench = None
    for h in head[1:]:
        n, _, v = h.partition(':')
        n = n.strip().lower()
        if n in ('call-id', 'i'):
            cid = v.strip()
        elif n == 'cseq':
            cseqm = v.split()[-1] if v.split() else ''
        elif n == 'x-bench-call-id':
            bench = v.strip()
    if cid is None:
        return None
    return meth, code, cid, cseqm, bench


ev = collections.defaultdict(dict)
leg_of = {}  # agent-leg Call-ID -> carrier Call-ID
for line in proc.stdout:
    p = line.rstrip('\n').split('|')
    if len(p) < 4 or not p[3]:
        continue
    t, sp, dp = float(p[0]), int(p[1]), int(p[2])
    m = parse(p[3])
    if m is None:
        continue
    meth, code, cid, cseqm, bench = m
    if sp == UP and dp == SP:
        d = 'in_uac'
    elif sp == SP and dp == UP:
        d = 'out_uac'
    elif dp == SP:
        d = f'in_agent{sp}'
    elif sp == SP:
        d = f'out_agent{dp}'
    else:
        continue
    if d == 'in_uac' or d == 'out_uac':
        key_cid = cid
    else:
        if bench:
            leg_of[cid] = bench
        key_cid = leg_of.get(cid, cid)
    kind = meth if meth else f'{code}_{cseqm}'
    e = ev[key_cid]
    key = (d, kind)
    if key not in e:
        e[key] = t
    if meth == 'INVITE' and d.startswith('out_agent'):
        e.setdefault('agents', [])
        if d not in e['agents']:
            e['agents'].append(d)
proc.wait()


def stats(name, vals):
    if not vals:
        return
    vals.sort()

    def q(pc):
        return vals[max(0, min(len(vals) - 1, int(math.ceil(pc / 100 * len(vals))) - 1))]
    print(f'{name:12s} n={len(vals):6d}  p50={q(50):8.0f}  p90={q(90):8.0f}  p99={q(99):8.0f}  '
          f'p99.9={q(99.9):8.0f}  max={vals[-1]:8.0f}  mean={sum(vals)/len(vals):8.0f} us')


res = collections.defaultdict(list)
for cid, e in ev.items():
    ags = e.get('agents', [])
    tin = e.get(('in_uac', 'INVITE'))
    if tin is None or not ags:
        continue
    res['invite_fwd'].append((e[(ags[0], 'INVITE')] - tin) * 1e6)
    if len(ags) > 1:
        res['invite_fwd2'].append((e[(ags[1], 'INVITE')] - tin) * 1e6)
    last = ags[-1].replace('out_agent', 'in_agent')
    for inn, outk, name in (((last, '200_INVITE'), ('out_uac', '200_INVITE'), 'final_fwd'),
                            ((last, '180_INVITE'), ('out_uac', '180_INVITE'), 'ring_fwd'),
                            (('in_uac', 'ACK'), (ags[-1], 'ACK'), 'ack_fwd'),
                            (('in_uac', 'BYE'), (ags[-1], 'BYE'), 'bye_fwd'),
                            ((last, '200_BYE'), ('out_uac', '200_BYE'), 'bye200_fwd')):
        if inn in e and outk in e:
            res[name].append((e[outk] - e[inn]) * 1e6)
print(f'calls seen: {sum(1 for e in ev.values() if ("in_uac", "INVITE") in e)}')
for k in ('invite_fwd', 'invite_fwd2', 'ring_fwd', 'final_fwd', 'ack_fwd', 'bye_fwd', 'bye200_fwd'):
    v = res.get(k, [])
    if v and sorted(v)[len(v) // 2] < 0:
        # A B2BUA acknowledges the agent's 200 and answers the caller's BYE itself: its message out
        # precedes the one it would "forward", so there is no forwarding time to report.
        print(f'{k:12s} n={len(v):6d}  (sent before the input arrives: answered locally, B2BUA)')
        continue
    stats(k, v)
