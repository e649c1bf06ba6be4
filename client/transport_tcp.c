/* TCP transport (transport.h): blocking stream sockets, TCP_NODELAY (a
 * 4 KiB swap page must not wait for Nagle), one sendmsg for header and
 * payload (MSG_NOSIGNAL), and a receive thread per connection that
 * reads each reply header, asks conn.c which call it answers, and reads
 * the payload straight into that call's buffer.
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

/* A TCP connection's private state (transport.priv). */
struct tcp {
  int fd;                      /* the socket */
  struct conn *conn;           /* whose replies the reader delivers */
  pthread_t reader;
  bool has_reader;             /* started: close joins it */
  uint8_t notice[RP_NOTICE_MAX_HANDLES * 8]; /* a notice's handles */
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
  t->priv = tcp;
  return 0;
}

/* The receive thread: replies until the connection fails, then
 * conn_end.
 */
static void *
tcp_reader (void *arg)
{
  struct tcp *tcp = arg;
  struct conn *c = tcp->conn;
  uint8_t hdr[sizeof (struct rp_reply_hdr)];
  const char *why = NULL;
  char whybuf[128];

  for (;;) {
    struct rp_reply r;
    struct conn_call *call;

    if (rp_read_full (tcp->fd, hdr, sizeof hdr) == -1) {
      snprintf (whybuf, sizeof whybuf, "connection lost: %s",
                strerror (errno));
      why = whybuf;
      break;
    }
    if (rp_frame_is_notice (hdr)) {
      struct rp_notice n;
      if (rp_notice_decode (hdr, &n, &why) == -1)
        break;
      if (n.length &&
          rp_read_full (tcp->fd, tcp->notice, n.length) == -1) {
        why = "connection lost in a notice";
        break;
      }
      conn_notice (c, &n, tcp->notice);
      continue;
    }
    if (rp_reply_decode (hdr, &r, &why) == -1 ||
        (call = conn_reply_call (c, &r, &why)) == NULL)
      break;
    if (r.length && rp_read_full (tcp->fd, call->rbuf, r.length) == -1) {
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
