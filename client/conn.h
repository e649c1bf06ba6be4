/* One connection to one memserver: a fixed array of request slots, a
 * reader thread that matches replies to slots, and a send lock.
 *
 * The request id on the wire is (slot generation << 32 | slot index):
 * a reply for a slot that has since been reused (a stale or forged
 * reply) has the wrong generation and is a protocol error, as the
 * kernel nbd driver does with its cookies.
 *
 * A caller describes each request in a struct rp_call on its own stack;
 * nothing is allocated per request.  Completion is reported through an
 * rp_wait that may be shared by many calls (all replicas of a write,
 * all chunks of a large read), so one thread waits once for all of
 * them.
 */
#ifndef RP_CONN_H
#define RP_CONN_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "transport.h"

struct rp_wait {
  pthread_mutex_t lock;
  pthread_cond_t cond;         /* CLOCK_MONOTONIC */
  unsigned pending;            /* calls submitted, not completed */
};

struct rp_conn;

struct rp_call {
  struct rp_req req;           /* op, handle, offset, count, length */
  const void *payload;         /* req.length bytes to send (WRITE/HELLO) */
  void *rbuf;                  /* reply payload lands here */
  uint32_t rcap;               /* exact reply payload size expected
                                  when the reply is OK (at most, with
                                  is_var_len) */
  bool is_var_len;             /* LIST: any reply length up to rcap */
  struct rp_wait *wait;
  struct rp_conn *conn;        /* set by submit */
  int err;                     /* result: 0 or errno; valid when done */
  bool is_answered;            /* err came in a reply from the server,
                                  not from a lost connection or timeout:
                                  the server itself said so */
  uint32_t rlen;               /* reply payload bytes received */
  bool is_done;                /* guarded by wait->lock */
};

struct rp_slot {
  struct rp_call *call;        /* NULL = free */
  uint32_t gen;
  uint32_t next_free;          /* index + 1, 0 = end */
};

struct rp_conn {
  const struct rp_transport_ops *ops;
  struct rp_transport t;
  char name[160];              /* "HOST:PORT#i", for logs */
  pthread_mutex_t send_lock;   /* one frame at a time on the wire */
  pthread_mutex_t lock;        /* slots, free list, is_dead */
  pthread_cond_t slot_cond;    /* a slot was freed or conn died */
  struct rp_slot *slots;       /* nslots, owned */
  unsigned nslots;
  uint32_t free_head;          /* index + 1 of a free slot, 0 = none */
  unsigned nbusy;
  bool is_dead;                /* no reader; submits fail */
  bool is_ready;               /* HELLO done: data requests allowed */
  bool has_reader;
  uint32_t conn_gen;           /* bumped at every connect; guarded by
                                  lock and send_lock (both to write) */
  pthread_t reader;
  /* Called by the reader thread once, as it exits, with the reason. */
  void (*on_dead) (struct rp_conn *c, const char *why);
  /* Called for every reply with the server's free bytes. */
  void (*on_free_bytes) (struct rp_conn *c, uint64_t free_bytes);
  void *opaque;                /* the owner's (pool.c: struct rp_server) */
  char dead_why[128];          /* guarded by lock */
};

void rp_wait_init (struct rp_wait *w);
void rp_wait_destroy (struct rp_wait *w);
/* Wait until every call completed or deadline_ms (rp_now_ms clock)
 * passes.  On timeout, the connections of the calls still pending are
 * killed (so their readers fail them) and the wait goes on until they
 * are all complete: a call never outlives this function.  Returns 0, or
 * -1 with errno = ETIMEDOUT if any call timed out.
 */
int rp_wait_all (struct rp_wait *w, struct rp_call *calls, unsigned ncalls,
                 uint64_t deadline_ms);

int rp_conn_init (struct rp_conn *c, const char *name, unsigned nslots);
void rp_conn_destroy (struct rp_conn *c);
/* Connect and start the reader.  0 or -1 with errno. */
int rp_conn_connect (struct rp_conn *c, const char *host, const char *port,
                     unsigned timeout_ms);
/* Submit call on c (waits for a free slot).  Returns 0 once submitted
 * (the result arrives through call->wait), or -1 with errno = ENOTCONN
 * if c is dead (nothing submitted, call->wait untouched).
 */
int rp_conn_submit (struct rp_conn *c, struct rp_call *call);
/* Submit one call and wait for it with a deadline.  Returns the call's
 * result: 0 or -1 with errno.
 */
int rp_conn_call (struct rp_conn *c, struct rp_call *call, unsigned timeout_ms);
/* Make the reader fail everything and exit (any thread, idempotent). */
void rp_conn_kill (struct rp_conn *c, const char *why);
/* Join the reader and close the transport (not from the reader). */
void rp_conn_join (struct rp_conn *c);
bool rp_conn_is_dead (struct rp_conn *c);
/* Is c dead?  If so, why (into why[0..len)). */
bool rp_conn_dead_why (struct rp_conn *c, char *why, size_t len);
/* After HELLO succeeded: let other requests through.  Until then only
 * HELLO and AUTH may be submitted, so no request can overtake them on a
 * freshly reconnected connection.
 */
void rp_conn_set_ready (struct rp_conn *c);

#endif /* RP_CONN_H */
