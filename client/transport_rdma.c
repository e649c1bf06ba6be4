/* RDMA transport (transport.h; the binding is docs/protocol.md section
 * 13): one reliable-connected queue pair per connection, set up with
 * librdmacm on a private event channel.  Every frame but READ's and
 * WRITE's travels two-sided, one frame per message: the request is
 * encoded into its slot's send buffer and SENT into a receive buffer
 * the server keeps posted, and each reply arrives the same way.  READ
 * and WRITE have no frame at all: their data moves one-sided
 * (IBV_WR_RDMA_READ/WRITE) between a bounce buffer here and the
 * extent's memory on the server, addressed by the rkey and offset the
 * ALLOC reply gave (call->rkey, call->raddr_64k), and the memserver's
 * CPU does nothing for them; the work completion is the reply.
 *
 * Memory.  Everything the device touches is allocated and registered
 * once, at connect, in one mapping and one registration, never on the
 * I/O path (for swap, an allocation there could wait on the very
 * page-out it serves): per connection
 *   - a receive buffer of RP_RDMA_MAX_MSG (4 KiB, the largest reply or
 *     notice) per request slot, and two more for notices,
 *   - the bounce pool for one-sided data, rdma-buffer= bytes (8 MiB by
 *     default),
 *   - a send buffer of RP_RDMA_MAX_REQ (256 bytes, the largest request)
 *     per request slot.
 * Registration pins it: with the defaults (inflight=64, rdma-buffer=8M)
 * a connection locks 8.27 MiB, and nbdkit locks that times
 * connections= times the number of rdma:// servers (3 servers, 2
 * connections: 50 MiB), against RLIMIT_MEMLOCK unless it has
 * CAP_IPC_LOCK.  The registration grants local write only: no server
 * can read or write this host's memory.  The engine's buffers are never
 * registered: a WRITE's payload is copied into the pool before it is
 * posted, a READ lands in the pool and is copied to call->rbuf when it
 * completes.
 *
 * The bounce pool is a ring.  A READ or WRITE takes the next
 * contiguous span (64-byte aligned) after the newest one, wrapping to
 * the start when the end has no room; a span is freed when its
 * operation completes, and the ring's tail passes every freed span at
 * its front.  Completions of one RC send queue come in the order the
 * work was posted, so spans free in the order they were taken and the
 * ring never fragments (a bitmap with first fit would only add search
 * time); an out-of-order free would merely hold space until the older
 * ones free.  A request that finds no room waits for completions, as
 * it does for every other resource here.
 *
 * Flow control, all under `lock`, all waited for on `cond` by the one
 * sender (conn.c's send_lock), with the connection's timeout (a server
 * that stops answering must not hold the send lock for ever: the
 * monitor's PINGs go through it too):
 *   - credits: two-sided requests the server can take now (its accept
 *     said how many receive buffers it keeps posted); one is used by
 *     every SEND and returned by every reply;
 *   - a slot's send buffer is reused only once its previous SEND has
 *     completed (the reply can overtake the SEND's completion);
 *   - send queue entries (2 per slot: a one-sided operation and a SEND
 *     whose completion is still coming), pool space.
 *
 * Ordering (transport.h: requests take effect in the order sent).  One
 * queue pair executes in order what it is posted, and the server puts a
 * two-sided request after the one-sided operations posted before it.
 * Two cases are not covered by that, and are made so here:
 *   - an RDMA READ may return its data after a later WRITE or SEND has
 *     been executed: a WRITE or SEND posted while READs are in flight
 *     carries IBV_SEND_FENCE (the device holds it until they are done);
 *   - the server's CPU executes a two-sided FREE or ZERO later than its
 *     device executes a one-sided operation posted after it: a READ or
 *     WRITE waits until every FREE and ZERO sent before it is answered.
 *
 * The receive side is a thread per connection that sleeps in poll() on
 * the completion channel, the CM event channel and an eventfd that
 * shutdown writes.  Work request ids say what completed: a receive
 * buffer (its index), a slot's SEND, or a slot's one-sided operation
 * (the slot's index; the slot's state here names the call's id, its
 * span and its size).  A reply is decoded, checked against the slot
 * (a reply for a slot that sent no SEND ends the connection), copied to
 * call->rbuf, and its buffer reposted before the call completes; a
 * notice (RECLAIM, DRAIN: sent unasked) goes to conn_notice and returns
 * no credit, and two receive buffers beyond the credits keep room for
 * notices.  A one-sided completion becomes a reply: OK, the call's id,
 * READ's count or 0 bytes, and the free bytes of the last two-sided
 * reply.  A
 * remote access error (or an invalid request) on a READ or WRITE means
 * the server has no such extent for us (FREE and lease expiry
 * deregister it): that call is answered ENOENT, so the engine marks the
 * copy stale, and the connection ends (its queue pair is in error).
 * Any other error, a flush, DISCONNECTED or a shutdown ends it: conn_end
 * once, which fails every call still in flight.
 *
 * Connect fails, with what to do, where librdmacm alone would leave an
 * operator guessing: no RDMA device at all or none toward the server
 * (the rxe command), a reject (its rp_rdma_reject reason, or nobody
 * listening), a refused registration (the locked-memory limit), and an
 * accept that grants us no RDMA READ (the device would hold every READ
 * for ever without an error).
 *
 * Names here start with rdmat_ (RDMAT_): rdma_ is librdmacm's.
 *
 * Not here: the handshake (donor.c sends HELLO and AUTH like any
 * request); a shared receive queue or completion queue across
 * connections; inline sends; busy polling (every completion costs a
 * wakeup of the receive thread).
 */
#include <config.h>

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "conn.h"
#include "util.h"

/* What a work request id names: its high half is one of these, its low
 * half an index (of a receive buffer, or of a request slot).  A slot's
 * SEND and its one-sided operation are told apart by the tag, not by
 * the slot's state: a SEND's completion may arrive after its reply has
 * freed the slot and a READ has taken it.
 */
#define RDMAT_WR_RECV      (UINT64_C (1) << 32)
#define RDMAT_WR_SEND      (UINT64_C (2) << 32)
#define RDMAT_WR_ONESIDED  (UINT64_C (3) << 32)
#define RDMAT_WR_TAG       (UINT64_C (0xffffffff) << 32)

/* RDMA READs in flight we ask for (the device may grant fewer). */
#define RDMAT_INITIATOR_DEPTH 16
/* Spans of the bounce pool start on cache lines. */
#define RDMAT_SPAN_ALIGN 64
/* Work completions taken from the CQ at once. */
#define RDMAT_POLL_BATCH 16
/* Receive buffers beyond the credits, for notices (the server sends
 * them unasked, protocol.md 5.1): without them a notice could find
 * every buffer holding a reply and wait in receiver-not-ready retries.
 */
#define RDMAT_NOTICE_RECVS 2

/* What a request slot (conn.c's, same index) has posted. */
enum rdmat_kind {
  RDMAT_IDLE,                  /* nothing that completes its call */
  RDMAT_SEND,                  /* a two-sided request: a reply comes */
  RDMAT_READ,                  /* a one-sided READ into its span */
  RDMAT_WRITE,                 /* a one-sided WRITE from its span */
};

/* The transport's view of a request slot.  Guarded by rdmat.lock. */
struct rdmat_slot {
  enum rdmat_kind kind;        /* for the slot's current call */
  uint64_t id;                 /* that call's request id (conn.h) */
  uint32_t count;              /* READ/WRITE: bytes */
  unsigned span;               /* READ/WRITE of count > 0: its span, an
                                  index in rdmat.spans */
  bool is_barrier;             /* SEND of a FREE or ZERO: one-sided
                                  operations wait for its reply */
  bool is_tx_busy;             /* the slot's send buffer is posted and
                                  its SEND has not completed */
};

/* A piece of the bounce pool taken by a one-sided operation.  Guarded
 * by rdmat.lock.
 */
struct rdmat_span {
  size_t off, len;             /* in the pool, bytes */
  bool is_done;                /* its operation completed: the ring's
                                  tail may pass it */
};

/* An RDMA connection's private state (transport.priv). */
struct rdmat {
  /* Made by connect, fixed until close. */
  struct rdma_event_channel *cm_channel; /* this connection's CM events;
                                  non-blocking */
  struct rdma_cm_id *id;       /* the connection; id->qp its RC queue
                                  pair */
  struct ibv_pd *pd;
  struct ibv_comp_channel *comp_channel; /* the CQ's wakeups;
                                  non-blocking */
  struct ibv_cq *cq;           /* send and receive completions */
  uint8_t *mem;                /* mmap'd, mem_len bytes: receive buffers,
                                  the pool, then send buffers */
  size_t mem_len;
  struct ibv_mr *mr;           /* mem, local write access only */
  uint8_t *recv_buf;           /* nrecv x RP_RDMA_MAX_MSG */
  uint8_t *send_buf;           /* nslots x RP_RDMA_MAX_REQ, slot i's at i */
  uint8_t *pool;               /* pool_len bytes of one-sided data */
  size_t pool_len;             /* bytes; 0: no READ or WRITE */
  unsigned nslots;             /* conn's request slots */
  unsigned nrecv;              /* receive buffers kept posted */
  unsigned sq_depth;           /* send queue entries */
  uint32_t max_req;            /* the largest request the server takes,
                                  bytes */
  unsigned timeout_ms;         /* the longest the sender waits for room */
  int wake_fd;                 /* eventfd: shutdown wakes the receiver */
  struct conn *conn;           /* whose replies the receiver delivers;
                                  set by start */
  pthread_t receiver;
  bool has_receiver;           /* started: close joins it */

  /* The sender and the receive side meet here. */
  pthread_mutex_t lock;
  pthread_cond_t cond;         /* CLOCK_MONOTONIC; signalled when a
                                  credit, a send buffer, a send queue
                                  entry or pool space frees, a barrier
                                  is answered, or on shutdown */
  bool is_shut;                /* shutdown ran: the sender gives up */
  unsigned credits;            /* two-sided requests the server can
                                  take now */
  unsigned sq_used;            /* send queue entries posted, not
                                  completed */
  unsigned reads;              /* RDMA READs posted, not completed */
  unsigned barriers;           /* FREE/ZERO sent, not answered */
  uint64_t free_bytes;         /* from the last two-sided reply */
  struct rdmat_slot *slots;    /* nslots */
  struct rdmat_span *spans;    /* ring of nslots entries, the oldest at
                                  span_first, span_count of them */
  unsigned span_first, span_count;
};

static int __attribute__ ((format (printf, 4, 5)))
rdmat_fail (char *err, size_t errlen, int errnum, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (err, errlen, fmt, ap);
  va_end (ap);
  errno = errnum;
  return -1;
}

static int
rdmat_set_nonblock (int fd)
{
  int flags = fcntl (fd, F_GETFL);

  return flags == -1 ? -1 : fcntl (fd, F_SETFL, flags | O_NONBLOCK);
}

/* Is there an RDMA device at all?  Without one librdmacm only says
 * ENODEV (or the kernel has no RDMA support: ENOSYS), which tells an
 * operator nothing: say what is missing and how to get it.
 */
static int
rdmat_check_device (char *err, size_t errlen)
{
  int n = 0;
  struct ibv_device **devs = ibv_get_device_list (&n);
  int e = errno;

  if (devs)
    ibv_free_device_list (devs);
  if (devs && n > 0)
    return 0;
  /* Short enough for rampool status's column and the pool's error. */
  return rdmat_fail (err, errlen, ENODEV, "no RDMA device (%s): load the"
                     " adapter's driver, or for Soft-RoCE: rdma link add"
                     " rxe0 type rxe netdev DEV",
                     devs ? "none found" : e == ENOSYS
                     ? "no ib_uverbs in the kernel" : strerror (e));
}

/* There are RDMA devices, but none on the interface that reaches
 * host (librdmacm: ENODEV).
 */
static int
rdmat_fail_nodev (const char *host, char *err, size_t errlen)
{
  return rdmat_fail (err, errlen, ENODEV, "no RDMA device on the interface"
                     " toward %s (rdma link; for Soft-RoCE: rdma link add"
                     " rxe0 type rxe netdev DEV)", host);
}

/* Undo whatever connect made, in reverse (close too, after the
 * receiver has ended).
 */
static void
rdmat_free (struct rdmat *rd)
{
  if (rd->id && rd->id->qp)
    rdma_destroy_qp (rd->id);
  if (rd->mr)
    ibv_dereg_mr (rd->mr);
  if (rd->mem)
    munmap (rd->mem, rd->mem_len);
  if (rd->cq)
    ibv_destroy_cq (rd->cq);
  if (rd->comp_channel)
    ibv_destroy_comp_channel (rd->comp_channel);
  if (rd->pd)
    ibv_dealloc_pd (rd->pd);
  if (rd->id)
    rdma_destroy_id (rd->id);
  if (rd->cm_channel)
    rdma_destroy_event_channel (rd->cm_channel);
  if (rd->wake_fd >= 0)
    close (rd->wake_fd);
  pthread_mutex_destroy (&rd->lock);
  pthread_cond_destroy (&rd->cond);
  free (rd->slots);
  free (rd->spans);
  free (rd);
}

/* A fresh struct rdmat for hello's slots and pool, nothing connected.
 * NULL with errno.
 */
static struct rdmat *
rdmat_new (const struct transport_hello *hello, unsigned timeout_ms)
{
  struct rdmat *rd = calloc (1, sizeof *rd);
  pthread_condattr_t attr;

  if (rd == NULL)
    return NULL;
  pthread_mutex_init (&rd->lock, NULL);
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&rd->cond, &attr);
  pthread_condattr_destroy (&attr);
  rd->wake_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  rd->nslots = hello->nslots;
  rd->timeout_ms = timeout_ms;
  /* Whole pages: the mapping is page-aligned, and so is the pool. */
  rd->pool_len = (hello->buffer_bytes + 4095) & ~(size_t) 4095;
  rd->slots = calloc (rd->nslots, sizeof *rd->slots);
  rd->spans = calloc (rd->nslots, sizeof *rd->spans);
  if (rd->wake_fd == -1 || rd->slots == NULL || rd->spans == NULL) {
    int e = errno;
    rdmat_free (rd);
    errno = e;
    return NULL;
  }
  return rd;
}

/* Milliseconds until deadline_ms, at least 1 (librdmacm's timeouts). */
static int
rdmat_left_ms (uint64_t deadline_ms)
{
  uint64_t now = rp_now_ms ();

  return now + 1 < deadline_ms ? (int) (deadline_ms - now) : 1;
}

/* The next CM event on rd's channel by deadline_ms.  0, or -1 with
 * errno (ETIMEDOUT).
 */
static int
rdmat_next_event (struct rdmat *rd, uint64_t deadline_ms,
                  struct rdma_cm_event **ev)
{
  for (;;) {
    struct pollfd pfd = { .fd = rd->cm_channel->fd, .events = POLLIN };
    uint64_t now;

    if (rdma_get_cm_event (rd->cm_channel, ev) == 0)
      return 0;
    if (errno != EAGAIN && errno != EINTR)
      return -1;
    now = rp_now_ms ();
    if (now >= deadline_ms) {
      errno = ETIMEDOUT;
      return -1;
    }
    if (poll (&pfd, 1, deadline_ms - now) == -1 && errno != EINTR)
      return -1;
  }
}

/* Why the server rejected our connect request, from the reject's
 * private data (struct rp_rdma_reject) when it has ours.
 */
static int
rdmat_rejected (const struct rdma_cm_event *ev, const char *host,
                const char *port, char *err, size_t errlen)
{
  struct rp_rdma_reject rj;

  /* Without ours, the connection manager rejected it: nobody listens
   * (IB CM reason 8, invalid service id), or a peer that is no
   * memserver.
   */
  memset (&rj, 0, sizeof rj);
  if (ev->param.conn.private_data &&
      ev->param.conn.private_data_len >= sizeof rj)
    memcpy (&rj, ev->param.conn.private_data, sizeof rj);
  if (le32toh (rj.magic) != RP_RDMA_MAGIC)
    return rdmat_fail (err, errlen, ECONNREFUSED, "%s:%s refused the"
                       " connection (reject reason %d): no memserver"
                       " --listen-rdma on that port?", host, port, ev->status);
  switch (le32toh (rj.reason)) {
  case RP_EVERSION:
    return rdmat_fail (err, errlen, EPROTONOSUPPORT, "refused: the server"
                       " does not speak protocol version %d",
                       RP_PROTOCOL_VERSION);
  case RP_EPERM:
    return rdmat_fail (err, errlen, EPERM, "refused: the server is at its"
                       " --max-connections");
  case RP_ENOMEM:
    return rdmat_fail (err, errlen, ENOMEM, "refused: the server cannot make"
                       " a queue pair now (memory or locked memory there)");
  case RP_EPROTO:
    return rdmat_fail (err, errlen, EPROTO, "refused: the server finds our"
                       " connect request malformed");
  default:
    return rdmat_fail (err, errlen, ECONNREFUSED, "refused by the server"
                       " (reason %u)", le32toh (rj.reason));
  }
}

/* Wait for CM event `want` by deadline_ms (`doing` names the step for
 * errors).  On success, up to *pdlen bytes of the event's private data
 * are copied to pdata and *pdlen set to their number, and *depth is set
 * to the event's initiator depth (ESTABLISHED: the RDMA READs the
 * server takes at once from us).  0, or -1 with errno and a message.
 */
static int
rdmat_expect (struct rdmat *rd, enum rdma_cm_event_type want,
              uint64_t deadline_ms, const char *doing, const char *host,
              const char *port, void *pdata, size_t *pdlen, uint8_t *depth,
              char *err, size_t errlen)
{
  struct rdma_cm_event *ev;
  int ret = 0, status;

  if (rdmat_next_event (rd, deadline_ms, &ev) == -1) {
    if (errno == ETIMEDOUT)
      return rdmat_fail (err, errlen, ETIMEDOUT, "%s:%s: no answer in"
                         " timeout-ms while %s", host, port, doing);
    return rdmat_fail (err, errlen, errno, "rdma_get_cm_event: %s",
                       strerror (errno));
  }
  status = ev->status < 0 ? -ev->status : ev->status;
  if (ev->event == want) {
    if (pdata) {
      size_t n = ev->param.conn.private_data
        ? ev->param.conn.private_data_len : 0;
      n = n < *pdlen ? n : *pdlen;
      if (n)
        memcpy (pdata, ev->param.conn.private_data, n);
      *pdlen = n;
    }
    if (depth)
      *depth = ev->param.conn.initiator_depth;
  }
  else
    switch (ev->event) {
    case RDMA_CM_EVENT_ADDR_ERROR:
      if (status == ENODEV)
        ret = rdmat_fail_nodev (host, err, errlen);
      else
        ret = rdmat_fail (err, errlen, status ? status : EHOSTUNREACH,
                          "cannot resolve %s to an RDMA address: %s", host,
                          strerror (status ? status : EHOSTUNREACH));
      break;
    case RDMA_CM_EVENT_ROUTE_ERROR:
      ret = rdmat_fail (err, errlen, EHOSTUNREACH, "no RDMA route to %s: %s",
                        host, strerror (status ? status : EHOSTUNREACH));
      break;
    case RDMA_CM_EVENT_UNREACHABLE:
      ret = rdmat_fail (err, errlen, EHOSTUNREACH, "%s:%s unreachable over"
                        " RDMA (%s)", host, port,
                        strerror (status ? status : EHOSTUNREACH));
      break;
    case RDMA_CM_EVENT_REJECTED:
      ret = rdmat_rejected (ev, host, port, err, errlen);
      break;
    case RDMA_CM_EVENT_CONNECT_ERROR:
      ret = rdmat_fail (err, errlen, ECONNREFUSED, "%s:%s: connection error"
                        " (%s)", host, port,
                        strerror (status ? status : ECONNREFUSED));
      break;
    default:
      ret = rdmat_fail (err, errlen, EPROTO, "%s:%s: %s while %s", host, port,
                        rdma_event_str (ev->event), doing);
      break;
    }
  rdma_ack_cm_event (ev);
  return ret;
}

/* Post receive buffer i.  0, or -1 with errno. */
static int
rdmat_post_recv (struct rdmat *rd, unsigned i)
{
  struct ibv_sge sge = {
    .addr = (uintptr_t) (rd->recv_buf + (size_t) i * RP_RDMA_MAX_MSG),
    .length = RP_RDMA_MAX_MSG,
    .lkey = rd->mr->lkey,
  };
  struct ibv_recv_wr wr = {
    .wr_id = RDMAT_WR_RECV | i,
    .sg_list = &sge,
    .num_sge = 1,
  };
  struct ibv_recv_wr *bad;
  int r = ibv_post_recv (rd->id->qp, &wr, &bad);

  if (r) {
    errno = r;
    return -1;
  }
  return 0;
}

/* Protection domain, completion channel and queue, queue pair, the
 * registered buffers, receives posted: all of it before the connect
 * request, so the server can answer at once.  0, or -1 with errno and a
 * message.
 */
static int
rdmat_make_queues (struct rdmat *rd, struct ibv_device_attr *attr, char *err,
                   size_t errlen)
{
  struct ibv_context *verbs = rd->id->verbs;
  struct ibv_qp_init_attr qa;
  unsigned max_wr, ncqe;

  if (ibv_query_device (verbs, attr))
    return rdmat_fail (err, errlen, errno, "ibv_query_device: %s",
                       strerror (errno));
  /* A slot has at most a one-sided operation and a SEND whose
   * completion is still coming on the send queue, and one reply to
   * receive; notices come on top.
   */
  max_wr = attr->max_qp_wr > 0 ? (unsigned) attr->max_qp_wr : 1;
  rd->sq_depth = 2 * rd->nslots < max_wr ? 2 * rd->nslots : max_wr;
  rd->nrecv = rd->nslots + RDMAT_NOTICE_RECVS < max_wr
    ? rd->nslots + RDMAT_NOTICE_RECVS : max_wr;
  ncqe = rd->sq_depth + rd->nrecv;
  if (attr->max_cqe > 0 && ncqe > (unsigned) attr->max_cqe)
    return rdmat_fail (err, errlen, EINVAL, "the RDMA device takes %d"
                       " completions per queue, inflight= needs %u: lower"
                       " inflight=", attr->max_cqe, ncqe);
  if ((rd->pd = ibv_alloc_pd (verbs)) == NULL)
    return rdmat_fail (err, errlen, errno, "ibv_alloc_pd: %s",
                       strerror (errno));
  if ((rd->comp_channel = ibv_create_comp_channel (verbs)) == NULL ||
      rdmat_set_nonblock (rd->comp_channel->fd) == -1)
    return rdmat_fail (err, errlen, errno, "ibv_create_comp_channel: %s",
                       strerror (errno));
  if ((rd->cq = ibv_create_cq (verbs, ncqe, rd, rd->comp_channel, 0)) == NULL)
    return rdmat_fail (err, errlen, errno, "ibv_create_cq: %s",
                       strerror (errno));
  memset (&qa, 0, sizeof qa);
  qa.send_cq = rd->cq;
  qa.recv_cq = rd->cq;
  qa.qp_type = IBV_QPT_RC;
  qa.cap.max_send_wr = rd->sq_depth;
  qa.cap.max_recv_wr = rd->nrecv;
  qa.cap.max_send_sge = 1;
  qa.cap.max_recv_sge = 1;
  if (rdma_create_qp (rd->id, rd->pd, &qa))
    return rdmat_fail (err, errlen, errno, "rdma_create_qp: %s",
                       strerror (errno));

  rd->mem_len = (size_t) rd->nrecv * RP_RDMA_MAX_MSG + rd->pool_len +
    (size_t) rd->nslots * RP_RDMA_MAX_REQ;
  rd->mem = mmap (NULL, rd->mem_len, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (rd->mem == MAP_FAILED) {
    rd->mem = NULL;
    return rdmat_fail (err, errlen, errno, "cannot map %zu KiB for RDMA"
                       " buffers: %s", rd->mem_len / 1024, strerror (errno));
  }
  /* The pool on a page boundary (receive buffers are whole pages). */
  rd->recv_buf = rd->mem;
  rd->pool = rd->recv_buf + (size_t) rd->nrecv * RP_RDMA_MAX_MSG;
  rd->send_buf = rd->pool + rd->pool_len;
  /* Local write only: READs land here; nobody else writes or reads. */
  rd->mr = ibv_reg_mr (rd->pd, rd->mem, rd->mem_len, IBV_ACCESS_LOCAL_WRITE);
  if (rd->mr == NULL)
    return rdmat_fail (err, errlen, errno, "cannot register %zu KiB for RDMA"
                       " (%s): raise the locked-memory limit (ulimit -l,"
                       " LimitMEMLOCK=) or lower rdma-buffer=",
                       rd->mem_len / 1024, strerror (errno));
  for (unsigned i = 0; i < rd->nrecv; i++)
    if (rdmat_post_recv (rd, i) == -1)
      return rdmat_fail (err, errlen, errno, "ibv_post_recv: %s",
                         strerror (errno));
  if (ibv_req_notify_cq (rd->cq, 0))
    return rdmat_fail (err, errlen, errno, "ibv_req_notify_cq: %s",
                       strerror (errno));
  return 0;
}

/* The accept's private data (struct rp_rdma_accept), pdlen bytes of
 * it: the credits and the largest request.  0, or -1 with errno and a
 * message.
 */
static int
rdmat_check_accept (struct rdmat *rd, const struct rp_rdma_accept *acc,
                    size_t pdlen, char *err, size_t errlen)
{
  uint32_t credits, max_req;

  if (pdlen < sizeof *acc || le32toh (acc->magic) != RP_RDMA_MAGIC)
    return rdmat_fail (err, errlen, EPROTO, "the server's accept is not a"
                       " memserver's (no rp_rdma_accept)");
  if (le32toh (acc->version) != RP_PROTOCOL_VERSION)
    return rdmat_fail (err, errlen, EPROTONOSUPPORT, "the server speaks"
                       " protocol %u, we speak %d", le32toh (acc->version),
                       RP_PROTOCOL_VERSION);
  credits = le32toh (acc->credits);
  /* max_msg: the largest request it receives.  Ours is HELLO's; every
   * reply fits our receive buffers (RP_RDMA_MAX_MSG) by the protocol.
   */
  max_req = le32toh (acc->max_msg);
  if (credits == 0 ||
      max_req < sizeof (struct rp_req_hdr) + sizeof (struct rp_hello_req))
    return rdmat_fail (err, errlen, EPROTO, "the server's accept has %u"
                       " credits and requests of %u bytes: unusable",
                       credits, max_req);
  /* Replies to at most credits requests, and notices, must find a
   * posted buffer.
   */
  if (credits > rd->nslots)
    credits = rd->nslots;
  if (credits + RDMAT_NOTICE_RECVS > rd->nrecv)
    credits = rd->nrecv > RDMAT_NOTICE_RECVS
      ? rd->nrecv - RDMAT_NOTICE_RECVS : 1;
  rd->credits = credits;
  rd->max_req = max_req < RP_RDMA_MAX_REQ ? max_req : RP_RDMA_MAX_REQ;
  return 0;
}

static int
rdmat_connect (struct transport *t, const char *host, const char *port,
               unsigned timeout_ms, const struct transport_hello *hello,
               char *err, size_t errlen)
{
  uint64_t deadline_ms = rp_now_ms () + timeout_ms;
  struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                            .ai_flags = AI_NUMERICSERV };
  struct addrinfo *res, *ai;
  struct ibv_device_attr attr;
  struct rp_rdma_connect req;
  struct rp_rdma_accept acc;
  struct rdma_conn_param cp;
  size_t pdlen = sizeof acc;
  uint8_t depth = 0;
  struct rdmat *rd;
  int r, e = 0;

  if (hello->nslots == 0)
    return rdmat_fail (err, errlen, EINVAL, "no request slots");
  if (rdmat_check_device (err, errlen) == -1)
    return -1;
  r = getaddrinfo (host, port, &hints, &res);
  if (r != 0)
    return rdmat_fail (err, errlen, r == EAI_SYSTEM ? errno : EHOSTUNREACH,
                       "%s: %s", host, gai_strerror (r));
  if ((rd = rdmat_new (hello, timeout_ms)) == NULL) {
    freeaddrinfo (res);
    return rdmat_fail (err, errlen, errno, "%s", strerror (errno));
  }
  if ((rd->cm_channel = rdma_create_event_channel ()) == NULL ||
      rdmat_set_nonblock (rd->cm_channel->fd) == -1 ||
      rdma_create_id (rd->cm_channel, &rd->id, rd, RDMA_PS_TCP)) {
    rdmat_fail (err, errlen, errno, "cannot open the RDMA connection"
                " manager: %s", strerror (errno));
    goto out_free;
  }
  /* The first of the host's addresses that has an RDMA device. */
  for (ai = res; ai; ai = ai->ai_next) {
    if (rdma_resolve_addr (rd->id, NULL, ai->ai_addr,
                           rdmat_left_ms (deadline_ms)) == 0)
      break;
    e = errno;
  }
  if (ai == NULL) {
    if (e == ENODEV)
      rdmat_fail_nodev (host, err, errlen);
    else
      rdmat_fail (err, errlen, e, "cannot resolve %s to an RDMA address: %s",
                  host, strerror (e));
    goto out_free;
  }
  if (rdmat_expect (rd, RDMA_CM_EVENT_ADDR_RESOLVED, deadline_ms,
                    "resolving the address", host, port, NULL, NULL, NULL,
                    err, errlen) == -1)
    goto out_free;
  if (rdma_resolve_route (rd->id, rdmat_left_ms (deadline_ms))) {
    rdmat_fail (err, errlen, errno, "no RDMA route to %s: %s", host,
                strerror (errno));
    goto out_free;
  }
  if (rdmat_expect (rd, RDMA_CM_EVENT_ROUTE_RESOLVED, deadline_ms,
                    "resolving the route", host, port, NULL, NULL, NULL,
                    err, errlen) == -1)
    goto out_free;
  if (rdmat_make_queues (rd, &attr, err, errlen) == -1)
    goto out_free;

  memset (&req, 0, sizeof req);
  req.magic = htole32 (RP_RDMA_MAGIC);
  req.version = htole32 (RP_PROTOCOL_VERSION);
  memcpy (req.owner, hello->owner, sizeof req.owner);
  req.fence = htole64 (hello->fence);
  memset (&cp, 0, sizeof cp);
  cp.private_data = &req;
  cp.private_data_len = sizeof req;
  cp.initiator_depth = attr.max_qp_init_rd_atom < RDMAT_INITIATOR_DEPTH
    ? attr.max_qp_init_rd_atom : RDMAT_INITIATOR_DEPTH;
  cp.responder_resources = 0;  /* nobody reads from us */
  cp.retry_count = 7;
  /* Credits keep the server from sending more than we have posted, so
   * receiver-not-ready can only mean a slow peer; the request's deadline
   * bounds that wait.
   */
  cp.rnr_retry_count = 7;
  if (rdma_connect (rd->id, &cp)) {
    rdmat_fail (err, errlen, errno, "rdma_connect: %s", strerror (errno));
    goto out_free;
  }
  memset (&acc, 0, sizeof acc);
  if (rdmat_expect (rd, RDMA_CM_EVENT_ESTABLISHED, deadline_ms, "connecting",
                    host, port, &acc, &pdlen, &depth, err, errlen) == -1)
    goto out_free;
  if (rdmat_check_accept (rd, &acc, pdlen, err, errlen) == -1)
    goto out_disconnect;
  /* With none, the device would hold every READ for ever (no error):
   * say so now rather than time out on each.
   */
  if (depth == 0 && rd->pool_len > 0) {
    rdmat_fail (err, errlen, EPROTO, "the server takes no RDMA READ from"
                " us (responder resources 0 in its accept)");
    goto out_disconnect;
  }
  freeaddrinfo (res);
  t->priv = rd;
  return 0;
 out_disconnect:
  rdma_disconnect (rd->id);
 out_free:
  e = errno;
  freeaddrinfo (res);
  rdmat_free (rd);
  errno = e;
  return -1;
}

/* Take a span of len bytes (0 < len <= pool_len) from the ring: its
 * index in spans[] into *out.  0, or -1 if there is no room now.  lock
 * held.
 */
static int
rdmat_span_take (struct rdmat *rd, size_t len, unsigned *out)
{
  size_t need = (len + RDMAT_SPAN_ALIGN - 1) &
    ~(size_t) (RDMAT_SPAN_ALIGN - 1);
  size_t off;
  unsigned i;

  if (rd->span_count == rd->nslots)
    return -1;
  if (rd->span_count == 0)
    off = 0;
  else {
    const struct rdmat_span *oldest = &rd->spans[rd->span_first];
    const struct rdmat_span *newest =
      &rd->spans[(rd->span_first + rd->span_count - 1) % rd->nslots];
    size_t tail = oldest->off, head = newest->off + newest->len;

    if (head > tail) {
      /* Taken: [tail, head).  Room after head, else from the start. */
      if (rd->pool_len - head >= need)
        off = head;
      else if (tail >= need)
        off = 0;
      else
        return -1;
    }
    else if (tail - head >= need)
      off = head;  /* wrapped: room only between head and tail */
    else
      return -1;
  }
  i = (rd->span_first + rd->span_count) % rd->nslots;
  rd->spans[i].off = off;
  rd->spans[i].len = need;
  rd->spans[i].is_done = false;
  rd->span_count++;
  *out = i;
  return 0;
}

/* Span i's operation completed: the ring's tail passes every done span
 * at its front.  lock held.
 */
static void
rdmat_span_release (struct rdmat *rd, unsigned i)
{
  rd->spans[i].is_done = true;
  while (rd->span_count > 0 && rd->spans[rd->span_first].is_done) {
    rd->span_first = (rd->span_first + 1) % rd->nslots;
    rd->span_count--;
  }
}

/* Wait on cond until *deadline (made on the first wait).  0, or -1
 * with errno: ENOTCONN once shut, ETIMEDOUT past the deadline.  lock
 * held.
 */
static int
rdmat_wait (struct rdmat *rd, struct timespec *deadline)
{
  if (rd->is_shut) {
    errno = ENOTCONN;
    return -1;
  }
  if (deadline->tv_sec == 0 && deadline->tv_nsec == 0) {
    clock_gettime (CLOCK_MONOTONIC, deadline);
    deadline->tv_sec += rd->timeout_ms / 1000;
    deadline->tv_nsec += (long) (rd->timeout_ms % 1000) * 1000000;
    if (deadline->tv_nsec >= 1000000000) {
      deadline->tv_sec++;
      deadline->tv_nsec -= 1000000000;
    }
  }
  if (pthread_cond_timedwait (&rd->cond, &rd->lock, deadline) == ETIMEDOUT &&
      !rd->is_shut) {
    errno = ETIMEDOUT;
    return -1;
  }
  return 0;
}

/* READ or WRITE of call, slot idx: one-sided, through a span of the
 * pool.
 */
static int
rdmat_send_onesided (struct rdmat *rd, const struct conn_call *call,
                     uint32_t idx)
{
  bool is_read = call->req.op == RP_OP_READ;
  uint32_t len = is_read ? call->req.count : call->req.length;
  struct timespec deadline = { 0, 0 };
  struct ibv_sge sge = { .length = len, .lkey = rd->mr->lkey };
  struct ibv_send_wr wr, *bad;
  struct rdmat_slot *sl = &rd->slots[idx];
  unsigned span = 0;
  uint8_t *data = NULL;
  int r;

  if (len > rd->pool_len) {
    errno = rd->pool_len ? EMSGSIZE : ENOBUFS;
    return -1;
  }
  memset (&wr, 0, sizeof wr);
  wr.wr_id = RDMAT_WR_ONESIDED | idx;
  wr.opcode = is_read ? IBV_WR_RDMA_READ : IBV_WR_RDMA_WRITE;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.wr.rdma.remote_addr = (uint64_t) call->raddr_64k * 65536 +
    call->req.offset;
  wr.wr.rdma.rkey = call->rkey;
  pthread_mutex_lock (&rd->lock);
  /* After every FREE and ZERO sent before it has taken effect. */
  while (rd->is_shut || rd->barriers > 0 || rd->sq_used == rd->sq_depth ||
         (len > 0 && rdmat_span_take (rd, len, &span) == -1))
    if (rdmat_wait (rd, &deadline) == -1) {
      pthread_mutex_unlock (&rd->lock);
      return -1;
    }
  if (!is_read && rd->reads > 0)
    wr.send_flags |= IBV_SEND_FENCE;
  rd->sq_used++;
  rd->reads += is_read;
  sl->kind = is_read ? RDMAT_READ : RDMAT_WRITE;
  sl->id = call->req.id;
  sl->count = len;
  sl->span = span;
  if (len > 0)
    data = rd->pool + rd->spans[span].off;
  pthread_mutex_unlock (&rd->lock);
  if (len > 0) {
    sge.addr = (uintptr_t) data;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    if (!is_read)
      memcpy (data, call->payload, len);
  }
  r = ibv_post_send (rd->id->qp, &wr, &bad);
  if (r) {
    /* The call stays in its slot; conn kills the connection. */
    errno = r;
    return -1;
  }
  return 0;
}

/* Any other request of call, slot idx: its frame, SENT from the slot's
 * buffer.
 */
static int
rdmat_send_twosided (struct rdmat *rd, const struct conn_call *call,
                     uint32_t idx)
{
  size_t len = sizeof (struct rp_req_hdr) + call->req.length;
  uint8_t *buf = rd->send_buf + (size_t) idx * RP_RDMA_MAX_REQ;
  struct timespec deadline = { 0, 0 };
  struct ibv_sge sge = {
    .addr = (uintptr_t) buf,
    .length = len,
    .lkey = rd->mr->lkey,
  };
  struct ibv_send_wr wr, *bad;
  struct rdmat_slot *sl = &rd->slots[idx];
  int r;

  if (len > rd->max_req) {
    errno = EMSGSIZE;
    return -1;
  }
  memset (&wr, 0, sizeof wr);
  wr.wr_id = RDMAT_WR_SEND | idx;
  wr.opcode = IBV_WR_SEND;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  pthread_mutex_lock (&rd->lock);
  while (rd->is_shut || rd->credits == 0 || sl->is_tx_busy ||
         rd->sq_used == rd->sq_depth)
    if (rdmat_wait (rd, &deadline) == -1) {
      pthread_mutex_unlock (&rd->lock);
      return -1;
    }
  if (rd->reads > 0)
    wr.send_flags |= IBV_SEND_FENCE;
  rd->credits--;
  rd->sq_used++;
  sl->is_tx_busy = true;
  sl->kind = RDMAT_SEND;
  sl->id = call->req.id;
  sl->is_barrier = call->req.op == RP_OP_FREE || call->req.op == RP_OP_ZERO;
  rd->barriers += sl->is_barrier;
  pthread_mutex_unlock (&rd->lock);
  rp_req_encode (&call->req, buf);
  if (call->req.length)
    memcpy (buf + sizeof (struct rp_req_hdr), call->payload,
            call->req.length);
  r = ibv_post_send (rd->id->qp, &wr, &bad);
  if (r) {
    errno = r;
    return -1;
  }
  return 0;
}

static int
rdmat_send (struct transport *t, const struct conn_call *call)
{
  struct rdmat *rd = t->priv;
  uint32_t idx = (uint32_t) call->req.id;

  if (idx >= rd->nslots) {
    errno = EINVAL;
    return -1;
  }
  if (call->req.op == RP_OP_READ || call->req.op == RP_OP_WRITE)
    return rdmat_send_onesided (rd, call, idx);
  return rdmat_send_twosided (rd, call, idx);
}

/* Receive buffer i holds a notice of len bytes: hand it to conn.c
 * (no credit comes back: it answers nothing).  NULL, or why the
 * connection ends.
 */
static const char *
rdmat_on_notice (struct rdmat *rd, unsigned i, uint32_t len)
{
  const uint8_t *buf = rd->recv_buf + (size_t) i * RP_RDMA_MAX_MSG;
  struct rp_notice n;
  const char *why;

  if (rp_notice_decode (buf, &n, &why) == -1)
    return why;
  if (n.length != len - sizeof (struct rp_notice_hdr))
    return "a message whose size is not its notice's";
  /* conn_notice copies the handles out before we repost. */
  conn_notice (rd->conn, &n, buf + sizeof (struct rp_notice_hdr));
  if (rdmat_post_recv (rd, i) == -1)
    return "cannot repost a receive buffer";
  return NULL;
}

/* Receive buffer i holds a message of len bytes: a reply or a notice.
 * NULL, or why the connection ends.
 */
static const char *
rdmat_on_reply (struct rdmat *rd, unsigned i, uint32_t len)
{
  const uint8_t *buf = rd->recv_buf + (size_t) i * RP_RDMA_MAX_MSG;
  struct rp_reply r;
  struct conn_call *call;
  struct rdmat_slot *sl;
  const char *why;
  bool is_ok;

  if (len < sizeof (struct rp_reply_hdr))
    return "a message shorter than a reply header";
  if (rp_frame_is_notice (buf))
    return rdmat_on_notice (rd, i, len);
  if (rp_reply_decode (buf, &r, &why) == -1)
    return why;
  if (r.length != len - sizeof (struct rp_reply_hdr))
    return "a message whose size is not its reply's";
  pthread_mutex_lock (&rd->lock);
  sl = (uint32_t) r.id < rd->nslots ? &rd->slots[(uint32_t) r.id] : NULL;
  is_ok = sl && sl->kind == RDMAT_SEND && sl->id == r.id;
  pthread_mutex_unlock (&rd->lock);
  if (!is_ok)
    return "a reply to no two-sided request in flight";
  if ((call = conn_reply_call (rd->conn, &r, &why)) == NULL)
    return why;
  if (r.length)
    memcpy (call->rbuf, buf + sizeof (struct rp_reply_hdr), r.length);
  pthread_mutex_lock (&rd->lock);
  sl->kind = RDMAT_IDLE;
  rd->credits++;
  rd->barriers -= sl->is_barrier;
  sl->is_barrier = false;
  rd->free_bytes = r.free_bytes;
  pthread_cond_signal (&rd->cond);
  pthread_mutex_unlock (&rd->lock);
  /* Before the call completes: its slot's next request may be answered
   * at once.
   */
  if (rdmat_post_recv (rd, i) == -1)
    return "cannot repost a receive buffer";
  conn_reply_done (rd->conn, &r, call);
  return NULL;
}

/* Slot idx's READ or WRITE completed with status: its reply.  NULL, or
 * why the connection ends.
 */
static const char *
rdmat_on_onesided (struct rdmat *rd, unsigned idx, enum ibv_wc_status status,
                   char *whybuf, size_t whylen)
{
  struct rdmat_slot *sl = &rd->slots[idx];
  struct rp_reply r = { .error = RP_OK };
  struct conn_call *call;
  enum rdmat_kind kind;
  const uint8_t *data = NULL;
  const char *why;
  bool is_gone = false;

  pthread_mutex_lock (&rd->lock);
  kind = sl->kind;
  if (kind == RDMAT_READ || kind == RDMAT_WRITE) {
    rd->sq_used--;
    rd->reads -= kind == RDMAT_READ;
    r.id = sl->id;
    r.length = kind == RDMAT_READ ? sl->count : 0;
    r.free_bytes = rd->free_bytes;
    if (sl->count > 0)
      data = rd->pool + rd->spans[sl->span].off;
  }
  pthread_mutex_unlock (&rd->lock);
  if (kind != RDMAT_READ && kind != RDMAT_WRITE)
    return "a completion for no READ or WRITE in flight";
  if (status == IBV_WC_REM_ACCESS_ERR || status == IBV_WC_REM_INV_REQ_ERR) {
    /* The server has no such extent for us: it said so, as ENOENT. */
    r.error = RP_ENOENT;
    r.length = 0;
    is_gone = true;
  }
  else if (status != IBV_WC_SUCCESS) {
    snprintf (whybuf, whylen, "RDMA %s: %s",
              kind == RDMAT_READ ? "READ" : "WRITE",
              ibv_wc_status_str (status));
    return whybuf;
  }
  if ((call = conn_reply_call (rd->conn, &r, &why)) == NULL)
    return why;
  if (r.length)
    memcpy (call->rbuf, data, r.length);
  pthread_mutex_lock (&rd->lock);
  if (sl->count > 0)
    rdmat_span_release (rd, sl->span);
  sl->kind = RDMAT_IDLE;
  pthread_cond_signal (&rd->cond);
  pthread_mutex_unlock (&rd->lock);
  conn_reply_done (rd->conn, &r, call);
  if (is_gone) {
    snprintf (whybuf, whylen, "the server refused an RDMA %s (%s): the"
              " extent is not there", kind == RDMAT_READ ? "READ" : "WRITE",
              ibv_wc_status_str (status));
    return whybuf;
  }
  return NULL;
}

/* One work completion.  NULL, or why the connection ends. */
static const char *
rdmat_on_completion (struct rdmat *rd, const struct ibv_wc *wc, char *whybuf,
                     size_t whylen)
{
  uint64_t tag = wc->wr_id & RDMAT_WR_TAG;
  uint32_t i = (uint32_t) wc->wr_id;

  if (tag == RDMAT_WR_RECV && i < rd->nrecv) {
    if (wc->status != IBV_WC_SUCCESS) {
      snprintf (whybuf, whylen, "receive: %s", ibv_wc_status_str (wc->status));
      return whybuf;
    }
    return rdmat_on_reply (rd, i, wc->byte_len);
  }
  if (tag == RDMAT_WR_SEND && i < rd->nslots) {
    pthread_mutex_lock (&rd->lock);
    rd->slots[i].is_tx_busy = false;
    rd->sq_used--;
    pthread_cond_signal (&rd->cond);
    pthread_mutex_unlock (&rd->lock);
    if (wc->status != IBV_WC_SUCCESS) {
      snprintf (whybuf, whylen, "send: %s", ibv_wc_status_str (wc->status));
      return whybuf;
    }
    return NULL;
  }
  if (tag == RDMAT_WR_ONESIDED && i < rd->nslots)
    return rdmat_on_onesided (rd, i, wc->status, whybuf, whylen);
  return "a completion for no work request of ours";
}

/* Every completion the CQ holds.  NULL, or why the connection ends. */
static const char *
rdmat_drain (struct rdmat *rd, char *whybuf, size_t whylen)
{
  struct ibv_wc wc[RDMAT_POLL_BATCH];
  int n;

  while ((n = ibv_poll_cq (rd->cq, RDMAT_POLL_BATCH, wc)) > 0)
    for (int k = 0; k < n; k++) {
      const char *why = rdmat_on_completion (rd, &wc[k], whybuf, whylen);
      if (why)
        return why;
    }
  return n < 0 ? "ibv_poll_cq failed" : NULL;
}

/* The completion channel woke us: rearm, then drain (in that order, so
 * a completion that comes in between wakes us again).
 */
static const char *
rdmat_on_cq_event (struct rdmat *rd, char *whybuf, size_t whylen)
{
  struct ibv_cq *cq;
  void *ctx;

  if (ibv_get_cq_event (rd->comp_channel, &cq, &ctx) == 0)
    ibv_ack_cq_events (cq, 1);
  else if (errno != EAGAIN && errno != EINTR)
    return "ibv_get_cq_event failed";
  if (ibv_req_notify_cq (rd->cq, 0))
    return "ibv_req_notify_cq failed";
  return rdmat_drain (rd, whybuf, whylen);
}

/* The connection manager has news: only the end of the connection
 * matters now.
 */
static const char *
rdmat_on_cm_event (struct rdmat *rd)
{
  struct rdma_cm_event *ev;

  while (rdma_get_cm_event (rd->cm_channel, &ev) == 0) {
    enum rdma_cm_event_type type = ev->event;
    rdma_ack_cm_event (ev);
    switch (type) {
    case RDMA_CM_EVENT_DISCONNECTED:
      return "the server closed the connection";
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
      return "the RDMA device was removed";
    case RDMA_CM_EVENT_ADDR_CHANGE:
      return "the local address moved to another RDMA device";
    default:
      break;  /* TIMEWAIT_EXIT and the like: nothing to do */
    }
  }
  return errno == EAGAIN || errno == EINTR ? NULL
    : "rdma_get_cm_event failed";
}

/* The receive thread: completions and CM events until the connection
 * ends or is shut down, then conn_end.
 */
static void *
rdmat_receiver (void *arg)
{
  struct rdmat *rd = arg;
  struct pollfd pfd[3] = {
    { .fd = rd->wake_fd, .events = POLLIN },
    { .fd = rd->comp_channel->fd, .events = POLLIN },
    { .fd = rd->cm_channel->fd, .events = POLLIN },
  };
  char whybuf[128];
  const char *why;

  /* Whatever completed before the first wakeup was armed. */
  why = rdmat_drain (rd, whybuf, sizeof whybuf);
  while (why == NULL) {
    if (poll (pfd, 3, -1) == -1) {
      if (errno == EINTR)
        continue;
      why = "poll failed";
      break;
    }
    if (pfd[0].revents) {
      why = "connection shut down";
      break;
    }
    /* Read nothing but errors for ever: end rather than spin. */
    if ((pfd[1].revents | pfd[2].revents) & (POLLERR | POLLHUP | POLLNVAL)) {
      why = "the RDMA device's event channel failed";
      break;
    }
    /* Completions first: an answer the device already holds (a remote
     * access error is a READ answered ENOENT) must not be failed as
     * unanswered because the server's disconnect woke us at once.
     */
    if (pfd[1].revents)
      why = rdmat_on_cq_event (rd, whybuf, sizeof whybuf);
    if (why == NULL && pfd[2].revents && (why = rdmat_on_cm_event (rd))) {
      /* The same for completions that came after this wakeup. */
      const char *drained = rdmat_drain (rd, whybuf, sizeof whybuf);
      if (drained != NULL)
        why = drained;
    }
  }
  conn_end (rd->conn, why);
  return NULL;
}

static int
rdmat_start (struct transport *t, struct conn *c)
{
  struct rdmat *rd = t->priv;
  int err;

  rd->conn = c;
  err = rp_thread_start (&rd->receiver, 256 * 1024, rdmat_receiver, rd);
  if (err) {
    errno = err;
    return -1;
  }
  rd->has_receiver = true;
  return 0;
}

static void
rdmat_shutdown (struct transport *t)
{
  struct rdmat *rd = t->priv;
  uint64_t one = 1;
  bool was_shut;

  if (rd == NULL)
    return;
  pthread_mutex_lock (&rd->lock);
  was_shut = rd->is_shut;
  rd->is_shut = true;
  pthread_cond_broadcast (&rd->cond);
  pthread_mutex_unlock (&rd->lock);
  if (was_shut)
    return;
  /* Wake the receiver first, then put the queue pair in the error
   * state: what is still posted flushes and is never executed (and the
   * flushed receives would wake the receiver too).
   */
  ssize_t w = write (rd->wake_fd, &one, sizeof one);
  (void) w;
  rdma_disconnect (rd->id);
}

static void
rdmat_close (struct transport *t)
{
  struct rdmat *rd = t->priv;

  if (rd == NULL)
    return;
  rdmat_shutdown (t);
  if (rd->has_receiver)
    pthread_join (rd->receiver, NULL);
  rdmat_free (rd);
  t->priv = NULL;
}

const struct transport_ops transport_rdma = {
  .scheme = "rdma",
  .connect = rdmat_connect,
  .start = rdmat_start,
  .send = rdmat_send,
  .shutdown = rdmat_shutdown,
  .close = rdmat_close,
};
