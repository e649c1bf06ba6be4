#!/usr/bin/env python3
"""Seeded simulator of rampool's placement at pool scale, and of the
time to recover one lost donor as the pool grows.

  bench/placement-sim.py [--seed S] [--donors N,..] [--clients C,..]
                         [--staleness S,..] [--policies P,..] [--quick]
  bench/placement-sim.py --recovery [--seed S] [--donors N,..]

Placement model (all sizes in GiB; one extent = one 1 GiB unit):

  donors    capacity 8 GiB (25%), 32 GiB (50%) or 128 GiB (25%); half
            start empty, the other half with a uniform 0-75% of their
            capacity already used by others.
  clients   each writes new data in bursts: a burst is 1-8 extents
            (uniform), bursts arrive at random (Poisson) so that each
            client averages --rate GiB of new extents per tick, and each
            extent wants 2 replicas on 2 different donors.  The run ends
            when the extents asked for would bring the pool to --fill
            (85%) of its total capacity.
  time      one tick is one second.  Clients active in the same tick
            place concurrently: none sees another's placements of that
            tick.  A burst's extents are placed together (as nbdkit's
            threads place concurrently) from the same view, in rounds:
            every replica still wanted is sent an ALLOC, the replies
            come back, failed ones are retried with the view updated,
            as client/replica.c does.
  views     what a client believes of donor j's free space: the true
            figure as of its last refresh, every --staleness ticks (its
            own phase; 1: every tick, i.e. heartbeats every second; 0:
            always the truth, a reference no real client has), overlaid
            with the figures piggy-backed on the replies it got since
            (a successful ALLOC sets the view to the donor's free space
            after it, the figure its reply carries; an ENOSPC sets it
            to 0).  A donor whose view is below one
            extent is not eligible.
  policies  d1   one random eligible donor (Infiniswap as released:
                 SERVER_SELECT_NUM 1)
            d2   d eligible donors drawn at random, the one with the
            d3   most free bytes in the view (client/placement.c today;
                 rampool's default is placement-choices=2).  Ties go to
                 the first of the random sample, so they are random.
            w    the d donors are drawn in proportion to their capacity
                 (the size they donate) instead of uniformly
            +frac  rank by free fraction (view / capacity) instead of
                 free bytes
            +inflight  the view of a donor is lowered by one extent as
                 soon as this client picks it, before the reply (its own
                 in-flight ALLOCs are accounted for)
            All avoid the donors of the burst's previous extent (the
            striping rule) while others are eligible.  The default set
            is d1 d2 d3 d2+frac d2w+frac d2w+frac+inflight; also known:
            d2+inflight d2w d3w+frac+inflight.

Per (donors, clients, staleness, policy) it prints the donors' use at the
end: utilisation (used / capacity) max, 99th percentile, mean and
standard deviation over the donors, and GiB used max, mean and standard
deviation; enospc: the share of ALLOCs refused because the donor was in
fact full; unplaced: the share of replicas no donor could be found for;
full: the share of donors with less than one extent free at the end;
"1% full at": how full the whole pool was when 1% of the donors had
become full ("-": not before the end); peak: the most new replicas one
donor got in one tick (GiB in a second, against a 1 GiB/s NIC).

Recovery model (--recovery): one donor holding --lost-gib (64) GiB in
--extent-mib (64) MiB extents is lost; each extent's surviving replica
is on a random other donor.  A copy runs at --rate-cap-mib MiB/s (512:
half of a --nic-gib 1 GiB/s NIC, the rest left to foreground I/O); a
donor takes part in at most one recovery copy as a source and one as a
target at a time (the per-source and per-target limit).
  relay W=1  one client re-creates every extent, one copy at a time,
             each read from its source and written to a random target
             through the client.
  relay W=4  the same with 4 copies at once, as recovery.c's 4 workers;
             they share the client's 1 GiB/s NIC (256 MiB/s each).
  COPY       what rampool does with peer-copy=on: each survivor writes
             its extents into their new donors itself (COPY), about as
             many copies at once as there are donors, at most 256
             (recovery.c: 4 workers, each with up to 64 extents in
             flight), at the per-donor rate, limited per source and per
             target.
  scattered  every extent is copied from its source to a random target,
             all at once, limited only per source and per target.

Deterministic for a given seed.  Standard library only.
"""
import argparse
import heapq
import math
import random
import statistics
import sys
import time
from collections import Counter

# ---------------------------------------------------------------------------
# Placement

POLICIES = {
    # name: (d, sample by capacity, rank by fraction, own in-flight)
    "d1": (1, False, False, False),
    "d2": (2, False, False, False),
    "d3": (3, False, False, False),
    "d2+inflight": (2, False, False, True),
    "d2+frac": (2, False, True, False),
    "d2w": (2, True, False, False),
    "d2w+frac": (2, True, True, False),
    "d2w+frac+inflight": (2, True, True, True),
    "d3w+frac+inflight": (3, True, True, True),
}
DEFAULT_POLICIES = ["d1", "d2", "d3", "d2+frac", "d2w+frac",
                    "d2w+frac+inflight"]

REPLICAS = 2
BURST_MIN, BURST_MAX = 1, 8


def make_donors(seed, n):
    """Capacities and initial use (GiB), from the workload stream."""
    rng = random.Random(f"{seed}/donors/{n}")
    cap, used = [], []
    for _ in range(n):
        r = rng.random()
        c = 8 if r < 0.25 else 32 if r < 0.75 else 128
        cap.append(c)
        used.append(0 if rng.random() < 0.5 else int(c * rng.uniform(0, 0.75)))
    return cap, used


def make_bursts(seed, n, nclients, rate, demand):
    """[(tick, client, extents)] until `demand` extents are asked for.
    The same for every policy (its own random stream)."""
    rng = random.Random(f"{seed}/bursts/{n}/{nclients}/{rate}")
    mean_burst = (BURST_MIN + BURST_MAX) / 2
    lam = rate / mean_burst            # bursts per tick per client
    heap = [(rng.expovariate(lam), c) for c in range(nclients)]
    heapq.heapify(heap)
    out, asked = [], 0
    while asked < demand:
        t, c = heapq.heappop(heap)
        k = min(rng.randint(BURST_MIN, BURST_MAX), demand - asked)
        out.append((int(t), c, k))
        asked += k
        heapq.heappush(heap, (t + rng.expovariate(lam), c))
    return out


def simulate(seed, n, nclients, stale, policy, rate, fill):
    d, weighted, by_frac, inflight = POLICIES[policy]
    cap, used0 = make_donors(seed, n)
    # The sample is drawn from `slots`: every donor once, or by capacity
    # (donor j cap[j] / g times).
    if weighted:
        g = math.gcd(*cap)
        slots = [j for j in range(n) for _ in range(cap[j] // g)]
    else:
        slots = list(range(n))
    nslots = len(slots)
    free = [c - u for c, u in zip(cap, used0)]
    # What is ranked: free bytes, or free bytes / capacity.
    rank = [1.0 / c for c in cap] if by_frac else [1] * n
    total_cap = sum(cap)
    demand = max(0, int(fill * total_cap) - sum(used0)) // REPLICAS
    bursts = make_bursts(seed, n, nclients, rate, demand)
    prng = random.Random(f"{seed}/place/{n}/{nclients}/{stale}/{policy}")
    rnd = prng.random
    phase = [prng.randrange(stale) if stale else 0 for _ in range(nclients)]
    own = [dict() for _ in range(nclients)]   # reply-updated figures
    own_r = [-1] * nclients                   # tick of the view's refresh
    snaps = {}                                # tick -> free at tick start
    allocs = refused = unplaced = 0
    peak = 0
    tick_load = []                            # donors placed on this tick
    cur_tick = -1
    no_own = {}
    used_now = sum(used0)
    nfull = sum(1 for f in free if f < 1)
    full_mark = max(1, math.ceil(n / 100))    # 1% of the donors
    full_at = None if nfull < full_mark else used_now / total_cap
    lim = 64 + 8 * d                          # draws before a full scan
    for t, c, k in bursts:
        if t != cur_tick:
            if tick_load:
                peak = max(peak, max(Counter(tick_load).values()))
            tick_load = []
            cur_tick = t
            if stale:
                snaps[t] = free[:]
                for old in [x for x in snaps if x <= t - stale]:
                    del snaps[old]
        if stale:
            r = t - (t - phase[c]) % stale
            if r != own_r[c]:
                own_r[c] = r
                own[c] = {}
            # A refresh tick with no burst in it had no snapshot taken:
            # the figures then were those at the start of the next tick
            # that had one (nothing changes in an idle tick).
            snap = snaps.get(r)
            if snap is None:
                snap = snaps[min(x for x in snaps if x >= r)]
            mine = own[c]
        else:
            snap, mine = free, no_own   # the truth; never written
        get = mine.get

        # The burst: k extents, each wanting REPLICAS copies.
        holders = [[] for _ in range(k)]
        tried = [set() for _ in range(k)]
        pending = list(range(k))
        while pending:
            sends = []                  # (extent, donor)
            infl = {}                   # own in-flight picks this round
            for e in pending:
                prev = holders[e - 1] if e > 0 else ()
                excl = tried[e]
                for _ in range(REPLICAS - len(holders[e])):
                    picked = []
                    best, bests = -1, -1.0
                    got = draws = 0
                    while got < d and draws < lim:
                        draws += 1
                        j = slots[int(rnd() * nslots)]
                        if j in excl or j in prev or j in picked:
                            continue
                        v = get(j, -1)
                        if v < 0:
                            v = snap[j]
                        if infl:
                            v -= infl.get(j, 0)
                        if v < 1:
                            continue
                        picked.append(j)
                        got += 1
                        sc = v * rank[j]
                        if sc > bests:
                            best, bests = j, sc
                    if got < d:
                        # Few eligible left: draw the sample from the
                        # full list, as placement_choose does.
                        def view(j):
                            v = get(j, -1)
                            return (snap[j] if v < 0 else v) - infl.get(j, 0)

                        cands = [j for j in range(n)
                                 if j not in excl and view(j) >= 1]
                        p2 = [j for j in cands if j not in prev]
                        cands = p2 or cands
                        if not cands:
                            break
                        m = min(d, len(cands))
                        if weighted:
                            picked = []
                            wts = [cap[x] for x in cands]
                            while len(picked) < m:
                                j = prng.choices(cands, wts)[0]
                                if j not in picked:
                                    picked.append(j)
                        else:
                            picked = prng.sample(cands, m)
                        best, bests = -1, -1.0
                        for j in picked:
                            sc = view(j) * rank[j]
                            if sc > bests:
                                best, bests = j, sc
                    excl.add(best)
                    sends.append((e, best))
                    if inflight:
                        infl[best] = infl.get(best, 0) + 1
            if not sends:
                break
            # The ALLOCs reach the donors; the replies update the view.
            sent = set()
            for e, j in sends:
                sent.add(e)
                allocs += 1
                f = free[j]
                if f >= 1:
                    free[j] = f - 1
                    used_now += 1
                    if f < 2:
                        nfull += 1
                        if nfull == full_mark:
                            full_at = used_now / total_cap
                    holders[e].append(j)
                    tick_load.append(j)
                    if stale:
                        mine[j] = f - 1
                else:
                    refused += 1
                    if stale:
                        mine[j] = 0
            # Retry what is still short; an extent for which no donor
            # was found this round stays short.
            still = []
            for e in pending:
                short = REPLICAS - len(holders[e])
                if short and e in sent:
                    still.append(e)
                elif short:
                    unplaced += short
            pending = still
    if tick_load:
        peak = max(peak, max(Counter(tick_load).values()))

    used = [c - f for c, f in zip(cap, free)]
    util = [u / c for u, c in zip(used, cap)]
    wanted = demand * REPLICAS
    return {
        "util_max": max(util), "util_mean": statistics.fmean(util),
        "util_p99": sorted(util)[int(0.99 * (n - 1))],
        "util_sd": statistics.pstdev(util),
        "gib_max": max(used), "gib_mean": statistics.fmean(used),
        "gib_sd": statistics.pstdev(used),
        "enospc": refused / allocs if allocs else 0.0,
        "unplaced": unplaced / wanted if wanted else 0.0,
        "full": sum(1 for f in free if f < 1) / n,
        "peak": peak,
        "full_at": full_at,
        "ticks": bursts[-1][0] + 1 if bursts else 0,
        "allocs": allocs,
    }


def run_placement(args):
    donors = args.donors or ([1000] if args.quick else [1000, 10000])
    clients = args.clients or ([100] if args.quick else [100, 1000])
    stales = args.staleness if args.staleness is not None else [1, 10]
    policies = args.policies or DEFAULT_POLICIES
    for p in policies:
        if p not in POLICIES:
            sys.exit(f"unknown policy {p}; known: {', '.join(POLICIES)}")
    print(f"# placement-sim seed={args.seed} rate={args.rate} GiB/tick/client"
          f" fill={args.fill} replicas={REPLICAS} extent=1GiB")
    hdr = ("| donors | clients | stale | policy | util max | util p99 |"
           " util mean |"
           " util sd | GiB max | GiB mean | GiB sd | enospc | unplaced |"
           " full | 1% full at | peak |")
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    t0 = time.monotonic()
    for n in donors:
        for nc in clients:
            for s in stales:
                for p in policies:
                    r = simulate(args.seed, n, nc, s, p, args.rate, args.fill)
                    fa = ("-" if r["full_at"] is None
                          else f"{100 * r['full_at']:.0f}%")
                    print(f"| {n} | {nc} | {s} | {p} | {r['util_max']:.2f} |"
                          f" {r['util_p99']:.2f} |"
                          f" {r['util_mean']:.2f} | {r['util_sd']:.2f} |"
                          f" {r['gib_max']} | {r['gib_mean']:.1f} |"
                          f" {r['gib_sd']:.1f} |"
                          f" {100 * r['enospc']:.2f}% |"
                          f" {100 * r['unplaced']:.2f}% |"
                          f" {100 * r['full']:.1f}% | {fa} | {r['peak']} |",
                          flush=True)
                    if args.verbose:
                        print(f"#   {r['ticks']} ticks, {r['allocs']} ALLOCs,"
                              f" {time.monotonic() - t0:.1f} s so far",
                              file=sys.stderr)
    print(f"# {time.monotonic() - t0:.1f} s")


# ---------------------------------------------------------------------------
# Recovery


def recovery_time(jobs, width, stream_rate, extent_gib):
    """Greedy schedule of copy jobs [(src, dst)]: at most `width` at once,
    a donor in at most one copy as source and one as target at a time,
    each copy taking extent_gib / stream_rate seconds.  The finish time."""
    dur = extent_gib / stream_rate
    pending = list(jobs)
    sending, receiving = set(), set()
    running = []                     # heap of (end, src, dst)
    now = 0.0
    while pending or running:
        i = 0
        while i < len(pending) and len(running) < width:
            s, t = pending[i]
            if s not in sending and t not in receiving:
                sending.add(s)
                receiving.add(t)
                heapq.heappush(running, (now + dur, s, t))
                pending.pop(i)
            else:
                i += 1
        end, s, t = heapq.heappop(running)
        now = end
        sending.discard(s)
        receiving.discard(t)
        # Everything ending at the same moment frees its donors too.
        while running and running[0][0] <= now:
            _, s, t = heapq.heappop(running)
            sending.discard(s)
            receiving.discard(t)
    return now


def run_recovery(args):
    donors = args.donors or [10, 50, 200, 1000]
    if min(donors) < 3:
        sys.exit("--recovery needs at least 3 donors (one lost, a source"
                 " and a target)")
    nic = args.nic_gib
    cap_rate = args.rate_cap_mib / 1024
    eg = args.extent_mib / 1024
    nj = int(round(args.lost_gib / eg))
    print(f"# recovery seed={args.seed} lost={args.lost_gib} GiB in {nj}"
          f" extents of {args.extent_mib} MiB; NIC {nic} GiB/s; recovery"
          f" {args.rate_cap_mib} MiB/s per source and per target")
    print("| donors | relay W=1 | relay W=4 | COPY | scattered |"
          " COPY speed-up over relay W=4 |")
    print("|---|---|---|---|---|---|")
    for n in donors:
        rng = random.Random(f"{args.seed}/recovery/{n}")
        # Donor 0 is lost; its extents' other replicas are on 1..n-1.
        src = [rng.randrange(1, n) for _ in range(nj)]
        dst = []
        for s in src:
            t = rng.randrange(1, n - 1)
            dst.append(t + 1 if t >= s else t)     # any survivor but s
        jobs = list(zip(src, dst))
        w1 = recovery_time(jobs, 1, min(cap_rate, nic), eg)
        w4 = recovery_time(jobs, 4, min(cap_rate, nic / 4), eg)
        cp = recovery_time(jobs, min(256, max(4, n - 1)), cap_rate, eg)
        sc = recovery_time(jobs, len(jobs), cap_rate, eg)
        print(f"| {n} | {w1:.1f} s | {w4:.1f} s | {cp:.1f} s | {sc:.1f} s |"
              f" {w4 / cp:.1f}x |")


def intlist(s):
    return [int(x) for x in s.split(",") if x]


def main():
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--donors", type=intlist,
                    help="comma-separated pool sizes (default 1000,10000;"
                    " --recovery: 10,50,200,1000)")
    ap.add_argument("--clients", type=intlist,
                    help="comma-separated client counts (default 100,1000)")
    ap.add_argument("--staleness", type=intlist,
                    help="comma-separated refresh periods in ticks"
                    " (default 1,10; 0: always fresh)")
    ap.add_argument("--policies", type=lambda s: s.split(","),
                    help="comma-separated, of: " + ", ".join(POLICIES))
    ap.add_argument("--rate", type=float, default=0.1,
                    help="GiB of new extents per client per tick (0.1)")
    ap.add_argument("--fill", type=float, default=0.85,
                    help="stop when the pool would be this full (0.85)")
    ap.add_argument("--quick", action="store_true",
                    help="1000 donors, 100 clients only")
    ap.add_argument("--verbose", "-v", action="store_true")
    ap.add_argument("--recovery", action="store_true",
                    help="recovery time of one lost donor instead")
    ap.add_argument("--lost-gib", type=float, default=64)
    ap.add_argument("--extent-mib", type=int, default=64)
    ap.add_argument("--nic-gib", type=float, default=1.0)
    ap.add_argument("--rate-cap-mib", type=float, default=512)
    args = ap.parse_args()
    if args.recovery:
        run_recovery(args)
    else:
        run_placement(args)


if __name__ == "__main__":
    main()
