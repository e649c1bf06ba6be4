/* Request latency and size per op, as the public calls see them
 * (rp_pool_pread, _pwrite, _trim, _zero): fixed histogram buckets of
 * atomic counters, filled on the I/O path without a lock or an
 * allocation, read by the metrics writer (metrics.c).
 *
 * Not here: the chunk-level counters (engine.h, pool_counters), the
 * exposition format (metrics.c).
 */
#ifndef RP_LATENCY_H
#define RP_LATENCY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum latency_op {
  LATENCY_READ,
  LATENCY_WRITE,
  LATENCY_TRIM,
  LATENCY_ZERO,
  LATENCY_NOPS
};

/* Upper bounds of the buckets, in nanoseconds, from 50 us (a loopback
 * round trip) to 30 s (outage-wait-ms's default); one more bucket
 * counts what is above the last.
 */
#define LATENCY_BOUNDS(X) \
  X (50000) X (100000) X (200000) X (500000) \
  X (1000000) X (2000000) X (5000000) X (10000000) X (20000000) \
  X (50000000) X (100000000) X (200000000) X (500000000) \
  X (1000000000) X (2000000000) X (5000000000) X (10000000000) \
  X (30000000000)
#define LATENCY_ONE(ns) + 1
#define LATENCY_NBOUNDS (0 LATENCY_BOUNDS (LATENCY_ONE))

extern const uint64_t latency_bounds_ns[LATENCY_NBOUNDS];

struct latency_op_stats {
  atomic_uint_least64_t buckets[LATENCY_NBOUNDS + 1]; /* not cumulative;
                                  the last is above every bound */
  atomic_uint_least64_t sum_ns;  /* of every request's duration */
  atomic_uint_least64_t bytes;   /* requested (count) */
  atomic_uint_least64_t errors;  /* requests that returned -1 */
};

struct latency {
  struct latency_op_stats op[LATENCY_NOPS];
};

/* One request of `op` for `bytes`, started at start_ns (rp_now_ns),
 * ended now; is_ok false when it failed.  Any thread; no lock, no
 * allocation.
 */
void latency_observe (struct latency *l, enum latency_op op, uint64_t bytes,
                      uint64_t start_ns, bool is_ok);

/* The op's name, lower case ("read"). */
const char *latency_op_name (enum latency_op op);

#endif /* RP_LATENCY_H */
