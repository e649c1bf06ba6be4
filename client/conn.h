/* One connection to one memserver: a fixed array of request slots, the
 * life of every call made on it, and a send lock.  How requests and
 * replies travel is the transport's (transport.h): conn.c hands it each
 * request, and its receive side hands back each reply through the
 * conn_reply_* calls below.
 *
 * The request id on the wire is (slot generation << 32 | slot index):
 * a reply for a slot that has since been reused (a stale or forged
 * reply) has the wrong generation and is a protocol error, as the
 * kernel nbd driver does with its cookies.
 *
 * A caller describes each request in a struct conn_call on its own
 * stack; nothing is allocated per request.  Completion is reported
 * through a conn_wait that may be shared by many calls (all replicas of
 * a write, all chunks of a large read), so one thread waits once for
 * all of them.
 */
#ifndef RP_CONN_H
#define RP_CONN_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "transport.h"

/* A futex word, not a mutex and condition variable: the calls
 * submitted and not completed (CONN_WAIT_COUNT bits), and
 * CONN_WAIT_SLEEPING once the waiter is asleep on it or about to be
 * (with CONN_WAIT_ANY, conn_wait_fewer's: woken at every completion).
 * Completing a call is one atomic decrement; only the last completion,
 * and only if the waiter sleeps, makes a system call (the wake).
 */
struct conn_wait {
  uint32_t state;              /* atomic */
  /* Asynchronous (conn_wait_init_async): called once every call is
   * complete, instead of waking a waiter; NULL otherwise.
   */
  void (*on_zero) (struct conn_wait *w);
  uint64_t deadline_ms;        /* asynchronous: conn_expire kills the
                                  connections of calls still pending
                                  past it (rp_now_ms clock) */
};

struct conn;

struct conn_call {
  struct rp_req req;           /* op, handle, offset, count, length; id
                                  set by conn_submit */
  const void *payload;         /* req.length bytes to send (WRITE/HELLO) */
  void *rbuf;                  /* reply payload lands here */
  uint32_t rcap;               /* exact reply payload size expected
                                  when the reply is OK (at most, with
                                  is_var_len) */
  bool is_var_len;             /* LIST: any reply length up to rcap */
  uint32_t rkey;               /* one-sided transports: the extent's key */
  uint32_t raddr_64k;          /* and place in the server's region, in
                                  64 KiB units (replica, ALLOC reply) */
  struct conn_wait *wait;
  struct conn *conn;           /* set by submit */
  int err;                     /* result: 0 or errno; valid when done */
  bool is_answered;            /* err came in a reply from the server,
                                  not from a lost connection or timeout:
                                  the server itself said so */
  uint32_t rlen;               /* reply payload bytes received */
  bool is_done;                /* atomic: set as the call completes */
};

struct conn_slot {
  struct conn_call *call;      /* NULL = free */
  uint32_t gen;
  uint32_t next_free;          /* index + 1, 0 = end */
};

struct conn {
  struct transport t;          /* ops fixed at init; priv per connect */
  /* Direct (a lane, donor.h): no receive thread; a caller waiting for
   * one of its calls receives for it (conn_wait_all, transport pump)
   * under recv_lock, which also guards has_ended.  Set before the
   * first connect; only for a transport with pump.
   */
  bool is_direct;
  pthread_mutex_t recv_lock;
  bool has_ended;              /* conn_end ran for this connect */
  char name[160];              /* "HOST:PORT#i", for logs */
  pthread_mutex_t send_lock;   /* one frame at a time on the wire */
  pthread_mutex_t lock;        /* slots, free list, is_dead */
  pthread_cond_t slot_cond;    /* a slot was freed or conn died */
  struct conn_slot *slots;     /* nslots, owned */
  unsigned nslots;
  uint32_t free_head;          /* index + 1 of a free slot, 0 = none */
  unsigned nbusy;
  bool is_dead;                /* no receive side; submits fail */
  bool is_ready;               /* HELLO done: data requests allowed */
  bool is_started;             /* the transport was started: close it */
  uint32_t conn_gen;           /* bumped at every connect; guarded by
                                  lock and send_lock (both to write) */
  /* Called once, as the receive side ends, with the reason. */
  void (*on_dead) (struct conn *c, const char *why);
  /* Called for every reply with the server's free bytes. */
  void (*on_free_bytes) (struct conn *c, uint64_t free_bytes);
  /* Called for every notice (protocol.h), from the receive side:
   * handles[0..n->count) for a RECLAIM.  Must not block.
   */
  void (*on_notice) (struct conn *c, const struct rp_notice *n,
                     const uint64_t *handles);
  void *opaque;                /* the owner's (donor.c: struct donor) */
  char dead_why[128];          /* guarded by lock */
};

void conn_wait_init (struct conn_wait *w);
void conn_wait_destroy (struct conn_wait *w);
/* An asynchronous wait: nobody waits on w; once every call submitted
 * on it is complete and the submitter let go of it (conn_wait_release,
 * after its last submit), fn(w) is called on the thread that completed
 * the last call, or on the releasing one.  That may be a connection's
 * receive side, holding the connection's lock: fn must not block,
 * submit, or take any connection's lock.  Calls still pending past
 * deadline_ms have their connections killed by conn_expire (so they
 * fail with EIO, not answered).
 */
void conn_wait_init_async (struct conn_wait *w,
                           void (*fn) (struct conn_wait *w),
                           uint64_t deadline_ms);
void conn_wait_release (struct conn_wait *w);
/* Wait until every call completed or deadline_ms (rp_now_ms clock)
 * passes.  On timeout, the connections of the calls still pending are
 * killed (so their receive sides fail them) and the wait goes on until
 * they are all complete: a call never outlives this function.  Returns
 * 0, or -1 with errno = ETIMEDOUT if any call timed out.  Calls on a
 * direct connection are received here, by the caller (only this
 * function and conn_roundtrip receive for them: conn_wait_fewer must
 * not be given any).
 */
int conn_wait_all (struct conn_wait *w, struct conn_call *calls,
                   unsigned ncalls, uint64_t deadline_ms);

/* Wait until fewer than `pending` of w's calls are outstanding, or
 * deadline_ms passes (then -1 with errno = ETIMEDOUT; nothing is
 * killed).  Unlike conn_wait_all it may return with calls in flight:
 * for a caller that needs the first few of many answers (late-binding
 * reads, ecio.c), which must keep the calls, their buffers and w alive
 * until every call completes (is_done).
 */
int conn_wait_fewer (struct conn_wait *w, uint32_t pending,
                     uint64_t deadline_ms);
/* Calls of w not completed yet, counting a completion only once it
 * has let go of w (a call's is_done is set just before): w may be
 * reused when this is 0.
 */
uint32_t conn_wait_pending (struct conn_wait *w);

/* A connection that uses transport ops, with nslots request slots.
 * 0 or -1 with errno.
 */
int conn_init (struct conn *c, const char *name,
               const struct transport_ops *ops, unsigned nslots);
void conn_destroy (struct conn *c);
/* Connect and start receiving; hello as transport.h says (its nslots
 * is c's, whatever the caller put there).  0, or -1 with errno and a
 * message in err.
 */
int conn_connect (struct conn *c, const char *host, const char *port,
                  unsigned timeout_ms, const struct transport_hello *hello,
                  char *err, size_t errlen);
/* Make c direct (before its first connect): see struct conn. */
void conn_set_direct (struct conn *c);
/* Submit call on c (waits for a free slot).  Returns 0 once submitted
 * (the result arrives through call->wait), or -1 with errno = ENOTCONN
 * if c is dead (nothing submitted, call->wait untouched).
 */
int conn_submit (struct conn *c, struct conn_call *call);
/* Submit one call and wait for it with a deadline.  Returns the call's
 * result: 0 or -1 with errno.
 */
int conn_roundtrip (struct conn *c, struct conn_call *call,
                    unsigned timeout_ms);
/* Make the receive side fail everything and end (any thread,
 * idempotent).
 */
void conn_kill (struct conn *c, const char *why);
/* Kill c if a call of an asynchronous wait is pending on it past its
 * deadline (now_ms, rp_now_ms clock): what conn_wait_all does for a
 * waiter.  Any thread but a receive side.
 */
void conn_expire (struct conn *c, uint64_t now_ms);
/* Wait for the receive side to end and close the transport (not from
 * the receive side).
 */
void conn_join (struct conn *c);
bool conn_is_dead (struct conn *c);
/* Is c dead?  If so, why (into why[0..len)). */
bool conn_dead_why (struct conn *c, char *why, size_t len);
/* After HELLO succeeded: let other requests through.  Until then only
 * HELLO and AUTH may be submitted, so no request can overtake them on a
 * freshly reconnected connection.
 */
void conn_set_ready (struct conn *c);

/* Held sends.  Between conn_batch_begin and conn_batch_end, the
 * requests this thread submits on a connection whose transport has
 * send_frames (TCP) are taken into their slots as usual but not sent:
 * their frames are encoded into b and go out at conn_batch_flush, one
 * send_frames per connection -- for a burst of requests one system
 * call, and one wake-up of each server, instead of one per request.
 * A held request is not in flight: the thread flushes before it waits
 * for anything (conn.c does before it waits for a slot or a call;
 * the caller before a recv or a lock of its own).  b is full at
 * CONN_BATCH_FRAMES frames; the next submit flushes it first.  Direct
 * connections (lanes) always send at once.
 */
#define CONN_BATCH_FRAMES 32

struct conn_frame {
  struct conn *conn;           /* NULL once sent (flush) */
  uint32_t gen;                /* conn_gen when the slot was taken */
  uint32_t len;                /* payload bytes */
  const void *payload;
  struct conn_wait *wait;      /* the call's, held by one count until
                                  the frame is sent */
  uint8_t hdr[sizeof (struct rp_req_hdr)];
};

struct conn_batch {
  unsigned n, nsent;
  struct conn_frame f[CONN_BATCH_FRAMES];
  struct {                     /* conn_batch_on_sent */
    void (*fn) (void *arg, uint64_t v);
    void *arg;
    uint64_t v;
  } on_sent[CONN_BATCH_FRAMES];
};

void conn_batch_begin (struct conn_batch *b);
/* Is this thread holding sends (between begin and end)? */
bool conn_batch_is_on (void);
/* Call fn(arg, v) once the frames held so far are sent (at the next
 * flush, after the last send_frames).
 */
void conn_batch_on_sent (void (*fn) (void *arg, uint64_t v), void *arg,
                         uint64_t v);
void conn_batch_flush (void);
void conn_batch_end (void);

/* The receive side's calls (transport.h; only from a transport's
 * receive side, which is one thread or poller per connection).
 *
 * conn_reply_call: the call that reply header r answers, checked: its
 * slot must be in use with r's generation and r's length must be what
 * the call expects.  NULL, with *why, for a reply that is not (the
 * transport then ends the connection).
 * conn_reply_done: the reply's payload (r->length bytes) is in
 * call->rbuf: complete the call and free its slot.
 * conn_end: the receive side ends, for why: every call in flight fails
 * with EIO, submits fail from now on, and on_dead is called.  Exactly
 * once per start.
 */
struct conn_call *conn_reply_call (struct conn *c, const struct rp_reply *r,
                                   const char **why);
void conn_reply_done (struct conn *c, const struct rp_reply *r,
                      struct conn_call *call);
void conn_end (struct conn *c, const char *why);
/* A notice arrived (header n, decoded; payload the count handles as
 * they came, little-endian): hand it to the owner.
 */
void conn_notice (struct conn *c, const struct rp_notice *n,
                  const uint8_t *payload);

#endif /* RP_CONN_H */
