/* Giving memory back (reclaim.c): the donation that follows the donor
 * host's own needs (--size auto), asking owners for extents back
 * (RECLAIM notices) and dropping what they do not move in time, and
 * draining (DRAIN, SIGUSR2) before the memserver stops.
 */
#ifndef MS_RECLAIM_H
#define MS_RECLAIM_H

#include <stdbool.h>
#include <stdint.h>

#include "session.h"

struct reclaim;

/* Start on core (sets its drain and joined hooks and core->reclaim).
 * stop(status) is called when a drain ends: 0 when the server is
 * empty, 1 when its deadline passed with extents left.  NULL on
 * failure (logged).
 */
struct reclaim *reclaim_start (struct session_core *core,
                               void (*stop) (void *opaque, int status),
                               void *opaque);
void reclaim_free (struct reclaim *r);

/* Once a second (the server's sweep): follow the host's free memory,
 * ask for extents back, drop those past their deadline, and end a
 * drain.
 */
void reclaim_tick (struct reclaim *r, uint64_t now_ms);

/* Start draining with the default deadline (SIGUSR2). */
void reclaim_drain_now (struct reclaim *r);

/* Where giving back stands, for the metrics (metrics.c). */
struct reclaim_progress {
  uint32_t pending_extents;      /* asked back, not yet gone */
  uint64_t pending_bytes;
  uint64_t drain_start_bytes;    /* used when the drain began; 0: none */
  uint64_t drain_left_ms;        /* to the drain's deadline; 0: none */
};
void reclaim_get_progress (const struct reclaim *r, uint64_t now_ms,
                           struct reclaim_progress *out);

#endif /* MS_RECLAIM_H */
