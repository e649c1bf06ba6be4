/* TCP transport (transport.h): blocking stream sockets for sending,
 * TCP_NODELAY (a 4 KiB swap page must not wait for Nagle), one sendmsg
 * for header and payload (MSG_NOSIGNAL).
 *
 * Receiving.  A connection's receive side reads into a buffer of its
 * own as much as the socket holds, so one recv brings every reply the
 * server wrote in one go (a burst of 4 KiB READ replies, 32-byte WRITE
 * replies); for each reply it asks conn.c which call it answers and
 * copies the payload from the buffer into that call's buffer, and the
 * part of a large payload that is not in the buffer yet is received
 * straight into the call's buffer.  Who runs it:
 *   - the first TCP_READERS connections of the process each have a
 *     thread of their own, in a blocking recv: one system call per
 *     burst of replies;
 *   - the connections beyond share TCP_POLLERS threads that wait in
 *     epoll and recv without blocking: two system calls per burst
 *     (bench/run-bench.sh: +1.8 calls per 4 KiB read at QD1), but a
 *     fixed number of threads: a pool of 200 donors with connections=2
 *     is not 400 threads in every nbdkit (with mlock=on, 400 locked
 *     stacks).
 *   - a direct connection (conn.h, a lane) has none: the one thread
 *     waiting for its reply receives it (tcp_pump), so a reply costs
 *     that thread's recv and no wake-up of another thread.
 * So at most TCP_READERS + TCP_POLLERS receive threads, whatever the
 * pool's size; RAMPOOL_TCP_READERS in the environment sets TCP_READERS
 * (0: every connection on the pollers; tests use it).  Epoll is
 * level-triggered: a socket with more to read comes back in the next
 * wait, after the others that are ready, so one busy server cannot
 * starve the rest.  The conn.c callbacks a receive side runs (replies,
 * notices, conn_end's on_dead) never block, so one connection cannot
 * hold up the others on its poller.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>

#include "conn.h"
#include "util.h"

/* The receive buffer: many replies per recv.  A payload that still
 * misses more than a quarter of the buffer once the buffer is used up
 * is read straight into the call's buffer instead.
 */
#define TCP_RBUF (64u * 1024)
/* A lane's: one reply at a time (a notice, too, from a server that
 * does not know RP_HELLO_QUIET).
 */
#define TCP_RBUF_LANE (8u * 1024)

_Static_assert (TCP_RBUF_LANE >= sizeof (struct rp_notice_hdr) +
                RP_NOTICE_MAX_HANDLES * 8, "a whole notice fits");
_Static_assert (TCP_RBUF_LANE >= sizeof (struct rp_reply_hdr) + 4096,
                "a 4 KiB read reply fits a lane's buffer whole");

/* Receive threads (see the top): TCP_READERS connections with their
 * own (a small pool, 3 servers with connections=2, keeps the cheaper
 * blocking recv), the rest on TCP_POLLERS, which start with the first
 * such connection and stop after the last one closed.
 */
#define TCP_READERS 16
#define TCP_READERS_MAX 1024
#define TCP_POLLERS 2

struct tcp_poller {
  int epfd;
  int stop_fd;                 /* eventfd: written to stop the thread */
  pthread_t thread;
};

static pthread_mutex_t tcp_pollers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tcp_poller tcp_pollers[TCP_POLLERS];
static unsigned tcp_readers;        /* connections with a thread */
static unsigned tcp_readers_max = TCP_READERS;  /* tcp_readers_once */
static pthread_once_t tcp_readers_once_ctl = PTHREAD_ONCE_INIT;
static unsigned tcp_pollers_users;  /* connections on the pollers */
static unsigned tcp_pollers_next;   /* round robin */

/* A TCP connection's private state (transport.priv). */
struct tcp {
  int fd;                      /* the socket */
  struct conn *conn;           /* whose replies the receive side delivers */
  struct tcp_poller *poller;   /* set by start, or: */
  pthread_t reader;            /* a receive thread of its own */
  bool has_reader;
  /* The receive side's alone (reader or poller) until it has ended: */
  uint8_t *rbuf;               /* rcap bytes received, owned (start) */
  size_t rcap;                 /* TCP_RBUF, or TCP_RBUF_LANE */
  size_t rpos;                 /* next byte not consumed */
  size_t rlen;                 /* bytes received at rbuf */
  struct conn_call *pcall;     /* a reply whose payload is coming */
  struct rp_reply preply;      /* its header */
  uint8_t *pdst;               /* where the rest goes (in pcall->rbuf) */
  size_t pleft;                /* how much is still to come */
  /* The end of the receive side (conn_end done, out of the epoll set),
   * under end_lock: what close waits for.
   */
  pthread_mutex_t end_lock;
  pthread_cond_t end_cond;
  bool has_ended;
};

static int
tcp_connect_one (const struct addrinfo *ai, unsigned timeout_ms)
{
  int fd, flags, err = 0, one = 1;
  socklen_t len = sizeof err;
  struct pollfd pfd;

  fd = socket (ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd == -1)
    return -1;
  flags = fcntl (fd, F_GETFL);
  fcntl (fd, F_SETFL, flags | O_NONBLOCK);
  if (connect (fd, ai->ai_addr, ai->ai_addrlen) == -1) {
    if (errno != EINPROGRESS)
      goto out_close;
    pfd.fd = fd;
    pfd.events = POLLOUT;
    int r = poll (&pfd, 1, timeout_ms);
    if (r == 0) {
      errno = ETIMEDOUT;
      goto out_close;
    }
    if (r < 0 || getsockopt (fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
      goto out_close;
    if (err) {
      errno = err;
      goto out_close;
    }
  }
  fcntl (fd, F_SETFL, flags);
  setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt (fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  return fd;
 out_close:
  err = errno;
  close (fd);
  errno = err;
  return -1;
}

static int
tcp_connect (struct transport *t, const char *host, const char *port,
             unsigned timeout_ms, const struct transport_hello *hello,
             char *err, size_t errlen)
{
  struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                            .ai_flags = AI_NUMERICSERV };
  struct addrinfo *res, *ai;
  struct tcp *tcp;
  int r, fd = -1;

  r = getaddrinfo (host, port, &hints, &res);
  if (r != 0) {
    errno = r == EAI_SYSTEM ? errno : EHOSTUNREACH;
    snprintf (err, errlen, "%s", strerror (errno));
    return -1;
  }
  for (ai = res; ai && fd == -1; ai = ai->ai_next)
    fd = tcp_connect_one (ai, timeout_ms);
  r = errno;
  freeaddrinfo (res);
  if (fd == -1) {
    snprintf (err, errlen, "%s", strerror (r));
    errno = r;
    return -1;
  }
  tcp = calloc (1, sizeof *tcp);
  if (tcp == NULL) {
    close (fd);
    snprintf (err, errlen, "%s", strerror (ENOMEM));
    errno = ENOMEM;
    return -1;
  }
  tcp->fd = fd;
  pthread_mutex_init (&tcp->end_lock, NULL);
  pthread_cond_init (&tcp->end_cond, NULL);
  t->priv = tcp;
  return 0;
}

/* recv, without blocking for a connection on a poller.  >0: bytes;
 * 0: nothing to read now; -1: the connection is over, with *why.
 */
static ssize_t
tcp_recv (struct tcp *tcp, void *dst, size_t len, const char **why,
          char *whybuf, size_t whylen)
{
  for (;;) {
    ssize_t r = recv (tcp->fd, dst, len, tcp->poller ? MSG_DONTWAIT : 0);
    if (r > 0)
      return r;
    if (r == 0) {
      *why = "connection lost: the server closed it";
      return -1;
    }
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return 0;
    snprintf (whybuf, whylen, "connection lost: %s", strerror (errno));
    *why = whybuf;
    return -1;
  }
}

/* Deliver what the buffer holds: the rest of a payload in progress,
 * then whole notices and replies.  NULL, or why the connection ends.
 */
static const char *
tcp_consume (struct tcp *tcp)
{
  struct conn *c = tcp->conn;
  const char *why = NULL;

  for (;;) {
    size_t avail = tcp->rlen - tcp->rpos;
    const uint8_t *hdr = tcp->rbuf + tcp->rpos;

    if (tcp->pcall) {
      size_t n = avail < tcp->pleft ? avail : tcp->pleft;
      memcpy (tcp->pdst, hdr, n);
      tcp->rpos += n;
      tcp->pdst += n;
      tcp->pleft -= n;
      if (tcp->pleft > 0)
        return NULL;
      struct conn_call *call = tcp->pcall;
      tcp->pcall = NULL;
      conn_reply_done (c, &tcp->preply, call);
      continue;
    }
    if (avail < sizeof (struct rp_reply_hdr))
      return NULL;
    if (rp_frame_is_notice (hdr)) {
      struct rp_notice n;
      if (rp_notice_decode (hdr, &n, &why) == -1)
        return why;
      if (avail < sizeof (struct rp_notice_hdr) + n.length)
        return NULL;  /* whole notices only: rcap holds the largest */
      tcp->rpos += sizeof (struct rp_notice_hdr) + n.length;
      conn_notice (c, &n, hdr + sizeof (struct rp_notice_hdr));
      continue;
    }
    struct rp_reply r;
    struct conn_call *call;
    if (rp_reply_decode (hdr, &r, &why) == -1 ||
        (call = conn_reply_call (c, &r, &why)) == NULL)
      return why;
    tcp->rpos += sizeof (struct rp_reply_hdr);
    if (r.length == 0) {
      conn_reply_done (c, &r, call);
      continue;
    }
    tcp->preply = r;
    tcp->pcall = call;
    tcp->pdst = call->rbuf;
    tcp->pleft = r.length;
  }
}

/* The socket is readable (or, with a reader thread of its own, is to
 * be waited for): one recv (level-triggered epoll brings the socket
 * back if more is there), then deliver.  NULL, or why the connection
 * ends.
 */
static const char *
tcp_on_readable (struct tcp *tcp, char *whybuf, size_t whylen)
{
  const char *why = NULL;
  ssize_t r;

  if (tcp->pcall && tcp->pleft > tcp->rcap / 4 && tcp->rpos == tcp->rlen) {
    /* Most of a large payload to come: straight into the call's
     * buffer, no copy through ours.
     */
    r = tcp_recv (tcp, tcp->pdst, tcp->pleft, &why, whybuf, whylen);
    if (r < 0)
      return why;
    tcp->pdst += r;
    tcp->pleft -= r;
    return tcp_consume (tcp);  /* completes the call once it is whole */
  }
  if (tcp->rpos == tcp->rlen)
    tcp->rpos = tcp->rlen = 0;
  else if (tcp->rpos > 0) {
    /* A partial frame at the end: to the front, so that a whole notice
     * (or a header) fits after it.
     */
    memmove (tcp->rbuf, tcp->rbuf + tcp->rpos, tcp->rlen - tcp->rpos);
    tcp->rlen -= tcp->rpos;
    tcp->rpos = 0;
  }
  r = tcp_recv (tcp, tcp->rbuf + tcp->rlen, tcp->rcap - tcp->rlen, &why,
                whybuf, whylen);
  if (r < 0)
    return why;
  tcp->rlen += r;
  return tcp_consume (tcp);
}

/* The receive side of tcp is over (why): fail its calls, leave the
 * epoll set, and let close go on.  The receive side only.
 */
static void
tcp_end (struct tcp *tcp, const char *why)
{
  conn_end (tcp->conn, why);
  if (tcp->poller)
    epoll_ctl (tcp->poller->epfd, EPOLL_CTL_DEL, tcp->fd, NULL);
  pthread_mutex_lock (&tcp->end_lock);
  tcp->has_ended = true;
  pthread_cond_broadcast (&tcp->end_cond);
  pthread_mutex_unlock (&tcp->end_lock);
}

/* A poller thread: readiness events until its stop_fd is written.  An
 * event for a connection that ended earlier in the same batch cannot
 * come: each socket appears once per epoll_wait, and it leaves the set
 * as it ends.
 */
static void *
tcp_poller_run (void *arg)
{
  struct tcp_poller *pl = arg;
  struct epoll_event ev[32];
  char whybuf[128];

  for (;;) {
    int n = epoll_wait (pl->epfd, ev, 32, -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      abort ();  /* EBADF/EINVAL: our own bug, not the network's */
    }
    for (int i = 0; i < n; i++) {
      struct tcp *tcp = ev[i].data.ptr;
      if (tcp == NULL)
        return NULL;
      const char *why = tcp_on_readable (tcp, whybuf, sizeof whybuf);
      if (why)
        tcp_end (tcp, why);
    }
  }
}

static void
tcp_pollers_stop (unsigned n)
{
  for (unsigned i = 0; i < n; i++) {
    struct tcp_poller *pl = &tcp_pollers[i];
    uint64_t one = 1;
    if (write (pl->stop_fd, &one, sizeof one) != sizeof one)
      abort ();
    pthread_join (pl->thread, NULL);
    close (pl->stop_fd);
    close (pl->epfd);
  }
}

/* Start the pollers (tcp_pollers_lock held).  0, or -1 with errno. */
static int
tcp_pollers_start (void)
{
  unsigned i;
  int err = 0;

  for (i = 0; i < TCP_POLLERS; i++) {
    struct tcp_poller *pl = &tcp_pollers[i];
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

    pl->epfd = epoll_create1 (EPOLL_CLOEXEC);
    if (pl->epfd == -1) {
      err = errno;
      break;
    }
    pl->stop_fd = eventfd (0, EFD_CLOEXEC);
    if (pl->stop_fd == -1 ||
        epoll_ctl (pl->epfd, EPOLL_CTL_ADD, pl->stop_fd, &ev) == -1) {
      err = errno;
      if (pl->stop_fd != -1)
        close (pl->stop_fd);
      close (pl->epfd);
      break;
    }
    err = rp_thread_start (&pl->thread, 256 * 1024, tcp_poller_run, pl);
    if (err) {
      close (pl->stop_fd);
      close (pl->epfd);
      break;
    }
  }
  if (i < TCP_POLLERS) {
    tcp_pollers_stop (i);
    errno = err;
    return -1;
  }
  return 0;
}

/* RAMPOOL_TCP_READERS, if set to a number up to TCP_READERS_MAX. */
static void
tcp_readers_once (void)
{
  const char *v = getenv ("RAMPOOL_TCP_READERS");
  char *end;
  unsigned long n;

  if (v == NULL || *v == '\0')
    return;
  errno = 0;
  n = strtoul (v, &end, 10);
  if (errno == 0 && *end == '\0' && n <= TCP_READERS_MAX)
    tcp_readers_max = n;
}

/* A connection's own receive thread: blocking recvs until the
 * connection fails.
 */
static void *
tcp_reader (void *arg)
{
  struct tcp *tcp = arg;
  const char *why;
  char whybuf[128];

  while ((why = tcp_on_readable (tcp, whybuf, sizeof whybuf)) == NULL)
    ;
  tcp_end (tcp, why);
  return NULL;
}

static int
tcp_start (struct transport *t, struct conn *c)
{
  struct tcp *tcp = t->priv;
  struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
  int err = 0;

  tcp->conn = c;
  tcp->rcap = c->is_direct ? TCP_RBUF_LANE : TCP_RBUF;
  tcp->rbuf = malloc (tcp->rcap);
  if (tcp->rbuf == NULL)
    return -1;
  if (c->is_direct) {
    /* No receive side: the waiting caller pumps (tcp_pump), and one
     * blocking recv returns after TRANSPORT_PUMP_MS with nothing.
     */
    struct timeval tv = { .tv_sec = TRANSPORT_PUMP_MS / 1000,
                          .tv_usec = TRANSPORT_PUMP_MS % 1000 * 1000 };
    return setsockopt (tcp->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ev.data.ptr = tcp;
  pthread_once (&tcp_readers_once_ctl, tcp_readers_once);
  pthread_mutex_lock (&tcp_pollers_lock);
  if (tcp_readers < tcp_readers_max) {
    err = rp_thread_start (&tcp->reader, 256 * 1024, tcp_reader, tcp);
    if (err == 0) {
      tcp->has_reader = true;
      tcp_readers++;
    }
    pthread_mutex_unlock (&tcp_pollers_lock);
    errno = err;
    return err ? -1 : 0;
  }
  if (tcp_pollers_users == 0 && tcp_pollers_start () == -1) {
    err = errno;
    pthread_mutex_unlock (&tcp_pollers_lock);
    errno = err;
    return -1;
  }
  tcp->poller = &tcp_pollers[tcp_pollers_next++ % TCP_POLLERS];
  tcp_pollers_users++;
  if (epoll_ctl (tcp->poller->epfd, EPOLL_CTL_ADD, tcp->fd, &ev) == -1) {
    err = errno;
    if (--tcp_pollers_users == 0)
      tcp_pollers_stop (TCP_POLLERS);
    tcp->poller = NULL;
  }
  pthread_mutex_unlock (&tcp_pollers_lock);
  if (err) {
    errno = err;
    return -1;
  }
  return 0;
}

/* A direct connection's receive step (transport.h, pump): one
 * blocking recv (tcp->poller is NULL), at most TRANSPORT_PUMP_MS when
 * nothing comes, then deliver.
 */
static const char *
tcp_pump (struct transport *t, char *whybuf, size_t whylen)
{
  return tcp_on_readable (t->priv, whybuf, whylen);
}

static int
tcp_send (struct transport *t, const struct conn_call *call)
{
  struct tcp *tcp = t->priv;
  uint8_t hdr[sizeof (struct rp_req_hdr)];
  struct iovec iov[2] = {
    { .iov_base = hdr, .iov_len = sizeof hdr },
    { .iov_base = (void *) call->payload, .iov_len = call->req.length },
  };

  rp_req_encode (&call->req, hdr);
  /* MSG_NOSIGNAL (rp_sendv_full): a peer that reset the connection
   * gives EPIPE, not SIGPIPE (nbdkit ignores it; librampool's other
   * users need not).
   */
  return rp_sendv_full (tcp->fd, iov, call->req.length ? 2 : 1);
}

/* Held frames (conn_batch): every header and payload in one sendmsg
 * (more only if the socket takes part of it).
 */
static int
tcp_send_frames (struct transport *t, const struct conn_frame *const *frames,
                 unsigned n)
{
  struct tcp *tcp = t->priv;
  struct iovec iov[2 * CONN_BATCH_FRAMES];
  int niov = 0;

  for (unsigned i = 0; i < n && i < CONN_BATCH_FRAMES; i++) {
    iov[niov++] = (struct iovec) {
      .iov_base = (void *) frames[i]->hdr,
      .iov_len = sizeof frames[i]->hdr,
    };
    if (frames[i]->len)
      iov[niov++] = (struct iovec) {
        .iov_base = (void *) frames[i]->payload,
        .iov_len = frames[i]->len,
      };
  }
  return rp_sendv_full (tcp->fd, iov, niov);
}

static void
tcp_shutdown (struct transport *t)
{
  struct tcp *tcp = t->priv;

  if (tcp && tcp->fd >= 0)
    shutdown (tcp->fd, SHUT_RDWR);
}

static void
tcp_close (struct transport *t)
{
  struct tcp *tcp = t->priv;
  /* Abort, do not linger: data still queued was given up (the requests
   * it carries were failed), so it must not trickle out later.  The
   * server-side fence (protocol.h, HELLO) covers what is already on
   * the wire.
   */
  struct linger lg = { .l_onoff = 1, .l_linger = 0 };

  if (tcp == NULL)
    return;
  if (tcp->has_reader) {
    shutdown (tcp->fd, SHUT_RDWR);
    pthread_join (tcp->reader, NULL);
    pthread_mutex_lock (&tcp_pollers_lock);
    tcp_readers--;
    pthread_mutex_unlock (&tcp_pollers_lock);
  }
  else if (tcp->poller) {
    /* The poller sees the shutdown as the end of the stream. */
    shutdown (tcp->fd, SHUT_RDWR);
    pthread_mutex_lock (&tcp->end_lock);
    while (!tcp->has_ended)
      pthread_cond_wait (&tcp->end_cond, &tcp->end_lock);
    pthread_mutex_unlock (&tcp->end_lock);
    pthread_mutex_lock (&tcp_pollers_lock);
    if (--tcp_pollers_users == 0)
      tcp_pollers_stop (TCP_POLLERS);
    pthread_mutex_unlock (&tcp_pollers_lock);
  }
  setsockopt (tcp->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close (tcp->fd);
  pthread_mutex_destroy (&tcp->end_lock);
  pthread_cond_destroy (&tcp->end_cond);
  free (tcp->rbuf);
  free (tcp);
  t->priv = NULL;
}

const struct transport_ops transport_tcp = {
  .scheme = "tcp",
  .connect = tcp_connect,
  .start = tcp_start,
  .send = tcp_send,
  .send_frames = tcp_send_frames,
  .pump = tcp_pump,
  .shutdown = tcp_shutdown,
  .close = tcp_close,
};
