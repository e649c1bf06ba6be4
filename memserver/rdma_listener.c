/* The memserver's RDMA listener: librdmacm connections that carry the
 * protocol's two-sided frames into sessions, and let clients READ and
 * WRITE their extents one-sided, with no work here (Zombieland's
 * point; docs/protocol.md section 13 is the binding this implements).
 *
 * The life of a connection, on the event loop thread like everything
 * else (no locks):
 *   1. CONNECT_REQUEST: check the private data (magic, version, owner,
 *      fence); take the protection domain of that owner on that device
 *      (made on first use); make a completion channel, a CQ and an RC
 *      queue pair in that domain, and move the queue pair through INIT,
 *      RTR and RTS ourselves, with **no remote access** (librdmacm's
 *      own transitions would grant remote write at accept); register
 *      and post the receive buffers; accept with struct rp_rdma_accept.
 *      Any failure rejects with struct rp_rdma_reject and a reason.
 *   2. Each received message is one frame: session_process_turn runs
 *      it (session.c: the same handshake, ops and errors as TCP), the
 *      receive buffer is posted again, and the reply goes back in a
 *      SEND.  READ and WRITE frames are a protocol error here.
 *   3. When the session joins its owner (HELLO without a key, AUTH with
 *      one), session_ops.joined grants remote read and write on the
 *      queue pair: before that a peer naming someone's owner id holds a
 *      queue pair in that domain that can touch nothing.
 *   4. ALLOC registers the extent in the owner's domain at the I/O
 *      virtual address of its region offset and returns the rkey;
 *      store_free deregisters it (store.release_remote) before the
 *      memory is freed, so an old rkey reaches nothing.
 *   5. Close (fencing, DISCONNECTED, an error, the handshake deadline,
 *      shutdown): the queue pair goes to the error state at once -- so
 *      nothing in flight on it lands after a newer connection of the
 *      session is answered -- and rdma_disconnect; once every posted
 *      work request has completed (flushed), the poll handle is closed
 *      and, in its close callback (never inside an event being handled:
 *      rdma_destroy_id waits for every event it delivered to be acked),
 *      everything is destroyed and the session finished.
 *
 * Not here: what the frames mean (session.c), TCP (server.c).
 */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "codec.h"
#include "rdma_listener.h"
#include "util.h"

/* Receive buffers (and so two-sided requests unanswered) per queue
 * pair: librampool keeps at most this many in flight on a connection.
 * A reply needs a send buffer; with as many send buffers as credits a
 * message that finds none waits (held) until a SEND completes.
 */
#define RDMA_CREDITS 32
#define RDMA_NSEND RDMA_CREDITS
/* RDMA READs a client may have outstanding on one queue pair, at most
 * (the device's limit may be lower).
 */
#define RDMA_RD_ATOMIC_MAX 16
#define RDMA_BACKLOG 128

/* A protection domain: one per (session, device).  Every queue pair of
 * that session and every extent it registers live in it, so one
 * session's rkeys are useless on another's queue pairs.
 */
struct rdma_pd {
  uint8_t owner[16];             /* the session's owner id */
  struct ibv_context *verbs;     /* the device */
  struct ibv_pd *pd;             /* owned */
  unsigned refs;                 /* queue pairs and registrations in it */
  struct rdma_pd *next;          /* rdma_server.pds */
};

/* An extent's registration: extent.remote. */
struct rdma_reg {
  struct ibv_mr *mr;             /* owned */
  struct rdma_pd *pd;            /* holds a ref */
  struct rdma_listener *rs;        /* not owned */
};

struct rdma_listener;

/* One RDMA connection. */
struct rdma_conn {
  struct session s;              /* protocol state; s.is_closing is ours */
  struct rdma_listener *rs;        /* not owned */
  struct rdma_cm_id *id;         /* owned; id->context = this */
  struct rdma_pd *pd;            /* holds a ref */
  struct ibv_comp_channel *cc;   /* owned; fd non-blocking, polled */
  struct ibv_cq *cq;             /* owned */
  struct ibv_qp *qp;             /* owned; ours, not librdmacm's */
  uint8_t *bufs;                 /* RDMA_CREDITS receive buffers of
                                    RP_RDMA_MAX_REQ, then RDMA_NSEND send
                                    buffers of RP_RDMA_MAX_MSG; owned */
  struct ibv_mr *bufs_mr;        /* their registration, owned */
  uint32_t send_free[RDMA_NSEND]; /* free send buffers, a stack */
  unsigned nsend_free;
  uint32_t held[RDMA_CREDITS];   /* received, waiting for a send buffer:
                                    receive buffer indices, FIFO */
  uint32_t held_len[RDMA_CREDITS];
  unsigned held_head, nheld;
  unsigned posted;               /* work requests not yet completed */
  uv_poll_t poll;                /* on cc's fd */
  bool is_polling;               /* poll initialised: close it to free */
  bool is_torn_down;             /* uv_close called on poll */
  struct rdma_conn *prev, *next; /* rdma_server.conns */
};

struct rdma_listener {
  uv_loop_t *loop;               /* not owned */
  struct session_core *core;     /* not owned */
  struct rdma_event_channel *ec; /* owned; fd non-blocking, polled */
  struct rdma_cm_id *listen_id;  /* owned */
  uv_poll_t ec_poll;
  bool is_ec_polling;
  struct rdma_pd *pds;           /* every domain in use */
  struct rdma_conn *conns;       /* every connection not yet freed */
  char addr[160];                /* --listen-rdma, for log lines */
};

static void rdma_conn_close (struct rdma_conn *c, const char *why);

/* --- protection domains --- */

static struct rdma_pd *
rdma_pd_get (struct rdma_listener *rs, const uint8_t owner[16],
             struct ibv_context *verbs)
{
  struct rdma_pd *d;

  for (d = rs->pds; d; d = d->next)
    if (d->verbs == verbs && memcmp (d->owner, owner, 16) == 0) {
      d->refs++;
      return d;
    }
  d = calloc (1, sizeof *d);
  if (d == NULL)
    return NULL;
  d->pd = ibv_alloc_pd (verbs);
  if (d->pd == NULL) {
    free (d);
    return NULL;
  }
  memcpy (d->owner, owner, 16);
  d->verbs = verbs;
  d->refs = 1;
  d->next = rs->pds;
  rs->pds = d;
  return d;
}

static void
rdma_pd_put (struct rdma_listener *rs, struct rdma_pd *d)
{
  if (--d->refs > 0)
    return;
  for (struct rdma_pd **p = &rs->pds; *p; p = &(*p)->next)
    if (*p == d) {
      *p = d->next;
      break;
    }
  ibv_dealloc_pd (d->pd);
  free (d);
}

/* --- registrations (session_ops.registered, store.release_remote) --- */

static int
rdma_registered (struct session *s, struct extent *e, uint32_t *rkey)
{
  struct rdma_conn *c = (struct rdma_conn *) s;
  struct rdma_reg *r = malloc (sizeof *r);
  uint8_t *base = s->core->store.region.base;

  if (r == NULL) {
    errno = ENOMEM;
    return -1;
  }
  /* At the I/O virtual address of its region offset: the client
   * addresses offset_64k * 65536 + offset (protocol.h).
   */
  r->mr = ibv_reg_mr_iova (c->pd->pd, base + e->offset, e->size, e->offset,
                           IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ |
                           IBV_ACCESS_REMOTE_WRITE);
  if (r->mr == NULL) {
    int err = errno ? errno : ENOMEM;
    free (r);
    errno = err;
    return -1;
  }
  r->pd = c->pd;
  r->pd->refs++;
  r->rs = c->rs;
  e->remote = r;
  *rkey = r->mr->rkey;
  return 0;
}

static void
rdma_release_remote (void *remote)
{
  struct rdma_reg *r = remote;

  if (ibv_dereg_mr (r->mr) != 0)
    log_msg (LOG_LEVEL_ERROR, "rdma", "deregistering an extent: %s",
             strerror (errno));
  rdma_pd_put (r->rs, r->pd);
  free (r);
}

/* --- sessions over a queue pair --- */

static uint8_t *
rdma_recv_buf (struct rdma_conn *c, uint32_t i)
{
  return c->bufs + (size_t) i * RP_RDMA_MAX_REQ;
}

static uint8_t *
rdma_send_buf (struct rdma_conn *c, uint32_t i)
{
  return c->bufs + (size_t) RDMA_CREDITS * RP_RDMA_MAX_REQ +
    (size_t) i * RP_RDMA_MAX_MSG;
}

static int
rdma_conn_post_recv (struct rdma_conn *c, uint32_t i)
{
  struct ibv_sge sge = {
    .addr = (uintptr_t) rdma_recv_buf (c, i), .length = RP_RDMA_MAX_REQ,
    .lkey = c->bufs_mr->lkey,
  };
  struct ibv_recv_wr wr = { .wr_id = i, .sg_list = &sge, .num_sge = 1 };
  struct ibv_recv_wr *bad;

  if (ibv_post_recv (c->qp, &wr, &bad) != 0)
    return -1;
  c->posted++;
  return 0;
}

static int
rdma_conn_post_send (struct rdma_conn *c, const uint8_t *frame, size_t len)
{
  uint32_t i = c->send_free[--c->nsend_free];
  struct ibv_sge sge = {
    .addr = (uintptr_t) rdma_send_buf (c, i), .length = len,
    .lkey = c->bufs_mr->lkey,
  };
  struct ibv_send_wr wr = {
    .wr_id = RDMA_CREDITS + i, .sg_list = &sge, .num_sge = 1,
    .opcode = IBV_WR_SEND, .send_flags = IBV_SEND_SIGNALED,
  };
  struct ibv_send_wr *bad;

  memcpy (rdma_send_buf (c, i), frame, len);
  if (ibv_post_send (c->qp, &wr, &bad) != 0) {
    c->send_free[c->nsend_free++] = i;
    return -1;
  }
  c->posted++;
  return 0;
}

/* Send what the session has produced, one frame a message: replies,
 * and notices (reclaim.c, through session_ops.kick).
 */
static void
rdma_conn_send_output (struct rdma_conn *c)
{
  size_t olen;
  uint8_t *out = session_take_output (&c->s, &olen);

  for (size_t pos = 0; pos < olen;) {
    uint32_t plen;
    size_t flen;
    /* Our own frames: a reply's payload length is at offset 24, a
     * notice's (rp_notice_hdr.length) at 20.
     */
    memcpy (&plen, out + pos + (rp_frame_is_notice (out + pos) ? 20 : 24), 4);
    flen = sizeof (struct rp_reply_hdr) + le32toh (plen);
    if (c->nsend_free == 0 || rdma_conn_post_send (c, out + pos, flen) == -1) {
      rdma_conn_close (c, "posting a reply failed");
      break;
    }
    pos += flen;
  }
  free (out);
}

static void
rdma_session_kick (struct session *s)
{
  rdma_conn_send_output ((struct rdma_conn *) s);
}

/* Run the frame in receive buffer i (len bytes) and send its reply. */
static void
rdma_conn_message (struct rdma_conn *c, uint32_t i, uint32_t len)
{
  size_t used;

  used = session_process_turn (&c->s, rdma_recv_buf (c, i), len,
                               RP_RDMA_MAX_MSG, 1, UINT64_MAX);
  if (c->s.close_why) {
    rdma_conn_close (c, NULL);
    return;
  }
  if (used != len) {
    /* A message is exactly one frame (or one too big a reply). */
    c->s.core->stats.protocol_errors++;
    log_peer (LOG_KIND_PROTOCOL, LOG_LEVEL_WARN, "rdma", "%s: a message of"
              " %" PRIu32 " bytes is not one whole frame; closing",
              c->s.peer, len);
    rdma_conn_close (c, NULL);
    return;
  }
  /* The buffer goes back before the reply: a client that has the reply
   * has its credit back.
   */
  if (rdma_conn_post_recv (c, i) == -1) {
    rdma_conn_close (c, "posting a receive buffer failed");
    return;
  }
  rdma_conn_send_output (c);
}

/* Run received messages that waited for a send buffer. */
static void
rdma_conn_run_held (struct rdma_conn *c)
{
  while (c->nheld > 0 && c->nsend_free > 0 && !c->s.is_closing) {
    uint32_t i = c->held[c->held_head], len = c->held_len[c->held_head];
    c->held_head = (c->held_head + 1) % RDMA_CREDITS;
    c->nheld--;
    rdma_conn_message (c, i, len);
  }
}

static void
rdma_conn_completion (struct rdma_conn *c, const struct ibv_wc *wc)
{
  c->posted--;
  if (wc->wr_id >= RDMA_CREDITS)
    c->send_free[c->nsend_free++] = wc->wr_id - RDMA_CREDITS;
  if (wc->status != IBV_WC_SUCCESS) {
    if (!c->s.is_closing) {
      log_peer (LOG_KIND_CONN, LOG_LEVEL_INFO, "rdma", "%s: %s; closing",
                c->s.peer, ibv_wc_status_str (wc->status));
      rdma_conn_close (c, NULL);
    }
    return;
  }
  if (c->s.is_closing)
    return;
  if (wc->opcode == IBV_WC_RECV) {
    if (c->nsend_free == 0) {
      unsigned tail = (c->held_head + c->nheld) % RDMA_CREDITS;
      c->held[tail] = wc->wr_id;
      c->held_len[tail] = wc->byte_len;
      c->nheld++;
      return;
    }
    rdma_conn_message (c, wc->wr_id, wc->byte_len);
  }
  rdma_conn_run_held (c);
}

static void rdma_conn_free_cb (uv_handle_t *h);

/* Closing and every posted request completed: destroy (later, in the
 * poll handle's close callback).
 */
static void
rdma_conn_maybe_tear_down (struct rdma_conn *c)
{
  if (!c->s.is_closing || c->posted > 0 || c->is_torn_down)
    return;
  c->is_torn_down = true;
  uv_close ((uv_handle_t *) &c->poll, rdma_conn_free_cb);
}

static void
rdma_conn_on_poll (uv_poll_t *h, int status, int events)
{
  struct rdma_conn *c = h->data;
  struct ibv_cq *cq;
  struct ibv_wc wc[16];
  void *ctx;
  int n;

  /* The fd is non-blocking: take every pending event, re-arm, then
   * drain the CQ (a completion between the drain and the re-arm would
   * otherwise wait for the next one).
   */
  while (ibv_get_cq_event (c->cc, &cq, &ctx) == 0)
    ibv_ack_cq_events (cq, 1);
  ibv_req_notify_cq (c->cq, 0);
  while ((n = ibv_poll_cq (c->cq, 16, wc)) > 0)
    for (int k = 0; k < n; k++)
      rdma_conn_completion (c, &wc[k]);
  if (n < 0 && !c->s.is_closing)
    rdma_conn_close (c, "polling the completion queue failed");
  rdma_conn_maybe_tear_down (c);
}

/* session_ops.close, and every other way a connection ends.  why: a
 * line to log, or NULL if already logged.
 */
static void
rdma_conn_close (struct rdma_conn *c, const char *why)
{
  struct ibv_qp_attr attr = { .qp_state = IBV_QPS_ERR };

  if (c->s.is_closing)
    return;
  c->s.is_closing = true;
  if (why)
    log_peer (LOG_KIND_CONN, LOG_LEVEL_INFO, "rdma", "%s: %s; closing",
              c->s.peer, why);
  /* At once: nothing still in flight on this queue pair may land after
   * this returns (fencing: the newer connection is answered next).
   */
  if (ibv_modify_qp (c->qp, &attr, IBV_QP_STATE) != 0)
    log_msg (LOG_LEVEL_ERROR, "rdma", "%s: moving the queue pair to the"
             " error state: %s", c->s.peer, strerror (errno));
  rdma_disconnect (c->id);
  rdma_conn_maybe_tear_down (c);
}

static void
rdma_session_close (struct session *s)
{
  rdma_conn_close ((struct rdma_conn *) s, NULL);
}

/* session_ops.joined: the session is authenticated (or needs no key):
 * open the queue pair to one-sided access.
 */
static int
rdma_joined (struct session *s)
{
  struct rdma_conn *c = (struct rdma_conn *) s;
  struct ibv_qp_attr attr = {
    .qp_access_flags = IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE,
  };

  if (ibv_modify_qp (c->qp, &attr, IBV_QP_ACCESS_FLAGS) != 0) {
    log_msg (LOG_LEVEL_ERROR, "rdma", "%s: granting remote access: %s;"
             " refusing the session", s->peer, strerror (errno));
    return -1;
  }
  return 0;
}

static const struct session_ops rdma_session_ops = {
  .close = rdma_session_close,
  .joined = rdma_joined,
  .registered = rdma_registered,
  .kick = rdma_session_kick,
};

/* Destroy what rdma_conn_make made, in reverse (also on its failure
 * paths: every pointer NULL-checked).
 */
static void
rdma_conn_destroy (struct rdma_conn *c)
{
  struct ibv_cq *cq;
  void *ctx;

  if (c->qp)
    ibv_destroy_qp (c->qp);
  if (c->cc)   /* events delivered but not taken would block the CQ's end */
    while (ibv_get_cq_event (c->cc, &cq, &ctx) == 0)
      ibv_ack_cq_events (cq, 1);
  if (c->cq)
    ibv_destroy_cq (c->cq);
  if (c->cc)
    ibv_destroy_comp_channel (c->cc);
  if (c->bufs_mr)
    ibv_dereg_mr (c->bufs_mr);
  free (c->bufs);
  if (c->pd)
    rdma_pd_put (c->rs, c->pd);
  if (c->id)
    rdma_destroy_id (c->id);
  free (c);
}

static void
rdma_conn_free_cb (uv_handle_t *h)
{
  struct rdma_conn *c = h->data;

  if (c->prev)
    c->prev->next = c->next;
  else
    c->rs->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  session_fini (&c->s);
  rdma_conn_destroy (c);
}

/* Move the queue pair to RTS ourselves, from librdmacm's attributes but
 * with no remote access (step 1 at the top).  0 or -1 with errno.
 */
static int
rdma_conn_ready_qp (struct rdma_conn *c, uint8_t responder_resources)
{
  static const enum ibv_qp_state states[] = {
    IBV_QPS_INIT, IBV_QPS_RTR, IBV_QPS_RTS,
  };

  for (size_t k = 0; k < sizeof states / sizeof states[0]; k++) {
    struct ibv_qp_attr attr = { .qp_state = states[k] };
    int mask = 0;
    if (rdma_init_qp_attr (c->id, &attr, &mask) != 0)
      return -1;
    if (states[k] == IBV_QPS_INIT) {
      attr.qp_access_flags = 0;
      mask |= IBV_QP_ACCESS_FLAGS;
    }
    if (states[k] == IBV_QPS_RTR)
      attr.max_dest_rd_atomic = responder_resources;
    if (ibv_modify_qp (c->qp, &attr, mask) != 0)
      return -1;
  }
  return 0;
}

/* Make connection c for id (a connect request of owner) and accept it.
 * Returns the reason to reject with (RP_OK on success).
 */
static uint32_t
rdma_conn_make (struct rdma_conn *c, const struct rp_rdma_connect *rc,
                uint8_t reads_wanted)
{
  struct ibv_device_attr dev;
  struct ibv_qp_init_attr qpa = { 0 };
  struct rp_rdma_accept acc = {
    .magic = htole32 (RP_RDMA_MAGIC),
    .version = rc->version,  /* the client's: we speak 3 and 4 */
    .credits = htole32 (RDMA_CREDITS),
    .max_msg = htole32 (RP_RDMA_MAX_REQ),
  };
  struct rdma_conn_param cp = { 0 };
  size_t bytes = (size_t) RDMA_CREDITS * RP_RDMA_MAX_REQ +
    (size_t) RDMA_NSEND * RP_RDMA_MAX_MSG;
  uint8_t resp;
  int fl;

  if (ibv_query_device (c->id->verbs, &dev) != 0)
    return RP_ENOMEM;
  resp = reads_wanted;
  if (resp > RDMA_RD_ATOMIC_MAX)
    resp = RDMA_RD_ATOMIC_MAX;
  if (resp > dev.max_qp_rd_atom)
    resp = dev.max_qp_rd_atom;
  c->pd = rdma_pd_get (c->rs, rc->owner, c->id->verbs);
  c->cc = ibv_create_comp_channel (c->id->verbs);
  if (c->pd == NULL || c->cc == NULL)
    return RP_ENOMEM;
  fl = fcntl (c->cc->fd, F_GETFL);
  fcntl (c->cc->fd, F_SETFL, fl | O_NONBLOCK);
  c->cq = ibv_create_cq (c->id->verbs, RDMA_CREDITS + RDMA_NSEND, c, c->cc, 0);
  if (c->cq == NULL || ibv_req_notify_cq (c->cq, 0) != 0)
    return RP_ENOMEM;
  qpa.send_cq = qpa.recv_cq = c->cq;
  qpa.qp_type = IBV_QPT_RC;
  qpa.cap.max_send_wr = RDMA_NSEND;
  qpa.cap.max_recv_wr = RDMA_CREDITS;
  qpa.cap.max_send_sge = qpa.cap.max_recv_sge = 1;
  c->qp = ibv_create_qp (c->pd->pd, &qpa);
  c->bufs = aligned_alloc (4096, bytes);
  if (c->qp == NULL || c->bufs == NULL)
    return RP_ENOMEM;
  c->bufs_mr = ibv_reg_mr (c->pd->pd, c->bufs, bytes, IBV_ACCESS_LOCAL_WRITE);
  if (c->bufs_mr == NULL || rdma_conn_ready_qp (c, resp) == -1)
    return RP_ENOMEM;
  for (uint32_t i = 0; i < RDMA_NSEND; i++)
    c->send_free[c->nsend_free++] = i;
  for (uint32_t i = 0; i < RDMA_CREDITS; i++)
    if (rdma_conn_post_recv (c, i) == -1)
      return RP_ENOMEM;
  cp.private_data = &acc;
  cp.private_data_len = sizeof acc;
  cp.responder_resources = resp;
  cp.initiator_depth = 0;
  cp.rnr_retry_count = 7;
  cp.qp_num = c->qp->qp_num;
  if (rdma_accept (c->id, &cp) != 0)
    return RP_ENOMEM;
  return RP_OK;
}

static void
rdma_peer_name (struct rdma_cm_id *id, char *out, size_t len)
{
  struct sockaddr *sa = rdma_get_peer_addr (id);
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;

  if (sa && sa->sa_family == AF_INET) {
    inet_ntop (AF_INET, &((struct sockaddr_in *) sa)->sin_addr, host,
               sizeof host);
    port = ntohs (((struct sockaddr_in *) sa)->sin_port);
  }
  else if (sa && sa->sa_family == AF_INET6) {
    inet_ntop (AF_INET6, &((struct sockaddr_in6 *) sa)->sin6_addr, host,
               sizeof host);
    port = ntohs (((struct sockaddr_in6 *) sa)->sin6_port);
  }
  snprintf (out, len, "rdma:%s:%d", host, port);
}

static void
rdma_refuse (struct rdma_cm_id *id, uint32_t reason)
{
  struct rp_rdma_reject rej = {
    .magic = htole32 (RP_RDMA_MAGIC), .reason = htole32 (reason),
  };

  rdma_reject (id, &rej, sizeof rej);
}

/* A connect request.  Returns true if the id is now a connection's,
 * false if the caller must destroy it (after acking the event).
 */
static bool
rdma_on_connect_request (struct rdma_listener *rs, struct rdma_cm_event *ev)
{
  struct session_core *core = rs->core;
  const struct rdma_conn_param *p = &ev->param.conn;
  struct rp_rdma_connect rc;
  struct rdma_conn *c;
  char peer[64];
  uint32_t why;

  rdma_peer_name (ev->id, peer, sizeof peer);
  if (p->private_data_len < sizeof rc) {
    why = RP_EPROTO;
    goto out_reject;
  }
  memcpy (&rc, p->private_data, sizeof rc);
  if (le32toh (rc.magic) != RP_RDMA_MAGIC) {
    why = RP_EPROTO;
    goto out_reject;
  }
  if (le32toh (rc.version) < RP_PROTOCOL_VERSION_MIN ||
      le32toh (rc.version) > RP_PROTOCOL_VERSION) {
    log_peer (LOG_KIND_VERSION, LOG_LEVEL_WARN, "rdma", "%s: protocol"
              " version %" PRIu32 " not supported (this server speaks %d"
              " to %d)", peer, le32toh (rc.version), RP_PROTOCOL_VERSION_MIN,
              RP_PROTOCOL_VERSION);
    why = RP_EVERSION;
    goto out_refuse;
  }
  if (core->nsessions >= core->st->max_conns) {
    log_peer (LOG_KIND_REFUSED, LOG_LEVEL_WARN, "rdma", "%s: refused:"
              " max-connections=%" PRIu32 " reached", peer,
              core->st->max_conns);
    why = RP_EPERM;
    goto out_refuse;
  }
  c = calloc (1, sizeof *c);
  if (c == NULL) {
    why = RP_ENOMEM;
    goto out_refuse;
  }
  c->rs = rs;
  c->id = ev->id;
  c->id->context = c;
  /* The CM reports the request from our side: responder_resources is
   * how many RDMA READs the client wants to have in flight (its
   * initiator depth), which is what we must be ready to answer.
   * Granting 0 (reading initiator_depth instead, the client's own
   * responder resources) made every READ hang in the first run in a
   * soft-RoCE guest.
   */
  why = rdma_conn_make (c, &rc, p->responder_resources);
  if (why != RP_OK) {
    log_peer (LOG_KIND_MEMORY, LOG_LEVEL_WARN, "rdma", "%s: cannot set up a"
              " queue pair: %s", peer, strerror (errno));
    rdma_refuse (c->id, why);
    c->id = NULL;           /* the caller destroys it after the ack */
    rdma_conn_destroy (c);
    core->stats.connections_refused++;
    return false;
  }
  uv_poll_init (rs->loop, &c->poll, c->cc->fd);
  c->poll.data = c;
  c->is_polling = true;
  uv_poll_start (&c->poll, UV_READABLE, rdma_conn_on_poll);
  session_init (&c->s, core);
  c->s.ops = &rdma_session_ops;
  c->s.is_one_sided = true;
  c->s.list_max = RP_RDMA_LIST_MAX;
  snprintf (c->s.peer, sizeof c->s.peer, "%s", peer);
  c->next = rs->conns;
  if (rs->conns)
    rs->conns->prev = c;
  rs->conns = c;
  core->stats.connections++;
  log_peer (LOG_KIND_CONN, LOG_LEVEL_DEBUG, "rdma", "%s: connected", peer);
  return true;

 out_reject:
  core->stats.protocol_errors++;
  log_peer (LOG_KIND_PROTOCOL, LOG_LEVEL_WARN, "rdma", "%s: connect request"
            " without rampool's private data; rejected", peer);
 out_refuse:
  core->stats.connections_refused++;
  rdma_refuse (ev->id, why);
  return false;
}

static void
rdma_on_cm_event (uv_poll_t *h, int status, int events)
{
  struct rdma_listener *rs = h->data;
  struct rdma_cm_event *ev;

  while (rdma_get_cm_event (rs->ec, &ev) == 0) {
    struct rdma_cm_id *drop = NULL;
    struct rdma_conn *c = ev->id->context != rs ? ev->id->context : NULL;

    switch (ev->event) {
    case RDMA_CM_EVENT_CONNECT_REQUEST:
      if (!rdma_on_connect_request (rs, ev))
        drop = ev->id;
      break;
    case RDMA_CM_EVENT_ESTABLISHED:
      break;
    case RDMA_CM_EVENT_DISCONNECTED:
    case RDMA_CM_EVENT_CONNECT_ERROR:
    case RDMA_CM_EVENT_UNREACHABLE:
    case RDMA_CM_EVENT_REJECTED:
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
      if (c && ev->event == RDMA_CM_EVENT_DISCONNECTED && !c->s.is_closing)
        session_log_peer_closed (&c->s);
      if (c)
        rdma_conn_close (c, ev->event == RDMA_CM_EVENT_DISCONNECTED
                         ? NULL : rdma_event_str (ev->event));
      else if (ev->event == RDMA_CM_EVENT_DEVICE_REMOVAL)
        log_msg (LOG_LEVEL_ERROR, "rdma", "%s: the RDMA device went away;"
                 " no more RDMA connections", rs->addr);
      break;
    default:
      break;
    }
    rdma_ack_cm_event (ev);
    if (drop)
      rdma_destroy_id (drop);
  }
}

/* The listening address, for rdma_bind_addr.  0 or -1 (logged). */
static int
rdma_parse_addr (const char *addr, struct sockaddr_storage *ss)
{
  char host[256], port[16];
  struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
  struct addrinfo *res;

  if (rp_split_hostport (addr, host, sizeof host, port, sizeof port) == -1 ||
      getaddrinfo (host, port, &hints, &res) != 0) {
    log_msg (LOG_LEVEL_ERROR, "config", "listen-rdma: '%s' is not a numeric"
             " ADDR:PORT ([V6]:PORT for IPv6)", addr);
    return -1;
  }
  memcpy (ss, res->ai_addr, res->ai_addrlen);
  freeaddrinfo (res);
  return 0;
}

struct rdma_listener *
rdma_listener_start (uv_loop_t *loop, struct session_core *core,
                   const char *addr)
{
  struct rdma_listener *rs = calloc (1, sizeof *rs);
  struct sockaddr_storage ss;
  int n, fl;

  if (rs == NULL)
    return NULL;
  rs->loop = loop;
  rs->core = core;
  snprintf (rs->addr, sizeof rs->addr, "%s", addr);
  if (rdma_parse_addr (addr, &ss) == -1)
    goto out_free;
  rs->ec = rdma_create_event_channel ();
  if (rs->ec == NULL) {
    log_msg (LOG_LEVEL_ERROR, "rdma", "listen-rdma: no RDMA connection"
             " manager (%s): this host has no RDMA device, or rdma_ucm is"
             " not loaded; for soft-RoCE on a network interface DEV:"
             " modprobe rdma_rxe rdma_ucm; rdma link add rxe0 type rxe"
             " netdev DEV", strerror (errno));
    goto out_free;
  }
  if (rdma_create_id (rs->ec, &rs->listen_id, rs, RDMA_PS_TCP) != 0)
    goto out_log;
  if (rdma_bind_addr (rs->listen_id, (struct sockaddr *) &ss) != 0) {
    ibv_free_device_list (ibv_get_device_list (&n));
    log_msg (LOG_LEVEL_ERROR, "rdma", "listen-rdma: %s: %s: no RDMA device"
             " has this address (%d device(s) found; to add soft-RoCE on a"
             " network interface: rdma link add rxe0 type rxe netdev DEV)",
             addr, strerror (errno), n);
    goto out_destroy;
  }
  if (rdma_listen (rs->listen_id, RDMA_BACKLOG) != 0)
    goto out_log;
  fl = fcntl (rs->ec->fd, F_GETFL);
  fcntl (rs->ec->fd, F_SETFL, fl | O_NONBLOCK);
  uv_poll_init (loop, &rs->ec_poll, rs->ec->fd);
  rs->ec_poll.data = rs;
  rs->is_ec_polling = true;
  uv_poll_start (&rs->ec_poll, UV_READABLE, rdma_on_cm_event);
  core->store.release_remote = rdma_release_remote;
  return rs;

 out_log:
  log_msg (LOG_LEVEL_ERROR, "rdma", "listen-rdma: %s: %s", addr,
           strerror (errno));
 out_destroy:
  if (rs->listen_id)
    rdma_destroy_id (rs->listen_id);
  rdma_destroy_event_channel (rs->ec);
 out_free:
  free (rs);
  return NULL;
}

void
rdma_listener_stop (struct rdma_listener *rs)
{
  if (rs->is_ec_polling) {
    uv_close ((uv_handle_t *) &rs->ec_poll, NULL);
    rs->is_ec_polling = false;
  }
  for (struct rdma_conn *c = rs->conns; c; c = c->next)
    rdma_conn_close (c, NULL);
}

void
rdma_listener_free (struct rdma_listener *rs)
{
  /* Every connection is gone (their handles closed before the loop
   * ran dry) and the store has released every registration, so every
   * domain is gone too; anything left would be a leak worth a line.
   */
  if (rs->pds || rs->conns)
    log_msg (LOG_LEVEL_ERROR, "rdma", "protection domains or connections"
             " left at exit");
  rdma_destroy_id (rs->listen_id);
  rdma_destroy_event_channel (rs->ec);
  free (rs);
}

int
rdma_listener_port (const struct rdma_listener *rs)
{
  return ntohs (rdma_get_src_port (rs->listen_id));
}
