/* COPY: this memserver writing a range of one of its extents straight
 * into another memserver's extent, for the client that owns both
 * (scattered recovery: the bytes go donor to donor, not through the
 * client).  See protocol.h (struct rp_copy_req) and docs/protocol.md.
 *
 * A copy runs on the event loop like everything else: an outbound TCP
 * connection (a "link") to the target, joined as the requesting owner
 * (HELLO with its owner id and the client's fence for the target, AUTH
 * with our cluster key), then WRITEs of at most PEER_CHUNK bytes, at
 * most PEER_WINDOW of them in flight per copy.  Each chunk is copied
 * out of the region when its WRITE is built, after looking the source
 * extent up again: an extent freed or dropped meanwhile ends the copy
 * instead of sending memory that may be someone else's by then.
 *
 * Links are kept between copies for the same (target, owner, fence,
 * session), so a recovery of many 1 MiB extents costs one handshake per
 * target, not one per extent (nor a TIME_WAIT socket per extent); a
 * link with no copy for PEER_IDLE_MS is closed, so a client's session
 * on the target is not kept open by us once the client is gone.
 */
#ifndef MS_PEER_H
#define MS_PEER_H

#include <uv.h>

#include "session.h"

#define PEER_CHUNK (1u << 20)
#define PEER_WINDOW 4
#define PEER_IDLE_MS 2000

struct peer;

/* Take COPY requests on core's sessions (sets core->copy,
 * copy_cancel and peer), at most max_copies at once.  NULL with the
 * reason logged.
 */
struct peer *peer_start (uv_loop_t *loop, struct session_core *core,
                         unsigned max_copies);

/* The server is stopping: close every link now (copies still running
 * were ended by their sessions' close).
 */
void peer_stop (struct peer *p);

/* After the loop has run its last close callbacks. */
void peer_free (struct peer *p);

#endif /* MS_PEER_H */
