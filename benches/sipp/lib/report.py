#!/usr/bin/env python3
"""Render a run of benches/sipp/run.sh (steps.tsv, max_rates.tsv, hop latency, hold) as markdown.

usage: report.py RUN_DIR
"""
import csv
import glob
import os
import statistics
import sys

out = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(out, 'steps.tsv')), delimiter='\t'))


def f(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


# A step of the edge that lost call records (writer queue full) or dropped datagrams (engine queue full)
# fails whatever SIPp saw: the record is product behaviour.
for r in rows:
    st = r.get('server_stats', '')
    lost = [kv for kv in st.split() if kv.split('=')[0] in ('records_dropped', 'udp_dropped')
            and kv.split('=')[-1] not in ('0', '')]
    if lost and r['verdict'] == 'pass':
        r['verdict'] = 'fail (' + ', '.join(lost) + ')'

servers = list(dict.fromkeys(r['server'] for r in rows))
paths = list(dict.fromkeys(r['path'] for r in rows))

print('## Highest rate with under 0.1% failed calls (and >= 95% of the rate achieved)\n')
mx = {}
# highest passing rate below the first failing one, from the steps (sweep and refine)
for sv in servers:
    for p in paths:
        st = sorted(((int(float(r['rate'])), r['verdict'] == 'pass') for r in rows
                     if r['server'] == sv and r['path'] == p and r['label'].split('_')[0] in ('sweep', 'refine')))
        if not st:
            continue
        first_fail = min((rt for rt, ok in st if not ok), default=0)
        best = max((rt for rt, ok in st if ok and (not first_fail or rt < first_fail)), default=0)
        mx[(sv, p)] = (best, first_fail)
edges = [s for s in servers if s.startswith('edge')] if 'kamailio' in servers else []
print('| path | ' + ' | '.join(servers) + ''.join(f' | {e} / kamailio' for e in edges) + ' |')
print('|---|' + '---|' * (len(servers) + len(edges)))
for p in paths:
    cells = []
    for s in servers:
        b, ff = mx.get((s, p), (None, None))
        cells.append(f'{b} (fails at {ff})' if b is not None and ff else f'{b}' if b is not None else '')
    for e in edges:
        k = mx.get(('kamailio', p), (0, 0))[0]
        cells.append(f'{mx[(e, p)][0] / k:.2f}x' if (e, p) in mx and k else '')
    print(f'| {p} | ' + ' | '.join(cells) + ' |')
print('\n## Server CPU per 1,000 calls/s (% of one core), passing steps at the same rate\n')
print('| path | rate | ' + ' | '.join(servers) + ''.join(f' | {e} / kamailio' for e in edges) + ' |')
print('|---|---|' + '---|' * (len(servers) + len(edges)))
ratios = {}
for p in paths:
    rates = sorted({int(float(r['rate'])) for r in rows if r['path'] == p})
    for rate in rates:
        vals = {}
        for s in servers:
            xs = [f(r['cpu_per_kcps']) for r in rows if r['server'] == s and r['path'] == p
                  and int(float(r['rate'])) == rate and r['verdict'] == 'pass' and f(r['cpu_per_kcps'])
                  and r['label'].split('_')[0] in ('sweep', 'refine', 'repeat')]
            if xs:
                vals[s] = statistics.median(xs)
        if not vals:
            continue
        cells = [f'{vals[s]:.1f}' if s in vals else '' for s in servers]
        for e in edges:
            if e in vals and 'kamailio' in vals:
                cells.append(f'{vals[e] / vals["kamailio"]:.2f}')
                if rate >= 1000:
                    ratios.setdefault((e, p), []).append(vals[e] / vals['kamailio'])
            else:
                cells.append('')
        print(f'| {p} | {rate} | ' + ' | '.join(cells) + ' |')
for (e, p), rs in ratios.items():
    print(f'\n{p}: {e}/kamailio CPU per call, median over common passing rates >= 1,000/s: {statistics.median(rs):.2f}')
print('\n## Every step\n')
cols = [('label', 'step'), ('cps_offered', 'offered'), ('cps_achieved', 'achieved'), ('ok', 'ok'),
        ('failed', 'failed'), ('fail_pct', 'fail%'), ('retrans', 'retrans'), ('setup_p50_ms', 'p50 ms'),
        ('setup_p99_ms', 'p99 ms'), ('cpu_server', 'server %'), ('cpu_server_sys', 'kernel %'),
        ('cpu_per_kcps', '%/kcps'),
        ('cpu_uac', 'uac %'), ('cpu_uas', 'uas %'), ('cpu_other', 'other %'), ('server_rss_kb', 'RSS kB'),
        ('load1', 'load1'), ('verdict', 'verdict')]
print('| ' + ' | '.join(c[1] for c in cols) + ' |')
print('|' + '---|' * len(cols))
for r in rows:
    print('| ' + ' | '.join(str(r.get(c[0], '')) for c in cols) + ' |')
print('\nsetup = INVITE -> 200 OK at the UAC (SIPp, 1 ms resolution); CPU % of one core (200% = the box);')
print('other % = CPU of processes outside the benchmark (noise). Server counters per step are in steps.tsv.')

hop = sorted(glob.glob(os.path.join(out, 'hoplat_*.txt')))
if hop:
    print('\n## Forwarding time inside the server (capture on lo, microseconds)\n')
    for h in hop:
        print(f'{os.path.basename(h)[:-4]}:\n```\n{open(h).read().rstrip()}\n```')
hold = os.path.join(out, 'hold.txt')
if os.path.exists(hold):
    print('\n## Hold test\n')
    print('```\n' + open(hold).read().rstrip() + '\n```')
