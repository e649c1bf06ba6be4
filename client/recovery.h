/* Recovery (recovery.c). */
#ifndef RP_RECOVERY_H
#define RP_RECOVERY_H

#include <stdbool.h>

#include "engine.h"

/* One pass restoring `replicas` good copies, until until_ms (the next
 * heartbeat) at the latest, yielding to foreground I/O and within
 * recovery-rate= if set.  true if it stopped at until_ms with the map
 * not scanned to its end: the next pass should follow at once.
 * Monitor thread.
 */
bool recovery_pass (struct rp_pool *p, uint64_t until_ms);

/* Start the worker threads and their buffers (pool open, after
 * p->recovery_buf): 0, or -1 with errno.  Stop and free them (close,
 * after the monitor thread stopped; safe if start failed or never
 * ran).
 */
int recovery_start (struct rp_pool *p);
void recovery_stop (struct rp_pool *p);

#endif /* RP_RECOVERY_H */
