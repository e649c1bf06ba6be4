/* The pool's figures (stats.c). */
#ifndef RP_STATS_H
#define RP_STATS_H

#include "engine.h"

/* Fill st (as rp_pool_get_stats, which calls this). */
void stats_get (struct rp_pool *p, struct rp_pool_stats *st);

#endif /* RP_STATS_H */
