/* A transport moves whole frames between librampool and one memserver.
 * The engine (pool.c, io.c) never sees sockets: it calls conn.c, and
 * conn.c calls the transport through this table.  TCP implements it
 * with a stream socket; an RDMA transport can implement the same calls
 * with SEND/RECV for headers and one-sided READ/WRITE into the
 * server's registered region for payloads, without touching the engine.
 */
#ifndef RP_TRANSPORT_H
#define RP_TRANSPORT_H

#include <stddef.h>
#include <sys/uio.h>

struct rp_transport {
  int fd;                       /* TCP: the socket; -1 when closed */
};

struct rp_transport_ops {
  const char *name;
  /* Connect within timeout_ms.  0 or -1 with errno. */
  int (*connect) (struct rp_transport *t, const char *host, const char *port,
                  unsigned timeout_ms);
  /* Send a whole frame (header + payload).  Called under the conn's
   * send lock.  0 or -1 with errno.
   */
  int (*send) (struct rp_transport *t, const struct iovec *iov, int iovcnt);
  /* Receive exactly len bytes (reader thread only).  0 or -1. */
  int (*recv) (struct rp_transport *t, void *buf, size_t len);
  /* Make a blocked recv return (any thread).  Idempotent. */
  void (*shutdown) (struct rp_transport *t);
  /* Release (reader thread joined first). */
  void (*close) (struct rp_transport *t);
};

extern const struct rp_transport_ops rp_transport_tcp;

#endif /* RP_TRANSPORT_H */
