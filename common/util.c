/* See util.h. */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "util.h"

int
rp_parse_uint (const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
  char *end;
  unsigned long long v;

  if (s == NULL || !isdigit ((unsigned char) s[0])) {
    errno = EINVAL;
    return -1;
  }
  errno = 0;
  v = strtoull (s, &end, 10);
  if (errno == ERANGE || v > max || v < min) {
    errno = ERANGE;
    return -1;
  }
  if (*end != '\0') {
    errno = EINVAL;
    return -1;
  }
  *out = v;
  return 0;
}

int
rp_parse_size (const char *s, uint64_t *out)
{
  char *end;
  unsigned long long v;
  unsigned shift = 0;

  if (s == NULL || !isdigit ((unsigned char) s[0])) {
    errno = EINVAL;
    return -1;
  }
  errno = 0;
  v = strtoull (s, &end, 10);
  if (errno == ERANGE) {
    errno = ERANGE;
    return -1;
  }
  switch (*end) {
  case 'k': case 'K': shift = 10; end++; break;
  case 'm': case 'M': shift = 20; end++; break;
  case 'g': case 'G': shift = 30; end++; break;
  case 't': case 'T': shift = 40; end++; break;
  default: break;
  }
  if (shift && *end == 'i')
    end++;
  if (*end == 'b' || *end == 'B')
    end++;
  if (*end != '\0') {
    errno = EINVAL;
    return -1;
  }
  if (shift && v > (UINT64_MAX >> shift)) {
    errno = ERANGE;
    return -1;
  }
  *out = (uint64_t) v << shift;
  return 0;
}

int
rp_split_hostport (const char *s, char *host, size_t hostlen,
                   char *port, size_t portlen)
{
  const char *colon, *hstart = s, *hend;

  if (s[0] == '[') {
    hstart = s + 1;
    hend = strchr (s, ']');
    if (hend == NULL || hend[1] != ':')
      goto bad;
    colon = hend + 1;
  }
  else {
    colon = strrchr (s, ':');
    if (colon == NULL || strchr (s, ':') != colon)
      goto bad;
    hend = colon;
  }
  if (hend == hstart || (size_t) (hend - hstart) >= hostlen)
    goto bad;
  if (colon[1] == '\0' || strlen (colon + 1) >= portlen)
    goto bad;
  for (const char *p = colon + 1; *p; p++)
    if (!isdigit ((unsigned char) *p))
      goto bad;
  memcpy (host, hstart, hend - hstart);
  host[hend - hstart] = '\0';
  strcpy (port, colon + 1);
  return 0;
 bad:
  errno = EINVAL;
  return -1;
}

uint64_t
rp_now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t
rp_now_ms (void)
{
  return rp_now_ns () / 1000000;
}

int
rp_random_bytes (void *buf, size_t len)
{
  uint8_t *p = buf;

  while (len > 0) {
    ssize_t r = getrandom (p, len, 0);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += r;
    len -= r;
  }
  return 0;
}

char *
rp_hex16 (const uint8_t in[16], char out[33])
{
  for (int i = 0; i < 16; i++)
    snprintf (out + 2 * i, 3, "%02x", in[i]);
  return out;
}

char *
rp_human_size (uint64_t bytes, char *out, size_t outlen)
{
  static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
  double v = bytes;
  unsigned u = 0;

  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  if (u == 0)
    snprintf (out, outlen, "%" PRIu64 " B", bytes);
  else
    snprintf (out, outlen, "%.1f %s", v, units[u]);
  return out;
}

int
rp_write_full (int fd, const void *buf, size_t len)
{
  const uint8_t *p = buf;

  while (len > 0) {
    ssize_t r = write (fd, p, len);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += r;
    len -= r;
  }
  return 0;
}

int
rp_sendv_at (int fd, struct iovec *iov, int *at, int n, bool may_block)
{
  while (*at < n) {
    struct msghdr msg = { .msg_iov = iov + *at,
                          .msg_iovlen = n - *at > IOV_MAX ? IOV_MAX
                                                          : n - *at };
    ssize_t w = sendmsg (fd, &msg,
                         MSG_NOSIGNAL | (may_block ? 0 : MSG_DONTWAIT));
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (!may_block && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
      return -1;
    }
    while (*at < n && (size_t) w >= iov[*at].iov_len)
      w -= iov[(*at)++].iov_len;
    if (*at < n) {
      iov[*at].iov_base = (uint8_t *) iov[*at].iov_base + w;
      iov[*at].iov_len -= w;
    }
  }
  return 1;
}

int
rp_sendv_full (int fd, struct iovec *iov, int n)
{
  int at = 0;

  return rp_sendv_at (fd, iov, &at, n, true) == 1 ? 0 : -1;
}

int
rp_read_full (int fd, void *buf, size_t len)
{
  uint8_t *p = buf;

  while (len > 0) {
    ssize_t r = read (fd, p, len);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (r == 0) {
      errno = ECONNRESET;
      return -1;
    }
    p += r;
    len -= r;
  }
  return 0;
}

int
rp_thread_start (pthread_t *t, size_t stack_bytes, void *(*fn) (void *),
                 void *arg)
{
  pthread_attr_t attr;
  int err = pthread_attr_init (&attr);

  if (err)
    return err;
  err = pthread_attr_setstacksize (&attr, stack_bytes);
  if (err == 0)
    err = pthread_create (t, &attr, fn, arg);
  pthread_attr_destroy (&attr);
  return err;
}

int
rp_rx_fill (struct rp_rx *rx, size_t need)
{
  if (rp_rx_avail (rx) >= need)
    return 0;
  memmove (rx->buf, rx->buf + rx->pos, rx->have - rx->pos);
  rx->have -= rx->pos;
  rx->pos = 0;
  while (rx->have < need) {
    ssize_t r = recv (rx->fd, rx->buf + rx->have, rx->cap - rx->have, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    rx->have += r;
  }
  return 0;
}

int
rp_rx_take (struct rp_rx *rx, void *dst, size_t len)
{
  size_t n = rp_rx_avail (rx) < len ? rp_rx_avail (rx) : len;

  if (dst)
    memcpy (dst, rx->buf + rx->pos, n);
  rx->pos += n;
  len -= n;
  if (len == 0)
    return 0;
  if (dst)
    return rp_read_full (rx->fd, (uint8_t *) dst + n, len);
  rx->have = rx->pos = 0;      /* all taken: the buffer is scratch */
  while (len) {
    size_t k = len < rx->cap ? len : rx->cap;
    if (rp_read_full (rx->fd, rx->buf, k) == -1)
      return -1;
    len -= k;
  }
  return 0;
}
