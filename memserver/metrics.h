/* The memserver's Prometheus metrics over HTTP (metrics.c). */
#ifndef MS_METRICS_H
#define MS_METRICS_H

#include <uv.h>

#include "session.h"

struct metrics;

/* With --metrics-listen, serve GET /metrics on its own thread, reading
 * core through snapshots the loop takes (*out set); without, *out =
 * NULL.  0, or -1 (logged).  Loop thread.
 */
int metrics_start (uv_loop_t *loop, struct session_core *core,
                   struct metrics **out);

/* Stop serving and close the loop's handle: call before the loop's
 * last run (the memory goes when the close completes).  NULL: nothing.
 */
void metrics_free (struct metrics *m);

#endif /* MS_METRICS_H */
