/* See conn.h.
 *
 * Life of a request: the caller takes a free slot (waiting on
 * slot_cond if all are busy), stamps the id, and writes the frame under
 * send_lock.  The reader thread reads a reply header, validates it, maps
 * the id to the slot, reads any payload straight into the caller's
 * buffer, records the result in the call, frees the slot and wakes the
 * caller.  When the connection fails (EOF, error, protocol violation,
 * or rp_conn_kill from a timed-out waiter), the reader marks it dead
 * under `lock`, fails every busy slot with EIO and exits; submitters
 * check is_dead under the same lock, so no call is ever left behind.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "util.h"

void
rp_wait_init (struct rp_wait *w)
{
  pthread_condattr_t attr;

  pthread_mutex_init (&w->lock, NULL);
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&w->cond, &attr);
  pthread_condattr_destroy (&attr);
  w->pending = 0;
}

void
rp_wait_destroy (struct rp_wait *w)
{
  pthread_mutex_destroy (&w->lock);
  pthread_cond_destroy (&w->cond);
}

static void
conn_complete (struct rp_call *call, int err, bool is_answered)
{
  struct rp_wait *w = call->wait;

  pthread_mutex_lock (&w->lock);
  call->err = err;
  call->is_answered = is_answered;
  call->is_done = true;
  if (--w->pending == 0)
    pthread_cond_broadcast (&w->cond);
  pthread_mutex_unlock (&w->lock);
}

int
rp_wait_all (struct rp_wait *w, struct rp_call *calls, unsigned ncalls,
             uint64_t deadline_ms)
{
  struct timespec ts = {
    .tv_sec = deadline_ms / 1000,
    .tv_nsec = (deadline_ms % 1000) * 1000000,
  };
  bool timed_out = false;

  pthread_mutex_lock (&w->lock);
  while (w->pending > 0) {
    if (pthread_cond_timedwait (&w->cond, &w->lock, &ts) != ETIMEDOUT)
      continue;
    if (w->pending == 0)
      break;
    /* Past the deadline: kill the connections still holding our calls.
     * Their readers fail the calls promptly; then we are done.
     */
    timed_out = true;
    pthread_mutex_unlock (&w->lock);
    for (unsigned i = 0; i < ncalls; i++) {
      bool done;
      pthread_mutex_lock (&w->lock);
      done = calls[i].is_done;
      pthread_mutex_unlock (&w->lock);
      if (!done && calls[i].conn)
        rp_conn_kill (calls[i].conn, "request timed out (timeout-ms)");
    }
    pthread_mutex_lock (&w->lock);
    while (w->pending > 0)
      pthread_cond_wait (&w->cond, &w->lock);
  }
  pthread_mutex_unlock (&w->lock);
  if (timed_out) {
    errno = ETIMEDOUT;
    return -1;
  }
  return 0;
}

int
rp_conn_init (struct rp_conn *c, const char *name, unsigned nslots)
{
  memset (c, 0, sizeof *c);
  snprintf (c->name, sizeof c->name, "%s", name);
  c->ops = &rp_transport_tcp;
  c->t.fd = -1;
  c->slots = calloc (nslots, sizeof *c->slots);
  if (c->slots == NULL)
    return -1;
  c->nslots = nslots;
  for (unsigned i = 0; i < nslots; i++)
    c->slots[i].next_free = i + 2 <= nslots ? i + 2 : 0;
  c->free_head = 1;
  c->is_dead = true;
  pthread_mutex_init (&c->send_lock, NULL);
  pthread_mutex_init (&c->lock, NULL);
  pthread_cond_init (&c->slot_cond, NULL);
  return 0;
}

void
rp_conn_destroy (struct rp_conn *c)
{
  rp_conn_kill (c, "closing");
  rp_conn_join (c);
  free (c->slots);
  pthread_mutex_destroy (&c->send_lock);
  pthread_mutex_destroy (&c->lock);
  pthread_cond_destroy (&c->slot_cond);
}

/* Expected reply payload length for a call that succeeded. */
static uint32_t
conn_reply_len (const struct rp_call *call)
{
  if (call->req.op == RP_OP_READ)
    return call->req.count;
  return call->rcap;
}

static void *
conn_reader (void *arg)
{
  struct rp_conn *c = arg;
  uint8_t hdr[sizeof (struct rp_reply_hdr)];
  const char *why = NULL;
  char whybuf[128];

  for (;;) {
    struct rp_reply r;
    struct rp_call *call;
    uint32_t idx;

    if (c->ops->recv (&c->t, hdr, sizeof hdr) == -1) {
      snprintf (whybuf, sizeof whybuf, "connection lost: %s",
                strerror (errno));
      why = whybuf;
      break;
    }
    if (rp_reply_decode (hdr, &r, &why) == -1)
      break;
    idx = (uint32_t) r.id;
    pthread_mutex_lock (&c->lock);
    call = idx < c->nslots && c->slots[idx].gen == (uint32_t) (r.id >> 32)
      ? c->slots[idx].call : NULL;
    pthread_mutex_unlock (&c->lock);
    if (call == NULL) {
      why = "reply for no request in flight (stale or forged id)";
      break;
    }
    if ((r.error == RP_OK && !call->is_var_len &&
         r.length != conn_reply_len (call)) ||
        (r.error == RP_OK && call->is_var_len && r.length > call->rcap) ||
        (r.error != RP_OK && r.length != 0)) {
      why = "reply payload length does not match the request";
      break;
    }
    if (r.length && c->ops->recv (&c->t, call->rbuf, r.length) == -1) {
      why = "connection lost in a reply payload";
      break;
    }
    if (c->on_free_bytes)
      c->on_free_bytes (c, r.free_bytes);
    pthread_mutex_lock (&c->lock);
    c->slots[idx].call = NULL;
    c->slots[idx].next_free = c->free_head;
    c->free_head = idx + 1;
    c->nbusy--;
    pthread_cond_signal (&c->slot_cond);
    pthread_mutex_unlock (&c->lock);
    call->rlen = r.length;
    conn_complete (call, r.error == RP_OK ? 0 : rp_error_to_errno (r.error),
                   true);
  }

  /* Dead: fail everything in flight, exactly once, then tell the owner. */
  pthread_mutex_lock (&c->lock);
  c->is_dead = true;
  c->is_ready = false;
  if (c->dead_why[0] == '\0')
    snprintf (c->dead_why, sizeof c->dead_why, "%s", why);
  for (unsigned i = 0; i < c->nslots; i++) {
    struct rp_call *call = c->slots[i].call;
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
  c->ops->shutdown (&c->t);
  if (c->on_dead)
    c->on_dead (c, whybuf);
  return NULL;
}

int
rp_conn_connect (struct rp_conn *c, const char *host, const char *port,
                 unsigned timeout_ms)
{
  struct rp_transport t;
  int err;

  /* Connect on the side, then install the new transport and bump the
   * generation in one step under both locks: a sender that took its
   * slot on the old connection checks the generation under send_lock,
   * so it can never put its frame on the new socket ahead of HELLO.
   */
  if (c->ops->connect (&t, host, port, timeout_ms) == -1)
    return -1;
  pthread_mutex_lock (&c->send_lock);
  pthread_mutex_lock (&c->lock);
  c->t = t;
  c->is_dead = false;
  c->dead_why[0] = '\0';
  c->conn_gen++;
  pthread_mutex_unlock (&c->lock);
  pthread_mutex_unlock (&c->send_lock);
  /* A small stack: the reader needs a few KiB, and with mlock=on
   * (swap) every thread's stack is locked; 8 MiB per connection would
   * pin tens of MiB for nothing.
   */
  pthread_attr_t attr;
  pthread_attr_init (&attr);
  pthread_attr_setstacksize (&attr, 256 * 1024);
  err = pthread_create (&c->reader, &attr, conn_reader, c);
  pthread_attr_destroy (&attr);
  if (err) {
    c->is_dead = true;
    c->ops->close (&c->t);
    errno = err;
    return -1;
  }
  c->has_reader = true;
  return 0;
}

int
rp_conn_submit (struct rp_conn *c, struct rp_call *call)
{
  uint8_t hdr[sizeof (struct rp_req_hdr)];
  struct iovec iov[2];
  uint32_t idx, gen;
  int iovcnt = 1;

  call->conn = c;
  call->is_done = false;
  call->is_answered = false;
  call->rlen = 0;
  call->err = 0;
  pthread_mutex_lock (&c->lock);
  while (!c->is_dead && c->free_head == 0)
    pthread_cond_wait (&c->slot_cond, &c->lock);
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
  pthread_mutex_lock (&call->wait->lock);
  call->wait->pending++;
  pthread_mutex_unlock (&call->wait->lock);
  pthread_mutex_unlock (&c->lock);

  rp_req_encode (&call->req, hdr);
  iov[0].iov_base = hdr;
  iov[0].iov_len = sizeof hdr;
  if (call->req.length) {
    iov[1].iov_base = (void *) call->payload;
    iov[1].iov_len = call->req.length;
    iovcnt = 2;
  }
  pthread_mutex_lock (&c->send_lock);
  /* The connection died and was replaced since we took the slot: the
   * dying reader has already failed our call; sending now would put a
   * frame before HELLO on the new connection.
   */
  if (c->conn_gen != gen) {
    pthread_mutex_unlock (&c->send_lock);
    return 0;
  }
  if (c->ops->send (&c->t, iov, iovcnt) == -1) {
    char why[128];
    snprintf (why, sizeof why, "send: %s", strerror (errno));
    pthread_mutex_unlock (&c->send_lock);
    /* The call is in a slot: the dying reader completes it with EIO. */
    rp_conn_kill (c, why);
    return 0;
  }
  pthread_mutex_unlock (&c->send_lock);
  return 0;
}

int
rp_conn_call (struct rp_conn *c, struct rp_call *call, unsigned timeout_ms)
{
  struct rp_wait w;
  int ret = 0;

  rp_wait_init (&w);
  call->wait = &w;
  if (rp_conn_submit (c, call) == -1)
    ret = -1;
  else if (rp_wait_all (&w, call, 1, rp_now_ms () + timeout_ms) == -1)
    ret = -1;
  else if (call->err) {
    errno = call->err;
    ret = -1;
  }
  rp_wait_destroy (&w);
  return ret;
}

void
rp_conn_kill (struct rp_conn *c, const char *why)
{
  /* Under `lock` and only while the reader runs: the transport is
   * closed only after the reader is joined, so it cannot be a recycled
   * file descriptor that we shut down here.
   */
  pthread_mutex_lock (&c->lock);
  if (!c->is_dead) {
    if (c->dead_why[0] == '\0')
      snprintf (c->dead_why, sizeof c->dead_why, "%s", why);
    c->ops->shutdown (&c->t);
  }
  pthread_mutex_unlock (&c->lock);
}

void
rp_conn_join (struct rp_conn *c)
{
  if (c->has_reader) {
    pthread_join (c->reader, NULL);
    c->has_reader = false;
  }
  /* Under send_lock: no sender is between its checks and its write. */
  pthread_mutex_lock (&c->send_lock);
  c->ops->close (&c->t);
  pthread_mutex_unlock (&c->send_lock);
}

bool
rp_conn_is_dead (struct rp_conn *c)
{
  bool dead;

  pthread_mutex_lock (&c->lock);
  dead = c->is_dead;
  pthread_mutex_unlock (&c->lock);
  return dead;
}

bool
rp_conn_dead_why (struct rp_conn *c, char *why, size_t len)
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
rp_conn_set_ready (struct rp_conn *c)
{
  pthread_mutex_lock (&c->lock);
  if (!c->is_dead)
    c->is_ready = true;
  pthread_mutex_unlock (&c->lock);
}
