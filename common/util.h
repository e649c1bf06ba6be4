/* Small helpers both sides need: parsing sizes and addresses from
 * config, time, randomness, full reads/writes, threads.  No allocation except
 * where a prototype says so.
 */
#ifndef RP_UTIL_H
#define RP_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

/* Parse a byte count: a decimal number with an optional suffix
 * k/K, m/M, g/G, t/T (powers of 1024) and an optional trailing "B" or
 * "iB".  Returns 0, or -1 with errno = EINVAL (not a size) or ERANGE.
 */
int rp_parse_size (const char *s, uint64_t *out);

/* Parse an unsigned decimal in [min, max].  0 or -1 with errno set. */
int rp_parse_uint (const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Split "HOST:PORT", "[V6]:PORT" into host and port strings.  host and
 * port are caller buffers.  0 or -1 with errno = EINVAL.
 */
int rp_split_hostport (const char *s, char *host, size_t hostlen,
                       char *port, size_t portlen);

/* Monotonic clock in milliseconds / nanoseconds. */
uint64_t rp_now_ms (void);
uint64_t rp_now_ns (void);

/* Fill buf with cryptographically random bytes (getrandom).  0 / -1. */
int rp_random_bytes (void *buf, size_t len);

/* Hex form of 16 bytes into out (33 bytes).  Returns out. */
char *rp_hex16 (const uint8_t in[16], char out[33]);

/* Format a byte count as "1.5 GiB" into out.  Returns out. */
char *rp_human_size (uint64_t bytes, char *out, size_t outlen);

/* Write/read exactly len bytes on a blocking fd, retrying on EINTR and
 * short transfers.  0, or -1 with errno (ECONNRESET on EOF for reads).
 */
int rp_write_full (int fd, const void *buf, size_t len);
int rp_read_full (int fd, void *buf, size_t len);

struct iovec;
/* Send all of iov[0..n) on a socket, retrying on EINTR and short
 * sends (iov is updated as it goes).  sendmsg with MSG_NOSIGNAL, not
 * writev: a peer that reset the connection gives EPIPE here instead of
 * killing a program that does not ignore SIGPIPE.  0, or -1 with errno.
 */
int rp_sendv_full (int fd, struct iovec *iov, int n);

/* The same from iov[*at], advancing *at (and the iovec it stops in).
 * Without may_block, stops when the socket takes no more (MSG_DONTWAIT):
 * 0.  1 once all is sent, -1 with errno.
 */
int rp_sendv_at (int fd, struct iovec *iov, int *at, int n, bool may_block);

/* Start fn (arg) on a thread with a stack of stack_bytes.  rampool's
 * threads need a few KiB of stack, and with mlock=on (swap) every
 * thread's stack is locked: glibc's default of 8 MiB a thread would
 * pin tens of MiB for nothing.  0, or pthread_create's error number.
 */
int rp_thread_start (pthread_t *t, size_t stack_bytes,
                     void *(*fn) (void *), void *arg);

/* A buffered reader over a blocking socket, for frames: many per recv
 * into buf (cap bytes, the caller's), a large payload straight into
 * its destination.
 */
struct rp_rx {
  int fd;
  uint8_t *buf;
  size_t cap, have, pos;       /* buf[pos..have) not taken yet */
};

static inline size_t
rp_rx_avail (const struct rp_rx *rx)
{
  return rx->have - rx->pos;
}

/* Make at least need bytes available (need <= cap).  0, or -1 at EOF
 * or on an error.
 */
int rp_rx_fill (struct rp_rx *rx, size_t need);
/* Take len bytes into dst (NULL: drop them): from the buffer first,
 * the rest straight from the socket.  0 or -1.
 */
int rp_rx_take (struct rp_rx *rx, void *dst, size_t len);

#endif /* RP_UTIL_H */
