/* See conn.h.
 *
 * Life of a request: the caller takes a free slot (waiting on
 * slot_cond if all are busy), stamps the id, and hands the call to the
 * transport under send_lock.  The transport's receive side reads each
 * reply and asks conn_reply_call which call it answers (checking the
 * slot's generation and the length), puts any payload straight into
 * the caller's buffer, and calls conn_reply_done, which records the
 * result, frees the slot and wakes the caller.  When the connection
 * fails (EOF, error, protocol violation, or conn_kill from a timed-out
 * waiter), the receive side calls conn_end, which marks it dead under
 * `lock` and fails every busy slot with EIO; submitters check is_dead
 * under the same lock, so no call is ever left behind.
 */
#include <config.h>

#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>

#include "conn.h"
#include "util.h"

#define CONN_WAIT_SLEEPING 0x80000000u
#define CONN_WAIT_ANY 0x40000000u      /* wake at every completion */
#define CONN_WAIT_COUNT 0x3fffffffu

/* This thread's held sends (conn_batch_begin), or NULL. */
static __thread struct conn_batch *conn_batch_tl;

void
conn_wait_init (struct conn_wait *w)
{
  w->state = 0;
  w->on_zero = NULL;
  w->deadline_ms = 0;
}

void
conn_wait_init_async (struct conn_wait *w, void (*fn) (struct conn_wait *w),
                      uint64_t deadline_ms)
{
  w->state = 1;                /* the submitter's hold */
  w->on_zero = fn;
  w->deadline_ms = deadline_ms;
}

/* One count of asynchronous wait w goes: the last calls on_zero.
 * After the decrement w may be gone (on_zero of another thread).
 */
static void
conn_wait_put (struct conn_wait *w)
{
  void (*fn) (struct conn_wait *) = w->on_zero;

  if ((__atomic_fetch_sub (&w->state, 1, __ATOMIC_ACQ_REL) &
       CONN_WAIT_COUNT) == 1)
    fn (w);
}

void
conn_wait_release (struct conn_wait *w)
{
  conn_wait_put (w);
}

void
conn_wait_destroy (struct conn_wait *w)
{
}

/* Wake whoever sleeps on w.  w may be gone by now (its waiter saw the
 * count reach 0 and returned): a private futex wake touches no memory,
 * and at worst wakes a later sleeper on the same address early, which
 * every futex user tolerates (the waits below loop, as glibc's do).
 */
static void
conn_futex_wake (uint32_t *word)
{
  syscall (SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Sleep while *word is val, until woken or the CLOCK_MONOTONIC time
 * *ts (NULL: no limit).  0, or -1 with errno (ETIMEDOUT, EAGAIN: *word
 * changed, EINTR).
 */
static int
conn_futex_wait (uint32_t *word, uint32_t val, const struct timespec *ts)
{
  return syscall (SYS_futex, word, FUTEX_WAIT_BITSET_PRIVATE, val, ts, NULL,
                  FUTEX_BITSET_MATCH_ANY);
}

/* One count of w goes (a call completed, or a held send let go): the
 * last runs an asynchronous wait's on_zero, or wakes its waiter.
 */
static void
conn_wait_drop (struct conn_wait *w)
{
  uint32_t old;

  if (w->on_zero) {
    conn_wait_put (w);
    return;
  }
  /* After this the waiter may return: touch w no more. */
  old = __atomic_fetch_sub (&w->state, 1, __ATOMIC_ACQ_REL);
  if ((old & CONN_WAIT_SLEEPING) &&
      ((old & CONN_WAIT_COUNT) == 1 || (old & CONN_WAIT_ANY)))
    conn_futex_wake (&w->state);
}

static void
conn_complete (struct conn_call *call, int err, bool is_answered)
{
  struct conn_wait *w = call->wait;

  call->err = err;
  call->is_answered = is_answered;
  __atomic_store_n (&call->is_done, true, __ATOMIC_RELEASE);
  conn_wait_drop (w);          /* then touch call no more */
}

/* The end of direct connection c's current connect, once (recv_lock
 * held).
 */
static void
conn_end_direct (struct conn *c, const char *why)
{
  if (!c->has_ended) {
    c->has_ended = true;
    conn_end (c, why);
  }
}

/* Receive on direct connection c until call is complete: its reply
 * came, or the connection ended (which fails it).  Past deadline_ms
 * the connection is killed, as conn_wait_all does to others.  Returns
 * whether it was.
 */
static bool
conn_pump (struct conn *c, struct conn_call *call, uint64_t deadline_ms)
{
  bool timed_out = false;
  char whybuf[128];

  pthread_mutex_lock (&c->recv_lock);
  while (!__atomic_load_n (&call->is_done, __ATOMIC_ACQUIRE)) {
    const char *why = c->has_ended ? "connection closed"
      : c->t.ops->pump (&c->t, whybuf, sizeof whybuf);
    if (why) {
      conn_end_direct (c, why);  /* fails call, if it was still ours */
      break;
    }
    if (!timed_out && !__atomic_load_n (&call->is_done, __ATOMIC_ACQUIRE) &&
        rp_now_ms () >= deadline_ms) {
      timed_out = true;
      conn_kill (c, "request timed out (timeout-ms)");
    }
  }
  pthread_mutex_unlock (&c->recv_lock);
  return timed_out;
}

int
conn_wait_all (struct conn_wait *w, struct conn_call *calls, unsigned ncalls,
             uint64_t deadline_ms)
{
  struct timespec ts = {
    .tv_sec = deadline_ms / 1000,
    .tv_nsec = (deadline_ms % 1000) * 1000000,
  };
  bool timed_out = false;
  uint32_t s;

  conn_batch_flush ();         /* held calls are not in flight */
  /* Our calls on direct connections first: nobody else receives them.
   * The others complete meanwhile, on their receive threads.
   */
  for (unsigned i = 0; i < ncalls; i++)
    if (calls[i].conn && calls[i].conn->is_direct &&
        !__atomic_load_n (&calls[i].is_done, __ATOMIC_ACQUIRE) &&
        conn_pump (calls[i].conn, &calls[i], deadline_ms))
      timed_out = true;

  while ((s = __atomic_load_n (&w->state, __ATOMIC_ACQUIRE)) &
         CONN_WAIT_COUNT) {
    if (!(s & CONN_WAIT_SLEEPING)) {
      /* Say we sleep before we do: the last completion then wakes us. */
      if (!__atomic_compare_exchange_n (&w->state, &s, s | CONN_WAIT_SLEEPING,
                                        false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
        continue;
      s |= CONN_WAIT_SLEEPING;
    }
    if (conn_futex_wait (&w->state, s, timed_out ? NULL : &ts) == 0 ||
        errno != ETIMEDOUT)
      continue;
    /* Past the deadline: kill the connections still holding our calls.
     * Their readers fail the calls promptly; then we are done.
     */
    timed_out = true;
    for (unsigned i = 0; i < ncalls; i++)
      if (!__atomic_load_n (&calls[i].is_done, __ATOMIC_ACQUIRE) &&
          calls[i].conn)
        conn_kill (calls[i].conn, "request timed out (timeout-ms)");
  }
  /* Every call is complete: nobody else touches w now. */
  w->state = 0;
  if (timed_out) {
    errno = ETIMEDOUT;
    return -1;
  }
  return 0;
}

int
conn_wait_fewer (struct conn_wait *w, uint32_t pending, uint64_t deadline_ms)
{
  const uint32_t bits = CONN_WAIT_SLEEPING | CONN_WAIT_ANY;
  struct timespec ts = {
    .tv_sec = deadline_ms / 1000,
    .tv_nsec = (deadline_ms % 1000) * 1000000,
  };
  int ret = 0;
  uint32_t s;

  conn_batch_flush ();         /* held calls are not in flight */
  while (((s = __atomic_load_n (&w->state, __ATOMIC_ACQUIRE)) &
          CONN_WAIT_COUNT) >= pending) {
    if ((s & bits) != bits) {
      if (!__atomic_compare_exchange_n (&w->state, &s, s | bits, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        continue;
      s |= bits;
    }
    if (conn_futex_wait (&w->state, s, &ts) == -1 && errno == ETIMEDOUT) {
      ret = -1;
      break;
    }
  }
  /* The calls still pending may outlive this wait: their completions
   * must not wake anyone.
   */
  __atomic_fetch_and (&w->state, ~bits, __ATOMIC_ACQ_REL);
  if (ret)
    errno = ETIMEDOUT;
  return ret;
}

uint32_t
conn_wait_pending (struct conn_wait *w)
{
  return __atomic_load_n (&w->state, __ATOMIC_ACQUIRE) & CONN_WAIT_COUNT;
}

int
conn_init (struct conn *c, const char *name, const struct transport_ops *ops,
           unsigned nslots)
{
  memset (c, 0, sizeof *c);
  snprintf (c->name, sizeof c->name, "%s", name);
  c->t.ops = ops;
  c->slots = calloc (nslots, sizeof *c->slots);
  if (c->slots == NULL)
    return -1;
  c->nslots = nslots;
  for (unsigned i = 0; i < nslots; i++)
    c->slots[i].next_free = i + 2 <= nslots ? i + 2 : 0;
  c->free_head = 1;
  c->is_dead = true;
  pthread_mutex_init (&c->send_lock, NULL);
  pthread_mutex_init (&c->recv_lock, NULL);
  pthread_mutex_init (&c->lock, NULL);
  pthread_cond_init (&c->slot_cond, NULL);
  return 0;
}

void
conn_destroy (struct conn *c)
{
  conn_kill (c, "closing");
  conn_join (c);
  free (c->slots);
  pthread_mutex_destroy (&c->send_lock);
  pthread_mutex_destroy (&c->recv_lock);
  pthread_mutex_destroy (&c->lock);
  pthread_cond_destroy (&c->slot_cond);
}

/* Expected reply payload length for a call that succeeded. */
static uint32_t
conn_reply_len (const struct conn_call *call)
{
  if (call->req.op == RP_OP_READ)
    return call->req.count;
  return call->rcap;
}

struct conn_call *
conn_reply_call (struct conn *c, const struct rp_reply *r, const char **why)
{
  uint32_t idx = (uint32_t) r->id;
  struct conn_call *call;

  pthread_mutex_lock (&c->lock);
  call = idx < c->nslots && c->slots[idx].gen == (uint32_t) (r->id >> 32)
    ? c->slots[idx].call : NULL;
  pthread_mutex_unlock (&c->lock);
  if (call == NULL) {
    *why = "reply for no request in flight (stale or forged id)";
    return NULL;
  }
  if ((r->error == RP_OK && !call->is_var_len &&
       r->length != conn_reply_len (call)) ||
      (r->error == RP_OK && call->is_var_len && r->length > call->rcap) ||
      (r->error != RP_OK && r->length != 0)) {
    *why = "reply payload length does not match the request";
    return NULL;
  }
  return call;
}

void
conn_reply_done (struct conn *c, const struct rp_reply *r,
                 struct conn_call *call)
{
  uint32_t idx = (uint32_t) r->id;

  if (c->on_free_bytes)
    c->on_free_bytes (c, r->free_bytes);
  pthread_mutex_lock (&c->lock);
  c->slots[idx].call = NULL;
  c->slots[idx].next_free = c->free_head;
  c->free_head = idx + 1;
  c->nbusy--;
  pthread_cond_signal (&c->slot_cond);
  pthread_mutex_unlock (&c->lock);
  call->rlen = r->length;
  conn_complete (call, r->error == RP_OK ? 0 : rp_error_to_errno (r->error),
                 true);
}

void
conn_notice (struct conn *c, const struct rp_notice *n, const uint8_t *payload)
{
  uint64_t handles[RP_NOTICE_MAX_HANDLES];

  for (uint32_t i = 0; i < n->count; i++) {
    le64 h;
    memcpy (&h, payload + i * 8, sizeof h);
    handles[i] = le64toh (h);
  }
  if (c->on_notice)
    c->on_notice (c, n, handles);
}

void
conn_end (struct conn *c, const char *why)
{
  char whybuf[128];

  /* Dead: fail everything in flight, exactly once, then tell the owner. */
  pthread_mutex_lock (&c->lock);
  c->is_dead = true;
  c->is_ready = false;
  if (c->dead_why[0] == '\0')
    snprintf (c->dead_why, sizeof c->dead_why, "%s", why);
  for (unsigned i = 0; i < c->nslots; i++) {
    struct conn_call *call = c->slots[i].call;
    if (call == NULL)
      continue;
    c->slots[i].call = NULL;
    c->slots[i].next_free = c->free_head;
    c->free_head = i + 1;
    c->nbusy--;
    conn_complete (call, EIO, false);
  }
  pthread_cond_broadcast (&c->slot_cond);
  snprintf (whybuf, sizeof whybuf, "%s", c->dead_why);
  pthread_mutex_unlock (&c->lock);
  c->t.ops->shutdown (&c->t);
  if (c->on_dead)
    c->on_dead (c, whybuf);
}

int
conn_connect (struct conn *c, const char *host, const char *port,
              unsigned timeout_ms, const struct transport_hello *hello,
              char *err, size_t errlen)
{
  struct transport t = { .ops = c->t.ops };
  struct transport_hello h = *hello;

  /* Connect on the side, then install the new transport and bump the
   * generation in one step under both locks: a sender that took its
   * slot on the old connection checks the generation under send_lock,
   * so it can never put its frame on the new connection ahead of HELLO.
   */
  h.nslots = c->nslots;
  if (t.ops->connect (&t, host, port, timeout_ms, &h, err, errlen) == -1)
    return -1;
  pthread_mutex_lock (&c->send_lock);
  pthread_mutex_lock (&c->lock);
  c->t = t;
  c->is_dead = false;
  c->dead_why[0] = '\0';
  c->has_ended = false;
  c->conn_gen++;
  pthread_mutex_unlock (&c->lock);
  pthread_mutex_unlock (&c->send_lock);
  if (c->t.ops->start (&c->t, c) == -1) {
    int saved = errno;
    snprintf (err, errlen, "cannot start the receive side: %s",
              strerror (saved));
    pthread_mutex_lock (&c->lock);
    c->is_dead = true;
    pthread_mutex_unlock (&c->lock);
    c->t.ops->close (&c->t);
    errno = saved;
    return -1;
  }
  c->is_started = true;
  return 0;
}

void
conn_set_direct (struct conn *c)
{
  c->is_direct = true;
}

/* May a frame whose slot was taken at connection generation gen still
 * go out on c (send lock held)?  Not if the connection died and was
 * replaced since, or was closed (conn_join: a server parked): the
 * dying reader has already failed the call; sending now would put a
 * frame before HELLO on the new connection, or on no transport at all.
 */
static bool
conn_may_send (const struct conn *c, uint32_t gen)
{
  return c->conn_gen == gen && c->is_started;
}

/* A send on c failed (errno set, send lock held): release the lock and
 * kill the connection.  Its calls are in slots: the dying reader
 * completes them with EIO.
 */
static void
conn_send_failed (struct conn *c)
{
  char why[128];

  snprintf (why, sizeof why, "send: %s", strerror (errno));
  pthread_mutex_unlock (&c->send_lock);
  conn_kill (c, why);
}

void
conn_batch_begin (struct conn_batch *b)
{
  b->n = 0;
  b->nsent = 0;
  conn_batch_tl = b;
}

bool
conn_batch_is_on (void)
{
  return conn_batch_tl != NULL;
}

void
conn_batch_on_sent (void (*fn) (void *arg, uint64_t v), void *arg,
                    uint64_t v)
{
  struct conn_batch *b = conn_batch_tl;

  if (b->nsent == CONN_BATCH_FRAMES)
    conn_batch_flush ();
  b->on_sent[b->nsent].fn = fn;
  b->on_sent[b->nsent].arg = arg;
  b->on_sent[b->nsent].v = v;
  b->nsent++;
}

void
conn_batch_end (void)
{
  conn_batch_flush ();
  conn_batch_tl = NULL;
}

/* Send the held frames of connection c (f[i] the first of them), in
 * the order they were submitted, and mark them sent.  Frames of an
 * earlier connect of c are dropped (conn_may_send), as conn_submit
 * drops a send after a reconnect.
 */
static void
conn_batch_send (struct conn_batch *b, unsigned i, unsigned n_held)
{
  struct conn *c = b->f[i].conn;
  const struct conn_frame *send[CONN_BATCH_FRAMES];
  unsigned n = 0;

  pthread_mutex_lock (&c->send_lock);
  for (unsigned j = i; j < n_held; j++) {
    if (b->f[j].conn != c)
      continue;
    if (conn_may_send (c, b->f[j].gen))
      send[n++] = &b->f[j];
    b->f[j].conn = NULL;
  }
  if (n && c->t.ops->send_frames (&c->t, send, n) == -1) {
    conn_send_failed (c);
    return;
  }
  pthread_mutex_unlock (&c->send_lock);
}

void
conn_batch_flush (void)
{
  struct conn_batch *b = conn_batch_tl;
  struct conn_wait *waits[CONN_BATCH_FRAMES];
  unsigned n;

  if (b == NULL || (b->n == 0 && b->nsent == 0))
    return;
  n = b->n;
  for (unsigned i = 0; i < n; i++)
    if (b->f[i].conn)
      conn_batch_send (b, i, n);
  /* Sent: later senders for these extents may go now. */
  for (unsigned i = 0; i < b->nsent; i++)
    b->on_sent[i].fn (b->on_sent[i].arg, b->on_sent[i].v);
  b->nsent = 0;
  /* Every frame is on the wire (or given up): now their calls may
   * complete, and their buffers be freed -- not while a sendmsg that
   * names them is still running.  A completion may submit again, into
   * the emptied batch.
   */
  for (unsigned i = 0; i < n; i++)
    waits[i] = b->f[i].wait;
  b->n = 0;
  for (unsigned i = 0; i < n; i++)
    conn_wait_drop (waits[i]);
}

/* Hold call, which has slot generation gen of c, in b: encoded now, so
 * that the flush reads nothing of the call (which, once its connection
 * died, may complete and be reused before the flush).
 */
static void
conn_batch_hold (struct conn_batch *b, struct conn *c, uint32_t gen,
                 const struct conn_call *call)
{
  struct conn_frame *f;

  if (b->n == CONN_BATCH_FRAMES)
    conn_batch_flush ();
  f = &b->f[b->n++];
  f->conn = c;
  f->gen = gen;
  f->len = call->req.length;
  f->payload = call->payload;
  f->wait = call->wait;
  __atomic_fetch_add (&call->wait->state, 1, __ATOMIC_RELAXED);
  rp_req_encode (&call->req, f->hdr);
}

int
conn_submit (struct conn *c, struct conn_call *call)
{
  uint32_t idx, gen;

  call->conn = c;
  call->is_done = false;
  call->is_answered = false;
  call->rlen = 0;
  call->err = 0;
  pthread_mutex_lock (&c->lock);
  while (!c->is_dead && c->free_head == 0) {
    /* What this thread holds may be what would free a slot. */
    if (conn_batch_tl && conn_batch_tl->n) {
      pthread_mutex_unlock (&c->lock);
      conn_batch_flush ();
      pthread_mutex_lock (&c->lock);
      continue;
    }
    pthread_cond_wait (&c->slot_cond, &c->lock);
  }
  if (c->is_dead || (!c->is_ready && call->req.op != RP_OP_HELLO &&
                     call->req.op != RP_OP_AUTH)) {
    pthread_mutex_unlock (&c->lock);
    errno = ENOTCONN;
    return -1;
  }
  idx = c->free_head - 1;
  c->free_head = c->slots[idx].next_free;
  c->slots[idx].gen++;
  c->slots[idx].call = call;
  c->nbusy++;
  gen = c->conn_gen;
  call->req.id = ((uint64_t) c->slots[idx].gen << 32) | idx;
  __atomic_fetch_add (&call->wait->state, 1, __ATOMIC_RELAXED);
  pthread_mutex_unlock (&c->lock);

  if (conn_batch_tl && !c->is_direct && c->t.ops->send_frames) {
    conn_batch_hold (conn_batch_tl, c, gen, call);
    return 0;
  }
  pthread_mutex_lock (&c->send_lock);
  if (!conn_may_send (c, gen)) {
    pthread_mutex_unlock (&c->send_lock);
    return 0;
  }
  if (c->t.ops->send (&c->t, call) == -1) {
    conn_send_failed (c);
    return 0;
  }
  pthread_mutex_unlock (&c->send_lock);
  return 0;
}

int
conn_roundtrip (struct conn *c, struct conn_call *call, unsigned timeout_ms)
{
  struct conn_wait w;
  int ret = 0;

  conn_wait_init (&w);
  call->wait = &w;
  if (conn_submit (c, call) == -1)
    ret = -1;
  else if (conn_wait_all (&w, call, 1, rp_now_ms () + timeout_ms) == -1)
    ret = -1;
  else if (call->err) {
    errno = call->err;
    ret = -1;
  }
  conn_wait_destroy (&w);
  return ret;
}

void
conn_kill (struct conn *c, const char *why)
{
  /* Under `lock` and only while the receive side runs: the transport
   * is closed only after that has ended, so what we shut down here
   * cannot be a recycled file descriptor.
   */
  pthread_mutex_lock (&c->lock);
  if (!c->is_dead) {
    if (c->dead_why[0] == '\0')
      snprintf (c->dead_why, sizeof c->dead_why, "%s", why);
    c->t.ops->shutdown (&c->t);
  }
  pthread_mutex_unlock (&c->lock);
}

void
conn_expire (struct conn *c, uint64_t now_ms)
{
  bool is_late = false;

  pthread_mutex_lock (&c->lock);
  for (unsigned i = 0; i < c->nslots && c->nbusy && !is_late; i++) {
    const struct conn_call *call = c->slots[i].call;
    /* A call in a slot is not complete: its wait is alive. */
    is_late = call && call->wait->on_zero &&
      call->wait->deadline_ms <= now_ms;
  }
  pthread_mutex_unlock (&c->lock);
  if (is_late)
    conn_kill (c, "request timed out (timeout-ms)");
}

void
conn_join (struct conn *c)
{
  /* Under send_lock: no sender is between its checks and its send.
   * close waits for the receive side to end first.
   */
  pthread_mutex_lock (&c->send_lock);
  if (c->is_started && c->is_direct) {
    /* Its receive side is whoever pumps: wait for any, and end it
     * here if none did, so that no call is left in a slot.
     */
    pthread_mutex_lock (&c->recv_lock);
    conn_end_direct (c, "closing");
    pthread_mutex_unlock (&c->recv_lock);
  }
  if (c->is_started)
    c->t.ops->close (&c->t);
  c->is_started = false;
  pthread_mutex_unlock (&c->send_lock);
}

bool
conn_is_dead (struct conn *c)
{
  bool dead;

  pthread_mutex_lock (&c->lock);
  dead = c->is_dead;
  pthread_mutex_unlock (&c->lock);
  return dead;
}

bool
conn_dead_why (struct conn *c, char *why, size_t len)
{
  bool dead;

  pthread_mutex_lock (&c->lock);
  dead = c->is_dead;
  if (dead)
    snprintf (why, len, "%s", c->dead_why[0] ? c->dead_why : "connection lost");
  pthread_mutex_unlock (&c->lock);
  return dead;
}

void
conn_set_ready (struct conn *c)
{
  pthread_mutex_lock (&c->lock);
  if (!c->is_dead)
    c->is_ready = true;
  pthread_mutex_unlock (&c->lock);
}
