/* memserver network side.
 *
 * One libuv loop thread does everything: accept, read, parse, execute
 * (memcpy into or out of the region), reply.  A memcpy of 1 MiB takes
 * ~100 us, far below what a TCP round trip costs, so one thread per
 * donor is not the bottleneck; a second core is better left to the
 * donor's own programs.
 *
 * Per connection: one receive buffer big enough for the largest frame
 * (so a WRITE's payload is copied once, from there into the region),
 * frames processed in arrival order (the protocol promises that), and
 * the replies produced by one read callback coalesced into one write.
 * If the peer stops reading replies, we stop reading requests
 * (backpressure) instead of buffering without bound.
 *
 * Bad input: any malformed header closes that connection with one log
 * line (rate limited per connection); nothing else is affected.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <endian.h>
#include <uv.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "auth.h"
#include "codec.h"
#include "server.h"
#include "store.h"
#include "util.h"

#define REQ_HDR_SIZE sizeof (struct rp_req_hdr)
#define REPLY_HDR_SIZE sizeof (struct rp_reply_hdr)
/* Room for one maximal frame plus pipelined small ones behind it. */
#define CONN_RBUF_SIZE (REQ_HDR_SIZE + RP_MAX_PAYLOAD + 256 * 1024)
/* Stop reading a peer with this many reply bytes not yet sent, and
 * resume below the low mark.
 */
#define CONN_WQ_HIGH (16u * 1024 * 1024)
#define CONN_WQ_LOW (4u * 1024 * 1024)

struct server;

struct conn {
  uv_tcp_t tcp;              /* first: handle <-> conn casts */
  struct server *srv;
  struct conn *prev, *next;  /* server's list, for shutdown */
  struct owner *owner;       /* NULL until HELLO (and AUTH with a key) */
  bool is_hello_done;
  bool is_rejected;          /* failed AUTH: the next frame closes */
  uint8_t owner_id[16];      /* from HELLO */
  uint64_t fence;            /* from HELLO: the client's generation */
  uint8_t client_nonce[32];  /* from HELLO */
  uint8_t server_nonce[32];  /* ours, for this connection */
  uint8_t *rbuf;             /* CONN_RBUF_SIZE bytes, owned */
  size_t rlen;               /* valid bytes in rbuf */
  uint8_t *obuf;             /* replies not yet handed to libuv, owned */
  size_t olen, ocap;
  size_t queued_bytes;       /* handed to libuv, not yet written */
  bool is_paused;            /* reading stopped for backpressure */
  bool is_closing;
  char peer[64];
  struct log_limit limit;
};

struct write_req {
  uv_write_t req;
  struct conn *conn;
  uint8_t *buf;              /* owned, freed when written */
  size_t len;
};

struct server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_signal_t sigterm, sigint;
  uv_timer_t sweep;
  struct store store;
  const struct settings *st;
  uint8_t incarnation[16];
  uint64_t start_ms;
  uint32_t nconns;
  struct conn *conns;
  bool is_stopping;
};

static void conn_close (struct conn *c);
static void conn_resume (struct conn *c);

static void
conn_log_close (struct conn *c, const char *why)
{
  if (log_ratelimit (&c->limit, 3))
    log_msg (LOG_WARN, "conn", "%s: %s; closing connection", c->peer, why);
  conn_close (c);
}

/* Reserve n bytes at the end of the output buffer. */
static uint8_t *
conn_out_reserve (struct conn *c, size_t n)
{
  if (c->olen + n > c->ocap) {
    size_t cap = c->ocap ? c->ocap : 64 * 1024;
    while (cap < c->olen + n)
      cap *= 2;
    uint8_t *p = realloc (c->obuf, cap);
    if (p == NULL)
      return NULL;
    c->obuf = p;
    c->ocap = cap;
  }
  uint8_t *p = c->obuf + c->olen;
  c->olen += n;
  return p;
}

/* Append a reply header followed by room for `length` payload bytes,
 * returning a pointer to the payload room (or NULL: out of memory, the
 * connection is closed).
 */
static uint8_t *
conn_reply (struct conn *c, uint64_t id, uint32_t error, uint32_t length)
{
  struct rp_reply r = {
    .error = error, .id = id, .length = length,
    .free_bytes = region_free_bytes (&c->srv->store.region),
  };
  uint8_t *p = conn_out_reserve (c, REPLY_HDR_SIZE + length);

  if (p == NULL) {
    conn_log_close (c, "out of memory for reply");
    return NULL;
  }
  rp_reply_encode (&r, p);
  return p + REPLY_HDR_SIZE;
}

static void
conn_reply_errno (struct conn *c, uint64_t id, int err)
{
  conn_reply (c, id, rp_errno_to_error (err), 0);
}

static void
conn_after_write (uv_write_t *req, int status)
{
  struct write_req *w = (struct write_req *) req;
  struct conn *c = w->conn;

  c->queued_bytes -= w->len;
  free (w->buf);
  free (w);
  if (status < 0 && status != UV_ECANCELED && !c->is_closing) {
    log_msg (LOG_INFO, "conn", "%s: write: %s", c->peer, uv_strerror (status));
    conn_close (c);
    return;
  }
  if (c->is_paused && !c->is_closing && c->queued_bytes < CONN_WQ_LOW) {
    c->is_paused = false;
    conn_resume (c);
  }
}

static void
conn_flush (struct conn *c)
{
  struct write_req *w;
  uv_buf_t b;

  if (c->olen == 0 || c->is_closing)
    return;
  w = malloc (sizeof *w);
  if (w == NULL) {
    conn_log_close (c, "out of memory for write");
    return;
  }
  w->conn = c;
  w->buf = c->obuf;
  w->len = c->olen;
  c->obuf = NULL;
  c->olen = c->ocap = 0;
  b = uv_buf_init ((char *) w->buf, w->len);
  c->queued_bytes += w->len;
  if (uv_write (&w->req, (uv_stream_t *) &c->tcp, &b, 1, conn_after_write) < 0) {
    c->queued_bytes -= w->len;
    free (w->buf);
    free (w);
    conn_close (c);
  }
}

/* --- request execution --- */

/* Attach the connection to its owner, within the per-client limits.
 * false (after replying EPERM) when refused.
 */
static bool
conn_attach_owner (struct conn *c, const struct rp_req *req)
{
  struct server *srv = c->srv;
  struct owner *o = store_owner_attach (&srv->store, c->owner_id);

  if (o == NULL) {
    log_msg (LOG_WARN, "limit", "%s: refused: max-clients=%" PRIu32
             " client sessions already hold this server", c->peer,
             srv->st->max_owners);
    goto refuse;
  }
  if (c->fence < o->fence) {
    store_owner_detach (&srv->store, o);
    log_msg (LOG_INFO, "conn", "%s: refused: connection generation %" PRIu64
             " is older than this client's %" PRIu64, c->peer, c->fence,
             o->fence);
    goto refuse;
  }
  if (c->fence > o->fence) {
    /* The client reconnected: whatever its older connections still
     * carry was given up by the client and must not land after what it
     * sends now (a late WRITE would undo a repair).
     */
    unsigned n = 0;
    o->fence = c->fence;
    for (struct conn *k = srv->conns; k; k = k->next)
      if (k != c && k->owner == o && k->fence < c->fence && !k->is_closing) {
        conn_close (k);
        n++;
      }
    if (n)
      log_msg (LOG_INFO, "conn", "%s: client reconnected (generation %" PRIu64
               "): closed %u older connection(s) unread", c->peer, c->fence, n);
  }
  if (o->nconns > srv->st->max_client_conns) {
    store_owner_detach (&srv->store, o);
    log_msg (LOG_WARN, "limit", "%s: refused: this client already has"
             " max-client-connections=%" PRIu32 " connections", c->peer,
             srv->st->max_client_conns);
    goto refuse;
  }
  c->owner = o;
  return true;
 refuse:
  conn_reply (c, req->id, RP_EPERM, 0);
  c->is_rejected = true;
  return false;
}

static void
op_hello (struct conn *c, const struct rp_req *req, const uint8_t *payload)
{
  struct server *srv = c->srv;
  struct rp_hello_req h;
  struct rp_hello_info hi;
  uint8_t *out;

  memcpy (&h, payload, sizeof h);
  if (le32toh (h.version) != RP_PROTOCOL_VERSION) {
    log_msg (LOG_WARN, "conn", "%s: protocol version %" PRIu32
             " not supported (this server speaks %d)",
             c->peer, le32toh (h.version), RP_PROTOCOL_VERSION);
    conn_reply (c, req->id, RP_EVERSION, 0);
    c->is_rejected = true;
    return;
  }
  c->is_hello_done = true;
  memcpy (c->owner_id, h.owner, 16);
  memcpy (c->client_nonce, h.client_nonce, 32);
  c->fence = le64toh (h.fence);
  rp_random_bytes (c->server_nonce, 32);
  memset (&hi, 0, sizeof hi);
  if (srv->st->key) {
    /* Prove we hold the key; the owner is attached only after the
     * client proves it too (op_auth), so an unauthenticated peer
     * cannot even occupy an owner slot.
     */
    hi.flags = RP_HELLO_AUTH;
    memcpy (hi.server_nonce, c->server_nonce, 32);
    rp_auth_proof (srv->st->key, RP_AUTH_SERVER, c->client_nonce,
                   c->server_nonce, c->owner_id, hi.server_proof);
  }
  else if (!conn_attach_owner (c, req))
    return;
  hi.version = RP_PROTOCOL_VERSION;
  memcpy (hi.incarnation, srv->incarnation, 16);
  hi.capacity_bytes = srv->store.region.capacity;
  hi.free_bytes = region_free_bytes (&srv->store.region);
  hi.max_payload = RP_MAX_PAYLOAD;
  hi.lease_ms = srv->store.lease_ms;
  out = conn_reply (c, req->id, RP_OK, sizeof (struct rp_hello_reply));
  if (out)
    rp_hello_reply_encode (&hi, out);
}

static void
op_auth (struct conn *c, const struct rp_req *req, const uint8_t *payload)
{
  struct server *srv = c->srv;
  struct rp_auth_req a;

  memcpy (&a, payload, sizeof a);
  if (!rp_auth_check (srv->st->key, RP_AUTH_CLIENT, c->client_nonce,
                      c->server_nonce, c->owner_id, a.client_proof)) {
    log_msg (LOG_WARN, "auth", "%s: authentication failed: the client does"
             " not hold this pool's cluster key (wrong key-file?)", c->peer);
    conn_reply (c, req->id, RP_EPERM, 0);
    c->is_rejected = true;
    return;
  }
  if (!conn_attach_owner (c, req))
    return;
  log_msg (LOG_DEBUG, "auth", "%s: authenticated", c->peer);
  conn_reply (c, req->id, RP_OK, 0);
}

static void
op_stat (struct conn *c, const struct rp_req *req)
{
  struct server *srv = c->srv;
  struct rp_stat_info si = {
    .capacity_bytes = srv->store.region.capacity,
    .used_bytes = srv->store.region.used,
    .owner_bytes = c->owner->bytes,
    .extents = srv->store.nextents,
    .owner_extents = c->owner->nextents,
    .clients = srv->nconns,
    .owners = store_owners_holding (&srv->store),
    .uptime_ms = rp_now_ms () - srv->start_ms,
  };
  uint8_t *out;

  memcpy (si.incarnation, srv->incarnation, 16);
  out = conn_reply (c, req->id, RP_OK, sizeof (struct rp_stat_reply));
  if (out)
    rp_stat_reply_encode (&si, out);
}

static void
op_alloc (struct conn *c, const struct rp_req *req)
{
  uint64_t handle;
  struct rp_alloc_reply a;
  uint8_t *out;

  uint64_t quota = c->srv->st->max_client_bytes;
  if (quota && c->owner->bytes + req->offset > quota) {
    if (log_ratelimit (&c->limit, 3))
      log_msg (LOG_WARN, "limit", "%s: ALLOC refused: the client would hold"
               " more than max-client-size=%" PRIu64 " bytes", c->peer, quota);
    conn_reply_errno (c, req->id, ENOSPC);
    return;
  }
  if (store_alloc (&c->srv->store, c->owner, req->offset, &handle) == -1) {
    if (errno == ENOMEM && log_ratelimit (&c->limit, 3))
      log_msg (LOG_WARN, "region", "mlock of a %" PRIu64 "-byte extent failed:"
               " the donor has no memory to lock (RLIMIT_MEMLOCK or RAM)",
               req->offset);
    conn_reply_errno (c, req->id, errno);
    return;
  }
  a.handle = htole64 (handle);
  out = conn_reply (c, req->id, RP_OK, sizeof a);
  if (out)
    memcpy (out, &a, sizeof a);
}

/* The extent for a data op, with [offset, offset+count) checked against
 * its size; NULL after replying with the error.
 */
static struct extent *
op_extent (struct conn *c, const struct rp_req *req, uint64_t count)
{
  struct extent *e = store_lookup (&c->srv->store, c->owner, req->handle);

  if (e == NULL) {
    conn_reply_errno (c, req->id, ENOENT);
    return NULL;
  }
  /* offset < 2^30 and count <= 4 MiB (codec), so no overflow. */
  if (req->offset + count > e->size) {
    conn_reply_errno (c, req->id, EINVAL);
    return NULL;
  }
  return e;
}

static void
conn_execute (struct conn *c, const struct rp_req *req, const uint8_t *payload)
{
  struct store *s = &c->srv->store;
  struct extent *e;
  uint8_t *out;

  switch (req->op) {
  case RP_OP_HELLO:
    op_hello (c, req, payload);
    return;
  case RP_OP_AUTH:
    op_auth (c, req, payload);
    return;
  case RP_OP_PING:
    conn_reply (c, req->id, RP_OK, 0);
    return;
  case RP_OP_STAT:
    op_stat (c, req);
    return;
  case RP_OP_ALLOC:
    op_alloc (c, req);
    return;
  case RP_OP_FREE:
    e = store_lookup (s, c->owner, req->handle);
    if (e == NULL) {
      conn_reply_errno (c, req->id, ENOENT);
      return;
    }
    store_free (s, e);
    conn_reply (c, req->id, RP_OK, 0);
    return;
  case RP_OP_READ:
    if ((e = op_extent (c, req, req->count)) == NULL)
      return;
    out = conn_reply (c, req->id, RP_OK, req->count);
    if (out)
      memcpy (out, s->region.base + e->offset + req->offset, req->count);
    return;
  case RP_OP_WRITE:
    if ((e = op_extent (c, req, req->length)) == NULL)
      return;
    memcpy (s->region.base + e->offset + req->offset, payload, req->length);
    conn_reply (c, req->id, RP_OK, 0);
    return;
  case RP_OP_ZERO:
    if ((e = op_extent (c, req, req->count)) == NULL)
      return;
    memset (s->region.base + e->offset + req->offset, 0, req->count);
    conn_reply (c, req->id, RP_OK, 0);
    return;
  }
}

/* Parse and execute every complete frame in the receive buffer. */
static void
conn_process (struct conn *c)
{
  size_t pos = 0;

  while (!c->is_closing && c->rlen - pos >= REQ_HDR_SIZE) {
    struct rp_req req;
    const char *why;

    /* Replies pile up when the peer does not read them: stop executing
     * (and reading) until they drain, so a client pipelining 4 MiB
     * READs cannot make us buffer without bound.
     */
    if (c->queued_bytes + c->olen >= CONN_WQ_HIGH) {
      conn_flush (c);
      uv_read_stop ((uv_stream_t *) &c->tcp);
      c->is_paused = true;
      break;
    }
    if (rp_req_decode (c->rbuf + pos, &req, &why) == -1) {
      conn_log_close (c, why);
      return;
    }
    /* The handshake: HELLO, then (with a key) AUTH, then the rest. */
    if (c->is_rejected) {
      conn_log_close (c, "request after a refused HELLO/AUTH");
      return;
    }
    if (!c->is_hello_done && req.op != RP_OP_HELLO) {
      conn_log_close (c, "request before HELLO");
      return;
    }
    if (c->is_hello_done && req.op == RP_OP_HELLO) {
      conn_log_close (c, "second HELLO");
      return;
    }
    if (c->is_hello_done && c->owner == NULL && req.op != RP_OP_AUTH) {
      conn_log_close (c, c->srv->st->key ? "request before AUTH"
                      : "request after a refused HELLO");
      return;
    }
    if (req.op == RP_OP_AUTH && (c->owner != NULL || !c->srv->st->key)) {
      conn_log_close (c, c->srv->st->key ? "second AUTH"
                      : "AUTH, but this server has no key-file");
      return;
    }
    if (c->rlen - pos < REQ_HDR_SIZE + req.length)
      break;
    conn_execute (c, &req, c->rbuf + pos + REQ_HDR_SIZE);
    pos += REQ_HDR_SIZE + req.length;
  }
  if (c->is_closing)
    return;
  if (pos > 0) {
    memmove (c->rbuf, c->rbuf + pos, c->rlen - pos);
    c->rlen -= pos;
  }
  conn_flush (c);
  if (!c->is_closing && c->queued_bytes >= CONN_WQ_HIGH) {
    uv_read_stop ((uv_stream_t *) &c->tcp);
    c->is_paused = true;
  }
}

static void
conn_alloc_cb (uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  struct conn *c = (struct conn *) h;

  *buf = uv_buf_init ((char *) c->rbuf + c->rlen, CONN_RBUF_SIZE - c->rlen);
}

static void
conn_read_cb (uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
  struct conn *c = (struct conn *) stream;

  if (nread < 0) {
    if (nread != UV_EOF)
      log_msg (LOG_INFO, "conn", "%s: read: %s", c->peer,
               uv_strerror ((int) nread));
    else if (c->is_hello_done && c->owner == NULL && c->srv->st->key &&
             !c->is_rejected)
      log_msg (LOG_WARN, "auth", "%s: client left before authenticating"
               " (it did not accept our proof: different cluster key,"
               " or no key-file on the client?)", c->peer);
    else
      log_msg (LOG_DEBUG, "conn", "%s: closed by peer", c->peer);
    conn_close (c);
    return;
  }
  c->rlen += nread;
  conn_process (c);
}

/* Reading resumes after backpressure: first parse what is buffered. */
static void
conn_resume (struct conn *c)
{
  conn_process (c);
  if (!c->is_closing && !c->is_paused)
    uv_read_start ((uv_stream_t *) &c->tcp, conn_alloc_cb, conn_read_cb);
}

static void
conn_free_cb (uv_handle_t *h)
{
  struct conn *c = (struct conn *) h;
  struct server *srv = c->srv;

  if (c->owner)
    store_owner_detach (&srv->store, c->owner);
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  srv->nconns--;
  free (c->rbuf);
  free (c->obuf);
  free (c);
}

static void
conn_close (struct conn *c)
{
  if (c->is_closing)
    return;
  c->is_closing = true;
  uv_close ((uv_handle_t *) &c->tcp, conn_free_cb);
}

static void
server_on_connection (uv_stream_t *listener, int status)
{
  struct server *srv = listener->data;
  struct conn *c;
  struct sockaddr_storage ss;
  int len = sizeof ss;
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;

  if (status < 0) {
    log_msg (LOG_WARN, "listen", "accept: %s", uv_strerror (status));
    return;
  }
  c = calloc (1, sizeof *c);
  if (c == NULL || (c->rbuf = malloc (CONN_RBUF_SIZE)) == NULL) {
    free (c);
    log_msg (LOG_ERR, "listen", "out of memory for a new connection");
    return;
  }
  c->srv = srv;
  uv_tcp_init (srv->loop, &c->tcp);
  c->next = srv->conns;
  if (srv->conns)
    srv->conns->prev = c;
  srv->conns = c;
  srv->nconns++;
  if (uv_accept (listener, (uv_stream_t *) &c->tcp) < 0) {
    conn_close (c);
    return;
  }
  if (uv_tcp_getpeername (&c->tcp, (struct sockaddr *) &ss, &len) == 0) {
    if (ss.ss_family == AF_INET) {
      uv_ip4_name ((struct sockaddr_in *) &ss, host, sizeof host);
      port = ntohs (((struct sockaddr_in *) &ss)->sin_port);
    }
    else if (ss.ss_family == AF_INET6) {
      uv_ip6_name ((struct sockaddr_in6 *) &ss, host, sizeof host);
      port = ntohs (((struct sockaddr_in6 *) &ss)->sin6_port);
    }
  }
  snprintf (c->peer, sizeof c->peer, "%s:%d", host, port);
  if (srv->nconns > srv->st->max_conns) {
    log_msg (LOG_WARN, "listen", "%s: refused: max-connections=%" PRIu32
             " reached", c->peer, srv->st->max_conns);
    conn_close (c);
    return;
  }
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
  log_msg (LOG_DEBUG, "conn", "%s: connected", c->peer);
  uv_read_start ((uv_stream_t *) &c->tcp, conn_alloc_cb, conn_read_cb);
}

static void
server_on_sweep (uv_timer_t *t)
{
  struct server *srv = t->data;
  unsigned n = store_expire_owners (&srv->store, rp_now_ms ());

  if (n)
    log_msg (LOG_INFO, "lease", "freed the extents of %u client(s) gone for"
             " longer than lease-ms=%" PRIu32, n, srv->store.lease_ms);
}

static void
server_stop (struct server *srv)
{
  if (srv->is_stopping)
    return;
  srv->is_stopping = true;
  uv_close ((uv_handle_t *) &srv->listener, NULL);
  uv_close ((uv_handle_t *) &srv->sigterm, NULL);
  uv_close ((uv_handle_t *) &srv->sigint, NULL);
  uv_close ((uv_handle_t *) &srv->sweep, NULL);
  for (struct conn *c = srv->conns; c; c = c->next)
    conn_close (c);
}

static void
server_on_signal (uv_signal_t *h, int signum)
{
  log_msg (LOG_INFO, "main", "signal %d: shutting down", signum);
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
  if (rp_split_hostport (srv->st->listen, host, sizeof host,
                         port, sizeof port) == -1) {
    log_msg (LOG_ERR, "config", "listen: '%s' is not HOST:PORT or [V6]:PORT",
             srv->st->listen);
    return -1;
  }
  uint64_t portnum;
  if (rp_parse_uint (port, 0, 65535, &portnum) == -1) {
    log_msg (LOG_ERR, "config", "listen: port '%s' is not 0-65535", port);
    return -1;
  }
  if (uv_ip4_addr (host, portnum, (struct sockaddr_in *) &ss) != 0 &&
      uv_ip6_addr (host, portnum, (struct sockaddr_in6 *) &ss) != 0) {
    log_msg (LOG_ERR, "config", "listen: '%s' is not a numeric IPv4 or IPv6"
             " address", host);
    return -1;
  }
  if ((r = uv_tcp_bind (&srv->listener, (struct sockaddr *) &ss, 0)) < 0 ||
      (r = uv_listen ((uv_stream_t *) &srv->listener, 128,
                      server_on_connection)) < 0) {
    log_msg (LOG_ERR, "listen", "%s: %s", srv->st->listen, uv_strerror (r));
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
  char inc[33], sz[32];
  int port, status = 0;

  memset (&srv, 0, sizeof srv);
  srv.st = st;
  srv.loop = uv_default_loop ();
  srv.start_ms = rp_now_ms ();
  if (rp_random_bytes (srv.incarnation, 16) == -1) {
    log_msg (LOG_ERR, "main", "getrandom: %s", strerror (errno));
    return 1;
  }
  if (store_open (&srv.store, st->size_bytes, st->use_mlock,
                  st->max_owners, st->lease_ms) == -1) {
    log_msg (LOG_ERR, "region", "cannot map a %" PRIu64 "-byte region: %s",
             st->size_bytes, strerror (errno));
    return 1;
  }
  port = server_listen (&srv);
  if (port < 0) {
    status = 1;
    uv_close ((uv_handle_t *) &srv.listener, NULL);
    goto out_close_store;
  }
  uv_signal_init (srv.loop, &srv.sigterm);
  uv_signal_init (srv.loop, &srv.sigint);
  srv.sigterm.data = srv.sigint.data = &srv;
  uv_signal_start (&srv.sigterm, server_on_signal, SIGTERM);
  uv_signal_start (&srv.sigint, server_on_signal, SIGINT);
  uv_timer_init (srv.loop, &srv.sweep);
  srv.sweep.data = &srv;
  uv_timer_start (&srv.sweep, server_on_sweep, 1000, 1000);

  log_msg (LOG_INFO, "main", "listening on %s (port %d), donating %s%s,"
           " incarnation %s", st->listen, port,
           rp_human_size (srv.store.region.capacity, sz, sizeof sz),
           st->use_mlock ? " (locked per extent)" : " (not locked)",
           rp_hex16 (srv.incarnation, inc));
  if ((st->pidfile &&
       server_write_file (st->pidfile, (unsigned long) getpid ()) == -1) ||
      (st->port_file &&
       server_write_file (st->port_file, (unsigned long) port) == -1)) {
    log_msg (LOG_ERR, "main", "writing pid/port file: %s", strerror (errno));
    server_stop (&srv);
    status = 1;
  }
  uv_run (srv.loop, UV_RUN_DEFAULT);
  if (st->pidfile)
    unlink (st->pidfile);
  if (st->port_file)
    unlink (st->port_file);
 out_close_store:
  uv_run (srv.loop, UV_RUN_DEFAULT);
  uv_loop_close (srv.loop);
  store_close (&srv.store);
  if (status == 0)
    log_msg (LOG_INFO, "main", "stopped");
  return status;
}
