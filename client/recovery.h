/* Recovery (recovery.c). */
#ifndef RP_RECOVERY_H
#define RP_RECOVERY_H

#include "engine.h"

/* One pass restoring `replicas` good copies, within this heartbeat's
 * budget (recovery-rate); returns how many extents it repaired.
 * Monitor thread.
 */
uint64_t recovery_pass (struct rp_pool *p);

#endif /* RP_RECOVERY_H */
