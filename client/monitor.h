/* The monitor thread (monitor.c). */
#ifndef RP_MONITOR_H
#define RP_MONITOR_H

#include "engine.h"

/* Connect every server at once (a thread each), at pool open; the
 * reason a server failed is left in its last_connect_err.  Returns how
 * many are up.
 */
unsigned monitor_connect_all (struct rp_pool *p);

/* Start the thread (0, or -1 with errno); stop it and join every
 * reconnect thread (each ends within about connections x 2 x
 * timeout-ms).
 */
int monitor_start (struct rp_pool *p);
void monitor_stop (struct rp_pool *p);

#endif /* RP_MONITOR_H */
