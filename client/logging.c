/* See logging.h. */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>

#include "rampool/client.h"
#include "logging.h"

static void
logging_stderr (int level, const char *msg)
{
  if (level <= LOGGING_INFO)
    fprintf (stderr, "rampool: %s\n", msg);
}

static rp_log_fn logging_fn = logging_stderr;

void
rp_set_log (rp_log_fn fn)
{
  logging_fn = fn ? fn : logging_stderr;
}

void
logging_msg (int level, const char *fmt, ...)
{
  char msg[512];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  logging_fn (level, msg);
}
