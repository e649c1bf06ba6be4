/* See log.h.  Lines go to stderr with a level and subsystem, e.g.
 *   memserver: warn: conn 127.0.0.1:51234: bad request magic; closing
 * systemd's journal adds the timestamp; we do not.
 */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>

#include "log.h"
#include "util.h"

enum log_level log_max_level = LOG_INFO;

void
log_msg (enum log_level level, const char *subsys, const char *fmt, ...)
{
  static const char *const names[] = { "error", "warn", "info", "debug" };
  va_list ap;

  if (level > log_max_level)
    return;
  fprintf (stderr, "memserver: %s: %s: ", names[level], subsys);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
}

bool
log_ratelimit (struct log_limit *st, unsigned burst)
{
  uint64_t now = rp_now_ms ();

  if (now - st->window_start_ms >= 1000) {
    if (st->suppressed)
      log_msg (LOG_WARN, "log", "%u similar messages suppressed",
               st->suppressed);
    st->window_start_ms = now;
    st->count = 0;
    st->suppressed = 0;
  }
  if (st->count < burst) {
    st->count++;
    return true;
  }
  st->suppressed++;
  return false;
}
