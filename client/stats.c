/* The pool's figures (client.h, RP_POOL_GAUGES and RP_POOL_COUNTERS):
 * the gauges counted from the extent map and the donors' states, the
 * counters read.  For operators (the stats file, rampool status) and
 * tests; it takes each mapped extent's read lock in turn.
 */
#include <config.h>

#include <string.h>

#include "ecio.h"
#include "replica.h"
#include "stats.h"

void
stats_get (struct rp_pool *p, struct rp_pool_stats *st)
{
  memset (st, 0, sizeof *st);
  for (unsigned i = 0; i < p->nservers; i++) {
    if (!atomic_load (&p->servers[i].is_retired))
      st->servers++;
    if (atomic_load (&p->servers[i].is_up))
      st->servers_up++;
    if (atomic_load (&p->servers[i].park) == PARK_DONE &&
        !atomic_load (&p->servers[i].is_retired))
      st->servers_parked++;
  }
  st->extents = p->map.n;
  for (uint64_t idx = 0; p->ec && idx < p->map.n; idx++) {
    pthread_rwlock_t *lk = extent_map_lock (&p->map, idx);
    if (!__atomic_load_n (&p->map.e[idx].is_coded, __ATOMIC_RELAXED))
      continue;
    pthread_rwlock_rdlock (lk);
    switch (ecio_state (p, idx)) {
    case ECIO_HEALTHY: st->extents_mapped++; st->extents_healthy++; break;
    case ECIO_DEGRADED: st->extents_mapped++; st->extents_degraded++; break;
    case ECIO_UNREACHABLE:
      st->extents_mapped++; st->extents_unreachable++; break;
    case ECIO_LOST: st->extents_mapped++; st->extents_lost++; break;
    }
    pthread_rwlock_unlock (lk);
  }
  for (uint64_t idx = 0; idx < p->map.n; idx++) {
    pthread_rwlock_t *lk = extent_map_lock (&p->map, idx);
    struct extent *e = &p->map.e[idx];
    unsigned good = 0;
    if (__atomic_load_n (&e->nrep, __ATOMIC_RELAXED) == 0)
      continue;
    pthread_rwlock_rdlock (lk);
    for (unsigned r = 0; r < e->nrep; r++)
      if (replica_is_good (p, &e->rep[r]))
        good++;
    if (e->nrep) {
      st->extents_mapped++;
      if (good >= p->cfg.replicas)
        st->extents_healthy++;
      else if (good > 0)
        st->extents_degraded++;
      else if (replica_extent_may_return (p, e))
        st->extents_unreachable++;
      else
        st->extents_lost++;
    }
    pthread_rwlock_unlock (lk);
  }
  st->blocks_in_doubt = p->crypt.key ? crypt_doubts (&p->crypt) : 0;
#define POOL_STATS_COPY(name, help) st->name = atomic_load (&p->count.name);
  RP_POOL_COUNTERS (POOL_STATS_COPY)
#undef POOL_STATS_COPY
}


void
rp_pool_get_stats (struct rp_pool *p, struct rp_pool_stats *st)
{
  stats_get (p, st);
}
