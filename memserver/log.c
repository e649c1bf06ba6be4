/* See log.h.  Lines go to stderr with a level and subsystem, e.g.
 *   memserver: warn: conn 127.0.0.1:51234: bad request magic; closing
 * systemd's journal adds the timestamp; we do not.
 *
 * This file does the formatting and the per-kind limiters; it does not
 * decide what is worth logging (the callers do) nor buffer anything:
 * stderr is unbuffered, so a line is out before the next event.
 */
#include <config.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "log.h"
#include "util.h"

enum log_level log_max_level = LOG_LEVEL_INFO;

/* One limiter per log_kind.  Owned by this file, event loop only. */
struct log_limit {
  uint64_t window_start_ms;  /* rp_now_ms () of the window's first line */
  unsigned count;            /* lines written in this window */
  unsigned suppressed;       /* lines held back in this window */
  enum log_level level;      /* the most severe line held back: the
                                summary is logged at that level */
};

static struct log_limit log_limits[LOG_KINDS];

/* For the summary line: what the held-back lines were about. */
static const char *const log_kind_names[LOG_KINDS] = {
  [LOG_KIND_CONN] = "connection events",
  [LOG_KIND_ACCEPT] = "accept errors",
  [LOG_KIND_REFUSED] = "connections over max-connections",
  [LOG_KIND_HANDSHAKE] = "handshake deadlines",
  [LOG_KIND_PROTOCOL] = "protocol violations",
  [LOG_KIND_VERSION] = "unsupported protocol versions",
  [LOG_KIND_AUTH] = "authentication failures",
  [LOG_KIND_LIMIT] = "per-client limits",
  [LOG_KIND_FENCE] = "fenced connections",
  [LOG_KIND_MEMORY] = "out-of-memory events",
  [LOG_KIND_STALL] = "connections not reading their replies",
  [LOG_KIND_RANDOM] = "getrandom failures",
  [LOG_KIND_LEASE] = "lease expiries",
  [LOG_KIND_COPY] = "failed COPYs",
};

static const char *const log_level_names[] = {
  "error", "warn", "info", "debug"
};

static void
log_vmsg (enum log_level level, const char *subsys, const char *fmt,
          va_list ap)
{
  fprintf (stderr, "memserver: %s: %s: ", log_level_names[level], subsys);
  vfprintf (stderr, fmt, ap);
  fputc ('\n', stderr);
}

void
log_msg (enum log_level level, const char *subsys, const char *fmt, ...)
{
  va_list ap;

  if (level > log_max_level)
    return;
  va_start (ap, fmt);
  log_vmsg (level, subsys, fmt, ap);
  va_end (ap);
}

/* End kind's window if it is over (or is_final), saying how much it
 * held back.
 */
static void
log_end_window (enum log_kind kind, uint64_t now, bool is_final)
{
  struct log_limit *l = &log_limits[kind];

  if (now - l->window_start_ms < LOG_WINDOW_MS && !is_final)
    return;
  if (l->suppressed)
    log_msg (l->level, "log",
             "%u similar messages suppressed in %" PRIu64 " ms (%s)",
             l->suppressed, now - l->window_start_ms,
             log_kind_names[kind] ? log_kind_names[kind] : "other events");
  l->window_start_ms = now;
  l->count = 0;
  l->suppressed = 0;
}

void
log_peer (enum log_kind kind, enum log_level level, const char *subsys,
          const char *fmt, ...)
{
  struct log_limit *l = &log_limits[kind];
  va_list ap;

  /* A line that would not be written anyway is not counted either:
   * "suppressed" means held back by the limit, not by the level.
   */
  if (level > log_max_level)
    return;
  log_end_window (kind, rp_now_ms (), false);
  if (l->count >= LOG_BURST) {
    l->suppressed++;
    if (level < l->level || l->suppressed == 1)
      l->level = level;
    return;
  }
  l->count++;
  va_start (ap, fmt);
  log_vmsg (level, subsys, fmt, ap);
  va_end (ap);
}

void
log_flush (bool is_final)
{
  uint64_t now = rp_now_ms ();

  for (int k = 0; k < LOG_KINDS; k++)
    if (log_limits[k].suppressed)
      log_end_window (k, now, is_final);
}
