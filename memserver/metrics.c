/* --metrics-listen ADDR:PORT: the memserver's figures for Prometheus,
 * served as GET /metrics over HTTP by libmicrohttpd on a thread of its
 * own.
 *
 * The memserver is single-threaded: its counters (stats.h), the store
 * and reclaim's state belong to the libuv loop and are never read from
 * another thread.  So a scrape asks the loop for a snapshot: the HTTP
 * thread wakes the loop (uv_async_send) and waits on a condition
 * variable; the loop copies the figures into `snap` under the mutex
 * and bumps `gen`; the HTTP thread formats its copy.  If the loop does
 * not answer within METRICS_WAIT_MS (it is stopping, or stuck) the
 * last snapshot is served, or 503 before the first.  The loop's cost
 * is one small copy per scrape.
 *
 * Exposition: the Prometheus text format 0.0.4; names rampool_memserver_*
 * in base units, counters ending in _total, ops and states as labels.
 *
 * Not here: HTTP parsing (libmicrohttpd's), the figures' meaning
 * (stats.h, store.h, reclaim.h), authentication: bind the address to a
 * management network (memserver(8)).
 */
#include <config.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "codec.h"
#include "log.h"
#include "metrics.h"
#include "reclaim.h"
#include "util.h"

/* How long a scrape waits for the loop's snapshot. */
#define METRICS_WAIT_MS 2000

/* What a scrape shows: copied on the loop thread, read on the HTTP
 * thread, under metrics.lock.
 */
struct metrics_snapshot {
  uint64_t capacity_bytes, limit_bytes, used_bytes;
  uint32_t extents;
  uint32_t connections;          /* open now */
  uint32_t clients;              /* sessions holding extents */
  enum rp_state state;
  struct ms_stats stats;
  struct reclaim_progress reclaim;
};

struct metrics {
  struct session_core *core;     /* not owned; the loop's */
  uv_async_t async;              /* a scrape wants a snapshot */
  bool is_async_open;
  struct MHD_Daemon *mhd;
  pthread_mutex_t lock;          /* snap, gen, is_stopping */
  pthread_cond_t cond;           /* gen changed, or is_stopping */
  struct metrics_snapshot snap;
  uint64_t gen;                  /* snapshots taken; 0 = none yet */
  bool is_stopping;
  bool has_port_file;            /* metrics-port-file written: removed
                                    at the end */
  double start_time_s;           /* Unix time the server started */
  char incarnation[33];
};

/* The loop: a scrape asked.  Copy the figures. */
static void
metrics_on_async (uv_async_t *h)
{
  struct metrics *m = h->data;
  struct session_core *core = m->core;
  struct metrics_snapshot s = {
    .capacity_bytes = core->store.region.capacity,
    .limit_bytes = core->store.region.limit,
    .used_bytes = core->store.region.used,
    .extents = core->store.nextents,
    .connections = core->nsessions,
    .clients = store_owners_holding (&core->store),
    .state = core->state,
    .stats = core->stats,
  };

  if (core->reclaim)
    reclaim_get_progress (core->reclaim, rp_now_ms (), &s.reclaim);
  pthread_mutex_lock (&m->lock);
  m->snap = s;
  m->gen++;
  pthread_cond_broadcast (&m->cond);
  pthread_mutex_unlock (&m->lock);
}

/* The HTTP thread: a fresh snapshot into *out.  false when there is
 * none at all.
 */
static bool
metrics_get_snapshot (struct metrics *m, struct metrics_snapshot *out)
{
  struct timespec ts;
  bool has;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  ts.tv_sec += METRICS_WAIT_MS / 1000;
  ts.tv_nsec += (METRICS_WAIT_MS % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock (&m->lock);
  uint64_t want = m->gen + 1;
  if (!m->is_stopping)
    uv_async_send (&m->async);
  while (m->gen < want && !m->is_stopping)
    if (pthread_cond_timedwait (&m->cond, &m->lock, &ts) == ETIMEDOUT)
      break;
  has = m->gen > 0;
  *out = m->snap;
  pthread_mutex_unlock (&m->lock);
  return has;
}

static void
metrics_head (FILE *fp, const char *name, const char *type, const char *help)
{
  fprintf (fp, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
metrics_gauge (FILE *fp, const char *name, const char *help, uint64_t v)
{
  metrics_head (fp, name, "gauge", help);
  fprintf (fp, "%s %" PRIu64 "\n", name, v);
}

/* An op's name as a label value: "read". */
static const char *
metrics_op_label (uint16_t op, char *buf, size_t len)
{
  const char *name = rp_op_name (op);
  size_t i = 0;

  for (; name[i] && i + 1 < len; i++)
    buf[i] = tolower ((unsigned char) name[i]);
  buf[i] = '\0';
  return buf;
}

static void
metrics_format (struct metrics *m, const struct metrics_snapshot *s,
                FILE *fp)
{
  static const char *const states[] = {
    [RP_STATE_SERVING] = "serving", [RP_STATE_SHRINKING] = "shrinking",
    [RP_STATE_DRAINING] = "draining", [RP_STATE_DRAINED] = "drained",
  };
  char op[16];

  metrics_head (fp, "rampool_memserver_info", "gauge",
                "Always 1; the version and this run's incarnation as labels.");
  fprintf (fp, "rampool_memserver_info{version=\"%s\",incarnation=\"%s\"} 1\n",
           PACKAGE_VERSION, m->incarnation);
  metrics_head (fp, "rampool_memserver_start_time_seconds", "gauge",
                "Unix time the memserver started.");
  fprintf (fp, "rampool_memserver_start_time_seconds %.3f\n", m->start_time_s);
  metrics_gauge (fp, "rampool_memserver_capacity_bytes",
                 "Most the memserver may ever donate (--size, or --max-size"
                 " with --size auto).", s->capacity_bytes);
  metrics_gauge (fp, "rampool_memserver_limit_bytes",
                 "What it donates now (follows the host with --size auto).",
                 s->limit_bytes);
  metrics_gauge (fp, "rampool_memserver_used_bytes",
                 "Bytes held in extents for clients.", s->used_bytes);
  metrics_gauge (fp, "rampool_memserver_free_bytes",
                 "Bytes it could still give: the limit less what is used.",
                 s->limit_bytes > s->used_bytes
                 ? s->limit_bytes - s->used_bytes : 0);
  metrics_gauge (fp, "rampool_memserver_extents", "Extents held.",
                 s->extents);
  metrics_gauge (fp, "rampool_memserver_connections",
                 "Connections open now.", s->connections);
  metrics_gauge (fp, "rampool_memserver_clients",
                 "Client sessions holding extents.", s->clients);
  metrics_head (fp, "rampool_memserver_state", "gauge",
                "1 for the state it is in (serving, shrinking: asking for"
                " memory back, draining, drained), 0 for the others.");
  for (unsigned k = 0; k < sizeof states / sizeof states[0]; k++)
    fprintf (fp, "rampool_memserver_state{state=\"%s\"} %d\n", states[k],
             s->state == k);
  metrics_gauge (fp, "rampool_memserver_reclaim_pending_extents",
                 "Extents asked back from clients, not yet moved or"
                 " dropped.", s->reclaim.pending_extents);
  metrics_gauge (fp, "rampool_memserver_reclaim_pending_bytes",
                 "Bytes of those extents.", s->reclaim.pending_bytes);
  metrics_gauge (fp, "rampool_memserver_drain_start_bytes",
                 "Bytes used when the drain began; 0 when not draining.",
                 s->reclaim.drain_start_bytes);
  metrics_head (fp, "rampool_memserver_drain_deadline_seconds", "gauge",
                "Seconds left to the drain's deadline; 0 when not"
                " draining.");
  fprintf (fp, "rampool_memserver_drain_deadline_seconds %.3f\n",
           s->reclaim.drain_left_ms / 1000.0);
#define METRICS_COUNTER(name, help) \
  fprintf (fp, "# HELP rampool_memserver_" #name "_total %s.\n" \
           "# TYPE rampool_memserver_" #name "_total counter\n" \
           "rampool_memserver_" #name "_total %" PRIu64 "\n", help, \
           s->stats.name);
  MS_COUNTERS (METRICS_COUNTER)
#undef METRICS_COUNTER
  metrics_head (fp, "rampool_memserver_requests_total", "counter",
                "Requests executed, by op.");
  for (uint16_t o = 1; o <= RP_OP_MAX; o++)
    fprintf (fp, "rampool_memserver_requests_total{op=\"%s\"} %" PRIu64 "\n",
             metrics_op_label (o, op, sizeof op), s->stats.requests[o]);
  metrics_head (fp, "rampool_memserver_request_errors_total", "counter",
                "Requests answered with an error, by op.");
  for (uint16_t o = 1; o <= RP_OP_MAX; o++)
    fprintf (fp, "rampool_memserver_request_errors_total{op=\"%s\"} %" PRIu64
             "\n", metrics_op_label (o, op, sizeof op), s->stats.errors[o]);
}

static enum MHD_Result
metrics_reply (struct MHD_Connection *conn, unsigned status, char *body,
               size_t len, const char *type)
{
  struct MHD_Response *r =
    MHD_create_response_from_buffer (len, body, MHD_RESPMEM_MUST_FREE);
  enum MHD_Result ret;

  if (r == NULL) {
    free (body);
    return MHD_NO;
  }
  MHD_add_response_header (r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  ret = MHD_queue_response (conn, status, r);
  MHD_destroy_response (r);
  return ret;
}

static enum MHD_Result
metrics_text (struct MHD_Connection *conn, unsigned status, const char *msg)
{
  char *body = strdup (msg);

  if (body == NULL)
    return MHD_NO;
  return metrics_reply (conn, status, body, strlen (body),
                        "text/plain; charset=utf-8");
}

/* libmicrohttpd's request handler, on its thread. */
static enum MHD_Result
metrics_on_request (void *cls, struct MHD_Connection *conn, const char *url,
                    const char *method, const char *version,
                    const char *upload_data, size_t *upload_size,
                    void **req_cls)
{
  struct metrics *m = cls;
  struct metrics_snapshot s;
  char *body = NULL;
  size_t len = 0;
  FILE *fp;

  if (strcmp (method, MHD_HTTP_METHOD_GET) != 0 &&
      strcmp (method, MHD_HTTP_METHOD_HEAD) != 0)
    return metrics_text (conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                         "only GET /metrics\n");
  if (*upload_size) {
    *upload_size = 0;  /* a body with a GET: ignored */
    return MHD_YES;
  }
  if (strcmp (url, "/metrics") != 0)
    return metrics_text (conn, MHD_HTTP_NOT_FOUND,
                         "rampool memserver: the metrics are at /metrics\n");
  if (!metrics_get_snapshot (m, &s))
    return metrics_text (conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                         "no snapshot yet: the server is busy or stopping\n");
  fp = open_memstream (&body, &len);
  if (fp == NULL)
    return MHD_NO;
  metrics_format (m, &s, fp);
  if (fclose (fp) == EOF) {
    free (body);
    return MHD_NO;
  }
  return metrics_reply (conn, MHD_HTTP_OK, body, len,
                        "text/plain; version=0.0.4; charset=utf-8");
}

/* Parse ADDR:PORT (numeric; IPv6 in brackets) into ss.  0 or -1. */
static int
metrics_parse_addr (const char *text, struct sockaddr_storage *ss,
                    bool *is_v6)
{
  char host[256], port[16];
  uint64_t p;

  memset (ss, 0, sizeof *ss);
  if (rp_split_hostport (text, host, sizeof host, port, sizeof port) == -1 ||
      rp_parse_uint (port, 0, 65535, &p) == -1)
    return -1;
  struct sockaddr_in *v4 = (struct sockaddr_in *) ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *) ss;
  if (inet_pton (AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons (p);
    *is_v6 = false;
    return 0;
  }
  if (inet_pton (AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons (p);
    *is_v6 = true;
    return 0;
  }
  return -1;
}

static void
metrics_log_mhd (void *cls, const char *fmt, va_list ap)
{
  char msg[512];

  vsnprintf (msg, sizeof msg, fmt, ap);
  msg[strcspn (msg, "\n")] = '\0';
  log_msg (LOG_LEVEL_WARN, "metrics", "%s", msg);
}

/* Write port to path (PATH.tmp, renamed).  0 or -1. */
static int
metrics_write_port (const char *path, unsigned port)
{
  char tmp[4096];
  FILE *fp;

  if (snprintf (tmp, sizeof tmp, "%s.tmp", path) >= (int) sizeof tmp)
    return -1;
  fp = fopen (tmp, "w");
  if (fp == NULL)
    return -1;
  fprintf (fp, "%u\n", port);
  if (fclose (fp) == EOF || rename (tmp, path) == -1)
    return -1;
  return 0;
}

int
metrics_start (uv_loop_t *loop, struct session_core *core,
               struct metrics **out)
{
  const struct settings *st = core->st;
  struct sockaddr_storage ss;
  struct metrics *m;
  bool is_v6;
  pthread_condattr_t ca;

  *out = NULL;
  if (st->metrics_listen == NULL)
    return 0;
  if (metrics_parse_addr (st->metrics_listen, &ss, &is_v6) == -1) {
    log_msg (LOG_LEVEL_ERROR, "config", "metrics-listen: '%s' is not a"
             " numeric ADDR:PORT (IPv6 as [ADDR]:PORT)", st->metrics_listen);
    return -1;
  }
  m = calloc (1, sizeof *m);
  if (m == NULL) {
    log_msg (LOG_LEVEL_ERROR, "metrics", "out of memory");
    return -1;
  }
  m->core = core;
  m->start_time_s = time (NULL);
  rp_hex16 (core->incarnation, m->incarnation);
  pthread_mutex_init (&m->lock, NULL);
  pthread_condattr_init (&ca);
  pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
  pthread_cond_init (&m->cond, &ca);
  pthread_condattr_destroy (&ca);
  uv_async_init (loop, &m->async, metrics_on_async);
  m->async.data = m;
  m->is_async_open = true;
  /* Not a reason to keep the loop running: the server stops as it
   * always did, and metrics_free closes the handle.
   */
  uv_unref ((uv_handle_t *) &m->async);
  m->mhd = MHD_start_daemon (MHD_USE_INTERNAL_POLLING_THREAD |
                             MHD_USE_ERROR_LOG |
                             (is_v6 ? MHD_USE_IPv6 : 0),
                             0, NULL, NULL, metrics_on_request, m,
                             MHD_OPTION_EXTERNAL_LOGGER, metrics_log_mhd, NULL,
                             MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &ss,
                             MHD_OPTION_CONNECTION_LIMIT, 16u,
                             MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                             MHD_OPTION_END);
  if (m->mhd == NULL) {
    log_msg (LOG_LEVEL_ERROR, "metrics", "cannot serve metrics on %s",
             st->metrics_listen);
    goto out_free;
  }
  const union MHD_DaemonInfo *info =
    MHD_get_daemon_info (m->mhd, MHD_DAEMON_INFO_BIND_PORT);
  unsigned port = info ? info->port : 0;
  if (st->metrics_port_file &&
      metrics_write_port (st->metrics_port_file, port) == -1) {
    log_msg (LOG_LEVEL_ERROR, "metrics", "metrics-port-file: %s: %s",
             st->metrics_port_file, strerror (errno));
    goto out_free;
  }
  m->has_port_file = st->metrics_port_file != NULL;
  log_msg (LOG_LEVEL_INFO, "metrics", "serving /metrics on %s (port %u)",
           st->metrics_listen, port);
  *out = m;
  return 0;

 out_free:
  metrics_free (m);
  return -1;
}

static void
metrics_destroy (struct metrics *m)
{
  pthread_cond_destroy (&m->cond);
  pthread_mutex_destroy (&m->lock);
  free (m);
}

static void
metrics_on_close (uv_handle_t *h)
{
  metrics_destroy (h->data);
}

void
metrics_free (struct metrics *m)
{
  if (m == NULL)
    return;
  pthread_mutex_lock (&m->lock);
  m->is_stopping = true;
  pthread_cond_broadcast (&m->cond);
  pthread_mutex_unlock (&m->lock);
  if (m->mhd)
    MHD_stop_daemon (m->mhd);
  if (m->has_port_file)
    unlink (m->core->st->metrics_port_file);
  if (m->is_async_open) {
    /* Freed once the close completes, on the loop's next run. */
    uv_close ((uv_handle_t *) &m->async, metrics_on_close);
    return;
  }
  metrics_destroy (m);
}
