/* A donor: one memserver as this pool sees it.  Its connections and
 * their handshake (HELLO, AUTH), the verdict on what it still holds
 * when it comes back (replica.h's invariant, rule 2: a new incarnation or
 * a new session means nothing), up and down, the handles to free when
 * it is reachable again, reconciling after a lost ALLOC reply (LIST),
 * and STAT.
 *
 * Not here: when to reconnect (monitor.c), what is read or written
 * (io.c, recovery.c), where copies go (replica.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "donor.h"
#include "logging.h"
#include "util.h"

void
donor_down (struct donor *s, const char *why)
{
  /* down_since first: recovery reads it as soon as is_up is false, and
   * a stale value would end the rejoin grace at once.
   */
  if (atomic_load (&s->is_up))
    atomic_store (&s->down_since_ms, rp_now_ms ());
  /* Only the way from up to down kills the connections.  A server that
   * is down already is being reconnected by its own thread: a late
   * failure seen by another thread must not kill the fresh connections
   * in the middle of their HELLO (the reconnect then failed for nothing
   * and the server stayed down a few heartbeats longer: seen in
   * test-chaos.sh).
   */
  if (!atomic_exchange (&s->is_up, false))
    return;
  logging_msg (LOGGING_WARN, "server %s down: %s", s->addr, why);
  for (unsigned i = 0; i < s->nconns + s->nlanes; i++)
    conn_kill (&s->conns[i], why);
}

void
donor_park (struct donor *s, unsigned spares)
{
  atomic_store (&s->park, PARK_DONE);
  if (atomic_exchange (&s->is_up, false))
    atomic_store (&s->down_since_ms, rp_now_ms ());
  for (unsigned i = 0; i < s->nconns + s->nlanes; i++) {
    conn_kill (&s->conns[i], "parked");
    conn_join (&s->conns[i]);
  }
  logging_msg (LOGGING_INFO, "server %s parked: it holds nothing of this"
               " client's and %u spares are connected (spare-servers=);"
               " reconnected when needed", s->addr, spares);
}

void
donor_add_orphan (struct donor *s, uint64_t handle)
{
  pthread_mutex_lock (&s->orphan_lock);
  if (s->norphans < DONOR_ORPHANS)
    s->orphans[s->norphans++] = handle;
  else if (!s->orphans_overflowed) {
    s->orphans_overflowed = true;
    logging_msg (LOGGING_WARN,
                 "server %s: too many extents to free while it is"
                 " unreachable; the rest is freed when this client's lease"
                 " there expires",
                 s->addr);
  }
  pthread_mutex_unlock (&s->orphan_lock);
}

uint64_t
donor_up_gen (struct rp_pool *p)
{
  return atomic_load (&p->up_gen);
}

void
donor_wait_up (struct rp_pool *p, uint64_t gen, uint64_t deadline_ms)
{
  struct timespec ts = {
    .tv_sec = deadline_ms / 1000,
    .tv_nsec = (deadline_ms % 1000) * 1000000,
  };

  pthread_mutex_lock (&p->up_lock);
  while (atomic_load (&p->up_gen) == gen &&
         pthread_cond_timedwait (&p->up_cond, &p->up_lock, &ts) != ETIMEDOUT)
    ;
  pthread_mutex_unlock (&p->up_lock);
}

static void
donor_on_conn_dead (struct conn *c, const char *why)
{
  donor_down (c->opaque, why);
}

static void
donor_on_free_bytes (struct conn *c, uint64_t free_bytes)
{
  struct donor *s = c->opaque;

  atomic_store (&s->free_bytes, free_bytes);
}

/* A notice from the server (its receive side; must not block long):
 * DRAIN makes the server leaving; RECLAIM queues the handles it wants
 * back for recovery to move (recovery.c), and wakes the monitor.
 */
static void
donor_on_notice (struct conn *c, const struct rp_notice *n,
                 const uint64_t *handles)
{
  struct donor *s = c->opaque;
  struct rp_pool *p = s->pool;
  unsigned kept = 0;

  if (n->kind == RP_NOTICE_DRAIN) {
    if (!atomic_exchange (&s->is_draining, true))
      logging_msg (LOGGING_WARN, "server %s is draining: moving this"
                   " client's copies off it (its deadline: %" PRIu64 " s)",
                   s->addr, n->deadline_ms / 1000);
  }
  else {
    uint64_t due = rp_now_ms () + n->deadline_ms / 2, old;
    pthread_mutex_lock (&s->reclaim_lock);
    /* Never later than it is: copies asked back before, and not moved
     * yet, keep their own server deadline (engine.h).
     */
    old = atomic_load (&s->reclaim_due_ms);
    if (old == 0 || due < old)
      atomic_store (&s->reclaim_due_ms, due);
    for (uint32_t i = 0; i < n->count && s->nreclaim < DONOR_RECLAIM; i++)
      s->reclaim[s->nreclaim++] = handles[i], kept++;
    if (kept < n->count && !s->is_reclaim_full_logged) {
      s->is_reclaim_full_logged = true;
      logging_msg (LOGGING_WARN, "server %s: more extents asked back than"
                   " can be queued; those not moved by the deadline are"
                   " dropped there and re-created", s->addr);
    }
    pthread_mutex_unlock (&s->reclaim_lock);
    logging_msg (LOGGING_INFO, "server %s asked for %" PRIu32 " extent(s)"
                 " back within %" PRIu64 " ms", s->addr, n->count,
                 n->deadline_ms);
  }
  pthread_mutex_lock (&p->lock);
  pthread_cond_broadcast (&p->cond);
  pthread_mutex_unlock (&p->lock);
}

/* Lanes for s: lanes=, over TCP (a transport that can pump), at most
 * the share of RP_LANES_TOTAL of a server of the pool's size
 * (lanes_share), and never more than the pool has left: however many
 * servers join, the pool has at most RP_LANES_TOTAL lanes.  Taken from
 * what is left.
 */
static unsigned
donor_lanes (struct rp_pool *p, const struct donor *s)
{
  unsigned n = p->cfg.lanes;

  if (s->transport->pump == NULL)
    return 0;
  if (n > p->lanes_share)
    n = p->lanes_share;
  if (n > p->lanes_left)
    n = p->lanes_left;
  p->lanes_left -= n;
  return n;
}

int
donor_init (struct donor *s, struct rp_pool *p, unsigned index,
            const char *addr)
{
  const char *hostport;

  s->pool = p;
  s->index = index;
  snprintf (s->addr, sizeof s->addr, "%s", addr);
  /* config.c has checked the address and its scheme. */
  s->transport = transport_find (s->addr, &hostport, NULL);
  if (s->transport == NULL ||
      rp_split_hostport (hostport, s->host, sizeof s->host, s->port,
                         sizeof s->port) == -1) {
    errno = EINVAL;
    return -1;
  }
  /* Where another memserver reaches it for a COPY: its TCP address as
   * we use it (none over RDMA: its TCP listener may be elsewhere).
   */
  s->copy_addr[0] = '\0';
  if (s->transport == &transport_tcp &&
      snprintf (s->copy_addr, sizeof s->copy_addr,
                strchr (s->host, ':') ? "[%s]:%s" : "%s:%s", s->host,
                s->port) >= (int) sizeof s->copy_addr)
    s->copy_addr[0] = '\0';
  pthread_mutex_init (&s->orphan_lock, NULL);
  pthread_mutex_init (&s->reclaim_lock, NULL);
  /* Written before they are read: malloc leaves their pages untouched
   * until a server asks for extents back or one is lost.
   */
  s->reclaim = malloc (DONOR_RECLAIM * sizeof *s->reclaim);
  s->orphans = malloc (DONOR_ORPHANS * sizeof *s->orphans);
  s->nconns = p->cfg.connections;
  s->nlanes = donor_lanes (p, s);
  s->conns = calloc (s->nconns + s->nlanes, sizeof *s->conns);
  if (s->conns == NULL || s->reclaim == NULL || s->orphans == NULL)
    goto out_nomem;
  for (unsigned k = 0; k < s->nconns + s->nlanes; k++) {
    char name[200];
    bool is_lane = k >= s->nconns;
    snprintf (name, sizeof name, is_lane ? "%s lane %u" : "%s#%u", s->addr,
              is_lane ? k - s->nconns : k);
    /* A lane carries one read at a time, and its handshake. */
    if (conn_init (&s->conns[k], name, s->transport,
                   is_lane ? 2 : p->cfg.inflight) == -1) {
      while (k-- > 0)
        conn_destroy (&s->conns[k]);
      goto out_nomem;
    }
    if (is_lane)
      conn_set_direct (&s->conns[k]);
    s->conns[k].opaque = s;
    s->conns[k].on_dead = donor_on_conn_dead;
    s->conns[k].on_free_bytes = donor_on_free_bytes;
    s->conns[k].on_notice = donor_on_notice;
  }
  atomic_store (&s->lanes_free, s->nlanes == 64 ? UINT64_MAX
                : (UINT64_C (1) << s->nlanes) - 1);
  return 0;
 out_nomem:
  p->lanes_left += s->nlanes;
  free (s->conns);
  free (s->reclaim);
  free (s->orphans);
  s->conns = NULL;
  s->reclaim = s->orphans = NULL;
  s->nconns = s->nlanes = 0;
  pthread_mutex_destroy (&s->orphan_lock);
  pthread_mutex_destroy (&s->reclaim_lock);
  errno = ENOMEM;
  return -1;
}

void
donor_fini (struct donor *s)
{
  for (unsigned k = 0; k < s->nconns + s->nlanes; k++) {
    s->conns[k].on_dead = NULL;
    conn_destroy (&s->conns[k]);
  }
  free (s->conns);
  free (s->reclaim);
  free (s->orphans);
  s->conns = NULL;
  s->reclaim = s->orphans = NULL;
  s->nconns = s->nlanes = 0;
  pthread_mutex_destroy (&s->orphan_lock);
  pthread_mutex_destroy (&s->reclaim_lock);
}

/* One handshake request on c: op with its payload, the reply's into
 * rbuf (rcap bytes).  0 or -1 with errno.
 */
static int
donor_roundtrip (struct conn *c, uint16_t op, const void *payload,
                 uint32_t length, void *rbuf, uint32_t rcap,
                 unsigned timeout_ms)
{
  struct conn_call call;

  memset (&call, 0, sizeof call);
  call.req.op = op;
  call.req.length = length;
  call.payload = payload;
  call.rbuf = rbuf;
  call.rcap = rcap;
  return conn_roundtrip (c, &call, timeout_ms);
}

/* HELLO (and AUTH with a key) on one connection; fills *hi.  0 or -1
 * with a message.  Authentication is mutual: we check the server's
 * proof before we send ours, and a server that does not authenticate
 * is refused when we have a key (it could be anyone).
 */
static int
donor_hello (struct conn *c, const uint8_t owner[16], const uint8_t *key,
             uint64_t fence, uint32_t flags, unsigned timeout_ms,
             struct rp_hello_info *hi, char *err, size_t errlen)
{
  struct rp_hello_req h;
  struct rp_hello_reply reply;
  struct rp_auth_req a;
  struct rp_auth_reply ar;
  const char *why;

  memset (&h, 0, sizeof h);
  h.version = htole32 (RP_PROTOCOL_VERSION);
  memcpy (h.owner, owner, 16);
  h.fence = htole64 (fence);
  h.flags = htole32 (flags);
  /* A predictable nonce would let a recorded server proof be replayed
   * to us: no randomness, no connection.
   */
  if (rp_random_bytes (h.client_nonce, sizeof h.client_nonce) == -1) {
    snprintf (err, errlen, "getrandom: %s", strerror (errno));
    return -1;
  }
  if (donor_roundtrip (c, RP_OP_HELLO, &h, sizeof h, &reply, sizeof reply,
                       timeout_ms) == -1) {
    snprintf (err, errlen, "HELLO: %s", errno == EPROTONOSUPPORT
              ? "protocol version not supported by the server"
              : errno == EPERM ? "refused (a per-client limit or an older"
                " connection generation: see the memserver's log)"
              : strerror (errno));
    return -1;
  }
  if (rp_hello_reply_decode (&reply, hi, &why) == -1) {
    snprintf (err, errlen, "HELLO: %s", why);
    return -1;
  }
  if (hi->version != RP_PROTOCOL_VERSION) {
    snprintf (err, errlen, "HELLO: server speaks protocol %u, we speak %d",
              hi->version, RP_PROTOCOL_VERSION);
    return -1;
  }
  if (!(hi->flags & RP_HELLO_AUTH)) {
    if (key) {
      snprintf (err, errlen, "authentication: the server has no cluster"
                " key (start it with --key-file); refusing an"
                " unauthenticated server");
      return -1;
    }
    return 0;
  }
  if (key == NULL) {
    snprintf (err, errlen, "authentication: the server requires the"
              " cluster key: set key-file=");
    return -1;
  }
  if (!rp_auth_check (key, RP_AUTH_SERVER, h.client_nonce, hi->server_nonce,
                      owner, fence, hi->server_proof)) {
    snprintf (err, errlen, "authentication failed: the server does not"
              " hold our cluster key (different key-file?)");
    return -1;
  }
  rp_auth_proof (key, RP_AUTH_CLIENT, h.client_nonce, hi->server_nonce,
                 owner, fence, a.client_proof);
  if (donor_roundtrip (c, RP_OP_AUTH, &a, sizeof a, &ar, sizeof ar,
                       timeout_ms) == -1) {
    snprintf (err, errlen, "AUTH: %s", errno == EPERM
              ? "refused (a different key-file, or a per-client limit:"
                " see the memserver's log)"
              : strerror (errno));
    return -1;
  }
  if (rp_auth_reply_decode (&ar, &hi->session, &why) == -1) {
    snprintf (err, errlen, "AUTH: %s", why);
    return -1;
  }
  return 0;
}

/* Load the key of cfg->key_file into locked memory (*key, NULL if no
 * key file).  0 or -1 with a message.
 */
int
donor_load_key (const char *key_file, uint8_t **key, char *err, size_t errlen)
{
  char warn[256];

  *key = NULL;
  if (key_file == NULL)
    return 0;
  if (rp_auth_init () == -1) {
    snprintf (err, errlen, "key-file: libsodium failed to initialise");
    return -1;
  }
  *key = rp_key_alloc ();
  if (*key == NULL) {
    snprintf (err, errlen, "key-file: cannot lock memory for the key");
    return -1;
  }
  if (rp_key_load (key_file, *key, err, errlen, warn, sizeof warn) == -1) {
    rp_key_free (*key);
    *key = NULL;
    return -1;
  }
  if (warn[0])
    logging_msg (LOGGING_WARN, "%s", warn);
  return 0;
}

static void
donor_disconnect (struct donor *s)
{
  for (unsigned i = 0; i < s->nconns + s->nlanes; i++) {
    conn_kill (&s->conns[i], "reconnecting");
    conn_join (&s->conns[i]);
  }
}

static bool
donor_lane_is_ok (struct donor *s, unsigned lane)
{
  return (atomic_load (&s->lanes_ok) >> lane) & 1;
}

/* Connect c to s and HELLO it with flags (th: the transport's part).
 * With first (the HELLO reply of the round's first connection), the
 * session and incarnation must be first's: every connection joins the
 * one owner record that the first holds open (a record with a
 * connection never expires).  0; -1 with a message in err, c closed
 * again; -2 with a message if the server's session changed meanwhile.
 */
static int
donor_join (struct rp_pool *p, struct donor *s, struct conn *c,
            uint32_t flags, const struct transport_hello *th,
            const struct rp_hello_info *first, struct rp_hello_info *hi,
            char *err, size_t errlen)
{
  char why[160];

  if (conn_connect (c, s->host, s->port, p->cfg.timeout_ms, th, why,
                    sizeof why) == -1) {
    snprintf (err, errlen, "connect: %s", why);
    return -1;
  }
  if (donor_hello (c, p->owner, p->key, s->fence, flags, p->cfg.timeout_ms,
                   hi, err, errlen) == -1) {
    conn_kill (c, "not joined");
    conn_join (c);
    return -1;
  }
  if (first && (hi->session != first->session ||
                memcmp (hi->incarnation, first->incarnation, 16) != 0)) {
    snprintf (err, errlen, "the server's session changed during the"
              " reconnect");
    return -2;
  }
  conn_set_ready (c);
  return 0;
}

/* Open s's lanes, after its shared connections joined as *hi says
 * (th: as for those).  A lane that cannot be opened is left out, with
 * a log line: a server's --max-client-connections below connections=
 * plus lanes= costs lanes, not the server.  0, or -1 with a message if
 * the server's session changed meanwhile.
 */
static int
donor_connect_lanes (struct rp_pool *p, struct donor *s,
                     const struct rp_hello_info *hi,
                     const struct transport_hello *th, char *err,
                     size_t errlen)
{
  uint_least64_t ok = 0;
  unsigned nfailed = 0;
  char why[160], first[160] = "";

  for (unsigned k = 0; k < s->nlanes; k++) {
    struct rp_hello_info hc;
    int r = donor_join (p, s, &s->conns[s->nconns + k], RP_HELLO_QUIET, th,
                        hi, &hc, why, sizeof why);

    if (r == -2) {
      snprintf (err, errlen, "%s", why);
      return -1;
    }
    if (r == -1) {
      if (nfailed++ == 0)
        snprintf (first, sizeof first, "%s", why);
      continue;
    }
    ok |= UINT64_C (1) << k;
  }
  atomic_store (&s->lanes_ok, ok);
  if (nfailed)
    logging_msg (LOGGING_WARN,
                 "server %s: %u of %u lanes not opened (%s): requests there"
                 " take the shared connections instead (lanes=, and the"
                 " memserver's --max-client-connections)",
                 s->addr, nfailed, s->nlanes, first);
  return 0;
}

/* FREE the handles we could not free while s was away. */
void
donor_free_orphans (struct rp_pool *p, struct donor *s)
{
  uint64_t handles[DONOR_ORPHANS];
  unsigned n;

  pthread_mutex_lock (&s->orphan_lock);
  n = s->norphans;
  memcpy (handles, s->orphans, n * sizeof handles[0]);
  s->norphans = 0;
  s->orphans_overflowed = false;
  pthread_mutex_unlock (&s->orphan_lock);
  for (unsigned i = 0; i < n; i++) {
    struct conn_call call;
    memset (&call, 0, sizeof call);
    call.req.op = RP_OP_FREE;
    call.req.handle = handles[i];
    conn_roundtrip (&s->conns[0], &call, p->cfg.timeout_ms);
  }
}

/* The handles of our session on s, all of them (LIST, paged), into a
 * malloc'd array (*out, *n).  0 or -1.
 */
static int
donor_list_handles (struct rp_pool *p, struct donor *s, uint64_t **out,
                   size_t *n)
{
  size_t cap = 0;
  uint64_t cursor = 0;
  uint8_t *buf = malloc (sizeof (struct rp_list_reply) +
                         RP_LIST_MAX_HANDLES * 8);

  *out = NULL;
  *n = 0;
  if (buf == NULL)
    return -1;
  while (cursor != RP_LIST_END) {
    struct conn_call call;
    uint64_t next;
    uint32_t got;
    const char *why;

    memset (&call, 0, sizeof call);
    call.req.op = RP_OP_LIST;
    call.req.offset = cursor;
    call.req.count = RP_LIST_MAX_HANDLES;
    call.rbuf = buf;
    call.rcap = sizeof (struct rp_list_reply) + RP_LIST_MAX_HANDLES * 8;
    call.is_var_len = true;
    if (conn_roundtrip (&s->conns[0], &call, p->cfg.timeout_ms) == -1)
      goto out_fail;
    why = NULL;  /* set by a reply that does not decode */
    if (rp_list_reply_decode (buf, call.rlen, RP_LIST_MAX_HANDLES, &next,
                              &got, &why) == 0 &&
        next != RP_LIST_END && next <= cursor)
      why = "the cursor did not advance";
    if (why) {
      logging_msg (LOGGING_WARN, "server %s: LIST: %s", s->addr, why);
      errno = EPROTO;
      goto out_fail;
    }
    if (*n + got > cap) {
      size_t ncap = cap ? cap * 2 : 1024;
      while (ncap < *n + got)
        ncap *= 2;
      uint64_t *q = realloc (*out, ncap * sizeof **out);
      if (q == NULL)
        goto out_fail;
      *out = q;
      cap = ncap;
    }
    for (uint32_t i = 0; i < got; i++)
      (*out)[(*n)++] = rp_list_reply_handle (buf, i);
    cursor = next;
  }
  free (buf);
  return 0;
 out_fail:
  free (buf);
  free (*out);
  *out = NULL;
  *n = 0;
  return -1;
}

static int
donor_cmp_u64 (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

  return x < y ? -1 : x > y;
}

/* An ALLOC to s went unanswered: the server may hold extents of ours
 * that the map does not name.  Free every handle it lists that no
 * copy in the map (on s, of the current epoch) has.  s is connected
 * but not yet up, so no copy can be placed on it meanwhile.  Monitor
 * side; allocates (not on the I/O path).  0 or -1 (tried again at the
 * next reconnect).
 */
static int
donor_reconcile (struct rp_pool *p, struct donor *s)
{
  uint64_t *listed, *known = NULL;
  size_t nlisted, nknown = 0, cap = 0, freed = 0;
  unsigned epoch = atomic_load (&s->epoch);

  if (donor_list_handles (p, s, &listed, &nlisted) == -1)
    return -1;
  for (uint64_t idx = 0; idx < p->map.n; idx++) {
    struct replica *rep;
    unsigned nrep;
    /* Under the lock even where no copy is mapped: a writer placing
     * the extent's first copies holds it from the ALLOCs until it
     * publishes them, and an ALLOC of theirs to s answered before s
     * went down names a handle we must not free.
     */
    pthread_rwlock_rdlock (extent_map_lock (&p->map, idx));
    rep = extent_map_copies (&p->map, idx, &nrep);
    for (unsigned r = 0; r < nrep; r++) {
      if (rep[r].handle == 0 || rep[r].server != s->index ||
          rep[r].epoch != epoch)
        continue;
      if (nknown == cap) {
        cap = cap ? cap * 2 : 1024;
        uint64_t *q = realloc (known, cap * sizeof *known);
        if (q == NULL) {
          pthread_rwlock_unlock (extent_map_lock (&p->map, idx));
          free (known);
          free (listed);
          return -1;
        }
        known = q;
      }
      known[nknown++] = rep[r].handle;
    }
    pthread_rwlock_unlock (extent_map_lock (&p->map, idx));
  }
  if (nknown)
    qsort (known, nknown, sizeof *known, donor_cmp_u64);
  for (size_t i = 0; i < nlisted; i++) {
    struct conn_call call;
    if (nknown && bsearch (&listed[i], known, nknown, sizeof *known,
                           donor_cmp_u64))
      continue;
    memset (&call, 0, sizeof call);
    call.req.op = RP_OP_FREE;
    call.req.handle = listed[i];
    if (conn_roundtrip (&s->conns[0], &call, p->cfg.timeout_ms) == 0)
      freed++;
    else if (!call.is_answered) {
      free (known);
      free (listed);
      return -1;
    }
  }
  free (known);
  free (listed);
  if (freed)
    logging_msg (LOGGING_INFO,
                 "server %s: freed %zu extent(s) whose ALLOC reply"
                 " was lost",
                 s->addr, freed);
  return 0;
}

/* Nothing we had on s is there any more: every copy there stops being
 * good at once (the epoch), and there is nothing to free or reconcile.
 */
static void
donor_forget (struct donor *s)
{
  atomic_fetch_add (&s->epoch, 1);
  pthread_mutex_lock (&s->orphan_lock);
  s->norphans = 0;
  pthread_mutex_unlock (&s->orphan_lock);
  atomic_store (&s->has_alloc_in_doubt, false);
}

/* Wait until every write sent to s before it went down is settled
 * (io.c): until then a copy on s that missed one may not be marked
 * stale yet, and counting s up would make it good again -- readable,
 * and a source recovery would copy from and free the others for.  The
 * writer settles once its other copies answer (a request timeout at
 * most), never waiting on us.  s is down, so no new write counts here
 * (io_write_submit counts before it looks).  true when none is open.
 */
static bool
donor_writes_settled (struct rp_pool *p, struct donor *s)
{
  uint64_t deadline = rp_now_ms () + 2 * (uint64_t) p->cfg.timeout_ms + 1000;
  const struct timespec tick = { .tv_sec = 0, .tv_nsec = 1000000 };

  unsigned open = atomic_load (&s->writes_open);

  if (open)
    logging_msg (LOGGING_INFO, "server %s: reconnected once the %u"
                 " write(s) sent to it before it went down are settled",
                 s->addr, open);
  while (atomic_load (&s->writes_open) != 0) {
    if (rp_now_ms () >= deadline)
      return false;
    nanosleep (&tick, NULL);
  }
  return true;
}

/* Connect every connection of s and HELLO; then decide what of ours
 * the server still holds (replica.h, the copy-state invariant): with a
 * new incarnation or a new session, nothing.  Pool open, then only the
 * server's reconnect thread.  0, or -1 with a message in err.
 */
int
donor_connect (struct rp_pool *p, struct donor *s,
                     char *err, size_t errlen)
{
  struct rp_hello_info hi;
  struct transport_hello th = { .buffer_bytes = p->cfg.rdma_buffer };

  if (!donor_writes_settled (p, s)) {
    snprintf (err, errlen, "writes sent before it went down are not"
              " settled yet");
    return -1;
  }
  atomic_store (&s->lanes_ok, 0);
  donor_disconnect (s);
  s->fence++;  /* fences off every connection of the previous round */
  memcpy (th.owner, p->owner, 16);
  th.fence = s->fence;
  /* A server still draining says so again when we join (DRAIN). */
  atomic_store (&s->is_draining, false);
  for (unsigned i = 0; i < s->nconns; i++) {
    struct rp_hello_info hc;
    if (donor_join (p, s, &s->conns[i], 0, &th, i == 0 ? NULL : &hi,
                    i == 0 ? &hi : &hc, err, errlen) != 0)
      goto out_disconnect;
  }
  if (donor_connect_lanes (p, s, &hi, &th, err, errlen) == -1)
    goto out_disconnect;
  if (s->has_incarnation && memcmp (s->incarnation, hi.incarnation, 16) != 0) {
    /* A new server process: all we had there is gone. */
    donor_forget (s);
    logging_msg (LOGGING_WARN,
                 "server %s restarted (new incarnation): the"
                 " replicas it held are gone and will be re-created",
                 s->addr);
  }
  else if (s->has_incarnation && s->session != hi.session) {
    /* Same process, but it expired our session (we were away longer
     * than its lease) and freed every extent of it: the copies there
     * are gone exactly as after a restart.
     */
    donor_forget (s);
    logging_msg (LOGGING_WARN,
                 "server %s back after %" PRIu64 " ms, but it"
                 " expired this client's session (lease %" PRIu32 " ms): the"
                 " replicas it held are gone and will be re-created",
                 s->addr, rp_now_ms () - atomic_load (&s->down_since_ms),
                 hi.lease_ms);
  }
  else if (s->has_incarnation)
    logging_msg (LOGGING_INFO,
                 "server %s back after %" PRIu64 " ms with the same"
                 " incarnation and session: replicas that missed no write are"
                 " kept",
                 s->addr, rp_now_ms () - atomic_load (&s->down_since_ms));
  s->has_incarnation = true;
  memcpy (s->incarnation, hi.incarnation, 16);
  s->session = hi.session;
  s->capacity_bytes = hi.capacity_bytes;
  atomic_store (&s->has_copy, (hi.flags & RP_HELLO_COPY) != 0 &&
                s->copy_addr[0] != '\0');
  if (atomic_load (&s->has_alloc_in_doubt) && donor_reconcile (p, s) == 0)
    atomic_store (&s->has_alloc_in_doubt, false);
  /* A connection of this round that died meanwhile would make the
   * server up with a dead connection (its death found no server up to
   * take down): start over at the next heartbeat instead.
   */
  for (unsigned i = 0; i < s->nconns + s->nlanes; i++)
    if ((i < s->nconns || donor_lane_is_ok (s, i - s->nconns)) &&
        conn_dead_why (&s->conns[i], err, errlen))
      goto out_disconnect;
  atomic_store (&s->free_bytes, hi.free_bytes);
  atomic_store (&s->is_up, true);
  pthread_mutex_lock (&p->up_lock);
  atomic_fetch_add (&p->up_gen, 1);
  pthread_cond_broadcast (&p->up_cond);
  pthread_mutex_unlock (&p->up_lock);
  donor_free_orphans (p, s);
  return 0;
 out_disconnect:
  donor_disconnect (s);
  return -1;
}

int
donor_stat (struct conn *c, unsigned timeout_ms,
                struct rp_server_info *info)
{
  struct rp_stat_reply reply;
  struct rp_stat_info si;
  struct conn_call call;
  const char *why;

  memset (&call, 0, sizeof call);
  call.req.op = RP_OP_STAT;
  call.rbuf = &reply;
  call.rcap = sizeof reply;
  if (conn_roundtrip (c, &call, timeout_ms) == -1) {
    snprintf (info->error, sizeof info->error, "STAT: %s", strerror (errno));
    return -1;
  }
  if (rp_stat_reply_decode (&reply, &si, &why) == -1) {
    snprintf (info->error, sizeof info->error, "STAT: %s", why);
    errno = EPROTO;
    return -1;
  }
  info->is_up = true;
  info->limit_bytes = si.limit_bytes;
  info->state = si.state;
  memcpy (info->incarnation, si.incarnation, 16);
  info->capacity_bytes = si.capacity_bytes;
  info->used_bytes = si.used_bytes;
  info->owner_bytes = si.owner_bytes;
  info->extents = si.extents;
  info->owner_extents = si.owner_extents;
  info->clients = si.clients;
  info->owners = si.owners;
  info->uptime_ms = si.uptime_ms;
  return 0;
}

/* A connection of our own to the memserver at addr, for one operator
 * request: a fresh, owner-less session, authenticated with key_file if
 * not NULL.  0, or -1 with a message in err (and nothing to close).
 */
static int
donor_query_open (const char *addr, const char *key_file,
                  unsigned timeout_ms, struct conn *c, char *err,
                  size_t errlen)
{
  uint8_t *key = NULL;
  struct rp_hello_info hi;
  uint8_t owner[16];
  char host[128], port[16];
  const char *hostport;
  const char *why = NULL;
  const struct transport_ops *ops = transport_find (addr, &hostport, &why);
  /* A query reads and writes no extent: no one-sided buffer. */
  struct transport_hello th = { .fence = 1, .buffer_bytes = 0 };
  char cwhy[140];                /* fits after "connect: " in a status's
                                    error (struct rp_server_info) */

  if (ops == NULL || rp_split_hostport (hostport, host, sizeof host, port,
                                        sizeof port) == -1) {
    snprintf (err, errlen, "%s", ops ? "not HOST:PORT" : why);
    return -1;
  }
  if (donor_load_key (key_file, &key, err, errlen) == -1)
    return -1;
  if (conn_init (c, addr, ops, 4) == -1) {
    snprintf (err, errlen, "%s", strerror (errno));
    rp_key_free (key);
    return -1;
  }
  if (rp_random_bytes (owner, sizeof owner) == -1) {
    snprintf (err, errlen, "getrandom: %s", strerror (errno));
    goto out_destroy;
  }
  memcpy (th.owner, owner, 16);
  if (conn_connect (c, host, port, timeout_ms, &th, cwhy,
                    sizeof cwhy) == -1) {
    snprintf (err, errlen, "connect: %s", cwhy);
    goto out_destroy;
  }
  if (donor_hello (c, owner, key, th.fence, 0, timeout_ms, &hi, err,
                   errlen) == -1)
    goto out_destroy;
  conn_set_ready (c);
  rp_key_free (key);
  return 0;
 out_destroy:
  conn_destroy (c);
  rp_key_free (key);
  return -1;
}

int
rp_server_query (const char *addr, const char *key_file, unsigned timeout_ms,
                 struct rp_server_info *info)
{
  struct conn c;
  int ret;

  memset (info, 0, sizeof *info);
  if (donor_query_open (addr, key_file, timeout_ms, &c, info->error,
                        sizeof info->error) == -1)
    return -1;
  ret = donor_stat (&c, timeout_ms, info);
  conn_destroy (&c);
  return ret;
}

int
rp_server_drain (const char *addr, const char *key_file, unsigned timeout_ms,
                 uint64_t deadline_ms, char *err, size_t errlen)
{
  struct conn c;
  struct conn_call call;
  int ret = 0;

  if (deadline_ms > RP_DRAIN_MAX_MS) {
    snprintf (err, errlen, "a drain deadline is at most %u s",
              RP_DRAIN_MAX_MS / 1000);
    errno = EINVAL;
    return -1;
  }
  if (donor_query_open (addr, key_file, timeout_ms, &c, err, errlen) == -1)
    return -1;
  memset (&call, 0, sizeof call);
  call.req.op = RP_OP_DRAIN;
  call.req.offset = deadline_ms;
  if (conn_roundtrip (&c, &call, timeout_ms) == -1) {
    snprintf (err, errlen, "DRAIN: %s", strerror (errno));
    ret = -1;
  }
  conn_destroy (&c);
  return ret;
}
