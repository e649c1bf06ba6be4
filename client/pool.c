/* The pool: opening connections to every server, the session (owner)
 * id, the monitor thread (heartbeats, reconnects, incarnation checks,
 * recovery passes, the stats file) and the pool's statistics.
 *
 * Server states: up (every connection connected and HELLO'd) or down.
 * Any connection failure takes the whole server down, and the monitor
 * brings it back as a unit; this keeps "one extent, one connection per
 * server" ordering simple across reconnects.  On reconnect the HELLO
 * reply's incarnation tells a restart (new random incarnation: every
 * replica there is gone, bump the epoch) from a network blip (same
 * incarnation: replicas there are kept, except those marked stale
 * because they missed writes while the server was away).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

#include "auth.h"
#include "pool.h"
#include "logging.h"
#include "util.h"

void
pool_server_down (struct rp_server *s, const char *why)
{
  /* down_since first: recovery reads it as soon as is_up is false, and
   * a stale value would end the rejoin grace at once.
   */
  if (atomic_load (&s->is_up))
    atomic_store (&s->down_since_ms, rp_now_ms ());
  if (atomic_exchange (&s->is_up, false))
    rp_log (RP_LOG_WARN, "server %s down: %s", s->addr, why);
  for (unsigned i = 0; i < s->nconns; i++)
    rp_conn_kill (&s->conns[i], why);
}

void
pool_add_orphan (struct rp_server *s, uint64_t handle)
{
  pthread_mutex_lock (&s->orphan_lock);
  if (s->norphans < POOL_ORPHANS)
    s->orphans[s->norphans++] = handle;
  else if (!s->orphans_overflowed) {
    s->orphans_overflowed = true;
    rp_log (RP_LOG_WARN, "server %s: too many extents to free while it is"
            " unreachable; the rest is freed when this client's lease"
            " there expires", s->addr);
  }
  pthread_mutex_unlock (&s->orphan_lock);
}

uint64_t
pool_up_gen (struct rp_pool *p)
{
  return atomic_load (&p->up_gen);
}

void
pool_wait_up (struct rp_pool *p, uint64_t gen, uint64_t deadline_ms)
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
pool_on_conn_dead (struct rp_conn *c, const char *why)
{
  pool_server_down (c->opaque, why);
}

static void
pool_on_free_bytes (struct rp_conn *c, uint64_t free_bytes)
{
  struct rp_server *s = c->opaque;

  atomic_store (&s->free_bytes, free_bytes);
}

/* HELLO (and AUTH with a key) on one connection; fills *hi.  0 or -1
 * with a message.  Authentication is mutual: we check the server's
 * proof before we send ours, and a server that does not authenticate
 * is refused when we have a key (it could be anyone).
 */
static int
pool_hello (struct rp_conn *c, const uint8_t owner[16], const uint8_t *key,
            uint64_t fence, unsigned timeout_ms, struct rp_hello_info *hi,
            char *err, size_t errlen)
{
  struct rp_hello_req h;
  struct rp_hello_reply reply;
  struct rp_auth_req a;
  struct rp_auth_reply ar;
  struct rp_call call;
  const char *why;

  memset (&h, 0, sizeof h);
  h.version = htole32 (RP_PROTOCOL_VERSION);
  memcpy (h.owner, owner, 16);
  h.fence = htole64 (fence);
  /* A predictable nonce would let a recorded server proof be replayed
   * to us: no randomness, no connection.
   */
  if (rp_random_bytes (h.client_nonce, sizeof h.client_nonce) == -1) {
    snprintf (err, errlen, "getrandom: %s", strerror (errno));
    return -1;
  }
  memset (&call, 0, sizeof call);
  call.req.op = RP_OP_HELLO;
  call.req.length = sizeof h;
  call.payload = &h;
  call.rbuf = &reply;
  call.rcap = sizeof reply;
  if (rp_conn_call (c, &call, timeout_ms) == -1) {
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
  memset (&call, 0, sizeof call);
  call.req.op = RP_OP_AUTH;
  call.req.length = sizeof a;
  call.payload = &a;
  call.rbuf = &ar;
  call.rcap = sizeof ar;
  if (rp_conn_call (c, &call, timeout_ms) == -1) {
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
static int
pool_load_key (const char *key_file, uint8_t **key, char *err, size_t errlen)
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
    rp_log (RP_LOG_WARN, "%s", warn);
  return 0;
}

static void
pool_server_disconnect (struct rp_server *s)
{
  for (unsigned i = 0; i < s->nconns; i++) {
    rp_conn_kill (&s->conns[i], "reconnecting");
    rp_conn_join (&s->conns[i]);
  }
}

/* FREE the handles we could not free while s was away. */
static void
pool_free_orphans (struct rp_pool *p, struct rp_server *s)
{
  uint64_t handles[POOL_ORPHANS];
  unsigned n;

  pthread_mutex_lock (&s->orphan_lock);
  n = s->norphans;
  memcpy (handles, s->orphans, n * sizeof handles[0]);
  s->norphans = 0;
  s->orphans_overflowed = false;
  pthread_mutex_unlock (&s->orphan_lock);
  for (unsigned i = 0; i < n; i++) {
    struct rp_call call;
    memset (&call, 0, sizeof call);
    call.req.op = RP_OP_FREE;
    call.req.handle = handles[i];
    rp_conn_call (&s->conns[0], &call, p->cfg.timeout_ms);
  }
}

/* The handles of our session on s, all of them (LIST, paged), into a
 * malloc'd array (*out, *n).  0 or -1.
 */
static int
pool_list_handles (struct rp_pool *p, struct rp_server *s, uint64_t **out,
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
    struct rp_call call;
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
    if (rp_conn_call (&s->conns[0], &call, p->cfg.timeout_ms) == -1)
      goto out_fail;
    if (rp_list_reply_decode (buf, call.rlen, RP_LIST_MAX_HANDLES, &next,
                              &got, &why) == -1 ||
        (next != RP_LIST_END && next <= cursor)) {
      rp_log (RP_LOG_WARN, "server %s: LIST: %s", s->addr,
              next <= cursor ? "the cursor did not advance" : why);
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
pool_cmp_u64 (const void *a, const void *b)
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
pool_reconcile (struct rp_pool *p, struct rp_server *s)
{
  uint64_t *listed, *known = NULL;
  size_t nlisted, nknown = 0, cap = 0, freed = 0;
  unsigned epoch = atomic_load (&s->epoch);

  if (pool_list_handles (p, s, &listed, &nlisted) == -1)
    return -1;
  for (uint64_t idx = 0; idx < p->map.n; idx++) {
    struct rp_extent *e = &p->map.e[idx];
    if (__atomic_load_n (&e->nrep, __ATOMIC_ACQUIRE) == 0)
      continue;
    pthread_rwlock_rdlock (extent_map_lock (&p->map, idx));
    for (unsigned r = 0; r < e->nrep; r++) {
      if (e->rep[r].server != s->index || e->rep[r].epoch != epoch)
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
      known[nknown++] = e->rep[r].handle;
    }
    pthread_rwlock_unlock (extent_map_lock (&p->map, idx));
  }
  if (nknown)
    qsort (known, nknown, sizeof *known, pool_cmp_u64);
  for (size_t i = 0; i < nlisted; i++) {
    struct rp_call call;
    if (nknown && bsearch (&listed[i], known, nknown, sizeof *known,
                           pool_cmp_u64))
      continue;
    memset (&call, 0, sizeof call);
    call.req.op = RP_OP_FREE;
    call.req.handle = listed[i];
    if (rp_conn_call (&s->conns[0], &call, p->cfg.timeout_ms) == 0)
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
    rp_log (RP_LOG_INFO, "server %s: freed %zu extent(s) whose ALLOC reply"
            " was lost", s->addr, freed);
  return 0;
}

/* Connect every connection of s and HELLO; then decide what of ours
 * the server still holds (pool.h, the copy-state invariant): with a
 * new incarnation or a new session, nothing.  Pool open, then only the
 * server's reconnect thread.  0, or -1 with a message in err.
 */
static int
pool_server_connect (struct rp_pool *p, struct rp_server *s,
                     char *err, size_t errlen)
{
  struct rp_hello_info hi;

  pool_server_disconnect (s);
  s->fence++;  /* fences off every connection of the previous round */
  for (unsigned i = 0; i < s->nconns; i++) {
    struct rp_hello_info hc;
    if (rp_conn_connect (&s->conns[i], s->host, s->port,
                         p->cfg.timeout_ms) == -1) {
      snprintf (err, errlen, "connect: %s", strerror (errno));
      goto out_disconnect;
    }
    if (pool_hello (&s->conns[i], p->owner, p->key, s->fence, p->cfg.timeout_ms,
                    i == 0 ? &hi : &hc, err, errlen) == -1)
      goto out_disconnect;
    /* Every connection joined the one owner record that conns[0]
     * holds open (a record with a connection never expires), so every
     * reply names the same incarnation and session.
     */
    if (i > 0 && (hc.session != hi.session ||
                  memcmp (hc.incarnation, hi.incarnation, 16) != 0)) {
      snprintf (err, errlen, "the server's session changed during the"
                " reconnect");
      goto out_disconnect;
    }
    rp_conn_set_ready (&s->conns[i]);
  }
  if (s->has_incarnation && memcmp (s->incarnation, hi.incarnation, 16) != 0) {
    /* A new server process: all we had there is gone. */
    atomic_fetch_add (&s->epoch, 1);
    pthread_mutex_lock (&s->orphan_lock);
    s->norphans = 0;
    pthread_mutex_unlock (&s->orphan_lock);
    atomic_store (&s->has_alloc_in_doubt, false);
    rp_log (RP_LOG_WARN, "server %s restarted (new incarnation): the"
            " replicas it held are gone and will be re-created", s->addr);
  }
  else if (s->has_incarnation && s->session != hi.session) {
    /* Same process, but it expired our session (we were away longer
     * than its lease) and freed every extent of it: the copies there
     * are gone exactly as after a restart.
     */
    atomic_fetch_add (&s->epoch, 1);
    pthread_mutex_lock (&s->orphan_lock);
    s->norphans = 0;
    pthread_mutex_unlock (&s->orphan_lock);
    atomic_store (&s->has_alloc_in_doubt, false);
    rp_log (RP_LOG_WARN, "server %s back after %" PRIu64 " ms, but it"
            " expired this client's session (lease %" PRIu32 " ms): the"
            " replicas it held are gone and will be re-created", s->addr,
            rp_now_ms () - atomic_load (&s->down_since_ms), hi.lease_ms);
  }
  else if (s->has_incarnation)
    rp_log (RP_LOG_INFO, "server %s back after %" PRIu64 " ms with the same"
            " incarnation and session: replicas that missed no write are"
            " kept", s->addr, rp_now_ms () - atomic_load (&s->down_since_ms));
  s->has_incarnation = true;
  memcpy (s->incarnation, hi.incarnation, 16);
  s->session = hi.session;
  s->capacity_bytes = hi.capacity_bytes;
  if (atomic_load (&s->has_alloc_in_doubt) && pool_reconcile (p, s) == 0)
    atomic_store (&s->has_alloc_in_doubt, false);
  atomic_store (&s->free_bytes, hi.free_bytes);
  atomic_store (&s->is_up, true);
  pthread_mutex_lock (&p->up_lock);
  atomic_fetch_add (&p->up_gen, 1);
  pthread_cond_broadcast (&p->up_cond);
  pthread_mutex_unlock (&p->up_lock);
  pool_free_orphans (p, s);
  return 0;
 out_disconnect:
  pool_server_disconnect (s);
  return -1;
}

/* PING every up server at once and wait for all the replies with one
 * deadline: a PING that misses it kills its connection, which takes
 * that server down.  This is how a hung server is found even when no
 * I/O goes to it, and one hung server costs the round one timeout,
 * not one per server.
 */
static void
pool_ping_all (struct rp_pool *p)
{
  struct rp_call calls[RP_MAX_SERVERS];
  struct rp_wait w;
  unsigned n = 0;

  rp_wait_init (&w);
  for (unsigned i = 0; i < p->nservers; i++) {
    struct rp_server *s = &p->servers[i];
    if (!atomic_load (&s->is_up) || atomic_load (&s->is_reconnecting))
      continue;
    memset (&calls[n], 0, sizeof calls[n]);
    calls[n].req.op = RP_OP_PING;
    calls[n].wait = &w;
    if (rp_conn_submit (&s->conns[0], &calls[n]) == 0)
      n++;
  }
  rp_wait_all (&w, calls, n, rp_now_ms () + p->cfg.timeout_ms);
  rp_wait_destroy (&w);
}

/* A server's reconnect, on its own thread (see pool_monitor). */
static void *
pool_reconnect_thread (void *arg)
{
  struct rp_server *s = arg;
  char err[160];

  if (pool_server_connect (s->pool, s, err, sizeof err) == 0) {
    rp_log (RP_LOG_INFO, "server %s up", s->addr);
    s->last_connect_err[0] = '\0';
  }
  else if (strcmp (err, s->last_connect_err) != 0) {
    /* Once per distinct reason, not every heartbeat. */
    rp_log (RP_LOG_WARN, "server %s: reconnect failed: %s", s->addr, err);
    snprintf (s->last_connect_err, sizeof s->last_connect_err, "%s", err);
  }
  atomic_store (&s->is_reconnecting, false);
  return NULL;
}

/* Start a reconnect of every down server that has none running, each
 * on its own thread: a blackholed server (connect and HELLO time out)
 * holds up only itself.  Joins the threads that have finished.
 * Monitor thread only.
 */
static void
pool_reconnect_down (struct rp_pool *p)
{
  for (unsigned i = 0; i < p->nservers; i++) {
    struct rp_server *s = &p->servers[i];
    if (atomic_load (&s->is_reconnecting))
      continue;
    if (s->has_reconnector) {
      pthread_join (s->reconnector, NULL);
      s->has_reconnector = false;
    }
    if (atomic_load (&s->is_up))
      continue;
    pthread_attr_t attr;
    pthread_attr_init (&attr);
    pthread_attr_setstacksize (&attr, 256 * 1024);  /* see conn.c */
    atomic_store (&s->is_reconnecting, true);
    if (pthread_create (&s->reconnector, &attr, pool_reconnect_thread, s) == 0)
      s->has_reconnector = true;
    else
      atomic_store (&s->is_reconnecting, false);  /* next heartbeat */
    pthread_attr_destroy (&attr);
  }
}

/* A server's first connect, at pool open: the reason of a failure is
 * left in last_connect_err for rp_pool_open to report.
 */
static void *
pool_open_thread (void *arg)
{
  struct rp_server *s = arg;

  if (pool_server_connect (s->pool, s, s->last_connect_err,
                           sizeof s->last_connect_err) == 0)
    s->last_connect_err[0] = '\0';
  return NULL;
}

/* Join every reconnect thread (close).  Each ends within about
 * connections x 2 x timeout-ms.
 */
static void
pool_join_reconnects (struct rp_pool *p)
{
  for (unsigned i = 0; i < p->nservers; i++) {
    struct rp_server *s = &p->servers[i];
    if (s->has_reconnector) {
      pthread_join (s->reconnector, NULL);
      s->has_reconnector = false;
    }
  }
}

static void
pool_write_stats_file (struct rp_pool *p)
{
  struct rp_pool_stats st;
  char tmp[4096];
  FILE *fp;

  rp_pool_get_stats (p, &st);
  snprintf (tmp, sizeof tmp, "%s.tmp", p->cfg.stats_file);
  /* O_NOFOLLOW: a link planted at PATH.tmp must not redirect the write. */
  int fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd == -1)
    return;
  fp = fdopen (fd, "w");
  if (fp == NULL) {
    close (fd);
    return;
  }
  /* "name value" per figure, in the order of the lists (client.h). */
#define POOL_STATS_LINE(name, help) \
  fprintf (fp, "%s %" PRIu64 "\n", #name, st.name);
  RP_POOL_GAUGES (POOL_STATS_LINE)
  RP_POOL_COUNTERS (POOL_STATS_LINE)
#undef POOL_STATS_LINE
  for (unsigned i = 0; i < p->nservers; i++)
    fprintf (fp, "server %s %s epoch %u\n", p->servers[i].addr,
             atomic_load (&p->servers[i].is_up) ? "up" : "down",
             atomic_load (&p->servers[i].epoch));
  if (fclose (fp) == 0)
    rename (tmp, p->cfg.stats_file);
}

static void *
pool_monitor (void *arg)
{
  struct rp_pool *p = arg;

  pthread_mutex_lock (&p->lock);
  while (!p->is_stopping) {
    uint64_t wake = rp_now_ms () + p->cfg.heartbeat_ms;
    struct timespec ts = { .tv_sec = wake / 1000,
                           .tv_nsec = (wake % 1000) * 1000000 };
    pthread_cond_timedwait (&p->cond, &p->lock, &ts);
    if (p->is_stopping)
      break;
    pthread_mutex_unlock (&p->lock);

    pool_ping_all (p);
    pool_reconnect_down (p);
    recovery_pass (p);
    if (p->cfg.stats_file)
      pool_write_stats_file (p);
    pthread_mutex_lock (&p->lock);
  }
  pthread_mutex_unlock (&p->lock);
  return NULL;
}

static int
pool_copy_config (struct rp_config *dst, const struct rp_config *src)
{
  *dst = *src;
  for (unsigned i = 0; i < src->nservers; i++)
    dst->servers[i] = strdup (src->servers[i]);
  dst->stats_file = src->stats_file ? strdup (src->stats_file) : NULL;
  dst->key_file = src->key_file ? strdup (src->key_file) : NULL;
  dst->backup_file = src->backup_file ? strdup (src->backup_file) : NULL;
  return 0;
}

struct rp_pool *
rp_pool_open (const struct rp_config *cfg, char *err, size_t errlen)
{
  struct rp_pool *p;
  pthread_condattr_t attr;
  unsigned up = 0;
  size_t used = 0;

  if (rp_config_check (cfg, err, errlen) == -1)
    return NULL;
  p = calloc (1, sizeof *p);
  if (p == NULL) {
    snprintf (err, errlen, "out of memory");
    return NULL;
  }
  pool_copy_config (&p->cfg, cfg);
  if (extent_map_init (&p->map, cfg->size_bytes, cfg->extent_size) == -1) {
    snprintf (err, errlen, "extent map for size=%" PRIu64 ": %s",
              cfg->size_bytes, strerror (errno));
    goto out_free;
  }
  p->backup_fd = -1;
  /* The owner id is what keeps other sessions out of our extents on
   * servers without a key: it must be unpredictable.
   */
  if (rp_random_bytes (p->owner, sizeof p->owner) == -1) {
    snprintf (err, errlen, "getrandom: %s", strerror (errno));
    goto out_destroy_map;
  }
  if (pool_load_key (cfg->key_file, &p->key, err, errlen) == -1)
    goto out_destroy_map;
  p->recovery_buf = malloc (cfg->extent_size < RP_MAX_PAYLOAD
                            ? cfg->extent_size : RP_MAX_PAYLOAD);
  if (p->recovery_buf == NULL) {
    snprintf (err, errlen, "out of memory");
    goto out_free_key;
  }
  if (cfg->backup_file) {
    /* A rampool disk starts empty in every session; so does its backup.
     * The file holds swapped pages: never through a symlink, and only
     * readable by us whatever mode an existing file had.
     */
    struct stat sb;
    p->backup_fd = open (cfg->backup_file, O_RDWR | O_CREAT |
                         O_NOFOLLOW | O_CLOEXEC, 0600);
    if (p->backup_fd == -1 || fstat (p->backup_fd, &sb) == -1) {
      snprintf (err, errlen, "backup: %s: %s", cfg->backup_file,
                errno == ELOOP ? "is a symbolic link; refusing to follow it"
                : strerror (errno));
      goto out_close_backup;
    }
    /* Another user's file (made in a shared directory before us) would
     * stay readable by that user whatever its mode: refuse it before
     * a byte is written.
     */
    if (!S_ISREG (sb.st_mode) || sb.st_uid != geteuid ()) {
      snprintf (err, errlen, "backup: %s: %s", cfg->backup_file,
                !S_ISREG (sb.st_mode) ? "not a regular file"
                : "owned by another user; refusing to write swapped pages"
                  " into it");
      goto out_close_backup;
    }
    if (fchmod (p->backup_fd, 0600) == -1 ||
        ftruncate (p->backup_fd, 0) == -1 ||
        ftruncate (p->backup_fd, cfg->size_bytes) == -1) {
      snprintf (err, errlen, "backup: %s: %s", cfg->backup_file,
                strerror (errno));
      goto out_close_backup;
    }
  }
  if (cfg->is_encrypted && crypt_init (&p->crypt, cfg->size_bytes) == -1) {
    snprintf (err, errlen, "encrypt=on: %s", strerror (errno));
    goto out_close_backup;
  }
  pthread_mutex_init (&p->lock, NULL);
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&p->cond, &attr);
  pthread_mutex_init (&p->up_lock, NULL);
  pthread_cond_init (&p->up_cond, &attr);
  pthread_condattr_destroy (&attr);

  p->nservers = cfg->nservers;
  for (unsigned i = 0; i < p->nservers; i++) {
    struct rp_server *s = &p->servers[i];
    s->pool = p;
    s->index = i;
    snprintf (s->addr, sizeof s->addr, "%s", cfg->servers[i]);
    rp_split_hostport (s->addr, s->host, sizeof s->host,
                       s->port, sizeof s->port);
    pthread_mutex_init (&s->orphan_lock, NULL);
    s->nconns = cfg->connections;
    s->conns = calloc (s->nconns, sizeof *s->conns);
    for (unsigned k = 0; k < s->nconns; k++) {
      char name[200];
      snprintf (name, sizeof name, "%s#%u", s->addr, k);
      rp_conn_init (&s->conns[k], name, cfg->inflight);
      s->conns[k].opaque = s;
      s->conns[k].on_dead = pool_on_conn_dead;
      s->conns[k].on_free_bytes = pool_on_free_bytes;
    }
  }
  /* Connect to everyone at once (one thread per server, as for
   * reconnects: an unreachable server costs the open one timeout, not
   * one per server); report every server that did not answer.
   */
  for (unsigned i = 0; i < p->nservers; i++) {
    struct rp_server *s = &p->servers[i];
    pthread_attr_t tattr;
    pthread_attr_init (&tattr);
    pthread_attr_setstacksize (&tattr, 256 * 1024);
    s->has_reconnector =
      pthread_create (&s->reconnector, &tattr, pool_open_thread, s) == 0;
    pthread_attr_destroy (&tattr);
    if (!s->has_reconnector)
      pool_open_thread (s);
  }
  pool_join_reconnects (p);
  for (unsigned i = 0; i < p->nservers; i++) {
    struct rp_server *s = &p->servers[i];
    if (atomic_load (&s->is_up)) {
      up++;
      continue;
    }
    atomic_store (&s->down_since_ms, rp_now_ms ());
    rp_log (RP_LOG_WARN, "server %s: %s", s->addr, s->last_connect_err);
    if (used < errlen)
      used += snprintf (err + used, errlen - used, "%s%s: %s",
                        used ? "; " : "", s->addr, s->last_connect_err);
  }
  if (up < cfg->replicas) {
    char tail[96];
    snprintf (tail, sizeof tail, " (only %u of %u servers answered;"
              " replicas=%u needs %u)", up, p->nservers, cfg->replicas,
              cfg->replicas);
    if (used < errlen)
      snprintf (err + used, errlen - used, "%s", tail);
    goto out_close;
  }
  pthread_attr_t tattr;
  pthread_attr_init (&tattr);
  pthread_attr_setstacksize (&tattr, 512 * 1024);  /* see conn.c */
  int perr = pthread_create (&p->monitor, &tattr, pool_monitor, p);
  pthread_attr_destroy (&tattr);
  if (perr != 0) {
    errno = perr;
    snprintf (err, errlen, "creating the monitor thread: %s", strerror (errno));
    goto out_close;
  }
  p->has_monitor = true;
  rp_log (RP_LOG_INFO, "pool open: %u of %u servers up, size %" PRIu64
          ", extent-size %" PRIu32 ", replicas %u", up, p->nservers,
          cfg->size_bytes, cfg->extent_size, cfg->replicas);
  return p;
 out_close:
  rp_pool_close (p);
  return NULL;
 out_close_backup:
  if (p->backup_fd >= 0)
    close (p->backup_fd);
  free (p->recovery_buf);
 out_free_key:
  rp_key_free (p->key);
 out_destroy_map:
  extent_map_destroy (&p->map);
 out_free:
  rp_config_free (&p->cfg);
  free (p);
  return NULL;
}

/* Free every mapped extent on its servers, pipelined per server. */
static void
pool_free_all (struct rp_pool *p)
{
  for (uint64_t idx = 0; idx < p->map.n; idx++) {
    struct rp_extent *e = &p->map.e[idx];
    if (e->nrep == 0)
      continue;
    for (unsigned r = 0; r < e->nrep; r++) {
      struct rp_server *s = &p->servers[e->rep[r].server];
      if (atomic_load (&s->is_up) && atomic_load (&s->epoch) == e->rep[r].epoch)
        pool_add_orphan (s, e->rep[r].handle);
    }
    memset (e, 0, sizeof *e);
    /* Flush a server's list when it is full. */
    for (unsigned i = 0; i < p->nservers; i++)
      if (p->servers[i].norphans >= POOL_ORPHANS - RP_MAX_REPLICAS)
        pool_free_orphans (p, &p->servers[i]);
  }
  for (unsigned i = 0; i < p->nservers; i++)
    if (atomic_load (&p->servers[i].is_up))
      pool_free_orphans (p, &p->servers[i]);
}

void
rp_pool_close (struct rp_pool *p)
{
  if (p == NULL)
    return;
  if (p->has_monitor) {
    pthread_mutex_lock (&p->lock);
    p->is_stopping = true;
    pthread_cond_broadcast (&p->cond);
    pthread_mutex_unlock (&p->lock);
    pthread_join (p->monitor, NULL);
  }
  pool_join_reconnects (p);
  if (p->map.e)
    pool_free_all (p);
  for (unsigned i = 0; i < p->nservers; i++) {
    struct rp_server *s = &p->servers[i];
    for (unsigned k = 0; k < s->nconns; k++) {
      s->conns[k].on_dead = NULL;
      rp_conn_destroy (&s->conns[k]);
    }
    free (s->conns);
    pthread_mutex_destroy (&s->orphan_lock);
  }
  extent_map_destroy (&p->map);
  pthread_mutex_destroy (&p->lock);
  pthread_cond_destroy (&p->cond);
  pthread_mutex_destroy (&p->up_lock);
  pthread_cond_destroy (&p->up_cond);
  rp_key_free (p->key);
  crypt_destroy (&p->crypt);
  if (p->backup_fd >= 0)
    close (p->backup_fd);
  free (p->recovery_buf);
  rp_config_free (&p->cfg);
  free (p);
}

void
rp_pool_get_stats (struct rp_pool *p, struct rp_pool_stats *st)
{
  memset (st, 0, sizeof *st);
  st->servers = p->nservers;
  for (unsigned i = 0; i < p->nservers; i++)
    if (atomic_load (&p->servers[i].is_up))
      st->servers_up++;
  st->extents = p->map.n;
  for (uint64_t idx = 0; idx < p->map.n; idx++) {
    pthread_rwlock_t *lk = extent_map_lock (&p->map, idx);
    struct rp_extent *e = &p->map.e[idx];
    unsigned good = 0;
    if (__atomic_load_n (&e->nrep, __ATOMIC_RELAXED) == 0)
      continue;
    pthread_rwlock_rdlock (lk);
    for (unsigned r = 0; r < e->nrep; r++)
      if (pool_replica_is_good (p, &e->rep[r]))
        good++;
    if (e->nrep) {
      st->extents_mapped++;
      if (good >= p->cfg.replicas)
        st->extents_healthy++;
      else if (good > 0)
        st->extents_degraded++;
      else if (pool_extent_may_return (p, e))
        st->extents_unreachable++;
      else
        st->extents_lost++;
    }
    pthread_rwlock_unlock (lk);
  }
#define POOL_STATS_COPY(name, help) st->name = atomic_load (&p->count.name);
  RP_POOL_COUNTERS (POOL_STATS_COPY)
#undef POOL_STATS_COPY
}

static int
pool_stat_call (struct rp_conn *c, unsigned timeout_ms,
                struct rp_server_info *info)
{
  struct rp_stat_reply reply;
  struct rp_stat_info si;
  struct rp_call call;
  const char *why;

  memset (&call, 0, sizeof call);
  call.req.op = RP_OP_STAT;
  call.rbuf = &reply;
  call.rcap = sizeof reply;
  if (rp_conn_call (c, &call, timeout_ms) == -1) {
    snprintf (info->error, sizeof info->error, "STAT: %s", strerror (errno));
    return -1;
  }
  if (rp_stat_reply_decode (&reply, &si, &why) == -1) {
    snprintf (info->error, sizeof info->error, "STAT: %s", why);
    errno = EPROTO;
    return -1;
  }
  info->is_up = true;
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

int
rp_pool_server_info (struct rp_pool *p, unsigned i, struct rp_server_info *info)
{
  memset (info, 0, sizeof *info);
  if (i >= p->nservers) {
    errno = EINVAL;
    return -1;
  }
  if (!atomic_load (&p->servers[i].is_up)) {
    snprintf (info->error, sizeof info->error, "down");
    return -1;
  }
  return pool_stat_call (&p->servers[i].conns[0], p->cfg.timeout_ms, info);
}

int
rp_server_query (const char *addr, const char *key_file, unsigned timeout_ms,
                 struct rp_server_info *info)
{
  uint8_t *key = NULL;
  struct rp_conn c;
  struct rp_hello_info hi;
  uint8_t owner[16];
  char host[128], port[16];
  int ret = -1;

  memset (info, 0, sizeof *info);
  if (rp_split_hostport (addr, host, sizeof host, port, sizeof port) == -1) {
    snprintf (info->error, sizeof info->error, "not HOST:PORT");
    return -1;
  }
  if (pool_load_key (key_file, &key, info->error, sizeof info->error) == -1)
    return -1;
  if (rp_conn_init (&c, addr, 4) == -1) {
    rp_key_free (key);
    return -1;
  }
  if (rp_random_bytes (owner, sizeof owner) == -1) {
    snprintf (info->error, sizeof info->error, "getrandom: %s",
              strerror (errno));
    goto out;
  }
  if (rp_conn_connect (&c, host, port, timeout_ms) == -1) {
    snprintf (info->error, sizeof info->error, "connect: %s", strerror (errno));
    goto out;
  }
  if (pool_hello (&c, owner, key, 1, timeout_ms, &hi, info->error,
                  sizeof info->error) == -1)
    goto out;
  rp_conn_set_ready (&c);
  ret = pool_stat_call (&c, timeout_ms, info);
 out:
  rp_conn_destroy (&c);
  rp_key_free (key);
  return ret;
}
