/* COPY to another memserver: links and copies.  See peer.h.
 *
 * Lifetimes, all on the event loop thread:
 *   - a copy (struct peer_job) starts with a COPY request and is
 *     answered exactly once (session_copy_done), unless its session
 *     went away first (copy_cancel).  It is freed once its deadline
 *     timer is closed and libuv holds none of its WRITE buffers.
 *   - a link (struct peer_link) is made for the first copy to a target
 *     and closed on a protocol or network error, when the server
 *     stops, or PEER_IDLE_MS after its last copy ended.  It is freed
 *     once its socket and timer are closed and no name lookup is in
 *     flight.
 * A copy that ends while WRITEs it queued are still in flight leaves
 * them to the link: their replies are ignored.  It answers
 * RP_COPY_SENT, and the client does not count the target extent.
 */
#include <config.h>

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "auth.h"
#include "codec.h"
#include "peer.h"
#include "util.h"

#define PEER_RBUF 4096
#define HDR sizeof (struct rp_req_hdr)
#define RHDR sizeof (struct rp_reply_hdr)
#define PEER_ID_HELLO 1
#define PEER_ID_AUTH 2

enum link_state {
  LINK_RESOLVING,
  LINK_CONNECTING,
  LINK_HELLO,        /* HELLO sent, its reply awaited */
  LINK_AUTH,         /* AUTH sent, its reply awaited */
  LINK_READY,        /* joined: WRITEs may go */
  LINK_CLOSING,
};

struct peer_link;

/* One WRITE of a copy. */
struct peer_slot {
  uv_write_t req;
  struct peer_job *job;
  uint8_t hdr[HDR];
  uint64_t id;               /* its request id on the link; 0 = free */
  uint32_t len;
  bool is_writing;           /* libuv holds hdr and the data */
  bool is_awaiting;          /* its reply has not come */
};

struct peer_job {
  struct peer *peer;
  struct peer_link *link;    /* NULL once ended */
  struct peer_job *lprev, *lnext;  /* link->jobs */
  struct session *s;         /* the requester; NULL once it went away */
  uint64_t id;               /* the COPY's request id */
  uint64_t src_handle, src_offset, count;
  uint64_t dst_handle, dst_offset;
  uint64_t queued;           /* bytes put in WRITEs */
  uint64_t acked;            /* bytes the target acknowledged */
  bool is_sent;              /* a WRITE was handed to the socket */
  bool is_ended;             /* answered (or cancelled) */
  bool is_timer_closed;
  uv_timer_t timer;          /* the deadline */
  uint8_t *buf;              /* PEER_WINDOW * PEER_CHUNK, owned */
  struct peer_slot slots[PEER_WINDOW];
};

struct peer_link {
  struct peer *peer;
  struct peer_link *prev, *next;  /* peer->links */
  enum link_state state;
  char addr[RP_COPY_ADDR_MAX];
  uint8_t owner_id[16];
  uint64_t fence, session;
  uint8_t incarnation[16];
  uint8_t nonce[32];
  uv_getaddrinfo_t gai;
  bool is_resolving;
  uv_tcp_t tcp;
  bool has_tcp;
  uv_connect_t connect;
  uv_timer_t idle;
  bool has_idle;
  unsigned closing;          /* handles whose close callback is due */
  uv_write_t hello_w, auth_w;
  uint8_t hello[HDR + sizeof (struct rp_hello_req)];
  uint8_t auth[HDR + sizeof (struct rp_auth_req)];
  uint64_t next_id;          /* the next WRITE's id */
  uint8_t rbuf[PEER_RBUF];
  size_t rlen;
  uint32_t skip;             /* notice payload bytes still to drop */
  struct peer_job *jobs;
};

struct peer {
  uv_loop_t *loop;
  struct session_core *core;
  unsigned max_jobs, njobs;
  struct peer_link *links;
  bool is_stopping;
};

static void link_fail (struct peer_link *l, uint32_t error, uint32_t stage,
                       const char *why);
static void link_pump (struct peer_link *l);

/* --- copies --- */

static void
job_maybe_free (struct peer_job *j)
{
  if (!j->is_ended || !j->is_timer_closed)
    return;
  for (unsigned i = 0; i < PEER_WINDOW; i++)
    if (j->slots[i].is_writing)
      return;
  free (j->buf);
  free (j);
}

static void
job_timer_closed (uv_handle_t *h)
{
  struct peer_job *j = h->data;

  j->is_timer_closed = true;
  job_maybe_free (j);
}

static void
link_idle_cb (uv_timer_t *t)
{
  struct peer_link *l = t->data;

  if (l->jobs == NULL)
    link_fail (l, RP_OK, RP_COPY_STAGE_DONE, NULL);
}

/* End copy j: answer it (unless its session is gone), leave the link
 * (its WRITEs in flight stay there) and free it when libuv is done.
 */
static void
job_end (struct peer_job *j, uint32_t error, uint32_t stage,
         const char *why)
{
  struct peer *p = j->peer;
  struct peer_link *l = j->link;

  if (j->is_ended)
    return;
  j->is_ended = true;
  p->njobs--;
  if (error == RP_OK) {
    p->core->stats.copies++;
    p->core->stats.copy_bytes += j->count;
    log_msg (LOG_LEVEL_DEBUG, "copy", "copied %" PRIu64 " bytes to %s",
             j->count, l ? l->addr : "?");
  }
  else {
    p->core->stats.copies_failed++;
    if (why)
      log_peer (LOG_KIND_COPY, LOG_LEVEL_WARN, "copy", "COPY to %s: %s%s",
                l ? l->addr : "?", why,
                j->is_sent ? " (after writing to it)" : "");
  }
  if (j->s)
    session_copy_done (j->s, j->id, error, stage,
                       j->is_sent ? RP_COPY_SENT : 0);
  j->s = NULL;
  bool in_flight = false;
  for (unsigned i = 0; i < PEER_WINDOW; i++) {
    in_flight |= j->slots[i].is_awaiting;
    j->slots[i].is_awaiting = false;
  }
  if (l) {
    if (j->lprev)
      j->lprev->lnext = j->lnext;
    else
      l->jobs = j->lnext;
    if (j->lnext)
      j->lnext->lprev = j->lprev;
    j->link = NULL;
    if (l->jobs == NULL && l->has_idle && l->state != LINK_CLOSING)
      uv_timer_start (&l->idle, link_idle_cb, PEER_IDLE_MS, 0);
  }
  uv_timer_stop (&j->timer);
  uv_close ((uv_handle_t *) &j->timer, job_timer_closed);
  /* A failed copy's WRITEs still in flight must not land later: reset
   * the link (any other copy on it fails too, and is retried).
   */
  if (error != RP_OK && in_flight && l)
    link_fail (l, RP_EIO, RP_COPY_STAGE_WRITE,
               "another copy on this connection failed with writes in"
               " flight");
}

/* The deadline: where the copy was says whether the target was
 * reachable at all (a client stops asking for COPYs to a target that
 * is not, and relays instead).
 */
static void
job_deadline_cb (uv_timer_t *t)
{
  struct peer_job *j = t->data;
  enum link_state st = j->link ? j->link->state : LINK_READY;

  if (st <= LINK_CONNECTING)
    job_end (j, RP_EIO, RP_COPY_STAGE_CONNECT,
             "deadline passed while connecting to the target");
  else if (st < LINK_READY)
    job_end (j, RP_EIO, RP_COPY_STAGE_HANDSHAKE,
             "deadline passed before the target answered HELLO/AUTH");
  else
    job_end (j, RP_EIO, RP_COPY_STAGE_DEADLINE,
             "deadline passed before the target acknowledged every byte");
}

static void
slot_written (uv_write_t *req, int status)
{
  struct peer_slot *sl = (struct peer_slot *) req;
  struct peer_job *j = sl->job;

  sl->is_writing = false;
  if (!sl->is_awaiting)
    sl->id = 0;
  if (status < 0 && !j->is_ended)
    job_end (j, RP_EIO, RP_COPY_STAGE_WRITE, "sending to the target failed");
  job_maybe_free (j);
}

/* Queue as many WRITEs of j as its window allows. */
static void
job_pump (struct peer_job *j)
{
  struct peer_link *l = j->link;
  struct store *st = &j->peer->core->store;

  while (!j->is_ended && j->queued < j->count) {
    struct peer_slot *sl = NULL;
    for (unsigned i = 0; i < PEER_WINDOW && sl == NULL; i++)
      if (j->slots[i].id == 0)
        sl = &j->slots[i];
    if (sl == NULL)
      return;
    /* The extent again, every chunk: the session's owner still holds
     * it, or the copy ends before another byte of that memory leaves.
     */
    struct extent *e = j->s && j->s->owner
      ? store_lookup (st, j->s->owner, j->src_handle) : NULL;
    uint64_t off = j->src_offset + j->queued;
    uint32_t n = j->count - j->queued < PEER_CHUNK
      ? (uint32_t) (j->count - j->queued) : PEER_CHUNK;
    if (e == NULL || off + n > e->size) {
      job_end (j, RP_ENOENT, RP_COPY_STAGE_SOURCE,
               "the source extent went away during the copy");
      return;
    }
    uint8_t *data = j->buf + (size_t) (sl - j->slots) * PEER_CHUNK;
    memcpy (data, st->region.base + e->offset + off, n);
    struct rp_req req = {
      .op = RP_OP_WRITE, .id = l->next_id++, .handle = j->dst_handle,
      .offset = j->dst_offset + j->queued, .length = n,
    };
    rp_req_encode (&req, sl->hdr);
    uv_buf_t bufs[2] = { uv_buf_init ((char *) sl->hdr, HDR),
                         uv_buf_init ((char *) data, n) };
    sl->job = j;
    sl->id = req.id;
    sl->len = n;
    int r = uv_write (&sl->req, (uv_stream_t *) &l->tcp, bufs, 2,
                      slot_written);
    if (r < 0) {
      sl->id = 0;
      link_fail (l, RP_EIO, RP_COPY_STAGE_WRITE, uv_strerror (r));
      return;
    }
    sl->is_writing = sl->is_awaiting = true;
    j->is_sent = true;
    j->queued += n;
  }
}

/* A WRITE reply for id: to its copy, if that is still waiting. */
static void
link_write_reply (struct peer_link *l, const struct rp_reply *r)
{
  for (struct peer_job *j = l->jobs; j; j = j->lnext)
    for (unsigned i = 0; i < PEER_WINDOW; i++) {
      struct peer_slot *sl = &j->slots[i];
      if (sl->id != r->id || !sl->is_awaiting)
        continue;
      sl->is_awaiting = false;
      if (!sl->is_writing)
        sl->id = 0;
      if (r->error != RP_OK) {
        job_end (j, r->error, RP_COPY_STAGE_WRITE,
                 "the target refused a WRITE (its extent gone?)");
        return;
      }
      j->acked += sl->len;
      if (j->acked == j->count)
        job_end (j, RP_OK, RP_COPY_STAGE_DONE, NULL);
      else
        job_pump (j);
      return;
    }
}

/* --- links --- */

static void
link_maybe_free (struct peer_link *l)
{
  struct peer *p = l->peer;

  if (l->state != LINK_CLOSING || l->closing || l->is_resolving)
    return;
  if (l->prev)
    l->prev->next = l->next;
  else
    p->links = l->next;
  if (l->next)
    l->next->prev = l->prev;
  free (l);
}

static void
link_handle_closed (uv_handle_t *h)
{
  struct peer_link *l = h->data;

  l->closing--;
  link_maybe_free (l);
}

/* Close l, ending every copy on it with error and stage (RP_OK: the
 * idle close, no copy left).  A failed link is reset, so that what is
 * still queued in our socket is dropped, not delivered late.
 */
static void
link_fail (struct peer_link *l, uint32_t error, uint32_t stage,
           const char *why)
{
  if (l->state == LINK_CLOSING)
    return;
  l->state = LINK_CLOSING;
  while (l->jobs)
    job_end (l->jobs, error, stage, why);
  if (l->is_resolving)
    uv_cancel ((uv_req_t *) &l->gai);
  if (l->has_idle) {
    l->closing++;
    uv_close ((uv_handle_t *) &l->idle, link_handle_closed);
  }
  if (l->has_tcp) {
    l->closing++;
    if (error == RP_OK ||
        uv_tcp_close_reset (&l->tcp, link_handle_closed) != 0)
      uv_close ((uv_handle_t *) &l->tcp, link_handle_closed);
  }
  link_maybe_free (l);
}

static void
link_sent (uv_write_t *req, int status)
{
  struct peer_link *l = req->data;

  if (status < 0 && status != UV_ECANCELED)
    link_fail (l, RP_EIO, RP_COPY_STAGE_HANDSHAKE, uv_strerror (status));
}

/* Send a handshake frame: op and id, then len payload bytes, built in
 * frame (which stays ours until w completes).
 */
static int
link_send (struct peer_link *l, uv_write_t *w, uint8_t *frame, uint16_t op,
           uint64_t id, const void *payload, uint32_t len)
{
  struct rp_req req = { .op = op, .id = id, .length = len };
  uv_buf_t b = uv_buf_init ((char *) frame, HDR + len);
  int r;

  rp_req_encode (&req, frame);
  memcpy (frame + HDR, payload, len);
  w->data = l;
  if ((r = uv_write (w, (uv_stream_t *) &l->tcp, &b, 1, link_sent)) < 0) {
    link_fail (l, RP_EIO, RP_COPY_STAGE_HANDSHAKE, uv_strerror (r));
    return -1;
  }
  return 0;
}

/* The HELLO reply: the target must be the incarnation the client knows,
 * prove the cluster key if we hold one (and we must hold it if it asks
 * for it), and, without AUTH, name the client's session.
 */
static void
link_on_hello (struct peer_link *l, const struct rp_reply *r,
               const uint8_t *payload)
{
  const uint8_t *key = l->peer->core->st->key;
  struct rp_hello_info hi;
  const char *why;

  if (r->error != RP_OK) {
    link_fail (l, r->error, RP_COPY_STAGE_HANDSHAKE,
               r->error == RP_EPERM ? "the target refused HELLO (an older"
               " connection generation, or a limit)"
               : "the target refused HELLO");
    return;
  }
  if (rp_hello_reply_decode (payload, &hi, &why) == -1) {
    link_fail (l, RP_EPROTO, RP_COPY_STAGE_HANDSHAKE, why);
    return;
  }
  if (hi.version != RP_PROTOCOL_VERSION) {
    link_fail (l, RP_EPROTO, RP_COPY_STAGE_HANDSHAKE,
               "the target answered in another protocol version");
    return;
  }
  /* Who it is first: an unauthenticated reply's other fields mean
   * nothing.
   */
  if (!(hi.flags & RP_HELLO_AUTH) && key) {
    link_fail (l, RP_EPERM, RP_COPY_STAGE_HANDSHAKE,
               "the target has no cluster key: refusing it");
    return;
  }
  if ((hi.flags & RP_HELLO_AUTH) && key == NULL) {
    link_fail (l, RP_EPERM, RP_COPY_STAGE_HANDSHAKE,
               "the target requires the cluster key: start this server"
               " with --key-file");
    return;
  }
  if ((hi.flags & RP_HELLO_AUTH) &&
      !rp_auth_check (key, RP_AUTH_SERVER, l->nonce, hi.server_nonce,
                      l->owner_id, l->fence, hi.server_proof)) {
    link_fail (l, RP_EPERM, RP_COPY_STAGE_HANDSHAKE,
               "the target does not hold our cluster key");
    return;
  }
  if (memcmp (hi.incarnation, l->incarnation, 16) != 0) {
    link_fail (l, RP_ENOENT, RP_COPY_STAGE_HANDSHAKE,
               "the target is not the server the client knows (restarted?)");
    return;
  }
  if (!(hi.flags & RP_HELLO_AUTH)) {
    if (hi.session != l->session) {
      link_fail (l, RP_ENOENT, RP_COPY_STAGE_HANDSHAKE,
                 "the client's session on the target is gone");
      return;
    }
    l->state = LINK_READY;
    return;
  }
  struct rp_auth_req a;
  rp_auth_proof (key, RP_AUTH_CLIENT, l->nonce, hi.server_nonce,
                 l->owner_id, l->fence, a.client_proof);
  l->state = LINK_AUTH;
  link_send (l, &l->auth_w, l->auth, RP_OP_AUTH, PEER_ID_AUTH, &a, sizeof a);
}

static void
link_on_auth (struct peer_link *l, const struct rp_reply *r,
              const uint8_t *payload)
{
  uint64_t session;
  const char *why;

  if (r->error != RP_OK) {
    link_fail (l, r->error, RP_COPY_STAGE_HANDSHAKE,
               "the target refused AUTH");
    return;
  }
  if (rp_auth_reply_decode (payload, &session, &why) == -1) {
    link_fail (l, RP_EPROTO, RP_COPY_STAGE_HANDSHAKE, why);
    return;
  }
  if (session != l->session) {
    link_fail (l, RP_ENOENT, RP_COPY_STAGE_HANDSHAKE,
               "the client's session on the target is gone");
    return;
  }
  l->state = LINK_READY;
}

/* Bytes l->rbuf[0..rlen): whole notices are dropped (the client hears
 * them on its own connections), replies go to the handshake or to
 * their copy.  Anything else closes the link.
 */
static void
link_consume (struct peer_link *l)
{
  size_t pos = 0;

  while (l->state != LINK_CLOSING) {
    size_t avail = l->rlen - pos;
    const uint8_t *b = l->rbuf + pos;
    struct rp_reply r;
    const char *why;

    if (l->skip) {
      size_t n = avail < l->skip ? avail : l->skip;
      pos += n;
      l->skip -= n;
      if (l->skip)
        break;
      continue;
    }
    if (avail < RHDR)
      break;
    if (rp_frame_is_notice (b)) {
      struct rp_notice n;
      if (rp_notice_decode (b, &n, &why) == -1) {
        link_fail (l, RP_EPROTO, RP_COPY_STAGE_WRITE, why);
        return;
      }
      pos += sizeof (struct rp_notice_hdr);
      l->skip = n.length;
      continue;
    }
    if (rp_reply_decode (b, &r, &why) == -1) {
      link_fail (l, RP_EPROTO, RP_COPY_STAGE_WRITE, why);
      return;
    }
    uint32_t want = 0;
    if (r.error == RP_OK && r.id == PEER_ID_HELLO && l->state == LINK_HELLO)
      want = sizeof (struct rp_hello_reply);
    else if (r.error == RP_OK && r.id == PEER_ID_AUTH &&
             l->state == LINK_AUTH)
      want = sizeof (struct rp_auth_reply);
    if (r.length != want ||
        (l->state == LINK_HELLO && r.id != PEER_ID_HELLO) ||
        (l->state == LINK_AUTH && r.id != PEER_ID_AUTH) ||
        (l->state == LINK_READY && (r.id <= PEER_ID_AUTH ||
                                    r.id >= l->next_id))) {
      link_fail (l, RP_EPROTO, RP_COPY_STAGE_WRITE,
                 "the target sent a reply that answers nothing we sent");
      return;
    }
    if (avail < RHDR + r.length)
      break;
    pos += RHDR + r.length;
    if (l->state == LINK_HELLO)
      link_on_hello (l, &r, b + RHDR);
    else if (l->state == LINK_AUTH)
      link_on_auth (l, &r, b + RHDR);
    else
      link_write_reply (l, &r);
    if (l->state == LINK_READY)
      link_pump (l);
  }
  if (l->state == LINK_CLOSING)
    return;
  memmove (l->rbuf, l->rbuf + pos, l->rlen - pos);
  l->rlen -= pos;
}

static void
link_alloc_cb (uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  struct peer_link *l = h->data;

  *buf = uv_buf_init ((char *) l->rbuf + l->rlen, PEER_RBUF - l->rlen);
}

static void
link_read_cb (uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
  struct peer_link *l = st->data;

  if (n < 0) {
    link_fail (l, RP_EIO, l->state == LINK_READY ? RP_COPY_STAGE_WRITE
               : RP_COPY_STAGE_HANDSHAKE, n == UV_EOF
               ? "the target closed the connection" : uv_strerror (n));
    return;
  }
  l->rlen += n;
  link_consume (l);
}

/* Start every copy of a ready link that has room. */
static void
link_pump (struct peer_link *l)
{
  for (struct peer_job *j = l->jobs, *next; j && l->state == LINK_READY;
       j = next) {
    next = j->lnext;
    job_pump (j);
  }
}

static void
link_connected (uv_connect_t *c, int status)
{
  struct peer_link *l = c->data;
  struct rp_hello_req h;

  if (l->state == LINK_CLOSING)
    return;
  if (status < 0) {
    link_fail (l, RP_EIO, RP_COPY_STAGE_CONNECT, uv_strerror (status));
    return;
  }
  uv_tcp_nodelay (&l->tcp, 1);
  if ((status = uv_read_start ((uv_stream_t *) &l->tcp, link_alloc_cb,
                               link_read_cb)) < 0) {
    link_fail (l, RP_EIO, RP_COPY_STAGE_CONNECT, uv_strerror (status));
    return;
  }
  memset (&h, 0, sizeof h);
  h.version = htole32 (RP_PROTOCOL_VERSION);
  h.flags = htole32 (RP_HELLO_PEER);
  memcpy (h.owner, l->owner_id, 16);
  memcpy (h.client_nonce, l->nonce, 32);
  h.fence = htole64 (l->fence);
  l->state = LINK_HELLO;
  link_send (l, &l->hello_w, l->hello, RP_OP_HELLO, PEER_ID_HELLO, &h,
             sizeof h);
}

static void
link_connect (struct peer_link *l, const struct sockaddr *sa)
{
  int r;

  if ((r = uv_tcp_init (l->peer->loop, &l->tcp)) < 0) {
    link_fail (l, RP_EIO, RP_COPY_STAGE_CONNECT, uv_strerror (r));
    return;
  }
  l->tcp.data = l;
  l->has_tcp = true;
  l->connect.data = l;
  l->state = LINK_CONNECTING;
  if ((r = uv_tcp_connect (&l->connect, &l->tcp, sa, link_connected)) < 0)
    link_fail (l, RP_EIO, RP_COPY_STAGE_CONNECT, uv_strerror (r));
}

static void
link_resolved (uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
  struct peer_link *l = req->data;

  l->is_resolving = false;
  if (l->state == LINK_CLOSING) {
    uv_freeaddrinfo (res);
    link_maybe_free (l);
    return;
  }
  if (status < 0 || res == NULL) {
    uv_freeaddrinfo (res);
    link_fail (l, RP_EIO, RP_COPY_STAGE_CONNECT,
               "the target's name does not resolve");
    return;
  }
  link_connect (l, res->ai_addr);
  uv_freeaddrinfo (res);
}

/* A new link to the target of a, for s's owner: resolving or
 * connecting.  NULL with errno.
 */
static struct peer_link *
link_open (struct peer *p, struct session *s, const struct rp_copy_args *a)
{
  char host[RP_COPY_ADDR_MAX], port[16];
  struct sockaddr_storage ss;
  uint64_t portnum;
  struct peer_link *l;

  if (rp_split_hostport (a->dst_addr, host, sizeof host, port,
                         sizeof port) == -1 ||
      rp_parse_uint (port, 1, 65535, &portnum) == -1) {
    errno = EINVAL;
    return NULL;
  }
  if ((l = calloc (1, sizeof *l)) == NULL)
    return NULL;
  if (rp_random_bytes (l->nonce, sizeof l->nonce) == -1) {
    free (l);
    errno = EIO;
    return NULL;
  }
  l->peer = p;
  memcpy (l->addr, a->dst_addr, sizeof l->addr);
  memcpy (l->owner_id, s->owner_id, 16);
  l->fence = a->dst_fence;
  l->session = a->dst_session;
  memcpy (l->incarnation, a->dst_incarnation, 16);
  l->next_id = PEER_ID_AUTH + 1;
  l->next = p->links;
  if (p->links)
    p->links->prev = l;
  p->links = l;
  uv_timer_init (p->loop, &l->idle);
  l->idle.data = l;
  l->has_idle = true;
  if (uv_ip4_addr (host, portnum, (struct sockaddr_in *) &ss) == 0 ||
      uv_ip6_addr (host, portnum, (struct sockaddr_in6 *) &ss) == 0) {
    link_connect (l, (struct sockaddr *) &ss);
    return l;
  }
  struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                            .ai_family = AF_UNSPEC };
  l->gai.data = l;
  l->state = LINK_RESOLVING;
  l->is_resolving = true;
  int r = uv_getaddrinfo (p->loop, &l->gai, link_resolved, host, port,
                          &hints);
  if (r < 0) {
    l->is_resolving = false;
    link_fail (l, RP_EIO, RP_COPY_STAGE_CONNECT, uv_strerror (r));
  }
  return l;
}

/* A link that can carry a copy for s to a's target, or NULL. */
static struct peer_link *
link_find (struct peer *p, struct session *s, const struct rp_copy_args *a)
{
  for (struct peer_link *l = p->links; l; l = l->next)
    if (l->state != LINK_CLOSING && l->fence == a->dst_fence &&
        l->session == a->dst_session &&
        memcmp (l->owner_id, s->owner_id, 16) == 0 &&
        memcmp (l->incarnation, a->dst_incarnation, 16) == 0 &&
        strcmp (l->addr, a->dst_addr) == 0)
      return l;
  return NULL;
}

/* --- session_core hooks --- */

static int
peer_copy (struct session_core *core, struct session *s,
           const struct rp_req *req, const struct rp_copy_args *a)
{
  struct peer *p = core->peer;
  struct peer_link *l;
  struct peer_job *j;

  if (p->is_stopping) {
    errno = EBUSY;
    return -1;
  }
  if (p->njobs >= p->max_jobs) {
    errno = EBUSY;
    return -1;
  }
  if ((j = calloc (1, sizeof *j)) == NULL ||
      (j->buf = malloc ((size_t) PEER_WINDOW * PEER_CHUNK)) == NULL) {
    free (j);
    errno = ENOMEM;
    return -1;
  }
  if ((l = link_find (p, s, a)) == NULL &&
      (l = link_open (p, s, a)) == NULL) {
    int err = errno;
    free (j->buf);
    free (j);
    errno = err;
    return -1;
  }
  j->peer = p;
  j->s = s;
  j->id = req->id;
  j->src_handle = req->handle;
  j->src_offset = req->offset;
  j->count = req->count;
  j->dst_handle = a->dst_handle;
  j->dst_offset = a->dst_offset;
  uv_timer_init (p->loop, &j->timer);
  j->timer.data = j;
  p->njobs++;
  if (l->state == LINK_CLOSING) {
    /* It failed at once (an address that does not connect, such as
     * one with no route): answered as a COPY that stopped connecting
     * (protocol.md, COPY), like one whose connect fails later, so the
     * client copies to that target itself for a while instead of
     * asking again for every extent.
     */
    job_end (j, RP_EIO, RP_COPY_STAGE_CONNECT, NULL);
    return 0;
  }
  uv_timer_start (&j->timer, job_deadline_cb, a->deadline_ms, 0);
  j->link = l;
  j->lnext = l->jobs;
  if (l->jobs)
    l->jobs->lprev = j;
  l->jobs = j;
  uv_timer_stop (&l->idle);
  if (l->state == LINK_READY)
    job_pump (j);
  return 0;
}

static void
peer_copy_cancel (struct session_core *core, struct session *s)
{
  struct peer *p = core->peer;

  for (struct peer_link *l = p->links; l; l = l->next) {
    struct peer_job *j = l->jobs;
    while (j) {
      if (j->s != s) {
        j = j->lnext;
        continue;
      }
      j->s = NULL;
      job_end (j, RP_EIO, RP_COPY_STAGE_ABORTED, NULL);
      j = l->jobs;  /* ending it may have ended the others too */
    }
  }
}

struct peer *
peer_start (uv_loop_t *loop, struct session_core *core, unsigned max_copies)
{
  struct peer *p = calloc (1, sizeof *p);

  if (p == NULL) {
    log_msg (LOG_LEVEL_ERROR, "copy", "out of memory");
    return NULL;
  }
  p->loop = loop;
  p->core = core;
  p->max_jobs = max_copies;
  core->peer = p;
  core->copy = peer_copy;
  core->copy_cancel = peer_copy_cancel;
  return p;
}

void
peer_stop (struct peer *p)
{
  if (p == NULL)
    return;
  p->is_stopping = true;
  for (struct peer_link *l = p->links, *next; l; l = next) {
    next = l->next;
    link_fail (l, RP_EIO, RP_COPY_STAGE_ABORTED, NULL);
  }
}

void
peer_free (struct peer *p)
{
  free (p);
}
