/* memserver network side: the libuv glue around sessions.
 *
 * One libuv loop thread does everything: accept, read, parse, execute
 * (memcpy into or out of the region; large WRITEs are read straight
 * into it and large READ replies written straight from it, below),
 * reply.  A memcpy of 1 MiB takes
 * ~100 us, far below what a TCP round trip costs, so one thread per
 * donor is not the bottleneck; a second core is better left to the
 * donor's own programs.
 *
 * This file owns the sockets: listener, accept, reads, writes,
 * backpressure, close, signals and the lease sweep timer.  What the
 * bytes mean -- handshake, frames, requests -- is session.c's.
 *
 * What one connection may cost, and how that is enforced here:
 *
 *   - Accepting never depends on memory.  A connection that cannot be
 *     given its state is accepted and closed at once (into a spare
 *     handle if even that cannot be allocated).  libuv stops polling a
 *     listener whose connection callback did not call uv_accept, so the
 *     old "out of memory, return" left the server deaf for good after
 *     one failed allocation.
 *
 *   - Receive buffers are small until the handshake is done: 512 bytes
 *     inside struct conn (HELLO and AUTH frames are 104 and 72 bytes),
 *     then 64 KiB, doubled only when one frame does not fit, up to one
 *     maximal frame plus 256 KiB.  An unauthenticated peer used to
 *     cost 4.3 MiB of address space before sending a byte.
 *
 *   - A WRITE of CONN_PLACE_MIN bytes or more whose header has come is
 *     "placed": the rest of its payload is read straight into the
 *     extent (session_write_place), so its bytes are copied once, not
 *     twice, and the receive buffer need not grow for it.  Before every
 *     read into the region the extent is looked up again, so a FREE, a
 *     reclaim drop or a lease end run by another connection meanwhile
 *     cannot make the rest land in memory given to someone else.
 *     Bytes land in whole 4 KiB blocks of the region (a block that
 *     arrives in pieces waits in the receive buffer, and reads into the
 *     region ask for no more than FIONREAD says is there), so a WRITE
 *     cut off by a closed connection leaves each block it covers old or
 *     new, never torn: what the client's encryption tags, and its
 *     record of a write in doubt, are kept for.
 *     While 128 KiB or more of such a payload is still to come, the
 *     socket's receive low-water mark has the kernel wake the server
 *     once 256 KiB of it (or the rest) is there, not at every segment
 *     (conn_lowat); it is never above what is still owed.
 *
 *   - A READ reply of SESSION_REF_MIN bytes or more is handed to the
 *     kernel from the region itself (writev of the reply headers and
 *     the extent's bytes, conn_flush); only what the socket does not
 *     take at once is copied, before anything else runs, and a frame
 *     that changes region bytes has the session copy them first.
 *
 *   - Replies built but not yet sent are bounded per connection (16 MiB)
 *     and server-wide (--max-reply-buffer, 64 MiB by default): a frame
 *     runs only when its whole reply fits in both (session.h), and a
 *     connection that does not get room stops being read until it does.
 *     Each connection may always have 68 KiB of replies outside the
 *     server-wide budget, so PING, STAT, ALLOC, FREE, WRITE and READs
 *     up to 64 KiB are answered however full it is.  When the budget
 *     is full and others wait for it, connections whose peers have
 *     not taken a byte of their replies for 10 s are closed (a
 *     librampool client gives up on a request after 5 s anyway).
 *     Waiters get the budget in the order they came.  Without the
 *     server-wide bound, 40 connections that stopped reading held
 *     651 MiB next to a 64 MiB donation.
 *
 *   - Work per loop turn is bounded per connection: at most 64 frames
 *     or 4 MiB of region bytes (session_process_turn); what is left
 *     waits on the ready queue, run by an idle handle, so the poll
 *     phase (other connections) comes in between.  One client
 *     pipelining 12000 ALLOCs used to delay every other client's PING
 *     by 6 s.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "metrics.h"
#include "peer.h"
#include "rampool/protocol.h"
#include "rdma_listener.h"
#include "reclaim.h"
#include "server.h"
#include "session.h"
#include "store.h"
#include "util.h"

/* Receive buffer: inline until the handshake is done, then BASE, grown
 * by doubling up to MAX when a frame does not fit.
 */
#define CONN_RBUF_SMALL 512
#define CONN_RBUF_BASE (64u * 1024)
#define CONN_RBUF_MAX (sizeof (struct rp_req_hdr) + RP_MAX_PAYLOAD + 256 * 1024)
/* One connection's replies not yet sent: at most the high mark (or the
 * server-wide budget, if smaller); one that filled it is read again
 * once below the low mark, a quarter of it.
 */
#define CONN_WQ_HIGH (16u * 1024 * 1024)
/* Replies a connection may always have, outside the server-wide budget:
 * one READ of 64 KiB (16 swap pages; swap-in reads a cluster of 8) and
 * room for small ones (every reply but READ and LIST is at most 152
 * bytes).  So ordinary swap traffic never waits for a budget that
 * clients which do not read have filled; the price is at most this
 * much per connection on top of --max-reply-buffer.
 */
#define CONN_SMALL_ROOM (64u * 1024 + 4096)
/* A WRITE with at least this much payload is received in place.  Below
 * it, the copy out of the receive buffer costs less than the read(2)s
 * that placing takes (one frame's payload per read, where the receive
 * buffer takes many small frames at once).
 */
#define CONN_PLACE_MIN (64u * 1024)
/* ...and lands in the region in whole blocks of this many bytes (as
 * aligned in the region: an extent starts on a 64 KiB boundary).
 */
#define CONN_PLACE_BLOCK 4096u
/* While at least CONN_LOWAT_MIN bytes of a placed payload are to come,
 * the server is woken once CONN_LOWAT_MAX of them are there (or the
 * rest, if less), not at every segment (conn_lowat).  A 1 MiB WRITE
 * took 21 system calls and 2.9 context switches on the memserver
 * without it, 17 and 2.0 with it; waking at the whole payload (1 MiB)
 * saved no more calls and stopped the copy out of the socket from
 * overlapping the sender's copy into it.
 */
#define CONN_LOWAT_MIN (128u * 1024)
#define CONN_LOWAT_MAX (256u * 1024)
/* One connection's work per loop turn. */
#define CONN_TURN_FRAMES 64
#define CONN_TURN_BYTES (4u * 1024 * 1024)
/* A connection holding replies its peer has not taken for this long is
 * closed, if others wait for the server-wide budget.
 */
#define CONN_STALL_MS 10000

#define SERVER_BACKLOG 128

_Static_assert (CONN_RBUF_SMALL >= sizeof (struct rp_req_hdr) +
                sizeof (struct rp_hello_req), "a HELLO frame fits before"
                " the handshake is done");
_Static_assert (CONN_RBUF_MAX >= sizeof (struct rp_req_hdr) + RP_MAX_PAYLOAD,
                "a maximal frame fits");

enum conn_state {
  CONN_READING,      /* reading: the session wants more bytes */
  CONN_ON_READY,     /* on srv->ready: whole frames left after its turn,
                        or room came free; no reading meanwhile */
  CONN_WAIT_OWN,     /* its own unsent replies leave no room: back on
                        ready once they drain below the low mark */
  CONN_WAIT_BUDGET,  /* on srv->waiters: the server-wide budget leaves
                        no room */
  CONN_CLOSING,      /* uv_close called; freed by conn_free_cb */
};

struct server;

/* One accepted connection.  Like everything in this file, owned and
 * touched by the event loop thread only: nothing is locked.
 */
struct conn {
  uv_tcp_t tcp;              /* first: handle <-> conn casts */
  struct session s;          /* protocol state; s.is_closing is ours */
  struct server *srv;        /* not owned */
  uint8_t *rbuf;             /* small, or heap (owned) once grown */
  size_t rcap;               /* bytes at rbuf */
  size_t rlen;               /* valid bytes in rbuf */
  uint8_t small[CONN_RBUF_SMALL]; /* rbuf until the handshake is done */
  size_t queued_bytes;       /* handed to libuv, not yet written; also
                                counted in srv->reply_bytes */
  uint64_t queued_total;     /* bytes ever handed to libuv */
  uint64_t last_sent;        /* queued_total minus libuv's write queue at
                                the last sweep: what the kernel took */
  uint64_t progress_ms;      /* uv_now when the peer last took reply
                                bytes, or when replies started waiting */
  enum conn_state state;
  bool is_reading;           /* uv_read_start in effect */
  bool is_woken;             /* taken off srv->waiters in turn: may use
                                the budget though others still wait */
  struct conn *q_prev, *q_next; /* srv->ready or srv->waiters (state) */
  uint64_t turn;             /* srv->turn the two counters below are of */
  unsigned turn_frames;      /* frames executed in that turn */
  uint64_t turn_bytes;       /* region bytes touched in that turn */
  struct write_req *spare_writes; /* finished ones, for reuse */
  unsigned nspare_writes;    /* length of that list */
  bool is_placing;           /* reading the payload of `placed` */
  struct rp_req placed;      /* a WRITE received in place */
  uint8_t *place;            /* where its payload goes; NULL once its
                                extent went (the rest is dropped) */
  uint32_t placed_got;       /* payload bytes in the region (or dropped) */
  uint32_t staged;           /* and after them, bytes of the next block
                                waiting in rbuf until it is whole */
  int lowat;                 /* SO_RCVLOWAT set on the socket (0: never
                                set, the kernel's 1; -1: refused),
                                conn_lowat */
};

struct conn_queue {
  struct conn *head, *tail;  /* FIFO, linked through q_prev/q_next */
  unsigned len;
};

/* Replies handed to libuv because the socket did not take them at
 * once.  Recycled through conn->spare_writes, buffer and all, so a
 * connection whose peer reads slowly allocates nothing per write
 * either.
 */
struct write_req {
  uv_write_t req;
  struct conn *conn;
  uint8_t *buf;              /* owned: the session's output buffer as
                                it was handed over */
  size_t cap;                /* bytes at buf */
  size_t len;                /* bytes handed to libuv */
  struct write_req *next;    /* conn->spare_writes */
};

/* Spare write requests a connection keeps (each with its buffer, if
 * that is at most SESSION_OBUF_KEEP).
 */
#define CONN_SPARE_WRITES 2

struct server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_signal_t sigterm, sigint;
  uv_signal_t sigusr1;       /* log the counters (stats.h) */
  uv_timer_t sweep;
  uv_idle_t idle;            /* runs `ready`; active while it is not
                                empty (the poll phase then does not
                                block) */
  uv_check_t check;          /* ends a loop turn: turn++ */
  uint64_t turn;             /* loop iterations so far */
  struct conn_queue ready;   /* connections with work for the next turn */
  struct conn_queue waiters; /* connections waiting for the budget */
  size_t reply_bytes;        /* bytes: every connection's queued_bytes */
  size_t reply_budget;       /* bytes: --max-reply-buffer */
  size_t conn_high;          /* bytes: one connection's high mark,
                                min (CONN_WQ_HIGH, reply_budget) */
  size_t conn_low;           /* bytes: read again below this, a quarter
                                of conn_high */
  uv_tcp_t spare;            /* refuses a connection when not even a
                                handle can be allocated */
  bool is_spare_busy;        /* spare is being closed */
  bool is_accept_pending;    /* libuv holds an accepted socket we could
                                not take yet (spare busy): taken when
                                the spare's close completes */
  struct session_core core;  /* store, settings, every connection's
                                session (core.sessions is our list of
                                connections, for shutdown) */
  struct rdma_listener *rdma; /* --listen-rdma, or NULL (rdma_listener.c) */
  struct reclaim *reclaim;   /* giving memory back (reclaim.c) */
  struct metrics *metrics;   /* --metrics-listen (metrics.c), or NULL */
  struct peer *peer;         /* COPY to other memservers (peer.c), or
                                NULL with --peer-copies 0 */
  uv_signal_t sigusr2;       /* drain */
  int exit_status;           /* what server_run returns: 0, or 1 when a
                                drain ended with extents left */
  bool is_stopping;
};

static void conn_close (struct conn *c);
static void conn_process (struct conn *c);
static void server_on_connection (uv_stream_t *listener, int status);
static void server_on_idle (uv_idle_t *h);
static void server_wake_waiters (struct server *srv);

static struct conn *
conn_of_session (struct session *s)
{
  return (struct conn *) ((char *) s - offsetof (struct conn, s));
}

/* --- queues --- */

static void
conn_queue_push (struct conn_queue *q, struct conn *c)
{
  c->q_next = NULL;
  c->q_prev = q->tail;
  if (q->tail)
    q->tail->q_next = c;
  else
    q->head = c;
  q->tail = c;
  q->len++;
}

static void
conn_queue_remove (struct conn_queue *q, struct conn *c)
{
  if (c->q_prev)
    c->q_prev->q_next = c->q_next;
  else
    q->head = c->q_next;
  if (c->q_next)
    c->q_next->q_prev = c->q_prev;
  else
    q->tail = c->q_prev;
  c->q_prev = c->q_next = NULL;
  q->len--;
}

/* --- connection state --- */

static void
conn_alloc_cb (uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void
conn_read_cb (uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

/* The socket's receive low-water mark (SO_RCVLOWAT): while at least
 * CONN_LOWAT_MIN bytes of a placed WRITE's payload are still to come,
 * poll says readable only once min(that, CONN_LOWAT_MAX) are there;
 * otherwise at 1 byte, the kernel's default.  Never above what is still
 * owed: bytes that are not coming would never make the socket readable.
 * Called after every read of a placed payload and whenever reading
 * starts.  A socket that refuses it (-1) is not asked again.
 */
static void
conn_lowat (struct conn *c)
{
  int want = 1;
  uv_os_fd_t fd;

  if (c->lowat < 0)
    return;
  if (c->is_placing) {
    size_t owed = c->placed.length - c->placed_got - c->staged;
    if (owed >= CONN_LOWAT_MIN)
      want = owed > CONN_LOWAT_MAX ? (int) CONN_LOWAT_MAX : (int) owed;
  }
  if (want == (c->lowat > 0 ? c->lowat : 1))
    return;
  if (uv_fileno ((uv_handle_t *) &c->tcp, &fd) == 0 &&
      setsockopt (fd, SOL_SOCKET, SO_RCVLOWAT, &want, sizeof want) == 0)
    c->lowat = want;
  else if (want > 1)
    c->lowat = -1;  /* stays at the kernel's 1 */
}

/* Move c to state st: leave the queue of the old state, join the new
 * one's, and read exactly in CONN_READING.
 */
static void
conn_set_state (struct conn *c, enum conn_state st)
{
  struct server *srv = c->srv;

  if (c->state == CONN_ON_READY)
    conn_queue_remove (&srv->ready, c);
  else if (c->state == CONN_WAIT_BUDGET)
    conn_queue_remove (&srv->waiters, c);
  c->state = st;
  if (st == CONN_ON_READY) {
    conn_queue_push (&srv->ready, c);
    if (!srv->is_stopping)
      uv_idle_start (&srv->idle, server_on_idle);
  }
  else if (st == CONN_WAIT_BUDGET)
    conn_queue_push (&srv->waiters, c);
  if (st == CONN_READING)
    conn_lowat (c);
  if (st == CONN_READING && !c->is_reading) {
    uv_read_start ((uv_stream_t *) &c->tcp, conn_alloc_cb, conn_read_cb);
    c->is_reading = true;
  }
  else if (st != CONN_READING && st != CONN_CLOSING && c->is_reading) {
    uv_read_stop ((uv_stream_t *) &c->tcp);
    c->is_reading = false;
  }
}

static void
conn_close_why (struct conn *c, enum log_kind kind, const char *why)
{
  log_peer (kind, LOG_LEVEL_WARN, "conn", "%s: %s; closing connection",
            c->s.peer, why);
  conn_close (c);
}

/* --- writes --- */

/* Keep w (and its buffer, unless large) for the next write, or free it. */
static void
conn_recycle_write (struct conn *c, struct write_req *w)
{
  if (w->cap > SESSION_OBUF_KEEP) {
    free (w->buf);
    w->buf = NULL;
    w->cap = 0;
  }
  if (c->s.is_closing || c->nspare_writes >= CONN_SPARE_WRITES) {
    free (w->buf);
    free (w);
    return;
  }
  w->next = c->spare_writes;
  c->spare_writes = w;
  c->nspare_writes++;
}

static void
conn_after_write (uv_write_t *req, int status)
{
  struct write_req *w = (struct write_req *) req;
  struct conn *c = w->conn;
  struct server *srv = c->srv;

  c->queued_bytes -= w->len;
  srv->reply_bytes -= w->len;
  c->progress_ms = uv_now (srv->loop);
  conn_recycle_write (c, w);
  if (status < 0 && status != UV_ECANCELED && !c->s.is_closing) {
    log_peer (LOG_KIND_CONN, LOG_LEVEL_INFO, "conn", "%s: write: %s", c->s.peer,
              uv_strerror (status));
    conn_close (c);
  }
  else if (c->state == CONN_WAIT_OWN && c->queued_bytes <= srv->conn_low)
    conn_set_state (c, CONN_ON_READY);
  server_wake_waiters (srv);
}

/* Send the session's replies.  Straight into the socket when libuv
 * has nothing queued for it and the kernel takes them all (the usual
 * case): no write request, no callback, and no epoll_ctl (libuv
 * re-arms the descriptor after every queued write).  What the kernel
 * does not take goes to libuv's queue in a recycled write request,
 * which takes the output buffer along; the session gets the request's
 * old buffer in exchange.
 */
static void
conn_flush (struct conn *c)
{
  struct server *srv = c->srv;
  struct write_req *w;
  size_t len, cap, sent = 0;
  struct iovec iov[2 * SESSION_REFS + 1];
  uv_buf_t b, bufs[2 * SESSION_REFS + 1];
  unsigned nb;
  int n;

  if (c->s.olen == 0 || c->s.is_closing)
    return;
  /* UV_EAGAIN, writing nothing, while libuv's queue is not empty, so
   * replies never overtake one another.  Large READ replies go from
   * the region itself; what the kernel does not take at once is
   * copied (session_swap_output) before anything else runs.
   */
  session_output_iov (&c->s, iov, &nb);
  for (unsigned i = 0; i < nb; i++)
    bufs[i] = uv_buf_init (iov[i].iov_base, iov[i].iov_len);
  n = uv_try_write ((uv_stream_t *) &c->tcp, bufs, nb);
  if (n == (int) c->s.olen) {
    session_output_sent (&c->s);
    return;
  }
  if (n < 0 && n != UV_EAGAIN) {
    log_peer (LOG_KIND_CONN, LOG_LEVEL_INFO, "conn", "%s: write: %s",
              c->s.peer, uv_strerror (n));
    conn_close (c);
    return;
  }
  if (n > 0)
    sent = n;
  w = c->spare_writes;
  if (w) {
    c->spare_writes = w->next;
    c->nspare_writes--;
  }
  else if ((w = calloc (1, sizeof *w)) == NULL) {
    conn_close_why (c, LOG_KIND_MEMORY, "out of memory for a write");
    return;
  }
  w->conn = c;
  w->buf = session_swap_output (&c->s, w->buf, w->cap, &len, &cap);
  w->cap = cap;
  w->len = len - sent;
  b = uv_buf_init ((char *) w->buf + sent, w->len);
  if (c->queued_bytes == 0)
    c->progress_ms = uv_now (srv->loop);  /* the stall clock starts */
  c->queued_bytes += w->len;
  c->queued_total += w->len;
  srv->reply_bytes += w->len;
  if (uv_write (&w->req, (uv_stream_t *) &c->tcp, &b, 1,
                conn_after_write) < 0) {
    c->queued_bytes -= w->len;
    srv->reply_bytes -= w->len;
    free (w->buf);
    free (w);
    conn_close (c);
  }
}

/* --- reads and processing --- */

/* Room for the replies of c's next frames: its own high mark, and the
 * server-wide budget unless others queued for it first; the
 * CONN_SMALL_ROOM any connection may have comes on top of the budget.
 */
static size_t
conn_room (const struct conn *c, size_t *own)
{
  const struct server *srv = c->srv;
  size_t global = 0;

  *own = srv->conn_high > c->queued_bytes
    ? srv->conn_high - c->queued_bytes : 0;
  if ((srv->waiters.head == NULL || c->is_woken) &&
      srv->reply_budget > srv->reply_bytes)
    global = srv->reply_budget - srv->reply_bytes;
  if (c->queued_bytes < CONN_SMALL_ROOM &&
      global < CONN_SMALL_ROOM - c->queued_bytes)
    global = CONN_SMALL_ROOM - c->queued_bytes;
  return global < *own ? global : *own;
}

static int conn_grow (struct conn *c);

/* Of n payload bytes that can go to `at` now, with left still to come:
 * all of them if they end the payload, else those up to the last block
 * boundary they reach (maybe none).
 */
static size_t
conn_place_whole (const uint8_t *at, size_t n, size_t left)
{
  size_t end;

  if (n >= left)
    return left;
  end = ((uintptr_t) at + n) / CONN_PLACE_BLOCK * CONN_PLACE_BLOCK;
  return end > (uintptr_t) at ? end - (uintptr_t) at : 0;
}

/* Bytes from `at` to the end of its block, or to the payload's end. */
static size_t
conn_place_block (const uint8_t *at, size_t left)
{
  size_t n = CONN_PLACE_BLOCK - (uintptr_t) at % CONN_PLACE_BLOCK;

  return n < left ? n : left;
}

/* If what is left in c's receive buffer starts a WRITE worth placing,
 * move the part of its payload that came into the extent and receive
 * the rest there (conn_alloc_cb).
 */
static void
conn_place (struct conn *c)
{
  const size_t hdr = sizeof (struct rp_req_hdr);
  size_t have, whole;
  uint8_t *dst;

  if (c->rcap < CONN_RBUF_BASE && conn_grow (c) == -1)
    return;  /* no room to stage a block: let it come whole */
  dst = session_write_place (&c->s, c->rbuf, c->rlen, CONN_PLACE_MIN,
                             &c->placed);
  if (dst == NULL)
    return;
  have = c->rlen - hdr;
  whole = conn_place_whole (dst, have, c->placed.length);
  memcpy (dst, c->rbuf + hdr, whole);
  memmove (c->rbuf, c->rbuf + hdr + whole, have - whole);
  c->placed_got = whole;
  c->staged = have - whole;
  c->place = dst;
  c->is_placing = true;
  c->rlen = 0;
}

/* Run c's whole frames for what is left of its turn, send the replies,
 * and decide what c waits for next (conn_state).
 */
static void
conn_process (struct conn *c)
{
  struct server *srv = c->srv;
  size_t own, room, pos;

  if (c->s.is_closing)
    return;
  if (c->turn != srv->turn) {
    c->turn = srv->turn;
    c->turn_frames = 0;
    c->turn_bytes = 0;
  }
  room = conn_room (c, &own);
  c->is_woken = false;
  if (c->is_placing) {
    if (c->placed_got < c->placed.length)
      return;  /* nothing to run until its payload is in */
    c->is_placing = false;
    session_write_landed (&c->s, &c->placed, c->place, room);
    c->turn_frames += c->s.turn_frames;
    c->turn_bytes += c->s.turn_bytes;
  }
  pos = session_process_turn (&c->s, c->rbuf, c->rlen, room,
                              CONN_TURN_FRAMES - c->turn_frames,
                              c->turn_bytes < CONN_TURN_BYTES
                              ? CONN_TURN_BYTES - c->turn_bytes : 0);
  c->turn_frames += c->s.turn_frames;
  c->turn_bytes += c->s.turn_bytes;
  if (c->s.close_why) {
    conn_close (c);
    return;
  }
  if (c->s.is_closing)
    return;
  if (pos > 0) {
    memmove (c->rbuf, c->rbuf + pos, c->rlen - pos);
    c->rlen -= pos;
  }
  conn_flush (c);
  if (c->s.is_closing)
    return;
  switch (c->s.stop) {
  case SESSION_STOP_INPUT:
    conn_place (c);
    conn_set_state (c, CONN_READING);
    break;
  case SESSION_STOP_TURN:
    conn_set_state (c, CONN_ON_READY);
    break;
  case SESSION_STOP_ROOM:
    if (c->s.need_room > own)
      conn_set_state (c, CONN_WAIT_OWN);
    else {
      conn_set_state (c, CONN_WAIT_BUDGET);
      server_wake_waiters (srv);
    }
    break;
  case SESSION_STOP_CLOSE:
    break;
  }
}

/* Make room for more bytes: BASE once the handshake is done, then
 * double.  Before it, nothing grows: HELLO and AUTH fit in `small`,
 * and any other frame closes the connection at its header.
 */
static int
conn_grow (struct conn *c)
{
  size_t cap = c->rcap < CONN_RBUF_BASE ? CONN_RBUF_BASE : c->rcap * 2;
  uint8_t *p;

  if (c->s.owner == NULL || c->rcap >= CONN_RBUF_MAX)
    return -1;
  if (cap > CONN_RBUF_MAX)
    cap = CONN_RBUF_MAX;
  if (c->rbuf == c->small) {
    p = malloc (cap);
    if (p != NULL)
      memcpy (p, c->small, c->rlen);
  }
  else
    p = realloc (c->rbuf, cap);
  if (p == NULL)
    return -1;
  c->rbuf = p;
  c->rcap = cap;
  return 0;
}

/* Where the next read of a placed WRITE's payload goes: straight into
 * the region, whole blocks of what the socket holds; else into rbuf
 * (the rest of a block that came in pieces); or, once the extent has
 * gone, into rbuf to be dropped.  Checked before every read: nothing
 * runs between here and it.
 */
static void
conn_place_buf (struct conn *c, uv_buf_t *buf)
{
  size_t left = c->placed.length - c->placed_got, n;
  uv_os_fd_t fd;
  uint8_t *at;
  int avail;

  if (c->place != NULL &&
      !session_write_holds (&c->s, &c->placed, c->place)) {
    c->place = NULL;
    c->placed_got += c->staged;  /* dropped with the rest */
    c->staged = 0;
    left = c->placed.length - c->placed_got;
  }
  if (c->place == NULL) {
    *buf = uv_buf_init ((char *) c->rbuf, left < c->rcap ? left : c->rcap);
    return;
  }
  at = c->place + c->placed_got;
  /* recv(2) of no more than the socket holds returns all of it. */
  if (c->staged == 0 && uv_fileno ((uv_handle_t *) &c->tcp, &fd) == 0 &&
      ioctl (fd, FIONREAD, &avail) == 0 && avail > 0 &&
      (n = conn_place_whole (at, (size_t) avail, left)) > 0) {
    *buf = uv_buf_init ((char *) at, n);
    return;
  }
  n = conn_place_block (at, left);
  *buf = uv_buf_init ((char *) c->rbuf + c->staged, n - c->staged);
}

static void
conn_alloc_cb (uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  struct conn *c = (struct conn *) h;

  if (c->is_placing) {
    conn_place_buf (c, buf);
    return;
  }
  /* A zero-length buffer makes libuv call conn_read_cb with UV_ENOBUFS. */
  if ((c->rlen == c->rcap ||
       (c->s.owner != NULL && c->rcap < CONN_RBUF_BASE)) &&
      conn_grow (c) == -1 && c->rlen == c->rcap) {
    *buf = uv_buf_init (NULL, 0);
    return;
  }
  *buf = uv_buf_init ((char *) c->rbuf + c->rlen, c->rcap - c->rlen);
}

static void
conn_read_cb (uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
  struct conn *c = (struct conn *) stream;

  if (nread < 0) {
    if (nread == UV_ENOBUFS)
      log_peer (LOG_KIND_MEMORY, LOG_LEVEL_WARN, "conn",
                "%s: out of memory for"
                " the receive buffer; closing connection",
                c->s.peer);
    else if (nread != UV_EOF)
      log_peer (LOG_KIND_CONN, LOG_LEVEL_INFO, "conn", "%s: read: %s",
                c->s.peer, uv_strerror ((int) nread));
    else
      session_log_peer_closed (&c->s);
    conn_close (c);
    return;
  }
  if (nread == 0)
    return;  /* EAGAIN */
  if (c->is_placing) {
    /* conn_place_buf chose: the region at the payload's next byte, or
     * rbuf (a block that comes in pieces, or bytes being dropped).
     */
    if (c->place != NULL &&
        buf->base != (char *) c->place + c->placed_got) {
      uint8_t *at = c->place + c->placed_got;

      c->staged += nread;
      if (c->staged ==
          conn_place_block (at, c->placed.length - c->placed_got)) {
        memcpy (at, c->rbuf, c->staged);  /* the block is whole */
        c->placed_got += c->staged;
        c->staged = 0;
      }
    }
    else
      c->placed_got += nread;
    if (c->placed_got == c->placed.length)
      conn_process (c);
    else
      conn_lowat (c);
    return;
  }
  c->rlen += nread;
  conn_process (c);
}

/* --- close --- */

static void
conn_free_cb (uv_handle_t *h)
{
  struct conn *c = (struct conn *) h;

  session_fini (&c->s);
  if (c->rbuf != c->small)
    free (c->rbuf);
  while (c->spare_writes) {
    struct write_req *w = c->spare_writes;
    c->spare_writes = w->next;
    free (w->buf);
    free (w);
  }
  free (c);
}

static void
conn_close (struct conn *c)
{
  if (c->s.is_closing)
    return;
  c->s.is_closing = true;
  conn_set_state (c, CONN_CLOSING);
  c->is_reading = false;
  /* Its queued writes are cancelled before conn_free_cb runs; their
   * callbacks give the bytes back to the budget.
   */
  uv_close ((uv_handle_t *) &c->tcp, conn_free_cb);
}

/* session_ops.close for a TCP connection: fencing, the handshake
 * deadline, shutdown.
 */
static void
server_close_session (struct session *s)
{
  conn_close (conn_of_session (s));
}

/* session_ops.kick: a notice to send (reclaim.c). */
static void
server_kick_session (struct session *s)
{
  conn_flush (conn_of_session (s));
}

static const struct session_ops server_tcp_ops = {
  .close = server_close_session,
  .kick = server_kick_session,
};

/* --- the turn machinery --- */

/* One turn for each connection on the ready queue now.  Ones that
 * still have work go to its back, for the next loop iteration: the
 * poll phase in between (not blocking while this handle is active)
 * lets every other connection be read and served.
 */
static void
server_on_idle (uv_idle_t *h)
{
  struct server *srv = h->data;

  /* Counted, not "until the first one comes round again": that one
   * may be closed (fenced) by another's turn.
   */
  for (unsigned n = srv->ready.len; n > 0 && srv->ready.head; n--)
    conn_process (srv->ready.head);
  if (srv->ready.head == NULL)
    uv_idle_stop (h);
}

static void
server_on_check (uv_check_t *h)
{
  struct server *srv = h->data;

  srv->turn++;
}

/* Give the room the budget has to the connections waiting for it, in
 * the order they came (the first that does not fit stops the rest, so
 * a 4 MiB READ is not starved by small ones behind it).
 */
static void
server_wake_waiters (struct server *srv)
{
  size_t room = srv->reply_budget > srv->reply_bytes
    ? srv->reply_budget - srv->reply_bytes : 0;

  while (srv->waiters.head && srv->waiters.head->s.need_room <= room) {
    struct conn *c = srv->waiters.head;
    room -= c->s.need_room;
    c->is_woken = true;
    conn_set_state (c, CONN_ON_READY);
  }
}

/* --- accept --- */

/* libuv 1.44's uv_accept closes the socket on failure but does not
 * poll the listener again (it only does on success), so after a failed
 * uv_accept the server would never accept again.  Listening again
 * restarts the poll; the socket and its backlog are unchanged.
 */
static void
server_rearm (struct server *srv)
{
  int r = uv_listen ((uv_stream_t *) &srv->listener, SERVER_BACKLOG,
                     server_on_connection);
  if (r < 0)
    log_msg (LOG_LEVEL_ERROR, "listen",
             "listening again after a failed accept: %s", uv_strerror (r));
}

static void
server_peer_name (uv_tcp_t *t, char *out, size_t len)
{
  struct sockaddr_storage ss;
  int sslen = sizeof ss;
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;

  if (uv_tcp_getpeername (t, (struct sockaddr *) &ss, &sslen) == 0) {
    if (ss.ss_family == AF_INET) {
      uv_ip4_name ((struct sockaddr_in *) &ss, host, sizeof host);
      port = ntohs (((struct sockaddr_in *) &ss)->sin_port);
    }
    else if (ss.ss_family == AF_INET6) {
      uv_ip6_name ((struct sockaddr_in6 *) &ss, host, sizeof host);
      port = ntohs (((struct sockaddr_in6 *) &ss)->sin6_port);
    }
  }
  snprintf (out, len, "%s:%d", host, port);
}

static void
server_refused_close_cb (uv_handle_t *h)
{
  struct server *srv = h->data;

  if (h != (uv_handle_t *) &srv->spare) {
    free (h);
    return;
  }
  srv->is_spare_busy = false;
  if (srv->is_accept_pending && !srv->is_stopping) {
    srv->is_accept_pending = false;
    server_on_connection ((uv_stream_t *) &srv->listener, 0);
  }
}

/* Accept the pending connection and close it at once, with a log line
 * saying why (kind, and "refused: ..." after the peer).  Needs no
 * memory: when a handle cannot be allocated the spare serves, and when
 * that is still closing the connection waits in libuv until it is.
 */
static void
server_refuse (struct server *srv, enum log_kind kind, const char *why)
{
  srv->core.stats.connections_refused++;
  uv_tcp_t *t = malloc (sizeof *t);
  char peer[64];

  if (t == NULL) {
    if (srv->is_spare_busy) {
      srv->is_accept_pending = true;
      return;
    }
    t = &srv->spare;
    srv->is_spare_busy = true;
  }
  uv_tcp_init (srv->loop, t);
  t->data = srv;
  if (uv_accept ((uv_stream_t *) &srv->listener, (uv_stream_t *) t) < 0)
    server_rearm (srv);
  else {
    server_peer_name (t, peer, sizeof peer);
    log_peer (kind, LOG_LEVEL_WARN, "listen", "%s: refused: %s", peer, why);
  }
  uv_close ((uv_handle_t *) t, server_refused_close_cb);
}

static void
server_on_connection (uv_stream_t *listener, int status)
{
  struct server *srv = listener->data;
  struct conn *c;

  if (status < 0) {
    log_peer (LOG_KIND_ACCEPT, LOG_LEVEL_WARN, "listen", "accept: %s",
              uv_strerror (status));
    return;
  }
  if (srv->core.nsessions >= srv->core.st->max_conns) {
    char why[64];
    snprintf (why, sizeof why, "max-connections=%" PRIu32 " reached",
              srv->core.st->max_conns);
    server_refuse (srv, LOG_KIND_REFUSED, why);
    return;
  }
  c = calloc (1, sizeof *c);
  if (c == NULL) {
    server_refuse (srv, LOG_KIND_MEMORY, "out of memory for a new connection");
    return;
  }
  uv_tcp_init (srv->loop, &c->tcp);
  c->srv = srv;
  c->rbuf = c->small;
  c->rcap = sizeof c->small;
  c->turn = srv->turn;
  session_init (&c->s, &srv->core);
  c->s.ops = &server_tcp_ops;
  c->s.may_refer = true;  /* conn_flush writes from the region */
  if (uv_accept (listener, (uv_stream_t *) &c->tcp) < 0) {
    server_rearm (srv);
    conn_close (c);
    return;
  }
  server_peer_name (&c->tcp, c->s.peer, sizeof c->s.peer);
  uv_tcp_nodelay (&c->tcp, 1);
  /* A client host that vanishes without resetting its connections
   * (power loss, partition) is found by keep-alive within about a
   * minute (30 s idle + 3 probes 10 s apart); then its lease starts.
   */
  {
    uv_os_fd_t fd;
    int idle_s = 30, intvl_s = 10, cnt = 3, one = 1;
    if (uv_fileno ((uv_handle_t *) &c->tcp, &fd) == 0) {
      setsockopt (fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
      setsockopt (fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
      setsockopt (fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl_s, sizeof intvl_s);
      setsockopt (fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    }
  }
  srv->core.stats.connections++;
  log_peer (LOG_KIND_CONN, LOG_LEVEL_DEBUG, "conn", "%s: connected", c->s.peer);
  conn_set_state (c, CONN_READING);  /* calloc'd: reading, not yet read */
}

/* --- the sweep: once a second --- */

/* Close the connections whose peers have taken none of their replies
 * for CONN_STALL_MS while others wait for the budget they hold.
 * Progress is measured by what the kernel took (our queued total less
 * libuv's write queue), so a slow reader is not a stalled one.
 */
static void
server_sweep_stalled (struct server *srv, uint64_t now)
{
  struct session *s, *next;

  for (s = srv->core.sessions; s; s = next) {
    struct conn *c = conn_of_session (s);
    uint64_t sent;

    next = s->next;
    if (s->ops != &server_tcp_ops)
      continue;  /* RDMA: replies are bounded by the client's credits */
    if (c->s.is_closing || c->queued_bytes == 0)
      continue;
    sent = c->queued_total -
      uv_stream_get_write_queue_size ((uv_stream_t *) &c->tcp);
    if (sent != c->last_sent) {
      c->last_sent = sent;
      c->progress_ms = now;
    }
    else if (srv->waiters.head && now - c->progress_ms >= CONN_STALL_MS) {
      log_peer (LOG_KIND_STALL, LOG_LEVEL_WARN, "conn",
                "%s: has not read its"
                " replies for %d s (%zu bytes waiting) while other"
                " connections wait for max-reply-buffer; closing connection",
                c->s.peer, CONN_STALL_MS / 1000, c->queued_bytes);
      conn_close (c);
    }
  }
}

static void
server_on_sweep (uv_timer_t *t)
{
  struct server *srv = t->data;
  uint64_t now = rp_now_ms ();
  unsigned n = store_expire_owners (&srv->core.store, now);

  srv->core.stats.leases_expired += n;
  reclaim_tick (srv->reclaim, now);
  for (struct session *s = srv->core.sessions; s; s = s->next)
    if (s->owner == NULL && !s->is_closing &&
        now - s->start_ms > SESSION_HANDSHAKE_MS) {
      srv->core.stats.handshake_timeouts++;
      log_peer (LOG_KIND_HANDSHAKE, LOG_LEVEL_INFO, "conn",
                "%s: no HELLO%s within"
                " %d ms; closing",
                s->peer, srv->core.st->key ? "/AUTH" : "",
                SESSION_HANDSHAKE_MS);
      s->ops->close (s);
    }
  server_sweep_stalled (srv, uv_now (srv->loop));
  server_wake_waiters (srv);

  if (n)
    log_peer (LOG_KIND_LEASE, LOG_LEVEL_INFO, "lease",
              "freed the extents of %u"
              " client(s) gone for longer than lease-ms=%" PRIu32,
              n, srv->core.store.lease_ms);
  log_flush (false);
}

/* --- start, stop --- */

static void
server_stop (struct server *srv)
{
  if (srv->is_stopping)
    return;
  srv->is_stopping = true;
  if (srv->core.st->listen)
    uv_close ((uv_handle_t *) &srv->listener, NULL);
  uv_close ((uv_handle_t *) &srv->sigterm, NULL);
  uv_close ((uv_handle_t *) &srv->sigint, NULL);
  uv_close ((uv_handle_t *) &srv->sigusr1, NULL);
  uv_close ((uv_handle_t *) &srv->sigusr2, NULL);
  uv_close ((uv_handle_t *) &srv->sweep, NULL);
  uv_close ((uv_handle_t *) &srv->idle, NULL);
  uv_close ((uv_handle_t *) &srv->check, NULL);
  for (struct session *s = srv->core.sessions; s; s = s->next)
    s->ops->close (s);
  peer_stop (srv->peer);
#ifdef HAVE_RDMA
  if (srv->rdma)
    rdma_listener_stop (srv->rdma);
#endif
}

static void
server_on_usr1 (uv_signal_t *h, int signum)
{
  struct server *srv = h->data;

  stats_log (&srv->core.stats);
}

static void
server_on_usr2 (uv_signal_t *h, int signum)
{
  struct server *srv = h->data;

  log_msg (LOG_LEVEL_INFO, "main", "signal %d: draining", signum);
  reclaim_drain_now (srv->reclaim);
}

/* reclaim.c's stop: a drain ended. */
static void
server_drain_done (void *opaque, int status)
{
  struct server *srv = opaque;

  srv->exit_status = status;
  server_stop (srv);
}

static void
server_on_signal (uv_signal_t *h, int signum)
{
  log_msg (LOG_LEVEL_INFO, "main", "signal %d: shutting down", signum);
  server_stop (h->data);
}

static int
server_write_file (const char *path, unsigned long v)
{
  char tmp[4096];
  FILE *fp;

  /* Written then renamed, so a reader polling for the file never sees
   * it empty.
   */
  if (snprintf (tmp, sizeof tmp, "%s.tmp", path) >= (int) sizeof tmp) {
    errno = ENAMETOOLONG;
    return -1;
  }
  fp = fopen (tmp, "w");
  if (fp == NULL)
    return -1;
  fprintf (fp, "%lu\n", v);
  if (fclose (fp) == EOF || rename (tmp, path) == -1)
    return -1;
  return 0;
}

static int
server_listen (struct server *srv)
{
  char host[256], port[16];
  struct sockaddr_storage ss;
  int len = sizeof ss, r;

  /* Initialised first: the caller closes it on every error path. */
  uv_tcp_init (srv->loop, &srv->listener);
  srv->listener.data = srv;
  if (rp_split_hostport (srv->core.st->listen, host, sizeof host,
                         port, sizeof port) == -1) {
    log_msg (LOG_LEVEL_ERROR, "config",
             "listen: '%s' is not HOST:PORT or [V6]:PORT",
             srv->core.st->listen);
    return -1;
  }
  uint64_t portnum;
  if (rp_parse_uint (port, 0, 65535, &portnum) == -1) {
    log_msg (LOG_LEVEL_ERROR, "config", "listen: port '%s' is not 0-65535",
             port);
    return -1;
  }
  if (uv_ip4_addr (host, portnum, (struct sockaddr_in *) &ss) != 0 &&
      uv_ip6_addr (host, portnum, (struct sockaddr_in6 *) &ss) != 0) {
    log_msg (LOG_LEVEL_ERROR, "config",
             "listen: '%s' is not a numeric IPv4 or IPv6"
             " address",
             host);
    return -1;
  }
  if ((r = uv_tcp_bind (&srv->listener, (struct sockaddr *) &ss, 0)) < 0 ||
      (r = uv_listen ((uv_stream_t *) &srv->listener, SERVER_BACKLOG,
                      server_on_connection)) < 0) {
    log_msg (LOG_LEVEL_ERROR, "listen", "%s: %s", srv->core.st->listen,
             uv_strerror (r));
    return -1;
  }
  uv_tcp_getsockname (&srv->listener, (struct sockaddr *) &ss, &len);
  return ntohs (ss.ss_family == AF_INET
                ? ((struct sockaddr_in *) &ss)->sin_port
                : ((struct sockaddr_in6 *) &ss)->sin6_port);
}

int
server_run (const struct settings *st)
{
  struct server srv;
  char inc[33], sz[32], rb[32];
  int port, status = 0;

  memset (&srv, 0, sizeof srv);
  srv.core.st = st;
  srv.loop = uv_default_loop ();
  srv.core.start_ms = rp_now_ms ();
  srv.reply_budget = st->max_reply_bytes;
  srv.conn_high = CONN_WQ_HIGH < srv.reply_budget ? CONN_WQ_HIGH
    : srv.reply_budget;
  srv.conn_low = srv.conn_high / 4;
  if (rp_random_bytes (srv.core.incarnation, 16) == -1) {
    log_msg (LOG_LEVEL_ERROR, "main", "getrandom: %s", strerror (errno));
    return 1;
  }
  if (store_open (&srv.core.store, st->size_bytes, st->use_mlock,
                  st->max_owners, st->lease_ms) == -1) {
    log_msg (LOG_LEVEL_ERROR, "region",
             "cannot map a %" PRIu64 "-byte region: %s", st->size_bytes,
             strerror (errno));
    return 1;
  }
  srv.reclaim = reclaim_start (&srv.core, server_drain_done, &srv);
  if (srv.reclaim == NULL) {
    store_close (&srv.core.store);
    return 1;
  }
  if (metrics_start (srv.loop, &srv.core, &srv.metrics) == -1) {
    reclaim_free (srv.reclaim);
    store_close (&srv.core.store);
    return 1;
  }
  if (st->peer_copies &&
      (srv.peer = peer_start (srv.loop, &srv.core, st->peer_copies)) == NULL) {
    metrics_free (srv.metrics);
    reclaim_free (srv.reclaim);
    store_close (&srv.core.store);
    return 1;
  }
  port = st->listen ? server_listen (&srv) : 0;
  if (port < 0) {
    status = 1;
    uv_close ((uv_handle_t *) &srv.listener, NULL);
    goto out_close_store;
  }
#ifdef HAVE_RDMA
  if (st->listen_rdma &&
      (srv.rdma = rdma_listener_start (srv.loop, &srv.core,
                                     st->listen_rdma)) == NULL) {
    status = 1;
    if (st->listen)
      uv_close ((uv_handle_t *) &srv.listener, NULL);
    goto out_close_store;
  }
#endif
  uv_signal_init (srv.loop, &srv.sigterm);
  uv_signal_init (srv.loop, &srv.sigint);
  srv.sigterm.data = srv.sigint.data = &srv;
  uv_signal_start (&srv.sigterm, server_on_signal, SIGTERM);
  uv_signal_start (&srv.sigint, server_on_signal, SIGINT);
  uv_signal_init (srv.loop, &srv.sigusr1);
  srv.sigusr1.data = &srv;
  uv_signal_start (&srv.sigusr1, server_on_usr1, SIGUSR1);
  uv_signal_init (srv.loop, &srv.sigusr2);
  srv.sigusr2.data = &srv;
  uv_signal_start (&srv.sigusr2, server_on_usr2, SIGUSR2);
  uv_timer_init (srv.loop, &srv.sweep);
  srv.sweep.data = &srv;
  uv_timer_start (&srv.sweep, server_on_sweep, 1000, 1000);
  uv_idle_init (srv.loop, &srv.idle);
  srv.idle.data = &srv;
  uv_check_init (srv.loop, &srv.check);
  srv.check.data = &srv;
  uv_check_start (&srv.check, server_on_check);
  uv_unref ((uv_handle_t *) &srv.check);

  unsigned long rdma_port = 0;
#ifdef HAVE_RDMA
  if (srv.rdma)
    rdma_port = rdma_listener_port (srv.rdma);
#endif
  log_msg (LOG_LEVEL_INFO, "main",
           "listening on %s (port %d)%s%s, donating %s%s,"
           " replies buffered up to %s, incarnation %s",
           st->listen ? st->listen : "no TCP", port,
           st->listen_rdma ? ", RDMA on " : "",
           st->listen_rdma ? st->listen_rdma : "",
           rp_human_size (srv.core.store.region.capacity, sz, sizeof sz),
           st->use_mlock ? " (locked per extent)" : " (not locked)",
           rp_human_size (srv.reply_budget, rb, sizeof rb),
           rp_hex16 (srv.core.incarnation, inc));
  if ((st->pidfile &&
       server_write_file (st->pidfile, (unsigned long) getpid ()) == -1) ||
      (st->port_file &&
       server_write_file (st->port_file, (unsigned long) port) == -1) ||
      (st->rdma_port_file &&
       server_write_file (st->rdma_port_file, rdma_port) == -1)) {
    log_msg (LOG_LEVEL_ERROR, "main", "writing pid/port file: %s",
             strerror (errno));
    server_stop (&srv);
    status = 1;
  }
  uv_run (srv.loop, UV_RUN_DEFAULT);
  if (st->pidfile)
    unlink (st->pidfile);
  if (st->port_file)
    unlink (st->port_file);
  if (st->rdma_port_file)
    unlink (st->rdma_port_file);
 out_close_store:
  metrics_free (srv.metrics);
  uv_run (srv.loop, UV_RUN_DEFAULT);
  uv_loop_close (srv.loop);
  /* Extents' registrations go before the RDMA devices they are on. */
  store_close (&srv.core.store);
#ifdef HAVE_RDMA
  if (srv.rdma)
    rdma_listener_free (srv.rdma);
#endif
  log_flush (true);
  stats_log (&srv.core.stats);
  peer_free (srv.peer);
  reclaim_free (srv.reclaim);
  if (status == 0)
    status = srv.exit_status;
  if (status == 0)
    log_msg (LOG_LEVEL_INFO, "main", "stopped");
  return status;
}
