/* TCP transport (transport.h): blocking stream sockets, TCP_NODELAY (a
 * 4 KiB swap page must not wait for Nagle), one sendmsg for header and
 * payload (MSG_NOSIGNAL), and a receive thread per connection.
 *
 * The receive thread reads into a buffer of its own as much as the
 * socket holds, so one recv brings every reply the server wrote in one
 * go (a burst of 4 KiB READ replies, 32-byte WRITE replies), not one
 * recv for each header and one for each payload.  For each reply it
 * asks conn.c which call it answers and copies the payload from the
 * buffer into that call's buffer; the part of a large payload that is
 * not in the buffer yet is read straight into the call's buffer.
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
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "conn.h"
#include "util.h"

/* The receive buffer: many replies per recv.  A payload that still
 * misses more than TCP_DIRECT bytes once the buffer is used up is read
 * straight into the call's buffer instead.
 */
#define TCP_RBUF (64u * 1024)
#define TCP_DIRECT (TCP_RBUF / 4)

_Static_assert (TCP_RBUF >= sizeof (struct rp_notice_hdr) +
                RP_NOTICE_MAX_HANDLES * 8, "a whole notice fits");

/* A TCP connection's private state (transport.priv). */
struct tcp {
  int fd;                      /* the socket */
  struct conn *conn;           /* whose replies the reader delivers */
  pthread_t reader;
  bool has_reader;             /* started: close joins it */
  uint8_t *rbuf;               /* TCP_RBUF bytes received, owned (the
                                  reader's) */
  size_t rpos;                 /* next byte not consumed */
  size_t rlen;                 /* bytes received at rbuf */
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
  if (tcp == NULL || (tcp->rbuf = malloc (TCP_RBUF)) == NULL) {
    free (tcp);
    close (fd);
    snprintf (err, errlen, "%s", strerror (ENOMEM));
    errno = ENOMEM;
    return -1;
  }
  tcp->fd = fd;
  t->priv = tcp;
  return 0;
}

/* Have at least n (<= TCP_RBUF) unconsumed bytes in the buffer,
 * receiving as many as fit.  0, or -1 with errno.
 */
static int
tcp_fill (struct tcp *tcp, size_t n)
{
  if (tcp->rpos == tcp->rlen)
    tcp->rpos = tcp->rlen = 0;
  else if (TCP_RBUF - tcp->rpos < n) {
    memmove (tcp->rbuf, tcp->rbuf + tcp->rpos, tcp->rlen - tcp->rpos);
    tcp->rlen -= tcp->rpos;
    tcp->rpos = 0;
  }
  while (tcp->rlen - tcp->rpos < n) {
    ssize_t r = recv (tcp->fd, tcp->rbuf + tcp->rlen, TCP_RBUF - tcp->rlen, 0);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (r == 0) {
      errno = ECONNRESET;
      return -1;
    }
    tcp->rlen += r;
  }
  return 0;
}

/* The next len bytes of the stream into dst: from the buffer, then
 * from the socket.  0, or -1 with errno.
 */
static int
tcp_take (struct tcp *tcp, uint8_t *dst, size_t len)
{
  for (;;) {
    size_t n = tcp->rlen - tcp->rpos;
    if (n > len)
      n = len;
    memcpy (dst, tcp->rbuf + tcp->rpos, n);
    tcp->rpos += n;
    dst += n;
    len -= n;
    if (len == 0)
      return 0;
    if (len > TCP_DIRECT)
      return rp_read_full (tcp->fd, dst, len);
    if (tcp_fill (tcp, len) == -1)
      return -1;
  }
}

/* The receive thread: replies until the connection fails, then
 * conn_end.
 */
static void *
tcp_reader (void *arg)
{
  struct tcp *tcp = arg;
  struct conn *c = tcp->conn;
  const char *why = NULL;
  char whybuf[128];

  for (;;) {
    struct rp_reply r;
    struct conn_call *call;
    const uint8_t *hdr;

    if (tcp_fill (tcp, sizeof (struct rp_reply_hdr)) == -1) {
      snprintf (whybuf, sizeof whybuf, "connection lost: %s",
                strerror (errno));
      why = whybuf;
      break;
    }
    hdr = tcp->rbuf + tcp->rpos;
    if (rp_frame_is_notice (hdr)) {
      struct rp_notice n;
      if (rp_notice_decode (hdr, &n, &why) == -1)
        break;
      if (tcp_fill (tcp, sizeof (struct rp_notice_hdr) + n.length) == -1) {
        why = "connection lost in a notice";
        break;
      }
      hdr = tcp->rbuf + tcp->rpos;
      tcp->rpos += sizeof (struct rp_notice_hdr) + n.length;
      conn_notice (c, &n, hdr + sizeof (struct rp_notice_hdr));
      continue;
    }
    if (rp_reply_decode (hdr, &r, &why) == -1 ||
        (call = conn_reply_call (c, &r, &why)) == NULL)
      break;
    tcp->rpos += sizeof (struct rp_reply_hdr);
    if (r.length && tcp_take (tcp, call->rbuf, r.length) == -1) {
      why = "connection lost in a reply payload";
      break;
    }
    conn_reply_done (c, &r, call);
  }
  conn_end (c, why);
  return NULL;
}

static int
tcp_start (struct transport *t, struct conn *c)
{
  struct tcp *tcp = t->priv;
  pthread_attr_t attr;
  int err;

  tcp->conn = c;
  /* A small stack: the reader needs a few KiB, and with mlock=on (swap)
   * every thread's stack is locked; 8 MiB per connection would pin tens
   * of MiB for nothing.
   */
  pthread_attr_init (&attr);
  pthread_attr_setstacksize (&attr, 256 * 1024);
  err = pthread_create (&tcp->reader, &attr, tcp_reader, tcp);
  pthread_attr_destroy (&attr);
  if (err) {
    errno = err;
    return -1;
  }
  tcp->has_reader = true;
  return 0;
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
  struct iovec *p = iov;
  int n = call->req.length ? 2 : 1;

  rp_req_encode (&call->req, hdr);
  while (n > 0) {
    /* sendmsg, not writev: MSG_NOSIGNAL, so a peer that reset the
     * connection gives EPIPE here instead of killing a host program
     * that does not ignore SIGPIPE (nbdkit does; librampool's other
     * users need not).
     */
    struct msghdr msg = { .msg_iov = p, .msg_iovlen = n };
    ssize_t w = sendmsg (tcp->fd, &msg, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    while (n > 0 && (size_t) w >= p->iov_len) {
      w -= p->iov_len;
      p++;
      n--;
    }
    if (n > 0) {
      p->iov_base = (char *) p->iov_base + w;
      p->iov_len -= w;
    }
  }
  return 0;
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
  }
  setsockopt (tcp->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close (tcp->fd);
  free (tcp->rbuf);
  free (tcp);
  t->priv = NULL;
}

const struct transport_ops transport_tcp = {
  .scheme = "tcp",
  .connect = tcp_connect,
  .start = tcp_start,
  .send = tcp_send,
  .shutdown = tcp_shutdown,
  .close = tcp_close,
};
