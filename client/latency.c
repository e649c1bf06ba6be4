/* See latency.h.  Filling a bucket is a bounded search over a small
 * constant table and three relaxed atomic adds: nothing here blocks or
 * allocates, so it may sit on the swap path.
 */
#include <config.h>

#include "latency.h"
#include "util.h"

#define LATENCY_VALUE(ns) UINT64_C (ns),
const uint64_t latency_bounds_ns[LATENCY_NBOUNDS] = {
  LATENCY_BOUNDS (LATENCY_VALUE)
};
#undef LATENCY_VALUE

void
latency_observe (struct latency *l, enum latency_op op, uint64_t bytes,
                 uint64_t start_ns, bool is_ok)
{
  struct latency_op_stats *s = &l->op[op];
  uint64_t now = rp_now_ns ();
  uint64_t d = now > start_ns ? now - start_ns : 0;
  unsigned b = 0;

  while (b < LATENCY_NBOUNDS && d > latency_bounds_ns[b])
    b++;
  atomic_fetch_add_explicit (&s->buckets[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit (&s->sum_ns, d, memory_order_relaxed);
  atomic_fetch_add_explicit (&s->bytes, bytes, memory_order_relaxed);
  if (!is_ok)
    atomic_fetch_add_explicit (&s->errors, 1, memory_order_relaxed);
}

const char *
latency_op_name (enum latency_op op)
{
  static const char *const names[LATENCY_NOPS] = {
    "read", "write", "trim", "zero"
  };

  return op < LATENCY_NOPS ? names[op] : "unknown";
}
