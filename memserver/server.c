/* memserver network side: the libuv glue around sessions.
 *
 * One libuv loop thread does everything: accept, read, parse, execute
 * (memcpy into or out of the region), reply.  A memcpy of 1 MiB takes
 * ~100 us, far below what a TCP round trip costs, so one thread per
 * donor is not the bottleneck; a second core is better left to the
 * donor's own programs.
 *
 * This file owns the sockets: listener, accept, reads, writes,
 * backpressure, close, signals and the lease sweep timer.  What the
 * bytes mean -- handshake, frames, requests -- is session.c's.
 *
 * Per connection: one receive buffer big enough for the largest frame
 * (so a WRITE's payload is copied once, from there into the region),
 * handed whole to session_process after every read, and the replies
 * produced by one read callback coalesced into one write.  If the peer
 * stops reading replies, we stop reading requests (backpressure)
 * instead of buffering without bound.
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
#include <sys/socket.h>

#include "rampool/protocol.h"
#include "server.h"
#include "session.h"
#include "store.h"
#include "util.h"

/* Room for one maximal frame plus pipelined small ones behind it. */
#define CONN_RBUF_SIZE (sizeof (struct rp_req_hdr) + RP_MAX_PAYLOAD + 256 * 1024)
/* Stop reading a peer with this many reply bytes not yet sent, and
 * resume below the low mark.
 */
#define CONN_WQ_HIGH (16u * 1024 * 1024)
#define CONN_WQ_LOW (4u * 1024 * 1024)

struct conn {
  uv_tcp_t tcp;              /* first: handle <-> conn casts */
  struct session s;          /* protocol state; s.is_closing is ours */
  uint8_t *rbuf;             /* CONN_RBUF_SIZE bytes, owned */
  size_t rlen;               /* valid bytes in rbuf */
  size_t queued_bytes;       /* handed to libuv, not yet written */
  bool is_paused;            /* reading stopped for backpressure */
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
  struct session_core core;  /* store, settings, every connection's
                                session (core.sessions is our list of
                                connections, for shutdown) */
  bool is_stopping;
};

static void conn_close (struct conn *c);
static void conn_resume (struct conn *c);

static struct conn *
conn_of_session (struct session *s)
{
  return (struct conn *) ((char *) s - offsetof (struct conn, s));
}

static void
conn_log_close (struct conn *c, const char *why)
{
  log_peer (LOG_KIND_MEMORY, LOG_WARN, "conn", "%s: %s; closing connection",
            c->s.peer, why);
  conn_close (c);
}

static void
conn_after_write (uv_write_t *req, int status)
{
  struct write_req *w = (struct write_req *) req;
  struct conn *c = w->conn;

  c->queued_bytes -= w->len;
  free (w->buf);
  free (w);
  if (status < 0 && status != UV_ECANCELED && !c->s.is_closing) {
    log_peer (LOG_KIND_CONN, LOG_INFO, "conn", "%s: write: %s", c->s.peer,
              uv_strerror (status));
    conn_close (c);
    return;
  }
  if (c->is_paused && !c->s.is_closing && c->queued_bytes < CONN_WQ_LOW) {
    c->is_paused = false;
    conn_resume (c);
  }
}

static void
conn_flush (struct conn *c)
{
  struct write_req *w;
  uv_buf_t b;

  if (c->s.olen == 0 || c->s.is_closing)
    return;
  w = malloc (sizeof *w);
  if (w == NULL) {
    conn_log_close (c, "out of memory for write");
    return;
  }
  w->conn = c;
  w->buf = session_take_output (&c->s, &w->len);
  b = uv_buf_init ((char *) w->buf, w->len);
  c->queued_bytes += w->len;
  if (uv_write (&w->req, (uv_stream_t *) &c->tcp, &b, 1, conn_after_write) < 0) {
    c->queued_bytes -= w->len;
    free (w->buf);
    free (w);
    conn_close (c);
  }
}

/* Let the session execute every complete frame in the receive buffer,
 * then send its replies.
 */
static void
conn_process (struct conn *c)
{
  /* The session stops executing once queued plus unsent replies reach
   * the high mark; reading stops with it (below) until they drain.
   */
  size_t room = c->queued_bytes < CONN_WQ_HIGH
    ? CONN_WQ_HIGH - c->queued_bytes : 0;
  size_t pos = session_process (&c->s, c->rbuf, c->rlen, room);

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
  if (!c->s.is_closing && c->queued_bytes >= CONN_WQ_HIGH) {
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
      log_peer (LOG_KIND_CONN, LOG_INFO, "conn", "%s: read: %s", c->s.peer,
                uv_strerror ((int) nread));
    else if (session_is_awaiting_auth (&c->s))
      log_peer (LOG_KIND_AUTH, LOG_WARN, "auth", "%s: client left before"
                " authenticating (it did not accept our proof: different"
                " cluster key, or no key-file on the client?)", c->s.peer);
    else
      log_peer (LOG_KIND_CONN, LOG_DEBUG, "conn", "%s: closed by peer",
                c->s.peer);
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
  if (!c->s.is_closing && !c->is_paused)
    uv_read_start ((uv_stream_t *) &c->tcp, conn_alloc_cb, conn_read_cb);
}

static void
conn_free_cb (uv_handle_t *h)
{
  struct conn *c = (struct conn *) h;

  session_fini (&c->s);
  free (c->rbuf);
  free (c);
}

static void
conn_close (struct conn *c)
{
  if (c->s.is_closing)
    return;
  c->s.is_closing = true;
  uv_close ((uv_handle_t *) &c->tcp, conn_free_cb);
}

/* session_core.close_session: fencing closes a sibling connection. */
static void
server_close_session (struct session *s)
{
  conn_close (conn_of_session (s));
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
    log_peer (LOG_KIND_ACCEPT, LOG_WARN, "listen", "accept: %s",
              uv_strerror (status));
    return;
  }
  c = calloc (1, sizeof *c);
  if (c == NULL || (c->rbuf = malloc (CONN_RBUF_SIZE)) == NULL) {
    free (c);
    log_peer (LOG_KIND_MEMORY, LOG_ERR, "listen", "out of memory for a new"
              " connection");
    return;
  }
  uv_tcp_init (srv->loop, &c->tcp);
  session_init (&c->s, &srv->core);
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
  snprintf (c->s.peer, sizeof c->s.peer, "%s:%d", host, port);
  if (srv->core.nsessions > srv->core.st->max_conns) {
    log_peer (LOG_KIND_REFUSED, LOG_WARN, "listen", "%s: refused:"
              " max-connections=%" PRIu32 " reached", c->s.peer,
              srv->core.st->max_conns);
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
  log_peer (LOG_KIND_CONN, LOG_DEBUG, "conn", "%s: connected", c->s.peer);
  uv_read_start ((uv_stream_t *) &c->tcp, conn_alloc_cb, conn_read_cb);
}

static void
server_on_sweep (uv_timer_t *t)
{
  struct server *srv = t->data;
  uint64_t now = rp_now_ms ();
  unsigned n = store_expire_owners (&srv->core.store, now);

  for (struct session *s = srv->core.sessions; s; s = s->next)
    if (s->owner == NULL && !s->is_closing &&
        now - s->start_ms > SESSION_HANDSHAKE_MS) {
      log_peer (LOG_KIND_HANDSHAKE, LOG_INFO, "conn", "%s: no HELLO%s within"
                " %d ms; closing", s->peer, srv->core.st->key ? "/AUTH" : "",
                SESSION_HANDSHAKE_MS);
      srv->core.close_session (s);
    }

  if (n)
    log_peer (LOG_KIND_LEASE, LOG_INFO, "lease", "freed the extents of %u"
              " client(s) gone for longer than lease-ms=%" PRIu32, n,
              srv->core.store.lease_ms);
  log_flush (false);
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
  for (struct session *s = srv->core.sessions; s; s = s->next)
    conn_close (conn_of_session (s));
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
  if (rp_split_hostport (srv->core.st->listen, host, sizeof host,
                         port, sizeof port) == -1) {
    log_msg (LOG_ERR, "config", "listen: '%s' is not HOST:PORT or [V6]:PORT",
             srv->core.st->listen);
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
    log_msg (LOG_ERR, "listen", "%s: %s", srv->core.st->listen, uv_strerror (r));
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
  srv.core.st = st;
  srv.core.close_session = server_close_session;
  srv.loop = uv_default_loop ();
  srv.core.start_ms = rp_now_ms ();
  if (rp_random_bytes (srv.core.incarnation, 16) == -1) {
    log_msg (LOG_ERR, "main", "getrandom: %s", strerror (errno));
    return 1;
  }
  if (store_open (&srv.core.store, st->size_bytes, st->use_mlock,
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
           rp_human_size (srv.core.store.region.capacity, sz, sizeof sz),
           st->use_mlock ? " (locked per extent)" : " (not locked)",
           rp_hex16 (srv.core.incarnation, inc));
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
  store_close (&srv.core.store);
  log_flush (true);
  if (status == 0)
    log_msg (LOG_INFO, "main", "stopped");
  return status;
}
