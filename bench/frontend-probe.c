/* frontend-probe: how fast could a front end be that does not block a
 * thread per request?  A measurement for the performance issue, not a
 * product: an NBD server (one client, simple replies) that keeps the
 * disk in extents of ONE memserver (no replicas, no failover, no key)
 * and serves READ, WRITE and FLUSH through two threads and no per-request
 * wake-up:
 *
 *   the reader     reads NBD requests (many per recv) and sends each as
 *                  a memserver request (one writev per burst);
 *   the completer  reads memserver replies (many per recv) and sends
 *                  each as an NBD reply (one writev per burst).
 *
 * Neither waits for the other except when every request slot is in
 * use.  bench/run-bench.sh runs it as the target "probe"
 * (BENCH_TARGETS), beside nbdkit + the rampool plugin on the same kind
 * of memserver, so the difference between the two is what nbdkit's
 * thread per request costs (bench/README.md, "The front-end probe").
 *
 *   frontend-probe --servers HOST:PORT[,HOST:PORT...] --size BYTES
 *                  --unix SOCKET
 *
 * It listens on the Unix socket SOCKET (as nbdkit -U does in the
 * bench), prints "ready" on stdout once the extents are allocated, and
 * serves one NBD client after another.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "codec.h"
#include "nbd.h"
#include "util.h"

#define PROBE_EXTENT_SHIFT 26               /* 64 MiB extents */
#define PROBE_SLOTS 64                      /* requests in flight */
#define PROBE_MAX_LEN RP_MAX_PAYLOAD        /* largest NBD request */
#define PROBE_RXBUF (256 * 1024)
#define PROBE_BATCH 64                      /* frames per writev */
#define PROBE_MAX_SERVERS 16
#define PROBE_REQ_HDR ((unsigned) sizeof (struct rp_req_hdr))
#define PROBE_REPLY_HDR ((unsigned) sizeof (struct rp_reply_hdr))

struct probe_slot {
  uint64_t cookie;             /* the NBD request's, echoed */
  uint32_t len;                /* READ: bytes to send back */
  uint16_t type;               /* NBD_CMD_* */
  bool is_busy;
  uint32_t err;                /* NBD error of the reply */
  uint8_t nbd_hdr[16];         /* the NBD reply header, built here */
  uint8_t *buf;                /* PROBE_MAX_LEN */
};

/* One memserver connection: the reader's requests gathered for it,
 * and its completer.
 */
struct probe_ms {
  int fd;
  pthread_t completer;
  uint8_t hdrs[PROBE_BATCH][PROBE_REQ_HDR];
  struct iovec iov[2 * PROBE_BATCH];
  unsigned n, niov;
};

static struct {
  struct probe_ms ms[PROBE_MAX_SERVERS];
  unsigned nms;
  int nbd_fd;                  /* the NBD client */
  uint64_t size;
  uint64_t *handles;           /* one per extent, on ms[i % nms] */
  struct probe_slot slots[PROBE_SLOTS];
  pthread_mutex_t lock;        /* slots' is_busy, nfree */
  pthread_cond_t freed;
  unsigned nfree;
  pthread_mutex_t nbd_send_lock;  /* the completer's replies and the
                                     reader's FLUSH/error replies */
  bool is_over;                /* atomic: a thread ended the client */
} P;

static void
probe_die (const char *what)
{
  fprintf (stderr, "frontend-probe: %s\n", what);
  exit (1);
}

static int
probe_write_all (int fd, const void *p, size_t len)
{
  struct iovec iov = { .iov_base = (void *) p, .iov_len = len };
  return rp_sendv_full (fd, &iov, 1);
}

/* One memserver round trip on the still-idle connection (handshake
 * and ALLOC).  Reply payload into out (exactly outlen on success).
 */
static int
probe_ms_call (int fd, struct rp_req *req, const void *payload, void *out,
               uint32_t outlen)
{
  uint8_t hdr[PROBE_REQ_HDR], rh[PROBE_REPLY_HDR];
  struct iovec iov[2] = { { hdr, sizeof hdr },
                          { (void *) payload, req->length } };
  struct rp_reply r;
  const char *why;

  rp_req_encode (req, hdr);
  if (rp_sendv_full (fd, iov, payload ? 2 : 1) == -1)
    return -1;
  for (;;) {
    if (rp_read_full (fd, rh, sizeof rh) == -1)
      return -1;
    if (!rp_frame_is_notice (rh))
      break;
    struct rp_notice n;
    if (rp_notice_decode (rh, &n, &why) == -1)
      return -1;
    uint8_t skip[8];
    for (uint32_t i = 0; i < n.count; i++)
      if (rp_read_full (fd, skip, 8) == -1)
        return -1;
  }
  if (rp_reply_decode (rh, &r, &why) == -1 || r.id != req->id)
    return -1;
  if (r.error) {
    errno = rp_error_to_errno (r.error);
    return -1;
  }
  if (r.length != outlen ||
      (outlen && rp_read_full (fd, out, outlen) == -1))
    return -1;
  return 0;
}

/* Connect to one memserver and HELLO, as a client without a key. */
static int
probe_ms_connect (const char *hostport)
{
  char host[128], port[16];
  struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
  struct rp_hello_req h = { .version = htole32 (RP_PROTOCOL_VERSION),
                            .fence = htole64 (1) };
  uint8_t hr[sizeof (struct rp_hello_reply)];
  struct rp_req req = { .op = RP_OP_HELLO, .id = 1, .length = sizeof h };
  int fd, one = 1;

  if (rp_split_hostport (hostport, host, sizeof host, port, sizeof port) == -1)
    probe_die ("--servers: not HOST:PORT");
  if (getaddrinfo (host, port, &hints, &ai) != 0)
    probe_die ("--servers: cannot resolve");
  fd = socket (ai->ai_family, SOCK_STREAM, 0);
  if (fd < 0 || connect (fd, ai->ai_addr, ai->ai_addrlen) == -1)
    probe_die ("connect to a memserver failed");
  freeaddrinfo (ai);
  setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (getrandom (h.owner, sizeof h.owner, 0) != sizeof h.owner ||
      getrandom (h.client_nonce, sizeof h.client_nonce, 0) !=
      sizeof h.client_nonce)
    probe_die ("getrandom failed");
  if (probe_ms_call (fd, &req, &h, hr, sizeof hr) == -1)
    probe_die ("HELLO failed (a memserver with a key is not supported)");
  return fd;
}

/* Connect to every server of list and allocate the disk's extents. */
static void
probe_ms_open (char *list)
{
  char *save = NULL;

  for (char *a = strtok_r (list, ",", &save); a;
       a = strtok_r (NULL, ",", &save)) {
    if (P.nms == PROBE_MAX_SERVERS)
      probe_die ("--servers: at most 16");
    P.ms[P.nms++].fd = probe_ms_connect (a);
  }
  uint64_t ext = 1ull << PROBE_EXTENT_SHIFT, n = (P.size + ext - 1) / ext;
  P.handles = calloc (n, sizeof *P.handles);
  if (P.handles == NULL)
    probe_die ("out of memory");
  for (uint64_t i = 0; i < n; i++) {
    struct rp_alloc_reply a;
    struct rp_req req = { .op = RP_OP_ALLOC, .id = 2 + i,
                          .flags = RP_FLAG_SOLE,
                          .offset = 1ull << PROBE_EXTENT_SHIFT };
    if (probe_ms_call (P.ms[i % P.nms].fd, &req, NULL, &a, sizeof a) == -1)
      probe_die ("ALLOC failed (are the memservers large enough?)");
    P.handles[i] = le64toh (a.handle);
  }
}

/* ---- NBD handshake (fixed newstyle) ---- */

/* 0: go on to transmission; -1: drop the client. */
static int
probe_handshake (void)
{
  uint8_t data[4096];
  uint16_t tflags = htobe16 (NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH);
  uint64_t size = htobe64 (P.size);
  uint32_t cflags;

  if (rp_nbd_greet (P.nbd_fd, &cflags) == -1)
    return -1;
  for (;;) {
    uint32_t id, len;
    if (rp_nbd_read_option (P.nbd_fd, &id, &len) == -1 || len > sizeof data)
      return -1;
    if (len && rp_read_full (P.nbd_fd, data, len) == -1)
      return -1;
    switch (id) {
    case NBD_OPT_EXPORT_NAME: {
      uint8_t e[10 + 124] = { 0 };
      memcpy (e, &size, 8);
      memcpy (e + 8, &tflags, 2);
      return probe_write_all (P.nbd_fd, e,
                              (cflags & NBD_FLAG_NO_ZEROES) ? 10 : sizeof e);
    }
    case NBD_OPT_ABORT:
      rp_nbd_opt_reply (P.nbd_fd, id, NBD_REP_ACK, NULL, 0);
      return -1;
    case NBD_OPT_INFO:
    case NBD_OPT_GO: {
      uint8_t info[12];
      uint16_t t = htobe16 (NBD_INFO_EXPORT);
      uint32_t nlen;
      if (len < 6 || (memcpy (&nlen, data, 4), be32toh (nlen) > len - 6)) {
        if (rp_nbd_opt_reply (P.nbd_fd, id, NBD_REP_ERR_INVALID, NULL, 0) == -1)
          return -1;
        continue;
      }
      memcpy (info, &t, 2);
      memcpy (info + 2, &size, 8);
      memcpy (info + 10, &tflags, 2);
      if (rp_nbd_opt_reply (P.nbd_fd, id, NBD_REP_INFO, info,
                            sizeof info) == -1 ||
          rp_nbd_opt_reply (P.nbd_fd, id, NBD_REP_ACK, NULL, 0) == -1)
        return -1;
      if (id == NBD_OPT_GO)
        return 0;
      continue;
    }
    default:
      if (rp_nbd_opt_reply (P.nbd_fd, id, NBD_REP_ERR_UNSUP, NULL, 0) == -1)
        return -1;
    }
  }
}

/* ---- transmission ---- */

static void
probe_end (void)
{
  __atomic_store_n (&P.is_over, true, __ATOMIC_RELEASE);
  shutdown (P.nbd_fd, SHUT_RDWR);
  pthread_mutex_lock (&P.lock);
  pthread_cond_broadcast (&P.freed);
  pthread_mutex_unlock (&P.lock);
}

static void
probe_nbd_hdr (struct probe_slot *s)
{
  rp_nbd_simple_reply (s->nbd_hdr, s->err, (const uint8_t *) &s->cookie);
}

static void
probe_free (struct probe_slot **done, unsigned n)
{
  pthread_mutex_lock (&P.lock);
  for (unsigned i = 0; i < n; i++)
    done[i]->is_busy = false;
  P.nfree += n;
  pthread_cond_signal (&P.freed);
  pthread_mutex_unlock (&P.lock);
}

/* The completer: memserver replies -> NBD replies, a writev per burst,
 * until the reply to the PING that main sends once the reader is done
 * (the memserver answers in order, so every request sent before it has
 * been answered by then).  A memserver that breaks the protocol ends
 * the probe; a client that went away only stops the NBD replies.
 */
static void *
probe_completer (void *arg)
{
  struct probe_ms *ms = arg;
  struct rp_rx rx = { .fd = ms->fd, .buf = malloc (PROBE_RXBUF),
                     .cap = PROBE_RXBUF };
  struct iovec iov[2 * PROBE_BATCH];
  struct probe_slot *done[PROBE_BATCH];
  unsigned n = 0;

  if (rx.buf == NULL)
    probe_die ("out of memory");
  for (;;) {
    /* Send what is gathered before waiting for more bytes. */
    if (n && (rp_rx_avail (&rx) < PROBE_REPLY_HDR || n == PROBE_BATCH)) {
      if (!__atomic_load_n (&P.is_over, __ATOMIC_ACQUIRE)) {
        pthread_mutex_lock (&P.nbd_send_lock);
        int w = rp_sendv_full (P.nbd_fd, iov, (int) (2 * n));
        pthread_mutex_unlock (&P.nbd_send_lock);
        if (w == -1)
          probe_end ();
      }
      probe_free (done, n);
      n = 0;
    }
    if (rp_rx_fill (&rx, PROBE_REPLY_HDR) == -1)
      probe_die ("the memserver closed the connection");
    const uint8_t *h = rx.buf + rx.pos;
    const char *why;
    if (rp_frame_is_notice (h)) {
      struct rp_notice nt;
      uint8_t skip[8];
      if (rp_notice_decode (h, &nt, &why) == -1)
        probe_die (why);
      rx.pos += PROBE_REPLY_HDR;
      for (uint32_t i = 0; i < nt.count; i++)
        if (rp_rx_take (&rx, skip, 8) == -1)
          probe_die ("the memserver closed the connection");
      continue;
    }
    struct rp_reply r;
    if (rp_reply_decode (h, &r, &why) == -1)
      probe_die (why);
    rx.pos += PROBE_REPLY_HDR;
    if (r.id == PROBE_SLOTS && r.length == 0)
      break;                   /* main's PING: the client is done */
    struct probe_slot *s = r.id < PROBE_SLOTS ? &P.slots[r.id] : NULL;
    if (s == NULL || !s->is_busy ||
        r.length != (r.error == 0 && s->type == NBD_CMD_READ ? s->len : 0))
      probe_die ("a reply that answers no request in flight");
    if (r.length && rp_rx_take (&rx, s->buf, r.length) == -1)
      probe_die ("the memserver closed the connection");
    s->err = r.error ? NBD_EIO : 0;
    probe_nbd_hdr (s);
    iov[2 * n] = (struct iovec) { s->nbd_hdr, 16 };
    iov[2 * n + 1] = (struct iovec) {
      s->buf, s->type == NBD_CMD_READ && !s->err ? s->len : 0 };
    done[n++] = s;
  }
  free (rx.buf);
  return arg;
}

/* A slot, waiting while all are in flight; NULL once the client is over. */
static struct probe_slot *
probe_take (void)
{
  struct probe_slot *s = NULL;

  pthread_mutex_lock (&P.lock);
  while (P.nfree == 0 && !__atomic_load_n (&P.is_over, __ATOMIC_ACQUIRE))
    pthread_cond_wait (&P.freed, &P.lock);
  if (P.nfree) {
    for (unsigned i = 0; i < PROBE_SLOTS && s == NULL; i++)
      if (!P.slots[i].is_busy)
        s = &P.slots[i];
    s->is_busy = true;
    P.nfree--;
  }
  pthread_mutex_unlock (&P.lock);
  return s;
}

/* Answer s at once (FLUSH, or a request refused) and free it. */
static int
probe_reply_now (struct probe_slot *s, uint32_t err)
{
  s->err = err;
  probe_nbd_hdr (s);
  pthread_mutex_lock (&P.nbd_send_lock);
  int w = probe_write_all (P.nbd_fd, s->nbd_hdr, 16);
  pthread_mutex_unlock (&P.nbd_send_lock);
  probe_free (&s, 1);
  return w;
}

/* Send every server's gathered requests.  0 or -1. */
static int
probe_flush (void)
{
  int ret = 0;

  for (unsigned i = 0; i < P.nms; i++) {
    struct probe_ms *ms = &P.ms[i];
    if (ms->niov && rp_sendv_full (ms->fd, ms->iov, (int) ms->niov) == -1)
      ret = -1;
    ms->n = ms->niov = 0;
  }
  return ret;
}

/* The reader: NBD requests -> memserver requests, a writev per server
 * per burst.  Returns when the client disconnects or breaks the
 * protocol.
 */
static void
probe_reader (void)
{
  struct rp_rx rx = { .fd = P.nbd_fd, .buf = malloc (PROBE_RXBUF),
                     .cap = PROBE_RXBUF };
  bool is_full = false;        /* some server has PROBE_BATCH gathered */

  if (rx.buf == NULL)
    probe_die ("out of memory");
  for (;;) {
    /* Send the gathered requests before waiting: for bytes, or for a
     * slot (which only requests already sent can free).
     */
    if (rp_rx_avail (&rx) < 28 || is_full ||
        __atomic_load_n (&P.nfree, __ATOMIC_RELAXED) == 0) {
      if (probe_flush () == -1)
        probe_die ("a memserver connection broke");
      is_full = false;
    }
    if (rp_rx_fill (&rx, 28) == -1)
      break;
    struct rp_nbd_request q;
    rp_nbd_request_decode (rx.buf + rx.pos, &q);
    uint32_t len = q.length;
    uint16_t type = q.type;
    uint64_t off = q.offset;
    if (q.magic != NBD_REQUEST_MAGIC || type == NBD_CMD_DISC)
      break;
    struct probe_slot *s = probe_take ();
    if (s == NULL)
      break;
    memcpy (&s->cookie, q.cookie, 8);
    s->type = type;
    s->len = len;
    rx.pos += 28;
    if (type == NBD_CMD_WRITE && len > PROBE_MAX_LEN)
      break;                   /* cannot skip what it would send */
    if (type == NBD_CMD_WRITE && rp_rx_take (&rx, s->buf, len) == -1)
      break;
    uint64_t idx = off >> PROBE_EXTENT_SHIFT;
    uint64_t in = off & ((1ull << PROBE_EXTENT_SHIFT) - 1);
    if (type == NBD_CMD_FLUSH) {
      /* Every write answered is in a memserver already. */
      if (probe_reply_now (s, 0) == -1)
        break;
      continue;
    }
    if ((type != NBD_CMD_READ && type != NBD_CMD_WRITE) || len == 0 ||
        len > PROBE_MAX_LEN || off > P.size || len > P.size - off ||
        in + len > (1ull << PROBE_EXTENT_SHIFT)) {
      if (probe_reply_now (s, NBD_EINVAL) == -1)
        break;
      continue;
    }
    struct probe_ms *ms = &P.ms[idx % P.nms];
    struct rp_req req = {
      .op = type == NBD_CMD_READ ? RP_OP_READ : RP_OP_WRITE,
      .id = (uint64_t) (s - P.slots), .handle = P.handles[idx],
      .offset = in, .count = type == NBD_CMD_READ ? len : 0,
      .length = type == NBD_CMD_WRITE ? len : 0,
    };
    rp_req_encode (&req, ms->hdrs[ms->n]);
    ms->iov[ms->niov++] = (struct iovec) { ms->hdrs[ms->n], PROBE_REQ_HDR };
    if (type == NBD_CMD_WRITE)
      ms->iov[ms->niov++] = (struct iovec) { s->buf, len };
    if (++ms->n == PROBE_BATCH)
      is_full = true;
  }
  /* What was gathered and not sent is dropped with the client. */
  for (unsigned i = 0; i < P.nms; i++)
    P.ms[i].n = P.ms[i].niov = 0;
  free (rx.buf);
}

int
main (int argc, char **argv)
{
  char *servers = NULL;
  const char *path = NULL;
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  int lfd;

  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp (argv[i], "--servers") == 0)
      servers = argv[i + 1];
    else if (strcmp (argv[i], "--size") == 0)
      P.size = strtoull (argv[i + 1], NULL, 0);
    else if (strcmp (argv[i], "--unix") == 0)
      path = argv[i + 1];
  }
  if (servers == NULL || path == NULL || P.size == 0 || P.size % 4096 ||
      strlen (path) >= sizeof sa.sun_path)
    probe_die ("usage: frontend-probe --servers HOST:PORT[,HOST:PORT...]"
               " --size BYTES (a multiple of 4096) --unix SOCKET");
  probe_ms_open (servers);
  for (unsigned i = 0; i < PROBE_SLOTS; i++)
    if ((P.slots[i].buf = malloc (PROBE_MAX_LEN)) == NULL)
      probe_die ("out of memory");
  pthread_mutex_init (&P.lock, NULL);
  pthread_cond_init (&P.freed, NULL);
  pthread_mutex_init (&P.nbd_send_lock, NULL);
  memcpy (sa.sun_path, path, strlen (path) + 1);
  unlink (path);
  lfd = socket (AF_UNIX, SOCK_STREAM, 0);
  if (lfd < 0 || bind (lfd, (struct sockaddr *) &sa, sizeof sa) == -1 ||
      listen (lfd, 4) == -1)
    probe_die ("cannot listen on the --unix socket");
  printf ("ready\n");
  fflush (stdout);
  for (;;) {
    P.nbd_fd = accept (lfd, NULL, NULL);
    if (P.nbd_fd < 0)
      continue;
    P.is_over = false;
    P.nfree = PROBE_SLOTS;
    for (unsigned i = 0; i < PROBE_SLOTS; i++)
      P.slots[i].is_busy = false;
    if (probe_handshake () == 0) {
      for (unsigned i = 0; i < P.nms; i++)
        if (pthread_create (&P.ms[i].completer, NULL, probe_completer,
                            &P.ms[i]) != 0)
          probe_die ("pthread_create failed");
      probe_reader ();
      /* Each completer answers what is in flight on its connection and
       * ends at the reply to this PING (a memserver answers in order).
       */
      for (unsigned i = 0; i < P.nms; i++) {
        uint8_t ph[PROBE_REQ_HDR];
        struct rp_req ping = { .op = RP_OP_PING, .id = PROBE_SLOTS };
        rp_req_encode (&ping, ph);
        if (probe_write_all (P.ms[i].fd, ph, PROBE_REQ_HDR) == -1)
          probe_die ("a memserver connection broke");
      }
      for (unsigned i = 0; i < P.nms; i++)
        pthread_join (P.ms[i].completer, NULL);
    }
    close (P.nbd_fd);
  }
}
