/* rampool-nbd: the pool's disk served over NBD by rampool itself,
 * without a thread per request.
 *
 *   rampool-nbd [-U SOCKET | -p PORT [-b ADDRESS]] [-P PIDFILE]
 *               [-t THREADS] KEY=VALUE...
 *
 * The same disk as `nbdkit rampool KEY=VALUE...` (the same keys, the
 * same librampool), for the same clients (nbd-client and the kernel's
 * nbd driver, libnbd, qemu), with another shape: per NBD client one
 * thread reads requests (many per recv) and sends each read or write
 * that needs no wait straight to the memservers (rp_aio_submit); the
 * receive side that gets the last answer sends the NBD reply, and
 * replies that come together go out in one sendmsg.  Only what may
 * wait -- a request across extents, a first write, fail-over, an
 * outage, trims and zeroes, encrypt=on, redundancy=ec -- goes to a
 * small pool of threads that run the blocking calls the nbdkit plugin
 * makes.  bench/run-bench.sh measures both.
 *
 * Simple replies only (no structured replies: the kernel's nbd driver
 * does not ask for them); FLUSH is answered at once, as the plugin
 * does (an answered write is on every good copy already); FUA is
 * accepted for the same reason.  Several clients may connect at once
 * (multi-conn): they share the one pool.
 *
 * Runs in the foreground.  SIGTERM or SIGINT: stop listening, wait for
 * the requests in flight, free the pool's memory on the memservers.
 */
#include <config.h>

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sched.h>
#include <unistd.h>

#include "rampool/client.h"
#include "nbd.h"
#include "util.h"

#define NBD_SLOTS 128                  /* requests in flight per client */
#define NBD_MAX_REQUEST (32u << 20)    /* the largest READ or WRITE */
#define NBD_MAX_OPTION 4096u           /* option data we read */
#define NBD_RXBUF (64u * 1024)
#define NBD_REPLY_BATCH 64             /* replies per sendmsg */
#define NBD_THREADS_DEFAULT 8
/* A slot keeps a buffer this large for its next request; a larger one
 * (a large request, up to NBD_MAX_REQUEST) is freed once answered, so
 * that what stays allocated -- and locked, with mlock=on -- is at most
 * NBD_SLOTS times this per connection, not 128 times 32 MiB.
 */
#define NBD_KEEP_BUF (256u * 1024)

struct nbd_client;

/* One request in flight: a slot of its client. */
struct nbd_req {
  struct rp_aio aio;           /* first: done gets it back */
  struct nbd_client *cl;
  struct nbd_req *next;        /* free list, reply or work queue */
  uint8_t cookie[8];           /* as received, echoed */
  uint16_t type, flags;
  uint32_t len;
  uint64_t off;
  uint32_t err;                /* the reply's NBD error */
  uint8_t *buf;                /* cap bytes, grown to the largest
                                  request of this slot */
  uint32_t cap;
  uint8_t hdr[16];             /* the reply header, built here */
};

/* A queue of requests, first in first out: a client's replies to
 * send, and the requests for a thread that may block (settles, on one
 * thread never held up by an outage, since servers wait for those
 * before they count up again; everything else on THREADS threads).
 */
struct nbd_queue {
  struct nbd_req *head, *tail;
};

struct nbd_client {
  int fd;
  pthread_t reader;
  pthread_mutex_t lock;        /* everything below */
  pthread_cond_t freed;        /* a slot came back */
  struct nbd_req *free;
  unsigned nbusy;
  struct nbd_queue out;        /* replies to send */
  bool is_sending;             /* a thread sends them (the others only
                                  queue theirs), or the flusher does */
  bool is_broken;              /* a send failed: drop replies */
  bool is_over;                /* atomic: its thread is done; join it,
                                  then close fd */
  struct nbd_client *next;     /* the server's list */
  struct nbd_client *flush_next; /* S.flushes (under S.lock) */
  /* The batch of replies being sent, kept here so that the flusher can
   * go on with what a receive thread began: touched only by the thread
   * that holds is_sending.
   */
  struct nbd_req *batch[NBD_REPLY_BATCH];
  unsigned nbatch;             /* 0: none taken */
  struct iovec iov[2 * NBD_REPLY_BATCH];
  int iov_at, niov;            /* iov[iov_at, niov) not yet sent */
  struct nbd_req slots[NBD_SLOTS];
};


static struct {
  struct rp_pool *pool;
  struct rp_config cfg;
  uint64_t size;
  int listen_fd;
  pthread_mutex_t lock;        /* the queues, clients, is_stopping */
  pthread_cond_t work, settle;
  struct nbd_queue slow, settles;
  /* Clients whose replies the flusher is to send (nbd_reply), woken
   * through flush_fd (an eventfd).
   */
  struct nbd_client *flushes;
  int flush_fd;
  pthread_t flusher;
  struct nbd_client **flush_cls; /* the flusher's, made before it starts */
  struct pollfd *flush_pfd;
  size_t flush_cap;
  struct nbd_client *clients;
  unsigned nthreads;
  pthread_t *threads;
  pthread_t settler;
  bool is_stopping;
  volatile sig_atomic_t signalled;
} S = {
  .lock = PTHREAD_MUTEX_INITIALIZER,
  .work = PTHREAD_COND_INITIALIZER,
  .settle = PTHREAD_COND_INITIALIZER,
  .listen_fd = -1,
  .flush_fd = -1,
};

static void
nbd_log (int level, const char *msg)
{
  static const char *const names[] = { "error", "warning", "info" };

  if (level <= 2)
    fprintf (stderr, "rampool: %s: %s\n", names[level], msg);
}

static void
nbd_queue_push (struct nbd_queue *q, struct nbd_req *r)
{
  r->next = NULL;
  if (q->tail)
    q->tail->next = r;
  else
    q->head = r;
  q->tail = r;
}

static struct nbd_req *
nbd_queue_pop (struct nbd_queue *q)
{
  struct nbd_req *r = q->head;

  if (r) {
    q->head = r->next;
    if (q->head == NULL)
      q->tail = NULL;
  }
  return r;
}

static uint32_t
nbd_error_of (int err)
{
  switch (err) {
  case 0: return 0;
  case EPERM: case EROFS: return NBD_EPERM;
  case ENOMEM: return NBD_ENOMEM;
  case EINVAL: return NBD_EINVAL;
  case ENOSPC: case EFBIG: return NBD_ENOSPC;
  case ENOTSUP: return NBD_ENOTSUP;
  case ESHUTDOWN: return NBD_ESHUTDOWN;
  default: return NBD_EIO;
  }
}

/* ---- replies ---- */

/* Send the queued replies of cl, and free their slots, until none is
 * left: 1, with is_sending cleared.  Without may_block, stops where the
 * socket takes no more: 0, is_sending still set and the batch kept in
 * cl for whoever goes on (the flusher).  With one_batch (the flusher,
 * which takes its clients in turn), also 0 after one whole batch when
 * more are queued.  Called with cl->lock held by the thread that holds
 * is_sending; returns with it held.
 */
static int
nbd_send_replies (struct nbd_client *cl, bool may_block, bool one_batch)
{
  for (;;) {
    if (cl->nbatch == 0) {
      if (cl->out.head == NULL)
        break;
      cl->niov = cl->iov_at = 0;
      while (cl->nbatch < NBD_REPLY_BATCH && cl->out.head) {
        struct nbd_req *r = nbd_queue_pop (&cl->out);
        cl->batch[cl->nbatch++] = r;
        rp_nbd_simple_reply (r->hdr, r->err, r->cookie);
        cl->iov[cl->niov++] = (struct iovec) { r->hdr, 16 };
        if (r->type == NBD_CMD_READ && r->err == 0)
          cl->iov[cl->niov++] = (struct iovec) { r->buf, r->len };
      }
    }
    bool is_broken = cl->is_broken;
    unsigned n = cl->nbatch;
    int st = -1;
    pthread_mutex_unlock (&cl->lock);
    if (!is_broken)
      st = rp_sendv_at (cl->fd, cl->iov, &cl->iov_at, cl->niov, may_block);
    if (st == 0) {
      pthread_mutex_lock (&cl->lock);
      return 0;
    }
    if (st == -1 && !is_broken) {
      is_broken = true;
      shutdown (cl->fd, SHUT_RDWR);  /* the reader sees it and ends */
    }
    for (unsigned i = 0; i < n; i++)
      if (cl->batch[i]->cap > NBD_KEEP_BUF) {
        free (cl->batch[i]->buf);
        cl->batch[i]->buf = NULL;
        cl->batch[i]->cap = 0;
      }
    pthread_mutex_lock (&cl->lock);
    if (is_broken)
      cl->is_broken = true;
    for (unsigned i = 0; i < n; i++) {
      cl->batch[i]->next = cl->free;
      cl->free = cl->batch[i];
    }
    cl->nbatch = 0;
    cl->nbusy -= n;
    pthread_cond_broadcast (&cl->freed);
    if (one_batch && cl->out.head)
      return 0;
  }
  cl->is_sending = false;
  return 1;
}

/* Request r is complete (r->err set): queue its reply, and send the
 * queue unless another thread is sending it already.  Any thread; does
 * not wait for another thread.  With may_block (the client's reader, a
 * worker) it may block in sendmsg while the client does not read;
 * without (a memserver connection's receive thread, the settler) what
 * the socket does not take at once is left to the flusher, so that
 * one client that reads slowly -- or a reply larger than the socket's
 * send buffer, as a 1 MiB READ is on a Unix socket -- holds up no other
 * reply on the memserver connection.
 */
static void
nbd_reply (struct nbd_req *r, bool may_block)
{
  struct nbd_client *cl = r->cl;

  pthread_mutex_lock (&cl->lock);
  nbd_queue_push (&cl->out, r);
  if (cl->is_sending) {
    pthread_mutex_unlock (&cl->lock);
    return;
  }
  cl->is_sending = true;
  int st = nbd_send_replies (cl, may_block, false);
  pthread_mutex_unlock (&cl->lock);
  if (st == 1)
    return;
  /* Still is_sending, with replies unsent: their slots keep cl alive
   * until the flusher has sent them.
   */
  uint64_t one = 1;
  pthread_mutex_lock (&S.lock);
  cl->flush_next = S.flushes;
  S.flushes = cl;
  pthread_mutex_unlock (&S.lock);
  if (write (S.flush_fd, &one, sizeof one) != sizeof one && errno != EAGAIN)
    abort ();  /* an eventfd write fails only on overflow (EAGAIN) */
}

/* The flusher: sends what nbd_reply left, to all those clients at once,
 * waiting (poll) for any of their sockets to take more, never for one.
 * Its arrays (S.flush_cls, S.flush_pfd: room for S.flush_cap - 1
 * clients and the eventfd) are made before it starts, so that replies
 * need no allocation but when more clients than that wait together.
 */
static void *
nbd_flusher (void *arg)
{
  struct nbd_client **cls = S.flush_cls;
  struct pollfd *pfd = S.flush_pfd;
  size_t n = 0, cap = S.flush_cap;

  (void) arg;
  pthread_mutex_lock (&S.lock);
  for (;;) {
    while (S.flushes) {
      struct nbd_client *cl = S.flushes;
      S.flushes = cl->flush_next;
      if (n + 1 == cap) {
        struct nbd_client **nc = realloc (cls, 2 * cap * sizeof *cls);
        if (nc)
          cls = nc;
        struct pollfd *np = nc ? realloc (pfd, 2 * cap * sizeof *pfd) : NULL;
        if (np == NULL) {
          /* No room to wait for it with the others: send its replies
           * here, the blocking way (out of memory: rare and slow).
           */
          pthread_mutex_unlock (&S.lock);
          pthread_mutex_lock (&cl->lock);
          nbd_send_replies (cl, true, false);
          pthread_mutex_unlock (&cl->lock);
          pthread_mutex_lock (&S.lock);
          continue;
        }
        pfd = np;
        cap *= 2;
      }
      cls[n++] = cl;
    }
    if (n == 0 && S.is_stopping)
      break;
    pthread_mutex_unlock (&S.lock);
    for (size_t i = 0; i < n; i++)
      pfd[i] = (struct pollfd) { .fd = cls[i]->fd, .events = POLLOUT };
    pfd[n] = (struct pollfd) { .fd = S.flush_fd, .events = POLLIN };
    if (poll (pfd, n + 1, -1) > 0 && pfd[n].revents) {
      uint64_t v;
      if (read (S.flush_fd, &v, sizeof v) < 0 && errno != EAGAIN)
        abort ();
    }
    for (size_t i = 0; i < n; ) {
      if (pfd[i].revents == 0) {
        i++;
        continue;
      }
      struct nbd_client *cl = cls[i];
      pthread_mutex_lock (&cl->lock);
      int st = nbd_send_replies (cl, false, true);
      pthread_mutex_unlock (&cl->lock);  /* st 1: cl may go any time */
      if (st == 1) {
        cls[i] = cls[n - 1];
        pfd[i] = pfd[n - 1];
        n--;
      }
      else
        i++;
    }
    pthread_mutex_lock (&S.lock);
  }
  pthread_mutex_unlock (&S.lock);
  free (cls);
  free (pfd);
  return NULL;
}

/* ---- requests ---- */

/* The asynchronous completion (a librampool thread, maybe under a
 * memserver connection's lock: queue only, never block).
 */
static void
nbd_aio_done (struct rp_aio *a)
{
  struct nbd_req *r = (struct nbd_req *) a;

  if (a->needs_thread) {
    pthread_mutex_lock (&S.lock);
    nbd_queue_push (&S.settles, r);
    pthread_cond_signal (&S.settle);
    pthread_mutex_unlock (&S.lock);
    return;
  }
  r->err = nbd_error_of (a->err);
  nbd_reply (r, false);
}

/* Run request r the blocking way (a worker thread). */
static void
nbd_run (struct nbd_req *r)
{
  int ret = 0;

  switch (r->type) {
  case NBD_CMD_READ:
  case NBD_CMD_WRITE:
    ret = rp_aio_run (S.pool, &r->aio) ? -1 : 0;
    errno = r->aio.err;
    break;
  case NBD_CMD_TRIM:
    ret = rp_pool_trim (S.pool, r->len, r->off);
    break;
  case NBD_CMD_WRITE_ZEROES:
    ret = rp_pool_zero (S.pool, r->len, r->off,
                        !(r->flags & NBD_CMD_FLAG_NO_HOLE));
    break;
  default:
    ret = -1;
    errno = EINVAL;
  }
  r->err = ret == 0 ? 0 : nbd_error_of (errno);
  nbd_reply (r, true);
}

static void
nbd_queue_slow (struct nbd_req *r)
{
  pthread_mutex_lock (&S.lock);
  nbd_queue_push (&S.slow, r);
  pthread_cond_signal (&S.work);
  pthread_mutex_unlock (&S.lock);
}

static void *
nbd_worker (void *arg)
{
  (void) arg;
  pthread_mutex_lock (&S.lock);
  for (;;) {
    struct nbd_req *r = nbd_queue_pop (&S.slow);
    if (r == NULL) {
      if (S.is_stopping)
        break;
      pthread_cond_wait (&S.work, &S.lock);
      continue;
    }
    pthread_mutex_unlock (&S.lock);
    nbd_run (r);
    pthread_mutex_lock (&S.lock);
  }
  pthread_mutex_unlock (&S.lock);
  return NULL;
}

/* The settler: settles asynchronous requests that failed somewhere,
 * and every RP_AIO_TICK_MS times out calls pending too long.
 */
static uint64_t
nbd_now_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *
nbd_settler (void *arg)
{
  uint64_t last = nbd_now_ms ();

  (void) arg;
  pthread_mutex_lock (&S.lock);
  for (;;) {
    /* The tick, also while settles keep coming. */
    if (nbd_now_ms () - last >= RP_AIO_TICK_MS) {
      pthread_mutex_unlock (&S.lock);
      rp_pool_aio_expire (S.pool);
      last = nbd_now_ms ();
      pthread_mutex_lock (&S.lock);
    }
    struct nbd_req *r = nbd_queue_pop (&S.settles);
    if (r == NULL) {
      if (S.is_stopping)
        break;
      struct timespec ts;
      clock_gettime (CLOCK_REALTIME, &ts);
      ts.tv_nsec += RP_AIO_TICK_MS * 1000000L;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait (&S.settle, &S.lock, &ts);
      continue;
    }
    pthread_mutex_unlock (&S.lock);
    if (rp_aio_settle (S.pool, &r->aio) == 0) {
      r->err = nbd_error_of (r->aio.err);
      nbd_reply (r, false);
    }
    else
      nbd_queue_slow (r);
    pthread_mutex_lock (&S.lock);
  }
  pthread_mutex_unlock (&S.lock);
  return NULL;
}

/* A free slot of cl, waiting for one if all are in flight (after
 * sending what the reader holds: those may be what frees one).
 */
static struct nbd_req *
nbd_take_slot (struct nbd_client *cl)
{
  struct nbd_req *r;

  pthread_mutex_lock (&cl->lock);
  while (cl->free == NULL) {
    pthread_mutex_unlock (&cl->lock);
    rp_aio_batch_flush ();
    pthread_mutex_lock (&cl->lock);
    if (cl->free)
      break;
    pthread_cond_wait (&cl->freed, &cl->lock);
  }
  r = cl->free;
  cl->free = r->next;
  cl->nbusy++;
  pthread_mutex_unlock (&cl->lock);
  return r;
}

/* r's buffer holds at least len bytes (grown to a power of two, at
 * least 4 KiB: requests of varied small sizes grow it a few times, not
 * at every one).  0, or -1 (ENOMEM).
 */
static int
nbd_slot_room (struct nbd_req *r, uint32_t len)
{
  uint32_t want = 4096;
  uint8_t *b;

  if (len <= r->cap)
    return 0;
  while (want < len)
    want *= 2;                 /* len <= NBD_MAX_REQUEST: no overflow */
  len = want;
  b = realloc (r->buf, len);
  if (b == NULL)
    return -1;
  r->buf = b;
  r->cap = len;
  return 0;
}

/* Answer r from the reader, after sending what it holds (a reply may
 * block on a client that reads no more until those are answered).
 */
static void
nbd_reply_now (struct nbd_req *r)
{
  rp_aio_batch_flush ();
  nbd_reply (r, true);
}

/* Read and start the client's requests until it disconnects, breaks
 * the protocol or goes away.  Returns why it ended, for the log (NULL:
 * a clean NBD_CMD_DISC).  The memserver requests of one burst -- what
 * one recv brought -- go out together (rp_aio_batch_begin, held by the
 * caller), sent before the reader waits for the client's next bytes.
 */
static const char *
nbd_serve_held (struct nbd_client *cl, struct rp_rx *rx)
{
  for (;;) {
    struct rp_nbd_request q;

    if (rp_rx_avail (rx) < NBD_REQ_HDR)
      rp_aio_batch_flush ();
    if (rp_rx_fill (rx, NBD_REQ_HDR) == -1)
      return NULL;             /* closed without NBD_CMD_DISC: as good */
    rp_nbd_request_decode (rx->buf + rx->pos, &q);
    rx->pos += NBD_REQ_HDR;
    uint32_t len = q.length;
    uint16_t type = q.type;
    uint64_t off = q.offset;
    if (q.magic != NBD_REQUEST_MAGIC)
      return "bad request magic";
    if (type == NBD_CMD_DISC)
      return NULL;
    /* A WRITE's payload follows whatever we answer: past the largest
     * request we take, the stream cannot be trusted to be NBD.
     */
    if (type == NBD_CMD_WRITE && len > NBD_MAX_REQUEST)
      return "a WRITE larger than 32 MiB";

    struct nbd_req *r = nbd_take_slot (cl);
    memcpy (r->cookie, q.cookie, 8);
    r->type = type;
    r->flags = q.flags;
    r->off = off;
    r->len = len;
    r->err = 0;

    uint32_t bad = 0;
    if (type != NBD_CMD_READ && type != NBD_CMD_WRITE &&
        type != NBD_CMD_FLUSH && type != NBD_CMD_TRIM &&
        type != NBD_CMD_WRITE_ZEROES)
      bad = NBD_EINVAL;
    else if (type == NBD_CMD_READ && len > NBD_MAX_REQUEST)
      bad = NBD_EINVAL;
    else if (type != NBD_CMD_FLUSH &&
             (off > S.size || len > S.size - off))
      bad = type == NBD_CMD_READ ? NBD_EINVAL : NBD_ENOSPC;
    else if ((type == NBD_CMD_READ || type == NBD_CMD_WRITE) &&
             nbd_slot_room (r, len) == -1)
      bad = NBD_ENOMEM;
    if (type == NBD_CMD_WRITE && rp_rx_avail (rx) < len)
      rp_aio_batch_flush ();   /* the payload's rest: a blocking recv */
    if (type == NBD_CMD_WRITE &&
        rp_rx_take (rx, bad ? NULL : r->buf, len) == -1) {
      r->err = NBD_EIO;
      nbd_reply_now (r);       /* frees the slot; the client is gone */
      return "the client went away";
    }
    if (bad || type == NBD_CMD_FLUSH || len == 0) {
      r->err = bad;
      nbd_reply_now (r);
      continue;
    }
    if (type == NBD_CMD_READ || type == NBD_CMD_WRITE) {
      r->aio.op = type == NBD_CMD_READ ? RP_AIO_READ : RP_AIO_WRITE;
      r->aio.buf = r->buf;
      r->aio.count = len;
      r->aio.offset = off;
      r->aio.done = nbd_aio_done;
      r->aio.opaque = r;
      int s = rp_aio_submit (S.pool, &r->aio);
      if (s == 1)
        continue;
      if (s == 0) {
        r->err = nbd_error_of (r->aio.err);
        nbd_reply_now (r);
        continue;
      }
    }
    nbd_queue_slow (r);
  }
}

static const char *
nbd_serve (struct nbd_client *cl, struct rp_rx *rx)
{
  struct rp_aio_batch held;
  const char *why;

  rp_aio_batch_begin (&held);
  why = nbd_serve_held (cl, rx);
  rp_aio_batch_end ();
  return why;
}

/* ---- handshake (fixed newstyle) ---- */

static uint16_t
nbd_transmission_flags (void)
{
  return NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
    NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
    NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_FAST_ZERO;
}

/* INFO or GO (data[0..len)): the export's size and flags, and block
 * sizes if asked for.  1 when answered with the export, 0 when
 * refused as invalid, -1 if the client must be dropped.
 */
static int
nbd_opt_info (int fd, uint32_t opt, const uint8_t *data, uint32_t len)
{
  uint32_t nlen;
  uint16_t ninfo;
  bool wants_bs = false;

  if (len < 6)
    return rp_nbd_opt_reply (fd, opt, NBD_REP_ERR_INVALID, NULL, 0);
  memcpy (&nlen, data, 4);
  nlen = be32toh (nlen);
  if (nlen > len - 6)
    return rp_nbd_opt_reply (fd, opt, NBD_REP_ERR_INVALID, NULL, 0);
  memcpy (&ninfo, data + 4 + nlen, 2);
  ninfo = be16toh (ninfo);
  if (6 + nlen + 2u * ninfo != len)
    return rp_nbd_opt_reply (fd, opt, NBD_REP_ERR_INVALID, NULL, 0);
  /* Any name: there is one export. */
  for (unsigned i = 0; i < ninfo; i++) {
    uint16_t t;
    memcpy (&t, data + 6 + nlen + 2 * i, 2);
    wants_bs |= be16toh (t) == NBD_INFO_BLOCK_SIZE;
  }
  uint8_t info[12];
  uint16_t t = htobe16 (NBD_INFO_EXPORT);
  uint16_t fl = htobe16 (nbd_transmission_flags ());
  uint64_t size = htobe64 (S.size);
  memcpy (info, &t, 2);
  memcpy (info + 2, &size, 8);
  memcpy (info + 10, &fl, 2);
  if (rp_nbd_opt_reply (fd, opt, NBD_REP_INFO, info, sizeof info) == -1)
    return -1;
  if (wants_bs) {
    uint8_t bs[14];
    uint32_t v;
    t = htobe16 (NBD_INFO_BLOCK_SIZE);
    memcpy (bs, &t, 2);
    v = htobe32 (1);
    memcpy (bs + 2, &v, 4);
    v = htobe32 (4096);
    memcpy (bs + 6, &v, 4);
    v = htobe32 (NBD_MAX_REQUEST);
    memcpy (bs + 10, &v, 4);
    if (rp_nbd_opt_reply (fd, opt, NBD_REP_INFO, bs, sizeof bs) == -1)
      return -1;
  }
  return rp_nbd_opt_reply (fd, opt, NBD_REP_ACK, NULL, 0) == -1 ? -1 : 1;
}

/* 1: go on to transmission; 0: the client ended the handshake; -1: a
 * broken client.
 */
static int
nbd_handshake (int fd)
{
  uint8_t data[NBD_MAX_OPTION];
  uint32_t cflags;
  struct iovec iov;

  if (rp_nbd_greet (fd, &cflags) == -1)
    return -1;
  for (;;) {
    uint32_t id, len;
    if (rp_nbd_read_option (fd, &id, &len) == -1)
      return -1;
    if (len > sizeof data) {
      /* Drop it, say so, go on. */
      for (uint32_t left = len; left; ) {
        uint32_t k = left < sizeof data ? left : sizeof data;
        if (rp_read_full (fd, data, k) == -1)
          return -1;
        left -= k;
      }
      if (id == NBD_OPT_EXPORT_NAME ||
          rp_nbd_opt_reply (fd, id, NBD_REP_ERR_TOO_BIG, NULL, 0) == -1)
        return -1;
      continue;
    }
    if (len && rp_read_full (fd, data, len) == -1)
      return -1;
    switch (id) {
    case NBD_OPT_EXPORT_NAME: {
      uint8_t e[10 + 124] = { 0 };
      uint64_t size = htobe64 (S.size);
      uint16_t fl = htobe16 (nbd_transmission_flags ());
      memcpy (e, &size, 8);
      memcpy (e + 8, &fl, 2);
      iov = (struct iovec) {
        e, (cflags & NBD_FLAG_NO_ZEROES) ? 10 : sizeof e };
      return rp_sendv_full (fd, &iov, 1) == -1 ? -1 : 1;
    }
    case NBD_OPT_ABORT:
      rp_nbd_opt_reply (fd, id, NBD_REP_ACK, NULL, 0);
      return 0;
    case NBD_OPT_LIST: {
      uint32_t zero = 0;       /* one export, named "" */
      if (len != 0) {
        if (rp_nbd_opt_reply (fd, id, NBD_REP_ERR_INVALID, NULL, 0) == -1)
          return -1;
        continue;
      }
      if (rp_nbd_opt_reply (fd, id, NBD_REP_SERVER, &zero, 4) == -1 ||
          rp_nbd_opt_reply (fd, id, NBD_REP_ACK, NULL, 0) == -1)
        return -1;
      continue;
    }
    case NBD_OPT_INFO:
    case NBD_OPT_GO: {
      int r = nbd_opt_info (fd, id, data, len);
      if (r == -1)
        return -1;
      if (r == 1 && id == NBD_OPT_GO)
        return 1;
      continue;
    }
    default:
      if (rp_nbd_opt_reply (fd, id, NBD_REP_ERR_UNSUP, NULL, 0) == -1)
        return -1;
    }
  }
}

/* ---- clients ---- */

static void
nbd_io_flusher (void)
{
  static bool logged;

  if (prctl (PR_SET_IO_FLUSHER, 1, 0, 0, 0) == -1 &&
      !__atomic_exchange_n (&logged, true, __ATOMIC_RELAXED))
    fprintf (stderr, "rampool: info: PR_SET_IO_FLUSHER refused (%s):"
             " without CAP_SYS_RESOURCE the kernel may throttle this swap"
             " server's threads in reclaim; see rampool-nbd(8)\n",
             strerror (errno));
}

static void *
nbd_client_thread (void *arg)
{
  struct nbd_client *cl = arg;
  struct rp_rx rx = { .fd = cl->fd, .buf = malloc (NBD_RXBUF),
                      .cap = NBD_RXBUF };
  const char *why = "out of memory";

  nbd_io_flusher ();
  if (rx.buf) {
    int h = nbd_handshake (cl->fd);
    why = h == 1 ? nbd_serve (cl, &rx) : h == 0 ? NULL
      : "broken handshake";
  }
  free (rx.buf);
  if (why)
    fprintf (stderr, "rampool: info: client: %s\n", why);
  /* Every request answered (or dropped) before the slots go. */
  pthread_mutex_lock (&cl->lock);
  while (cl->nbusy)
    pthread_cond_wait (&cl->freed, &cl->lock);
  pthread_mutex_unlock (&cl->lock);
  __atomic_store_n (&cl->is_over, true, __ATOMIC_RELEASE);
  return NULL;
}

static struct nbd_client *
nbd_client_new (int fd)
{
  struct nbd_client *cl = calloc (1, sizeof *cl);

  if (cl == NULL)
    return NULL;
  cl->fd = fd;
  pthread_mutex_init (&cl->lock, NULL);
  pthread_cond_init (&cl->freed, NULL);
  for (unsigned i = 0; i < NBD_SLOTS; i++) {
    cl->slots[i].cl = cl;
    cl->slots[i].next = cl->free;
    cl->free = &cl->slots[i];
  }
  return cl;
}

static void
nbd_client_free (struct nbd_client *cl)
{
  for (unsigned i = 0; i < NBD_SLOTS; i++)
    free (cl->slots[i].buf);
  pthread_mutex_destroy (&cl->lock);
  pthread_cond_destroy (&cl->freed);
  free (cl);
}

/* Join and free the clients that have ended (all with every). */
static void
nbd_reap_clients (bool every)
{
  pthread_mutex_lock (&S.lock);
  for (struct nbd_client **pp = &S.clients; *pp; ) {
    struct nbd_client *cl = *pp;
    if (!every && !__atomic_load_n (&cl->is_over, __ATOMIC_ACQUIRE)) {
      pp = &cl->next;
      continue;
    }
    *pp = cl->next;
    pthread_mutex_unlock (&S.lock);
    /* The fd stays open until the join: never a recycled number. */
    shutdown (cl->fd, SHUT_RDWR);
    pthread_join (cl->reader, NULL);
    close (cl->fd);
    nbd_client_free (cl);
    pthread_mutex_lock (&S.lock);
    pp = &S.clients;
  }
  pthread_mutex_unlock (&S.lock);
}

/* ---- start-up ---- */

static void
nbd_on_signal (int sig)
{
  S.signalled = sig;
}

static int
nbd_listen_unix (const char *path)
{
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  int fd;

  if (strlen (path) >= sizeof a.sun_path) {
    fprintf (stderr, "rampool-nbd: -U %s: path too long\n", path);
    return -1;
  }
  strcpy (a.sun_path, path);
  unlink (path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1 || bind (fd, (struct sockaddr *) &a, sizeof a) == -1 ||
      listen (fd, 16) == -1) {
    fprintf (stderr, "rampool-nbd: -U %s: %s\n", path, strerror (errno));
    if (fd != -1)
      close (fd);
    return -1;
  }
  return fd;
}

static int
nbd_listen_tcp (const char *addr, const char *port)
{
  struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                            .ai_flags = AI_PASSIVE }, *ai;
  int fd = -1, one = 1, rc;

  rc = getaddrinfo (addr, port, &hints, &ai);
  if (rc != 0) {
    fprintf (stderr, "rampool-nbd: -b %s -p %s: %s\n", addr, port,
             gai_strerror (rc));
    return -1;
  }
  fd = socket (ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1 ||
      setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1 ||
      bind (fd, ai->ai_addr, ai->ai_addrlen) == -1 || listen (fd, 16) == -1) {
    fprintf (stderr, "rampool-nbd: -b %s -p %s: %s\n", addr, port,
             strerror (errno));
    if (fd != -1)
      close (fd);
    fd = -1;
  }
  freeaddrinfo (ai);
  return fd;
}

static void
nbd_usage (FILE *fp)
{
  fprintf (fp,
"usage: rampool-nbd (-U SOCKET | -p PORT [-b ADDRESS]) [-P PIDFILE]\n"
"                   [-t THREADS] KEY=VALUE...\n"
"\n"
"Serves the pool's disk over NBD (see rampool-nbd(8)).\n"
"  -U SOCKET   listen on this Unix socket\n"
"  -p PORT     listen on this TCP port (10809 is NBD's)\n"
"  -b ADDRESS  with -p: the address to listen on (default 127.0.0.1)\n"
"  -P PIDFILE  written once the pool is open and the socket listens\n"
"  -t THREADS  threads for requests that may wait (default %d)\n"
"\n"
"Keys (as for nbdkit rampool):\n%s\n", NBD_THREADS_DEFAULT,
           rp_config_help (RP_FRONT_NBD));
}

int
main (int argc, char **argv)
{
  const char *unix_path = NULL, *port = NULL, *bind_addr = "127.0.0.1";
  const char *pidfile = NULL;
  char err[1024];
  int opt;

  S.nthreads = NBD_THREADS_DEFAULT;
  rp_set_log (nbd_log);
  rp_config_init (&S.cfg);
  while ((opt = getopt (argc, argv, "+U:p:b:P:t:h")) != -1) {
    switch (opt) {
    case 'U': unix_path = optarg; break;
    case 'p': port = optarg; break;
    case 'b': bind_addr = optarg; break;
    case 'P': pidfile = optarg; break;
    case 't': {
      char *end;
      unsigned long t = strtoul (optarg, &end, 10);
      if (*optarg == '\0' || *end || t < 1 || t > 256) {
        fprintf (stderr, "rampool-nbd: -t %s: a number of threads, 1-256\n",
                 optarg);
        return 2;
      }
      S.nthreads = t;
      break;
    }
    case 'h': nbd_usage (stdout); return 0;
    default: nbd_usage (stderr); return 2;
    }
  }
  if ((unix_path == NULL) == (port == NULL)) {
    fprintf (stderr, "rampool-nbd: give one of -U SOCKET and -p PORT\n");
    return 2;
  }
  for (int i = optind; i < argc; i++) {
    char *eq = strchr (argv[i], '=');
    if (eq == NULL) {
      fprintf (stderr, "rampool-nbd: %s: not KEY=VALUE\n", argv[i]);
      return 2;
    }
    *eq = '\0';
    if (rp_config_set_for (&S.cfg, RP_FRONT_NBD, argv[i], eq + 1, err,
                           sizeof err) == -1) {
      fprintf (stderr, "rampool-nbd: %s\n", err);
      return 2;
    }
  }
  if (rp_config_check (&S.cfg, err, sizeof err) == -1) {
    fprintf (stderr, "rampool-nbd: %s\n", err);
    return 2;
  }
  S.size = S.cfg.size_bytes;

  /* The swap server is the last thing the OOM killer should pick. */
  FILE *fp = fopen ("/proc/self/oom_score_adj", "w");
  if (fp == NULL || fprintf (fp, "-900\n") < 0 || fclose (fp) == EOF)
    fprintf (stderr, "rampool: info: cannot lower oom_score_adj: %s\n",
             strerror (errno));
  if (S.cfg.is_mlocked &&
      mlockall (MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) == -1)
    fprintf (stderr, "rampool: error: mlock=on: mlockall: %s (raise"
             " RLIMIT_MEMLOCK)\n", strerror (errno));
  if (S.cfg.realtime_prio > 0) {
    struct sched_param sp = { .sched_priority = S.cfg.realtime_prio };
    if (sched_setscheduler (0, SCHED_FIFO, &sp) == -1)
      fprintf (stderr, "rampool: error: realtime=%u: sched_setscheduler:"
               " %s (needs CAP_SYS_NICE or RLIMIT_RTPRIO)\n",
               S.cfg.realtime_prio, strerror (errno));
  }
  nbd_io_flusher ();

  /* SIGTERM and SIGINT reach the main thread only: every other thread
   * (the pool's too) is started with them blocked.
   */
  struct sigaction sa = { .sa_handler = nbd_on_signal };
  sigset_t stops;
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGINT, &sa, NULL);
  signal (SIGPIPE, SIG_IGN);
  sigemptyset (&stops);
  sigaddset (&stops, SIGTERM);
  sigaddset (&stops, SIGINT);
  pthread_sigmask (SIG_BLOCK, &stops, NULL);

  S.listen_fd = unix_path ? nbd_listen_unix (unix_path)
    : nbd_listen_tcp (bind_addr, port);
  if (S.listen_fd == -1)
    return 1;
  S.pool = rp_pool_open (&S.cfg, err, sizeof err);
  if (S.pool == NULL) {
    fprintf (stderr, "rampool-nbd: cannot open the pool: %s\n", err);
    return 1;
  }
  S.threads = calloc (S.nthreads, sizeof *S.threads);
  if (S.threads == NULL)
    return 1;
  for (unsigned i = 0; i < S.nthreads; i++)
    if (rp_thread_start (&S.threads[i], 256 * 1024, nbd_worker, NULL) != 0) {
      fprintf (stderr, "rampool-nbd: cannot start threads\n");
      return 1;
    }
  S.flush_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  S.flush_cap = 64;
  S.flush_cls = malloc (S.flush_cap * sizeof *S.flush_cls);
  S.flush_pfd = malloc (S.flush_cap * sizeof *S.flush_pfd);
  if (S.flush_fd == -1 || S.flush_cls == NULL || S.flush_pfd == NULL ||
      rp_thread_start (&S.flusher, 256 * 1024, nbd_flusher, NULL) != 0) {
    fprintf (stderr, "rampool-nbd: cannot start the reply flusher: %s\n",
             strerror (errno));
    return 1;
  }
  if (rp_thread_start (&S.settler, 256 * 1024, nbd_settler, NULL) != 0) {
    fprintf (stderr, "rampool-nbd: cannot start threads\n");
    return 1;
  }
  if (pidfile) {
    FILE *pf = fopen (pidfile, "w");
    if (pf == NULL || fprintf (pf, "%d\n", (int) getpid ()) < 0 ||
        fclose (pf) == EOF) {
      fprintf (stderr, "rampool-nbd: -P %s: %s\n", pidfile, strerror (errno));
      return 1;
    }
  }
  pthread_sigmask (SIG_UNBLOCK, &stops, NULL);
  fprintf (stderr, "rampool: info: serving %" PRIu64 " bytes on %s%s%s\n",
           S.size, unix_path ? unix_path : bind_addr, unix_path ? "" : ":",
           unix_path ? "" : port);

  while (!S.signalled) {
    struct pollfd pfd = { .fd = S.listen_fd, .events = POLLIN };
    if (poll (&pfd, 1, 1000) <= 0) {
      nbd_reap_clients (false);
      continue;
    }
    int fd = accept4 (S.listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd == -1)
      continue;
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct nbd_client *cl = nbd_client_new (fd);
    int started = -1;
    if (cl) {
      pthread_sigmask (SIG_BLOCK, &stops, NULL);
      started = rp_thread_start (&cl->reader, 256 * 1024, nbd_client_thread,
                                 cl);
      pthread_sigmask (SIG_UNBLOCK, &stops, NULL);
    }
    if (started != 0) {
      fprintf (stderr, "rampool: warning: cannot serve a new client:"
               " out of memory or threads\n");
      close (fd);
      free (cl);
      continue;
    }
    pthread_mutex_lock (&S.lock);
    cl->next = S.clients;
    S.clients = cl;
    pthread_mutex_unlock (&S.lock);
    nbd_reap_clients (false);
  }

  fprintf (stderr, "rampool: info: signal %d: stopping\n", (int) S.signalled);
  close (S.listen_fd);
  if (unix_path)
    unlink (unix_path);
  nbd_reap_clients (true);
  pthread_mutex_lock (&S.lock);
  S.is_stopping = true;
  pthread_cond_broadcast (&S.work);
  pthread_cond_broadcast (&S.settle);
  pthread_mutex_unlock (&S.lock);
  for (unsigned i = 0; i < S.nthreads; i++)
    pthread_join (S.threads[i], NULL);
  pthread_join (S.settler, NULL);
  {
    uint64_t one = 1;
    if (write (S.flush_fd, &one, sizeof one) != sizeof one)
      abort ();
  }
  pthread_join (S.flusher, NULL);
  close (S.flush_fd);
  free (S.threads);
  rp_pool_close (S.pool);
  rp_config_free (&S.cfg);
  if (pidfile)
    unlink (pidfile);
  return 0;
}
