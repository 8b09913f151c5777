#!/usr/bin/env python3
"""Print, every half second, the machine's busy cores and the cores each process name used.

Run it beside a benchmark (`python3 bench/cpu_sample.py samples.txt &`) to see which process
holds the CPU in each phase. Lines: `<unix time> busy=<cores> <name>=<cores> ...`, the six
busiest names first; kernel worker threads are left out.
"""
import collections
import os
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def snapshot():
    per_pid = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        per_pid[pid] = (name, (int(fields[11]) + int(fields[12])) / HZ)
    with open("/proc/stat") as f:
        cpu = list(map(int, f.readline().split()[1:]))
    busy = (sum(cpu) - cpu[3] - cpu[4]) / HZ
    return time.time(), busy, per_pid


def main():
    out = open(sys.argv[1], "w") if len(sys.argv) > 1 else sys.stdout
    t0, busy0, pids0 = snapshot()
    while True:
        time.sleep(0.5)
        t, busy, pids = snapshot()
        used = collections.Counter()
        for pid, (name, cpu) in pids.items():
            delta = cpu - pids0.get(pid, (name, 0.0))[1]
            if delta > 0.01 and not name.startswith(("kworker", "kdamond", "ksoftirqd")):
                used[name] += delta
        span = t - t0
        top = " ".join(f"{n}={c / span:.2f}" for n, c in used.most_common(6))
        out.write(f"{t:.2f} busy={(busy - busy0) / span:.2f} {top}\n")
        out.flush()
        t0, busy0, pids0 = t, busy, pids


if __name__ == "__main__":
    main()
