#!/usr/bin/env python3
"""(From ../shared/bench/kamailio-baseline/lib/procmon.py.) 1 Hz process monitor: CPU% per process group, system CPU, memory of the
server under test.  Stops on SIGTERM/SIGINT.

usage: procmon.py OUT.csv server=PID[,PID] [uac=PID] [uas=PID,PID] ...
A group given as 'name=PID' also includes all descendants of PID (so the
Kamailio main PID covers all its worker processes).  The first group is
treated as the server: its summed RSS and PSS (smaps_rollup) are recorded.
CPU% is per one core (200% = both cores of a 2-core box); cpu_server_sys is the
server's kernel-mode part (syscalls: sockets, sends, receives, wake-ups).
cpu_other = CPU of every other process on the box (scan of /proc/*/stat;
processes that start and exit between two samples are missed, so it is a
lower bound). cpu_system_busy comes from /proc/stat, which under-counts
bursty load on this VM (tick sampling) - prefer the per-process numbers.
"""
import os, sys, time, signal

HZ = os.sysconf('SC_CLK_TCK')
stop = False
def _stop(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, _stop)
signal.signal(signal.SIGINT, _stop)

def children_map():
    m = {}
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                with open(f'/proc/{d}/stat') as f:
                    s = f.read()
                ppid = int(s[s.rfind(')') + 2:].split()[1])
                m.setdefault(ppid, []).append(int(d))
            except Exception:
                pass
    return m

def expand(roots):
    m = children_map()
    out, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.add(p)
        todo.extend(m.get(p, []))
    return out

def cputicks(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            s = f.read()
        fields = s[s.rfind(')') + 2:].split()
        return int(fields[11]) + int(fields[12])
    except Exception:
        return None

def systicks(pid):
    """kernel-mode share (stime) of cputicks"""
    try:
        with open(f'/proc/{pid}/stat') as f:
            s = f.read()
        return int(s[s.rfind(')') + 2:].split()[12])
    except Exception:
        return None

def mem_kb(pid):
    rss = pss = 0
    try:
        with open(f'/proc/{pid}/smaps_rollup') as f:
            for line in f:
                if line.startswith('Rss:'):
                    rss = int(line.split()[1])
                elif line.startswith('Pss:'):
                    pss = int(line.split()[1])
    except Exception:
        pass
    return rss, pss

def all_ticks():
    d = {}
    for x in os.listdir('/proc'):
        if x.isdigit():
            c = cputicks(int(x))
            if c is not None:
                d[int(x)] = c
    return d

def sys_cpu():
    with open('/proc/stat') as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v), idle

def main():
    out = sys.argv[1]
    groups = []
    for a in sys.argv[2:]:
        name, pids = a.split('=', 1)
        groups.append((name, [int(p) for p in pids.split(',') if p]))
    names = [g[0] for g in groups]
    f = open(out, 'w', buffering=1)
    f.write('t,' + ','.join(f'cpu_{n}' for n in names) +
            ',cpu_server_sys,cpu_system_busy,cpu_other,server_rss_kb,server_pss_kb,server_nproc,load1\n')
    prev = {}
    prev_sys = sys_cpu()
    prev_t = time.time()
    members = {n: expand(p) for n, p in groups}
    for n in names:
        for p in members[n]:
            prev[p] = cputicks(p)
    me = os.getpid()
    prev_sys_ticks = {p: systicks(p) for p in members[names[0]]}
    prev_all = all_ticks()
    while not stop:
        time.sleep(1.0)
        now = time.time()
        dt = now - prev_t
        prev_t = now
        row = []
        ours = 0.0
        for n, roots in groups:
            members[n] = expand(roots)
            tot = 0
            for p in members[n]:
                c = cputicks(p)
                if c is None:
                    continue
                tot += c - prev.get(p, c)
                prev[p] = c
            pct = 100.0 * tot / HZ / dt
            ours += pct
            row.append(pct)
        st = 0
        for p in members[names[0]]:
            c = systicks(p)
            if c is None:
                continue
            st += c - (prev_sys_ticks.get(p) if prev_sys_ticks.get(p) is not None else c)
            prev_sys_ticks[p] = c
        server_sys = 100.0 * st / HZ / dt
        cur_all = all_ticks()
        ourpids = set().union(*members.values()) | {me}
        oth = 0
        for p, c in cur_all.items():
            if p in ourpids:
                continue
            oth += c - prev_all.get(p, 0)
        prev_all = cur_all
        other_pct = 100.0 * oth / HZ / dt
        s = sys_cpu()
        dtot, didle = s[0] - prev_sys[0], s[1] - prev_sys[1]
        prev_sys = s
        ncpu = os.cpu_count() or 1
        busy = 100.0 * ncpu * (dtot - didle) / dtot if dtot else 0.0
        rss = pss = 0
        for p in members[names[0]]:
            r, q = mem_kb(p)
            rss += r
            pss += q
        with open('/proc/loadavg') as lf:
            load1 = lf.read().split()[0]
        f.write(f'{now:.3f},' + ','.join(f'{x:.1f}' for x in row) + f',{server_sys:.1f}' +
                f',{busy:.1f},{other_pct:.1f},{rss},{pss},{len(members[names[0]])},{load1}\n')
    f.close()

if __name__ == '__main__':
    main()
