/* metrics-file=: the pool's figures for Prometheus (metrics.c). */
#ifndef RP_METRICS_H
#define RP_METRICS_H

#include "engine.h"

/* Write p->cfg.metrics_file (set) in the Prometheus text format:
 * PATH.tmp, then renamed.  The monitor thread, every heartbeat; no
 * allocation.
 */
void metrics_write_file (struct rp_pool *p);

#endif /* RP_METRICS_H */
