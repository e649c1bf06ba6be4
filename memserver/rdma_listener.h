/* The memserver's RDMA listener (rdma_listener.c): librdmacm connections whose
 * two-sided frames drive sessions as TCP's bytes do, and whose READs
 * and WRITEs never reach this process (docs/protocol.md section 13).
 * Built only with rdma-core (HAVE_RDMA).
 */
#ifndef MS_RDMA_LISTENER_H
#define MS_RDMA_LISTENER_H

#include <uv.h>

#include "session.h"

struct rdma_listener;

/* Listen on addr ("ADDR:PORT", an address of an RDMA device's network
 * interface) on loop; connections become sessions of core.  Sets
 * core->store.release_remote.  NULL, with the reason logged (naming
 * the missing device and how to add a soft-RoCE one), on failure.
 */
struct rdma_listener *rdma_listener_start (uv_loop_t *loop,
                                       struct session_core *core,
                                       const char *addr);

/* Stop listening and close every RDMA connection (their queue pairs go
 * to the error state at once); the rest is released as the loop runs
 * their handles' close callbacks.
 */
void rdma_listener_stop (struct rdma_listener *rs);

/* Free what is left, after the loop has run dry and the store has
 * released every extent's registration.
 */
void rdma_listener_free (struct rdma_listener *rs);

/* The port it listens on (as bound: port 0 picks one). */
int rdma_listener_port (const struct rdma_listener *rs);

#endif /* MS_RDMA_LISTENER_H */
