/* TCP transport: blocking stream sockets, TCP_NODELAY (a 4 KiB swap
 * page must not wait for Nagle), writev for header + payload in one
 * system call.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "transport.h"
#include "util.h"

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
tcp_connect (struct rp_transport *t, const char *host, const char *port,
             unsigned timeout_ms)
{
  struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                            .ai_flags = AI_NUMERICSERV };
  struct addrinfo *res, *ai;
  int r, fd = -1;

  r = getaddrinfo (host, port, &hints, &res);
  if (r != 0) {
    errno = r == EAI_SYSTEM ? errno : EHOSTUNREACH;
    return -1;
  }
  for (ai = res; ai && fd == -1; ai = ai->ai_next)
    fd = tcp_connect_one (ai, timeout_ms);
  r = errno;
  freeaddrinfo (res);
  if (fd == -1) {
    errno = r;
    return -1;
  }
  t->fd = fd;
  return 0;
}

static int
tcp_send (struct rp_transport *t, const struct iovec *iov_in, int iovcnt)
{
  struct iovec iov[4];
  int n = iovcnt;

  if (iovcnt > 4) {
    errno = EINVAL;
    return -1;
  }
  memcpy (iov, iov_in, iovcnt * sizeof iov[0]);
  struct iovec *p = iov;
  while (n > 0) {
    ssize_t w = writev (t->fd, p, n);
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

static int
tcp_recv (struct rp_transport *t, void *buf, size_t len)
{
  return rp_read_full (t->fd, buf, len);
}

static void
tcp_shutdown (struct rp_transport *t)
{
  if (t->fd >= 0)
    shutdown (t->fd, SHUT_RDWR);
}

static void
tcp_close (struct rp_transport *t)
{
  /* Abort, do not linger: data still queued was given up (the requests
   * it carries were failed), so it must not trickle out later.  The
   * server-side fence (protocol.h, HELLO) covers what is already on
   * the wire.
   */
  struct linger lg = { .l_onoff = 1, .l_linger = 0 };

  if (t->fd >= 0) {
    setsockopt (t->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close (t->fd);
  }
  t->fd = -1;
}

const struct rp_transport_ops rp_transport_tcp = {
  .name = "tcp",
  .connect = tcp_connect,
  .send = tcp_send,
  .recv = tcp_recv,
  .shutdown = tcp_shutdown,
  .close = tcp_close,
};
