/* One client connection's protocol: handshake, owner, frame loop and
 * request execution.  See session.h for how a transport drives it.
 *
 * The exchange on a connection, as this file enforces it:
 *   1. HELLO: protocol version, owner id, client nonce, generation
 *      (fence).  A wrong version is answered EVERSION and the next
 *      frame closes.  Without a key the owner is attached now; with a
 *      key the reply carries our nonce and proof and the owner waits.
 *   2. AUTH (only with a key): the client's proof.  A wrong proof is
 *      answered EPERM and the next frame closes; a right one attaches
 *      the owner.
 *   3. Then any request but HELLO and AUTH, executed in arrival order
 *      (the protocol promises that), each answered with one reply.
 * Attaching can be refused (EPERM, then the next frame closes): the
 * owner table is full, the client has max-client-connections already,
 * or the connection is of an older generation than one the client
 * opened since.
 *
 * Bad input: a malformed header, or a frame out of the order above,
 * closes the connection with one log line (rate limited per kind of
 * line for the whole server, log.h); nothing else is affected.  Bounds
 * that need the extent (offset + count inside it) are checked here and
 * answered EINVAL, not closed: a client with a stale extent map is not
 * hostile.
 *
 * Resources: the transport says how many reply bytes it can take
 * (out_room) and how much work one call may do (max_frames, max_bytes);
 * a frame runs only when its whole reply fits, so the transport's
 * budget holds exactly.  This file allocates nothing but the reply
 * buffer, and never more of it than out_room.
 */
#include <config.h>

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "auth.h"
#include "codec.h"
#include "session.h"
#include "util.h"

#define REQ_HDR_SIZE sizeof (struct rp_req_hdr)
#define REPLY_HDR_SIZE sizeof (struct rp_reply_hdr)

void
session_init (struct session *s, struct session_core *core)
{
  memset (s, 0, sizeof *s);
  s->core = core;
  s->start_ms = rp_now_ms ();
  s->next = core->sessions;
  if (core->sessions)
    core->sessions->prev = s;
  core->sessions = s;
  core->nsessions++;
}

void
session_fini (struct session *s)
{
  struct session_core *core = s->core;

  if (s->ncopies && core->copy_cancel)
    core->copy_cancel (core, s);
  if (s->owner)
    store_owner_detach (&core->store, s->owner);
  if (s->prev)
    s->prev->next = s->next;
  else
    core->sessions = s->next;
  if (s->next)
    s->next->prev = s->prev;
  core->nsessions--;
  free (s->obuf);
  s->obuf = NULL;
  s->olen = s->ocap = 0;
  s->nrefs = 0;
  s->owner = NULL;
}

void
session_output_iov (const struct session *s, struct iovec *iov, unsigned *n)
{
  size_t at = 0;
  unsigned k = 0;

  for (unsigned i = 0; i < s->nrefs; i++) {
    const struct session_ref *r = &s->refs[i];

    if (r->at > at)
      iov[k++] = (struct iovec) { s->obuf + at, r->at - at };
    iov[k++] = (struct iovec) { (void *) r->src, r->len };
    at = r->at + r->len;
  }
  if (s->olen > at)
    iov[k++] = (struct iovec) { s->obuf + at, s->olen - at };
  *n = k;
}

void
session_output_fill (struct session *s)
{
  for (unsigned i = 0; i < s->nrefs; i++)
    memcpy (s->obuf + s->refs[i].at, s->refs[i].src, s->refs[i].len);
  s->nrefs = 0;
}

uint8_t *
session_take_output (struct session *s, size_t *len)
{
  uint8_t *p;

  session_output_fill (s);
  p = s->obuf;

  *len = s->olen;
  s->obuf = NULL;
  s->olen = s->ocap = 0;
  return p;
}

uint8_t *
session_swap_output (struct session *s, uint8_t *buf, size_t cap,
                     size_t *len, size_t *oldcap)
{
  uint8_t *p;

  session_output_fill (s);
  p = s->obuf;

  *len = s->olen;
  *oldcap = s->ocap;
  s->obuf = buf;
  s->ocap = buf ? cap : 0;
  s->olen = 0;
  return p;
}

void
session_output_sent (struct session *s)
{
  s->olen = 0;
  s->nrefs = 0;
  if (s->ocap > SESSION_OBUF_KEEP) {
    free (s->obuf);
    s->obuf = NULL;
    s->ocap = 0;
  }
}

bool
session_is_awaiting_auth (const struct session *s)
{
  return s->is_hello_done && s->owner == NULL && s->core->st->key &&
    !s->is_rejected;
}

void
session_log_peer_closed (const struct session *s)
{
  if (session_is_awaiting_auth (s))
    log_peer (LOG_KIND_AUTH, LOG_LEVEL_WARN, "auth",
              "%s: client left before"
              " authenticating (it did not accept our proof: different"
              " cluster key, or no key-file on the client?)", s->peer);
  else
    log_peer (LOG_KIND_CONN, LOG_LEVEL_DEBUG, "conn", "%s: closed by peer",
              s->peer);
}

/* Ask the transport to close the connection, logging why once
 * (rate limited server-wide: peers sending garbage in a loop, on one
 * connection or thousands, must not flood the log).
 */
static void
session_fail (struct session *s, enum log_kind kind, const char *why)
{
  log_peer (kind, LOG_LEVEL_WARN, "conn", "%s: %s; closing connection", s->peer,
            why);
  s->close_why = why;
}

/* Reserve n bytes at the end of the output buffer, which doubles as it
 * grows but never past out_limit (session_process_turn checked that
 * olen + n fits there).
 */
static uint8_t *
session_out_reserve (struct session *s, size_t n)
{
  if (s->olen + n > s->ocap) {
    size_t cap = s->ocap ? s->ocap : 4096;
    while (cap < s->olen + n)
      cap *= 2;
    if (cap > s->out_limit && s->out_limit >= s->olen + n)
      cap = s->out_limit;
    uint8_t *p = realloc (s->obuf, cap);
    if (p == NULL)
      return NULL;
    s->obuf = p;
    s->ocap = cap;
  }
  uint8_t *p = s->obuf + s->olen;
  s->olen += n;
  return p;
}

/* Append a reply header followed by room for `length` payload bytes,
 * returning a pointer to the payload room (or NULL: out of memory, the
 * session asks to be closed).
 */
static uint8_t *
session_reply (struct session *s, uint64_t id, uint32_t error,
               uint32_t length)
{
  if (error != RP_OK)
    s->core->stats.errors[s->cur_op]++;
  struct rp_reply r = {
    .error = error, .id = id, .length = length,
    .free_bytes = region_free_bytes (&s->core->store.region),
  };
  uint8_t *p = session_out_reserve (s, REPLY_HDR_SIZE + length);

  if (p == NULL) {
    session_fail (s, LOG_KIND_MEMORY, "out of memory for reply");
    return NULL;
  }
  rp_reply_encode (&r, p);
  return p + REPLY_HDR_SIZE;
}

static void
session_reply_errno (struct session *s, uint64_t id, int err)
{
  session_reply (s, id, rp_errno_to_error (err), 0);
}

/* Attach the session to its owner, within the per-client limits.
 * false (after replying EPERM) when refused.
 */
static bool
session_attach_owner (struct session *s, const struct rp_req *req)
{
  struct session_core *core = s->core;
  struct owner *o = store_owner_attach (&core->store, s->owner_id);

  if (o == NULL) {
    log_peer (LOG_KIND_LIMIT, LOG_LEVEL_WARN, "limit",
              "%s: refused: max-clients=%" PRIu32
              " client sessions already hold this server",
              s->peer, core->st->max_owners);
    goto refuse;
  }
  if (s->is_peer) {
    /* A COPY link joins the owner as it is: it never creates it, nor
     * raises its generation (that would fence the owner itself).
     */
    unsigned own = 0;
    for (struct session *k = core->sessions; k; k = k->next)
      if (k != s && k->owner == o && !k->is_closing && !k->is_peer)
        own++;
    if (own == 0 || s->fence != o->fence) {
      store_owner_detach (&core->store, o);
      log_peer (LOG_KIND_FENCE, LOG_LEVEL_INFO, "conn", "%s: refused: a"
                " COPY link %s", s->peer, own == 0 ? "for a client not"
                " connected here" : "at another generation than the"
                " client's");
      goto refuse;
    }
  }
  if (s->fence < o->fence) {
    store_owner_detach (&core->store, o);
    log_peer (LOG_KIND_FENCE, LOG_LEVEL_INFO, "conn",
              "%s: refused: connection"
              " generation %" PRIu64 " is older than this client's %" PRIu64,
              s->peer, s->fence, o->fence);
    goto refuse;
  }
  if (s->fence > o->fence) {
    /* The client reconnected: whatever its older connections still
     * carry was given up by the client and must not land after what it
     * sends now (a late WRITE would undo a repair).
     */
    unsigned n = 0;
    o->fence = s->fence;
    for (struct session *k = core->sessions; k; k = k->next)
      if (k != s && k->owner == o && k->fence < s->fence && !k->is_closing) {
        k->ops->close (k);
        n++;
        core->stats.fenced++;
      }
    if (n)
      log_peer (LOG_KIND_FENCE, LOG_LEVEL_INFO, "conn",
                "%s: client reconnected"
                " (generation %" PRIu64 "): closed %u older connection(s)"
                " unread",
                s->peer, s->fence, n);
  }
  /* Count the owner's live connections: ones just fenced off above are
   * still in nconns until their close completes, and must not make a
   * reconnecting client refuse itself.
   */
  unsigned live = 1;
  for (struct session *k = core->sessions; k; k = k->next)
    if (k != s && k->owner == o && !k->is_closing && !k->is_peer)
      live++;
  if (!s->is_peer && live > core->st->max_client_conns) {
    store_owner_detach (&core->store, o);
    log_peer (LOG_KIND_LIMIT, LOG_LEVEL_WARN, "limit",
              "%s: refused: this client"
              " already has max-client-connections=%" PRIu32 " connections",
              s->peer, core->st->max_client_conns);
    goto refuse;
  }
  s->owner = o;
  if (s->ops->joined && s->ops->joined (s) == -1) {
    s->owner = NULL;
    store_owner_detach (&core->store, o);
    goto refuse;
  }
  if (core->joined)
    core->joined (core, s);
  return true;
 refuse:
  session_reply (s, req->id, RP_EPERM, 0);
  s->is_rejected = true;
  return false;
}

static void
session_hello (struct session *s, const struct rp_req *req,
               const uint8_t *payload)
{
  struct session_core *core = s->core;
  struct rp_hello_req h;
  struct rp_hello_info hi;
  uint8_t *out;

  memcpy (&h, payload, sizeof h);
  if (le32toh (h.version) < RP_PROTOCOL_VERSION_MIN ||
      le32toh (h.version) > RP_PROTOCOL_VERSION) {
    log_peer (LOG_KIND_VERSION, LOG_LEVEL_WARN, "conn",
              "%s: protocol version %" PRIu32
              " not supported (this server speaks %d to %d)",
              s->peer, le32toh (h.version), RP_PROTOCOL_VERSION_MIN,
              RP_PROTOCOL_VERSION);
    session_reply (s, req->id, RP_EVERSION, 0);
    s->is_rejected = true;
    return;
  }
  s->is_hello_done = true;
  s->version = le32toh (h.version);
  s->is_peer = s->version >= 4 && (le32toh (h.flags) & RP_HELLO_PEER);
  s->is_quiet = s->version >= 4 && (le32toh (h.flags) & RP_HELLO_QUIET);
  memcpy (s->owner_id, h.owner, 16);
  memcpy (s->client_nonce, h.client_nonce, 32);
  s->fence = le64toh (h.fence);
  /* An all-zero (or repeated) nonce would let a recorded AUTH be
   * replayed: without fresh randomness, refuse to go on.
   */
  if (rp_random_bytes (s->server_nonce, 32) == -1) {
    log_peer (LOG_KIND_RANDOM, LOG_LEVEL_ERROR, "auth",
              "getrandom failed: %s;"
              " refusing %s",
              strerror (errno), s->peer);
    session_fail (s, LOG_KIND_RANDOM, "no randomness for the server nonce");
    return;
  }
  memset (&hi, 0, sizeof hi);
  if (core->st->key) {
    /* Prove we hold the key; the owner is attached only after the
     * client proves it too (session_auth), so an unauthenticated peer
     * cannot even occupy an owner slot.
     */
    hi.flags = RP_HELLO_AUTH;
    memcpy (hi.server_nonce, s->server_nonce, 32);
    rp_auth_proof (core->st->key, RP_AUTH_SERVER, s->client_nonce,
                   s->server_nonce, s->owner_id, s->fence, hi.server_proof);
  }
  else if (!session_attach_owner (s, req))
    return;
  else
    hi.session = s->owner->session;
  /* In the client's version; COPY only to those that know it. */
  hi.version = s->version;
  if (s->version >= 4 && core->copy && !s->is_one_sided)
    hi.flags |= RP_HELLO_COPY;
  memcpy (hi.incarnation, core->incarnation, 16);
  hi.capacity_bytes = core->store.region.capacity;
  hi.free_bytes = region_free_bytes (&core->store.region);
  hi.max_payload = RP_MAX_PAYLOAD;
  hi.lease_ms = core->store.lease_ms;
  out = session_reply (s, req->id, RP_OK, sizeof (struct rp_hello_reply));
  if (out)
    rp_hello_reply_encode (&hi, out);
}

static void
session_auth (struct session *s, const struct rp_req *req,
              const uint8_t *payload)
{
  struct rp_auth_req a;
  uint8_t *out;

  memcpy (&a, payload, sizeof a);
  if (!rp_auth_check (s->core->st->key, RP_AUTH_CLIENT, s->client_nonce,
                      s->server_nonce, s->owner_id, s->fence,
                      a.client_proof)) {
    log_peer (LOG_KIND_AUTH, LOG_LEVEL_WARN, "auth",
              "%s: authentication failed:"
              " the client does not hold this pool's cluster key (wrong"
              " key-file?)",
              s->peer);
    s->core->stats.auth_refused++;
    session_reply (s, req->id, RP_EPERM, 0);
    s->is_rejected = true;
    return;
  }
  if (!session_attach_owner (s, req))
    return;
  log_peer (LOG_KIND_CONN, LOG_LEVEL_DEBUG, "auth", "%s: authenticated",
            s->peer);
  out = session_reply (s, req->id, RP_OK, sizeof (struct rp_auth_reply));
  if (out)
    rp_auth_reply_encode (s->owner->session, out);
}

/* How many handles a LIST may answer: what it asks, at most what the
 * connection can carry in one reply (s->list_max).
 */
static uint32_t
session_list_count (const struct session *s, const struct rp_req *req)
{
  return s->list_max && req->count > s->list_max ? s->list_max : req->count;
}

/* LIST: one bounded slice of the owner's handles (protocol.h). */
static void
session_list (struct session *s, const struct rp_req *req)
{
  uint32_t count = session_list_count (s, req);
  uint64_t next;
  uint8_t *out;
  uint32_t n;

  /* Room for the most the request may get; trimmed below. */
  out = session_reply (s, req->id, RP_OK,
                       sizeof (struct rp_list_reply) + count * 8);
  if (out == NULL)
    return;
  /* Single-threaded (session.h): one static buffer serves every LIST. */
  static uint64_t handles[RP_LIST_MAX_HANDLES];
  n = store_list (&s->core->store, s->owner, req->offset, count,
                  RP_LIST_SCAN_SLOTS, handles, &next);
  for (uint32_t i = 0; i < n; i++) {
    le64 h = htole64 (handles[i]);
    memcpy (out + sizeof (struct rp_list_reply) + i * 8, &h, 8);
  }
  rp_list_reply_encode (next, n, out);
  /* Give back the room not used, and fix the header's length. */
  uint32_t len = sizeof (struct rp_list_reply) + n * 8;
  s->olen -= (count - n) * 8;
  struct rp_reply r = {
    .error = RP_OK, .id = req->id, .length = len,
    .free_bytes = region_free_bytes (&s->core->store.region),
  };
  rp_reply_encode (&r, out - REPLY_HDR_SIZE);
}

static void
session_stat (struct session *s, const struct rp_req *req)
{
  struct session_core *core = s->core;
  struct rp_stat_info si = {
    .capacity_bytes = core->store.region.capacity,
    .used_bytes = core->store.region.used,
    .owner_bytes = s->owner->bytes,
    .extents = core->store.nextents,
    .owner_extents = s->owner->nextents,
    .clients = core->nsessions,
    .owners = store_owners_holding (&core->store),
    .uptime_ms = rp_now_ms () - core->start_ms,
    .limit_bytes = core->store.region.limit,
    .state = core->state,
  };
  uint8_t *out;

  memcpy (si.incarnation, core->incarnation, 16);
  out = session_reply (s, req->id, RP_OK, sizeof (struct rp_stat_reply));
  if (out)
    rp_stat_reply_encode (&si, out);
}

static void
session_alloc (struct session *s, const struct rp_req *req)
{
  struct session_core *core = s->core;
  uint64_t handle;
  struct rp_alloc_reply a;
  uint8_t *out;

  uint64_t quota = core->st->max_client_bytes;
  if (core->state == RP_STATE_DRAINING || core->state == RP_STATE_DRAINED) {
    /* ENOSPC: a client places the extent elsewhere, as when full. */
    session_reply_errno (s, req->id, ENOSPC);
    return;
  }
  if (quota && s->owner->bytes + req->offset > quota) {
    log_peer (LOG_KIND_LIMIT, LOG_LEVEL_WARN, "limit",
              "%s: ALLOC refused: the"
              " client would hold more than max-client-size=%" PRIu64 " bytes",
              s->peer, quota);
    session_reply_errno (s, req->id, ENOSPC);
    return;
  }
  if (store_alloc (&core->store, s->owner, req->offset, &handle) == -1) {
    int err = errno;
    if (err == ENOMEM)
      log_peer (LOG_KIND_MEMORY, LOG_LEVEL_WARN, "region",
                "mlock of a %" PRIu64
                "-byte extent failed: the donor has no memory to lock"
                " (RLIMIT_MEMLOCK or RAM)",
                req->offset);
    else if (err == EIO)
      log_peer (LOG_KIND_RANDOM, LOG_LEVEL_ERROR, "region",
                "getrandom failed:"
                " ALLOC of %s refused (no unguessable handle)",
                s->peer);
    session_reply_errno (s, req->id, err);
    return;
  }
  struct extent *e = store_lookup (&core->store, s->owner, handle);
  uint32_t rkey = 0;  /* no one-sided access over TCP */
  e->is_sole = (req->flags & RP_FLAG_SOLE) != 0;
  if (s->ops->registered && s->ops->registered (s, e, &rkey) == -1) {
    int err = errno;
    log_peer (LOG_KIND_MEMORY, LOG_LEVEL_WARN, "rdma", "%s: registering a"
              " %" PRIu64 "-byte extent failed: %s; ALLOC refused",
              s->peer, e->size, strerror (err));
    store_free (&core->store, e);
    session_reply_errno (s, req->id, err == ENOMEM ? ENOMEM : EIO);
    return;
  }
  a.handle = htole64 (handle);
  a.rkey = htole32 (rkey);
  a.offset_64k = htole32 (e->offset / REGION_GRANULE);
  out = session_reply (s, req->id, RP_OK, sizeof a);
  if (out)
    memcpy (out, &a, sizeof a);
}

/* The extent for a data op, with [offset, offset+count) checked against
 * its size; NULL after replying with the error.
 */
static struct extent *
session_extent (struct session *s, const struct rp_req *req, uint64_t count)
{
  struct extent *e = store_lookup (&s->core->store, s->owner, req->handle);

  if (e)
    e->access_ms = rp_now_ms ();

  if (e == NULL) {
    session_reply_errno (s, req->id, ENOENT);
    return NULL;
  }
  /* offset < 2^30 and count <= 4 MiB (codec), so no overflow. */
  if (req->offset + count > e->size) {
    session_reply_errno (s, req->id, EINVAL);
    return NULL;
  }
  return e;
}

/* COPY: check the request and hand it to the server's copier
 * (core->copy), which answers later (session_copy_done); or answer the
 * refusal now.
 */
static void
session_copy (struct session *s, const struct rp_req *req,
              const uint8_t *payload)
{
  struct rp_copy_args a;
  const char *why;
  struct extent *e;

  /* Not over RDMA: its late reply would need a send buffer then. */
  if (s->core->copy == NULL || s->is_one_sided) {
    session_reply_errno (s, req->id, EPERM);
    return;
  }
  if (rp_copy_req_decode (payload, &a, &why) == -1) {
    log_peer (LOG_KIND_PROTOCOL, LOG_LEVEL_WARN, "copy", "%s: COPY refused:"
              " %s", s->peer, why);
    session_reply_errno (s, req->id, EINVAL);
    return;
  }
  /* offset < 2^30, count <= 2^30: no overflow. */
  e = store_lookup (&s->core->store, s->owner, req->handle);
  if (e == NULL) {
    session_reply_errno (s, req->id, ENOENT);
    return;
  }
  if (req->offset + req->count > e->size) {
    session_reply_errno (s, req->id, EINVAL);
    return;
  }
  s->ncopies++;  /* before: a copy may end within the call */
  if (s->core->copy (s->core, s, req, &a) == -1) {
    s->ncopies--;
    session_reply_errno (s, req->id, errno);
  }
}

void
session_copy_done (struct session *s, uint64_t id, uint32_t error,
                   uint32_t stage, uint32_t flags)
{
  uint8_t *out;

  s->ncopies--;
  if (s->is_closing || s->close_why)
    return;
  s->cur_op = RP_OP_COPY;
  out = session_reply (s, id, RP_OK, sizeof (struct rp_copy_reply));
  if (out)
    rp_copy_reply_encode (error, stage, flags, out);
  if (s->is_processing)
    return;  /* the turn sends it, or closes */
  if (s->close_why)
    s->ops->close (s);  /* no memory for the reply */
  else if (s->ops->kick)
    s->ops->kick (s);
}

static void
session_execute (struct session *s, const struct rp_req *req,
                 const uint8_t *payload)
{
  struct store *st = &s->core->store;
  struct extent *e;
  uint8_t *out;

  s->cur_op = req->op;
  s->core->stats.requests[req->op]++;
  /* A READ answered before must carry what the region held then. */
  if (req->op == RP_OP_WRITE || req->op == RP_OP_ZERO ||
      req->op == RP_OP_FREE || req->op == RP_OP_DRAIN)
    session_output_fill (s);
  switch (req->op) {
  case RP_OP_HELLO:
    session_hello (s, req, payload);
    return;
  case RP_OP_AUTH:
    session_auth (s, req, payload);
    return;
  case RP_OP_PING:
    session_reply (s, req->id, RP_OK, 0);
    return;
  case RP_OP_STAT:
    session_stat (s, req);
    return;
  case RP_OP_ALLOC:
    session_alloc (s, req);
    return;
  case RP_OP_LIST:
    session_list (s, req);
    return;
  case RP_OP_HOLD:
    e = store_lookup (st, s->owner, req->handle);
    if (e == NULL) {
      session_reply_errno (s, req->id, ENOENT);
      return;
    }
    e->is_held = true;
    session_reply (s, req->id, RP_OK, 0);
    return;
  case RP_OP_COPY:
    session_copy (s, req, payload);
    return;
  case RP_OP_DRAIN:
    if (s->core->drain == NULL ||
        s->core->drain (s->core, req->offset) == -1) {
      session_reply_errno (s, req->id, EPERM);
      return;
    }
    session_reply (s, req->id, RP_OK, 0);
    return;
  case RP_OP_FREE:
    e = store_lookup (st, s->owner, req->handle);
    if (e == NULL) {
      session_reply_errno (s, req->id, ENOENT);
      return;
    }
    s->turn_bytes += e->size;  /* madvise drops that much */
    store_free (st, e);
    session_reply (s, req->id, RP_OK, 0);
    return;
  case RP_OP_READ:
    if ((e = session_extent (s, req, req->count)) == NULL)
      return;
    out = session_reply (s, req->id, RP_OK, req->count);
    if (out) {
      const uint8_t *src = st->region.base + e->offset + req->offset;

      if (s->may_refer && req->count >= SESSION_REF_MIN &&
          s->nrefs < SESSION_REFS)
        s->refs[s->nrefs++] = (struct session_ref) {
          .at = out - s->obuf, .src = src, .len = req->count,
        };
      else
        memcpy (out, src, req->count);
      s->core->stats.read_bytes += req->count;
    }
    return;
  case RP_OP_WRITE:
    if ((e = session_extent (s, req, req->length)) == NULL)
      return;
    /* A placed WRITE's payload is already there (session_write_place). */
    if (payload != st->region.base + e->offset + req->offset)
      memcpy (st->region.base + e->offset + req->offset, payload,
              req->length);
    s->core->stats.write_bytes += req->length;
    session_reply (s, req->id, RP_OK, 0);
    return;
  case RP_OP_ZERO:
    if ((e = session_extent (s, req, req->count)) == NULL)
      return;
    memset (st->region.base + e->offset + req->offset, 0, req->count);
    session_reply (s, req->id, RP_OK, 0);
    return;
  }
}

/* Is frame `req` allowed now?  The handshake: HELLO, then (with a key)
 * AUTH, then the rest.  NULL, or why not.
 */
static const char *
session_check_order (const struct session *s, const struct rp_req *req)
{
  const uint8_t *key = s->core->st->key;

  if (s->is_rejected)
    return "request after a refused HELLO/AUTH";
  if (!s->is_hello_done && req->op != RP_OP_HELLO)
    return "request before HELLO";
  if (s->is_hello_done && req->op == RP_OP_HELLO)
    return "second HELLO";
  if (s->is_hello_done && s->owner == NULL && req->op != RP_OP_AUTH)
    return key ? "request before AUTH" : "request after a refused HELLO";
  if (req->op == RP_OP_AUTH && (s->owner != NULL || !key))
    return key ? "second AUTH" : "AUTH, but this server has no key-file";
  if (s->is_one_sided && (req->op == RP_OP_READ || req->op == RP_OP_WRITE))
    return "READ or WRITE as a frame: their data is one-sided over RDMA";
  if (req->op == RP_OP_COPY && s->version < 4)
    return "COPY on a version-3 connection";
  return NULL;
}

/* The most reply bytes `req` can produce (error replies are smaller),
 * known before it runs: what session_process_turn reserves.
 */
static size_t
session_reply_bound (const struct session *s, const struct rp_req *req)
{
  switch (req->op) {
  case RP_OP_HELLO: return REPLY_HDR_SIZE + sizeof (struct rp_hello_reply);
  case RP_OP_AUTH: return REPLY_HDR_SIZE + sizeof (struct rp_auth_reply);
  case RP_OP_STAT: return REPLY_HDR_SIZE + sizeof (struct rp_stat_reply);
  case RP_OP_ALLOC: return REPLY_HDR_SIZE + sizeof (struct rp_alloc_reply);
  case RP_OP_READ: return REPLY_HDR_SIZE + req->count;
  case RP_OP_LIST:
    return REPLY_HDR_SIZE + sizeof (struct rp_list_reply) +
      (size_t) session_list_count (s, req) * 8;
  default: return REPLY_HDR_SIZE;
  }
}

/* Region bytes a request touches: what a turn's max_bytes counts. */
static uint64_t
session_work_bytes (const struct rp_req *req)
{
  switch (req->op) {
  case RP_OP_READ: case RP_OP_ZERO: return req->count;
  case RP_OP_WRITE: return req->length;
  case RP_OP_ALLOC: return req->offset;  /* mlock populates it */
  default: return 0;  /* FREE: session_execute adds the extent's size */
  }
}

/* A turn's start and end, around the frames it executes. */
static void
session_turn_begin (struct session *s, size_t out_room)
{
  s->turn_frames = 0;
  s->turn_bytes = 0;
  s->need_room = 0;
  s->out_limit = out_room;
  s->stop = SESSION_STOP_INPUT;
  s->is_processing = true;
}

static void
session_turn_end (struct session *s)
{
  if (s->is_closing || s->close_why)
    s->stop = SESSION_STOP_CLOSE;
  s->is_processing = false;
}

size_t
session_process_turn (struct session *s, const uint8_t *buf, size_t len,
                      size_t out_room, unsigned max_frames,
                      uint64_t max_bytes)
{
  size_t pos = 0;

  session_turn_begin (s, out_room);
  while (!s->is_closing && s->close_why == NULL &&
         len - pos >= REQ_HDR_SIZE) {
    struct rp_req req;
    const char *why;
    size_t need;

    if (rp_req_decode (buf + pos, &req, &why) == -1 ||
        (why = session_check_order (s, &req)) != NULL) {
      s->core->stats.protocol_errors++;
      session_fail (s, LOG_KIND_PROTOCOL, why);
      break;
    }
    if (len - pos < REQ_HDR_SIZE + req.length)
      break;
    if (s->turn_frames >= max_frames || s->turn_bytes >= max_bytes) {
      s->stop = SESSION_STOP_TURN;
      break;
    }
    /* Replies pile up when the peer does not read them: a frame whose
     * reply would not fit waits until the transport has room, so a
     * client pipelining 4 MiB READs cannot make us buffer without
     * bound, and the transport's budget is never overshot.
     */
    need = session_reply_bound (s, &req);
    if (s->olen + need > out_room) {
      s->stop = SESSION_STOP_ROOM;
      s->need_room = need;
      break;
    }
    session_execute (s, &req, buf + pos + REQ_HDR_SIZE);
    pos += REQ_HDR_SIZE + req.length;
    s->turn_frames++;
    s->turn_bytes += session_work_bytes (&req);
  }
  session_turn_end (s);
  return pos;
}

/* Where WRITE req's payload belongs in the region, if the session is
 * live and the range lies inside an extent of its owner; else NULL.
 * Nothing is answered (session_extent is the executing twin).
 */
static uint8_t *
session_write_dst (struct session *s, const struct rp_req *req)
{
  struct store *st = &s->core->store;
  struct extent *e;

  if (s->is_closing || s->close_why || s->owner == NULL)
    return NULL;
  e = store_lookup (st, s->owner, req->handle);
  /* offset < 2^30 and length <= 4 MiB (codec), so no overflow. */
  if (e == NULL || req->offset + req->length > e->size)
    return NULL;
  return st->region.base + e->offset + req->offset;
}

uint8_t *
session_write_place (struct session *s, const uint8_t *buf, size_t len,
                     uint32_t min, struct rp_req *req)
{
  const char *why;
  uint8_t *dst;

  if (len < REQ_HDR_SIZE || rp_req_decode (buf, req, &why) == -1 ||
      session_check_order (s, req) != NULL || req->op != RP_OP_WRITE ||
      req->length < min || len >= REQ_HDR_SIZE + req->length ||
      (dst = session_write_dst (s, req)) == NULL)
    return NULL;
  s->core->stats.writes_placed++;
  return dst;
}

bool
session_write_holds (struct session *s, const struct rp_req *req,
                     const uint8_t *dst)
{
  return dst != NULL && session_write_dst (s, req) == dst;
}

void
session_write_landed (struct session *s, const struct rp_req *req,
                      const uint8_t *dst, size_t out_room)
{
  session_turn_begin (s, out_room);
  if (!s->is_closing && s->close_why == NULL) {
    if (session_write_holds (s, req, dst))
      session_execute (s, req, dst);
    else {
      s->core->stats.writes_placed_lost++;
      s->cur_op = req->op;
      s->core->stats.requests[req->op]++;
      session_reply_errno (s, req->id, ENOENT);
    }
    s->turn_frames = 1;
    s->turn_bytes = session_work_bytes (req);
  }
  session_turn_end (s);
}

size_t
session_process (struct session *s, const uint8_t *buf, size_t len,
                 size_t out_room)
{
  return session_process_turn (s, buf, len, out_room, UINT_MAX, UINT64_MAX);
}

int
session_notice (struct session *s, uint32_t kind, uint64_t deadline_ms,
                const uint64_t *handles, uint32_t n)
{
  struct rp_notice nh = { .kind = kind, .deadline_ms = deadline_ms,
                          .count = n };
  uint8_t *p;

  if (s->is_closing || s->close_why)
    return -1;
  p = session_out_reserve (s, sizeof (struct rp_notice_hdr) + n * 8);
  if (p == NULL) {
    session_fail (s, LOG_KIND_MEMORY, "out of memory for a notice");
    return -1;
  }
  rp_notice_encode (&nh, p);
  for (uint32_t i = 0; i < n; i++) {
    le64 h = htole64 (handles[i]);
    memcpy (p + sizeof (struct rp_notice_hdr) + i * 8, &h, 8);
  }
  /* Inside session_process the transport sends it with the replies. */
  if (!s->is_processing && s->ops->kick)
    s->ops->kick (s);
  return 0;
}
