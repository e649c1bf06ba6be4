/* The seam between the engine and a network: what a transport is.
 *
 * The engine never sees a socket.  io.c, recovery.c and donor.c
 * describe each request in a struct conn_call (op, handle, offset,
 * count, payload, where the reply goes) and hand it to conn.c, which
 * owns the connection's request slots and the life of every call.
 * conn.c moves requests through this table, and the transport delivers
 * the replies back through conn.h's receive-side calls.  A transport is
 * chosen per server, by the scheme of its address in servers=
 * (transport_find); adding one means new files and a line in
 * transport.c, not a change to io.c, pool.c or recovery.c.
 *
 * The contract, for a transport's implementer:
 *  - connect: reach HOST:PORT within timeout_ms and make the private
 *    state (t->priv), with what *hello says of the connection: the
 *    session it will join (RDMA names it in its connect request, so
 *    the server can put the queue pair in that session's protection
 *    domain), the request slots and the memory one-sided data may
 *    use.  Nothing is sent yet.  Monitor side: it may allocate,
 *    register memory, sleep and block.  Failure: -1 with errno and a
 *    message in err (what failed and, where we know, what to do).
 *  - start: begin receiving for connection c.  From now on the
 *    transport's receive side (its own thread for TCP; a completion
 *    queue poller for RDMA) reports every reply with conn_reply_call
 *    (which names the call it answers, or says the reply is bad) and
 *    conn_reply_done, and reports its own end exactly once with
 *    conn_end; after conn_end it touches c no more.  Replies need not
 *    come in request order and need not come from a byte stream.
 *  - send: transmit one request, whole, under c's send lock, without
 *    allocating (the I/O path calls it).  call->req carries the id to
 *    echo.  A READ's reply payload must land in call->rbuf and a
 *    WRITE's payload is read from call->payload; both are engine
 *    memory, not registered with any device, so a transport that needs
 *    registered memory (RDMA) copies through bounce buffers it made at
 *    connect (hello->buffer_bytes of them, bounded whatever the
 *    traffic), and may wait there for room or for the server's credits
 *    -- never longer than the connection's timeout, and never once
 *    shutdown has run.
 *    A transport that moves data one-sided finds the extent's place in
 *    the server's memory in call->rkey and call->raddr_64k, which the
 *    engine copies from the replica, which got them from the server's
 *    ALLOC reply (protocol.h); TCP ignores them.  Failure: -1 with
 *    errno; the call stays in its slot and fails when the receive side
 *    ends (conn kills the connection).
 *  - send_frames (optional; NULL if the transport has none): transmit
 *    n requests already encoded by conn.c (conn_batch, conn.h), in
 *    that order, under c's send lock, as few system calls as it can:
 *    for TCP one sendmsg of every header and payload.  Otherwise as
 *    send.
 *  - pump (optional; NULL if the transport has none): for a direct
 *    connection (conn.h, lanes), which has no receive side of its own:
 *    start only records c, and the thread waiting for a reply calls
 *    pump, under c's recv_lock, to receive what has come (blocking, at
 *    most about TRANSPORT_PUMP_MS when nothing comes) and deliver it
 *    with conn_reply_call and conn_reply_done as a receive side would.
 *    NULL, or why the connection is over (conn.c then calls conn_end).
 *  - shutdown: make the receive side fail promptly and end (conn_end);
 *    any thread, idempotent, never blocks.  On a direct connection: a
 *    pump in progress returns at once with why.
 *  - close: after the receive side has ended, join it and release
 *    everything, aborting rather than flushing what was not sent (a
 *    request given up on must not reach the server later; the server's
 *    fence, protocol.h, covers what is already in flight).
 *
 * Ordering: a transport must execute one connection's requests in the
 * order they were sent (the protocol's rule, which replica consistency
 * rests on: docs/protocol.md 6.1), including one-sided data operations
 * relative to two-sided ones on the same connection.
 */
#ifndef RP_TRANSPORT_H
#define RP_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

struct conn;
struct conn_call;
struct conn_frame;

/* What connect knows of a connection besides its address.  TCP needs
 * none of it.
 */
struct transport_hello {
  uint8_t owner[16];           /* the session's owner id, as HELLO will
                                  carry it */
  uint64_t fence;              /* the connection generation, as HELLO
                                  will carry it */
  unsigned nslots;             /* the connection's request slots: at
                                  most this many requests at once (set
                                  by conn_connect) */
  uint64_t buffer_bytes;       /* registered memory for one-sided data,
                                  bytes (rdma-buffer=); 0: the
                                  connection carries no READ or WRITE
                                  (a status query) */
};

/* How long one pump waits for bytes when none come: the granularity
 * of a direct connection's request deadline.
 */
#define TRANSPORT_PUMP_MS 100

struct transport {
  const struct transport_ops *ops;
  void *priv;                  /* the transport's, from connect to close */
};

struct transport_ops {
  const char *scheme;          /* in servers=: "tcp" for tcp://HOST:PORT */
  int (*connect) (struct transport *t, const char *host, const char *port,
                  unsigned timeout_ms, const struct transport_hello *hello,
                  char *err, size_t errlen);
  int (*start) (struct transport *t, struct conn *c);
  int (*send) (struct transport *t, const struct conn_call *call);
  int (*send_frames) (struct transport *t,
                      const struct conn_frame *const *frames, unsigned n);
  const char *(*pump) (struct transport *t, char *whybuf, size_t whylen);
  void (*shutdown) (struct transport *t);
  void (*close) (struct transport *t);
};

extern const struct transport_ops transport_tcp;
#ifdef HAVE_RDMA
extern const struct transport_ops transport_rdma;
#endif

/* The transport for a server address "[SCHEME://]HOST:PORT" (no
 * scheme: tcp); *hostport is set to the part after the scheme.  NULL
 * if the scheme is unknown, with why (static text: which schemes this
 * build knows, or how to get the one asked for) in *why if why is not
 * NULL.
 */
const struct transport_ops *transport_find (const char *addr,
                                            const char **hostport,
                                            const char **why);

#endif /* RP_TRANSPORT_H */
