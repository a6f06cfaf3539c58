#!/usr/bin/env python3
"""Summarise one SIPp UAC run (from ../shared/bench/kamailio-baseline/lib/summarize.py).

usage: summarize.py --stat UAC_STAT.csv --rtt UAC_RTT.csv --mon MON.csv
                    --label L --rate R [--extra k=v ...]
Prints one JSON object (one line).

- calls_ok / calls_failed / retrans: final cumulative SIPp counters
- cps_offered: calls created / creation window (from the SIPp stat file)
- cps_achieved: successful call setups per second, from rtd-1 completion
  timestamps in the rtt trace (central 99 % of completions / their span;
  cps_achieved_fullspan = first..last 200 OK)
- setup_ms_*: INVITE->200 OK percentiles (rtd 1), bye_ms_*: BYE->200 (rtd 2)
  SIPp 3.6 records response times with 1 ms resolution.
- cpu_*: mean CPU% per group over the seconds where calls were created
"""
import argparse, csv, gzip, json, math, sys

def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(math.ceil(p / 100.0 * len(sorted_vals))) - 1))
    return sorted_vals[k]

def epoch(field):
    # "2026-11-27\t04:15:20.949391\t1795752920.949391"
    return float(field.split('\t')[-1])

ap = argparse.ArgumentParser()
ap.add_argument('--stat'); ap.add_argument('--rtt'); ap.add_argument('--mon')
ap.add_argument('--label', default=''); ap.add_argument('--rate', type=float, default=0)
ap.add_argument('--extra', nargs='*', default=[])
a = ap.parse_args()
res = {'label': a.label, 'rate_target': a.rate}
for kv in a.extra:
    k, v = kv.split('=', 1)
    res[k] = v

# ---- SIPp stat file
rows = []
with open(a.stat) as f:
    r = csv.reader(f, delimiter=';')
    hdr = next(r)
    for row in r:
        if len(row) >= len(hdr) - 1:
            rows.append(dict(zip(hdr, row)))
last = rows[-1]
g = lambda k: int(float(last[k]))
res['calls_created'] = g('TotalCallCreated')
res['calls_ok'] = g('SuccessfulCall(C)')
res['calls_failed'] = g('FailedCall(C)')
res['retrans'] = g('Retransmissions(C)')
res['fail_timeout_recv'] = g('FailedTimeoutOnRecv(C)')
res['fail_max_udp_retrans'] = g('FailedMaxUDPRetrans(C)')
res['fail_unexpected'] = g('FailedUnexpectedMessage(C)')
res['dead_call_msgs'] = g('DeadCallMsgs(C)')
res['watchdog_minor'] = g('WatchdogMinor(C)')
res['watchdog_major'] = g('WatchdogMajor(C)')
tot = res['calls_ok'] + res['calls_failed']
res['fail_pct'] = round(100.0 * res['calls_failed'] / tot, 4) if tot else None
t0 = epoch(rows[0]['StartTime'])
t_create_end = None
for row in rows:
    if int(float(row['OutgoingCall(P)'])) > 0:
        t_create_end = epoch(row['CurrentTime'])
res['create_window_s'] = round((t_create_end - t0), 2) if t_create_end else None
res['cps_offered'] = round(res['calls_created'] / (t_create_end - t0), 1) if t_create_end else None
res['duration_s'] = round(epoch(last['CurrentTime']) - t0, 2)
# peak of calls in progress at the UAC (the hold test's concurrency)
_cc = next((k for k in hdr if k.startswith('CurrentCall')), None)
res['current_calls_max'] = max(int(float(row[_cc])) for row in rows) if _cc else None

# ---- rtt trace
setup, bye, setup_t = [], [], []
import os
_rtt_lines = []
if a.rtt and os.path.exists(a.rtt):
    with (gzip.open(a.rtt, 'rt') if a.rtt.endswith('.gz') else open(a.rtt)) as f:
        next(f, None)
        _rtt_lines = f.readlines()
# (sipp flushes the rtt trace every -rtt_freq samples; the last partial batch
#  and runs shorter than one batch are missing from it)
if True:
    for line in _rtt_lines:
        p = line.strip().split(';')
        if len(p) < 3:
            continue
        try:
            t, v, n = float(p[0]), float(p[1]), p[2].strip()
        except ValueError:
            continue
        if n == '1':
            setup.append(v); setup_t.append(t)
        elif n == '2':
            bye.append(v)
setup.sort(); bye.sort()
if len(setup_t) > 1:
    # robust: completions between the 0.5th and 99.5th percentile of their
    # timestamps / that span, so a handful of calls that complete late
    # (e.g. after a 2 s failover timer) do not stretch the window
    ts = sorted(setup_t)
    lo, hi = int(0.005 * (len(ts) - 1)), int(0.995 * (len(ts) - 1))
    span = (ts[hi] - ts[lo]) / 1000.0
    res['cps_achieved'] = round((hi - lo) / span, 1) if span > 0 else None
    full = (ts[-1] - ts[0]) / 1000.0
    res['cps_achieved_fullspan'] = round((len(ts) - 1) / full, 1) if full > 0 else None
for name, vals in (('setup_ms', setup), ('bye_ms', bye)):
    res[name + '_n'] = len(vals)
    if vals:
        res[name + '_mean'] = round(sum(vals) / len(vals), 2)
        for p in (50, 90, 99, 99.9):
            res[f'{name}_p{p}'] = pct(vals, p)
        res[name + '_max'] = vals[-1]

# ---- process monitor (window = seconds while calls were being created)
if a.mon:
    with open(a.mon) as f:
        mrows = list(csv.DictReader(f))
    win = [m for m in mrows if t_create_end and t0 + 1 <= float(m['t']) <= t_create_end + 0.5]
    if not win:
        win = mrows
    if win:
        for k in win[0].keys():
            if k.startswith('cpu_'):
                vals = [float(m[k]) for m in win]
                res[k + '_mean'] = round(sum(vals) / len(vals), 1)
                res[k + '_max'] = round(max(vals), 1)
        # foreign CPU estimate: the per-process scan misses short-lived
        # processes, /proc/stat under-counts ours; take the larger per sample
        ours = [k for k in win[0].keys() if k.startswith('cpu_') and k not in ('cpu_system_busy', 'cpu_other', 'cpu_server_sys')]
        est = [max(float(m['cpu_other']), float(m['cpu_system_busy']) - sum(float(m[k]) for k in ours)) for m in win]
        res['cpu_other_est_mean'] = round(sum(est) / len(est), 1)
        res['cpu_other_est_max'] = round(max(est), 1)
        res['server_rss_kb_max'] = max(int(m['server_rss_kb']) for m in mrows)
        res['server_pss_kb_max'] = max(int(m['server_pss_kb']) for m in mrows)
        res['load1_start'] = float(mrows[0]['load1'])
        res['load1_end'] = float(mrows[-1]['load1'])
# the main figure: server CPU (% of one core) per 1,000 achieved calls/s
if res.get('cpu_server_mean') is not None and res.get('cps_achieved'):
    res['server_cpu_per_kcps'] = round(1000.0 * res['cpu_server_mean'] / res['cps_achieved'], 2)
print(json.dumps(res))
