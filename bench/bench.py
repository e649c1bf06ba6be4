#!/usr/bin/env python3
"""Helper for run-bench.sh: run one fio job with CPU accounting, and report.

Subcommands:
  freeport                  print a free TCP port on 127.0.0.1
  runjob OUTDIR TARGET WORKLOAD ROUND PIDS -- FIO-ARGS...
                            run fio, measure CPU of fio and of every server
                            process in PIDS (comma-separated), append one
                            record to OUTDIR/records.jsonl
  countjob OUTDIR TARGET WORKLOAD PIDS -- FIO-ARGS...
                            run fio once more (a short run) with perf stat
                            counting system calls and context switches of
                            fio and of each server process (and whatever
                            they fork), append one record to
                            OUTDIR/counts.jsonl: figures per op, which do
                            not drift with the machine's load
  report OUTDIR             print the tables and the ratios, write
                            OUTDIR/results.csv and OUTDIR/results.json
"""

import csv
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")

# Targets and workloads in report order.
TARGETS = ["rampool-r1", "rampool-r2", "rampool-r3", "rampool-ec42",
           "rampool-ec82", "rampool-nbd-r1", "rampool-nbd-r2", "probe",
           "memory", "nbd-server", "nbd-forward"]
# Each of these is compared with the peers (and, but for rampool-r1,
# with rampool-r1).  On request: rampool-r3, -ec42, -ec82,
# rampool-nbd-r1/-r2 (client/rampool-nbd.c) and probe
# (bench/frontend-probe.c).
RAMPOOL = ["rampool-r1", "rampool-r2", "rampool-r3", "rampool-ec42",
           "rampool-ec82", "rampool-nbd-r1", "rampool-nbd-r2", "probe"]
PEERS = ["memory", "nbd-server", "nbd-forward"]
WORKLOADS = ["randread-4k-qd1", "randread-4k-qd16", "randwrite-4k-qd1",
             "randwrite-4k-qd16", "seqread-1m", "seqwrite-1m",
             "firstwrite-1m"]


# ---------------------------------------------------------------- /proc ---

def proc_stat(pid):
    """Return (ppid, utime+stime, cutime+cstime) in seconds, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); field n is rest[n - 3].
    ppid = int(rest[1])
    own = (int(rest[11]) + int(rest[12])) / TICK
    kids = (int(rest[13]) + int(rest[14])) / TICK
    return ppid, own, kids


def all_ppids():
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st:
                out[int(d)] = st[0]
    return out


def descendants(roots):
    ppids = all_ppids()
    found, frontier = set(), set(roots)
    while frontier:
        nxt = {p for p, pp in ppids.items() if pp in frontier and p not in found}
        found |= nxt
        frontier = nxt
    return found - set(roots)


def tree_cpu(roots):
    """CPU seconds of the roots, their reaped children, and live descendants.

    A descendant that is alive at the first sample and reaped by the second
    moves its whole time into its parent's cutime, so deltas stay exact.
    """
    total = 0.0
    for pid in set(roots) | descendants(roots):
        st = proc_stat(pid)
        if st:
            total += st[1] + st[2]
    return total


def host_busy():
    """Busy CPU seconds of the whole host (all CPUs), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / TICK


# ---------------------------------------------------------------- runjob ---

def pct(clat, key):
    p = clat.get("percentile") or {}
    v = p.get(key)
    return v / 1000.0 if v is not None else None


def runjob(outdir, target, workload, rnd, pids, fio_args):
    pids = [int(p) for p in pids.split(",") if p]
    for p in pids:
        if proc_stat(p) is None:
            sys.exit(f"bench.py: server pid {p} of {target} is not running")
    out_json = os.path.join(outdir, "fio", f"{target}.{workload}.{rnd}.json")
    os.makedirs(os.path.dirname(out_json), exist_ok=True)
    base_kids = descendants(pids)

    srv0 = tree_cpu(pids)
    host0 = host_busy()
    t0 = time.monotonic()
    proc = subprocess.Popen(["fio", "--output-format=json",
                             f"--output={out_json}"] + fio_args)

    def stop(signum, frame):
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    fio_cpu = ru.ru_utime + ru.ru_stime  # fio and its reaped job processes
    # Per-connection server children (nbd-server forks one per client)
    # must be reaped before the sample, or their time would be lost.
    deadline = time.monotonic() + 10
    while descendants(pids) - base_kids and time.monotonic() < deadline:
        time.sleep(0.02)
    host1 = host_busy()
    srv1 = tree_cpu(pids)
    if proc.returncode != 0:
        sys.exit(f"bench.py: fio failed for {target} {workload} "
                 f"(exit {proc.returncode}), see {out_json}")

    with open(out_json) as f:
        text = f.read()
    data = json.loads(text[text.index("{"):])  # fio may prefix warnings
    job = data["jobs"][0]
    if job.get("error"):
        sys.exit(f"bench.py: fio job error {job['error']} for {target} {workload}")
    rec = {"target": target, "workload": workload, "round": rnd,
           "wall_s": round(wall, 3)}
    ops = iops = bw = 0
    p50 = p99 = c50 = c99 = None
    for d in ("read", "write"):
        s = job[d]
        if s["total_ios"] == 0:
            continue
        ops += s["total_ios"]
        iops += s["iops"]
        bw += s["bw_bytes"]
        # lat = submission to completion. fio's clat alone misleads with
        # the nbd engine: a write's data is sent inside the submit call, so
        # it lands in slat, and clat p50 can be a few microseconds.
        p50 = pct(s["lat_ns"], "50.000000")
        p99 = pct(s["lat_ns"], "99.000000")
        c50 = pct(s["clat_ns"], "50.000000")
        c99 = pct(s["clat_ns"], "99.000000")
    if ops == 0:
        sys.exit(f"bench.py: no I/O completed for {target} {workload}")
    srv = srv1 - srv0
    host = host1 - host0
    rec.update({
        "ops": ops, "iops": round(iops, 1), "mib_s": round(bw / 2**20, 2),
        "lat_p50_us": p50, "lat_p99_us": p99, "clat_p50_us": c50, "clat_p99_us": c99,
        "fio_cpu_s": round(fio_cpu, 3), "server_cpu_s": round(srv, 3),
        "host_cpu_s": round(host, 3),
        "cpu_us_per_op": round((fio_cpu + srv) / ops * 1e6, 3),
        "fio_us_per_op": round(fio_cpu / ops * 1e6, 3),
        "server_us_per_op": round(srv / ops * 1e6, 3),
        "host_us_per_op": round(host / ops * 1e6, 3),
        # CPU burnt by anything else on the host while the job ran, in
        # cores: a noise indicator (also kernel threads such as ksoftirqd).
        "other_cores": round(max(0.0, host - fio_cpu - srv) / wall, 3),
    })
    with open(os.path.join(outdir, "records.jsonl"), "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"  {target:12} {workload:18} {rec['iops']:>11.0f} IOPS "
          f"{rec['mib_s']:>9.1f} MiB/s  p50 {fmt(p50)} us  p99 {fmt(p99)} us  "
          f"cpu/op {rec['cpu_us_per_op']:.2f} us", flush=True)


# -------------------------------------------------------------- countjob ---

PERF_EVENTS = "raw_syscalls:sys_enter,context-switches"


def perf_read(path):
    """{event: count} from a `perf stat -x,` output file."""
    out = {}
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) >= 3 and parts[0].isdigit():
                out[parts[2]] = int(parts[0])
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return str(pid)


def countjob(outdir, target, workload, pids, fio_args):
    pids = [int(p) for p in pids.split(",") if p]
    cdir = os.path.join(outdir, "counts")
    os.makedirs(cdir, exist_ok=True)
    stem = os.path.join(cdir, f"{target}.{workload}")
    # One perf per server process (children it forks are counted with
    # it: nbd-server forks one per connection), started before fio and
    # stopped after it.
    perfs = []
    for i, p in enumerate(pids):
        path = f"{stem}.srv{i}.perf"
        perfs.append((p, comm(p), path, subprocess.Popen(
            ["perf", "stat", "-x,", "-e", PERF_EVENTS, "-p", str(p),
             "-o", path], stderr=subprocess.DEVNULL)))
    time.sleep(0.3)  # perf attached (it prints nothing when it is)
    out_json = f"{stem}.json"
    r = subprocess.run(["perf", "stat", "-x,", "-e", PERF_EVENTS, "-o",
                        f"{stem}.fio.perf", "--", "fio", "--output-format=json",
                        f"--output={out_json}"] + fio_args)
    for _, _, _, pr in perfs:
        pr.send_signal(signal.SIGINT)
    for _, _, _, pr in perfs:
        pr.wait(timeout=30)
    if r.returncode != 0:
        sys.exit(f"bench.py: fio (counting run) failed for {target} {workload}")
    with open(out_json) as f:
        text = f.read()
    job = json.loads(text[text.index("{"):])["jobs"][0]
    ops = job["read"]["total_ios"] + job["write"]["total_ios"]
    if ops == 0:
        sys.exit(f"bench.py: no I/O in the counting run of {target} {workload}")
    fio = perf_read(f"{stem}.fio.perf")
    rec = {"target": target, "workload": workload, "ops": ops,
           "fio_sys_per_op": round(fio.get("raw_syscalls:sys_enter", 0) / ops, 3),
           "fio_cs_per_op": round(fio.get("context-switches", 0) / ops, 3),
           "servers": {}}
    tot_sys = tot_cs = 0
    for _, name, path, _ in perfs:
        c = perf_read(path)
        s, cs = c.get("raw_syscalls:sys_enter", 0), c.get("context-switches", 0)
        tot_sys += s
        tot_cs += cs
        agg = rec["servers"].setdefault(name, {"sys_per_op": 0.0, "cs_per_op": 0.0})
        agg["sys_per_op"] = round(agg["sys_per_op"] + s / ops, 3)
        agg["cs_per_op"] = round(agg["cs_per_op"] + cs / ops, 3)
    rec["server_sys_per_op"] = round(tot_sys / ops, 3)
    rec["server_cs_per_op"] = round(tot_cs / ops, 3)
    with open(os.path.join(outdir, "counts.jsonl"), "a") as f:
        f.write(json.dumps(rec) + "\n")
    per = "  ".join(f"{n} {v['sys_per_op']:.1f}/{v['cs_per_op']:.1f}"
                    for n, v in rec["servers"].items())
    print(f"  {target:12} {workload:18} syscalls/ctx-switches per op: fio "
          f"{rec['fio_sys_per_op']:.1f}/{rec['fio_cs_per_op']:.1f}  {per}",
          flush=True)


def report_counts(outdir, targets, workloads):
    path = os.path.join(outdir, "counts.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    by = {(r["target"], r["workload"]): r for r in recs}
    print("System calls and context switches per op (perf stat, one short "
          "extra run each; deterministic, unlike IOPS):")
    hdr = ("target".ljust(12) + "  " + "workload".ljust(18) +
           "fio sys".rjust(9) + "fio cs".rjust(8) + "srv sys".rjust(9) +
           "srv cs".rjust(8) + "   servers (sys/cs per op)")
    print(hdr)
    print("-" * len(hdr))
    for t in targets:
        for w in workloads:
            r = by.get((t, w))
            if not r:
                continue
            per = "  ".join(f"{n} {v['sys_per_op']:.1f}/{v['cs_per_op']:.1f}"
                            for n, v in r["servers"].items())
            print(t.ljust(12) + "  " + w.ljust(18) +
                  f"{r['fio_sys_per_op']:9.1f}{r['fio_cs_per_op']:8.1f}"
                  f"{r['server_sys_per_op']:9.1f}{r['server_cs_per_op']:8.1f}"
                  f"   {per}")
        print()
    return recs


# ---------------------------------------------------------------- report ---

def fmt(v, nd=1):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{nd}f}"


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def median_record(rs):
    if len(rs) == 1:
        return dict(rs[0])
    out = {"target": rs[0]["target"], "workload": rs[0]["workload"],
           "rounds": len(rs)}
    for k, v in rs[0].items():
        if k not in out and k != "round" and isinstance(v, (int, float)):
            vals = [r[k] for r in rs if r.get(k) is not None]
            out[k] = statistics.median(vals) if vals else None
    return out


def report(outdir):
    recs = []
    path = os.path.join(outdir, "records.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            recs = [json.loads(line) for line in f if line.strip()]
    meta = {}
    mpath = os.path.join(outdir, "meta.json")
    if os.path.exists(mpath):
        with open(mpath) as f:
            meta = json.load(f)
    # With several rounds, each figure is the median over the rounds.
    groups = {}
    for r in recs:
        groups.setdefault((r["target"], r["workload"]), []).append(r)
    by = {k: median_record(v) for k, v in groups.items()}
    rounds = max((len(v) for v in groups.values()), default=0)
    targets = [t for t in TARGETS if any(k[0] == t for k in by)]
    targets += sorted({k[0] for k in by} - set(targets))
    workloads = [w for w in WORKLOADS if any(k[1] == w for k in by)]

    cols = ["target", "workload", "IOPS", "MiB/s", "lat p50", "lat p99",
            "CPU us/op", "fio", "servers", "others"]
    widths = [12, 18, 10, 9, 8, 8, 10, 8, 8, 8]
    line = "  ".join(c.rjust(w) if i > 1 else c.ljust(w)
                     for i, (c, w) in enumerate(zip(cols, widths)))
    print()
    if rounds > 1:
        print(f"Medians over {rounds} rounds (per-round figures in results.json)")
    print("Results. lat p50/p99: submission to completion, us. CPU us/op: fio"
          " + all server processes,\nsplit in the next two columns. others: "
          "cores busy with anything else meanwhile.")
    print(line)
    print("-" * len(line))
    for t in targets:
        for w in workloads:
            r = by.get((t, w))
            if not r:
                continue
            cells = [t, w, f"{r['iops']:.0f}", f"{r['mib_s']:.1f}",
                     fmt(r["lat_p50_us"]), fmt(r["lat_p99_us"]),
                     fmt(r["cpu_us_per_op"], 2), fmt(r["fio_us_per_op"], 2),
                     fmt(r["server_us_per_op"], 2), f"{r.get('other_cores', 0):.2f}"]
            print("  ".join(c.rjust(wd) if i > 1 else c.ljust(wd)
                            for i, (c, wd) in enumerate(zip(cells, widths))))
        print()

    ratios = []
    for rp in RAMPOOL:
        peers = [p for p in PEERS + ([] if rp == "rampool-r1" else ["rampool-r1"])
                 if p in targets]
        if rp not in targets or not peers:
            continue
        print(f"{rp} relative to each peer: IOPS ratio / CPU-per-op ratio "
              f"(IOPS >1 = {rp} faster; CPU <1 = {rp} cheaper)")
        hdr = "workload".ljust(18) + "".join(p.rjust(20) for p in peers)
        print(hdr)
        print("-" * len(hdr))
        for w in workloads:
            a = by.get((rp, w))
            cells = []
            for p in peers:
                b = by.get((p, w))
                ir = ratio(a and a["iops"], b and b["iops"])
                cr = ratio(a and a["cpu_us_per_op"], b and b["cpu_us_per_op"])
                cells.append(f"{fmt(ir, 2)}x / {fmt(cr, 2)}x")
                if ir is not None:
                    ratios.append({"rampool": rp, "peer": p, "workload": w,
                                   "iops_ratio": round(ir, 4),
                                   "cpu_per_op_ratio": round(cr, 4) if cr else None})
            print(w.ljust(18) + "".join(c.rjust(20) for c in cells))
        print()
    counts = report_counts(outdir, targets, workloads)
    noisy = [r for r in recs if r.get("other_cores", 0) > 0.2]
    if noisy:
        print(f"WARNING: {len(noisy)} job(s) ran while other work used more "
              "than 0.2 cores (column 'others'); their numbers are noisy.")
    if not any(t in targets for t in RAMPOOL):
        print("(no rampool results: ratios not available)")

    fields = ["target", "workload", "iops", "mib_s", "lat_p50_us", "lat_p99_us",
              "clat_p50_us", "clat_p99_us",
              "cpu_us_per_op", "fio_us_per_op", "server_us_per_op",
              "host_us_per_op", "other_cores", "ops", "fio_cpu_s", "server_cpu_s",
              "host_cpu_s", "wall_s", "rounds"]
    with open(os.path.join(outdir, "results.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        wr.writeheader()
        for t in targets:
            for w in workloads:
                if (t, w) in by:
                    wr.writerow(by[(t, w)])
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump({"meta": meta, "summary": [by[k] for k in sorted(by)],
                   "runs": recs, "ratios": ratios, "counts": counts}, f,
                  indent=2)
        f.write("\n")
    print(f"results: {outdir}/results.csv, {outdir}/results.json, "
          f"raw fio output in {outdir}/fio/")


# ------------------------------------------------------------------ main ---

def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    if a[0] == "freeport":
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])
        s.close()
    elif a[0] == "runjob" and len(a) >= 7 and a[6] == "--":
        runjob(a[1], a[2], a[3], int(a[4]), a[5], a[7:])
    elif a[0] == "countjob" and len(a) >= 6 and a[5] == "--":
        countjob(a[1], a[2], a[3], a[4], a[6:])
    elif a[0] == "report" and len(a) == 2:
        report(a[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
