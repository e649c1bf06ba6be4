/* See stats.h.  One line per counter list, so an operator's grep for
 * "stats:" shows them all.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>

#include "codec.h"
#include "log.h"
#include "stats.h"

void
stats_log (const struct ms_stats *st)
{
  char line[1024];
  size_t used = 0;

#define MS_STATS_PRINT(name, help) \
  if (used < sizeof line) \
    used += snprintf (line + used, sizeof line - used, " %s=%" PRIu64, \
                      #name, st->name);
  MS_COUNTERS (MS_STATS_PRINT)
#undef MS_STATS_PRINT
  log_msg (LOG_LEVEL_INFO, "stats", "%s", line + 1);
  used = 0;
  for (uint16_t op = 1; op <= RP_OP_MAX; op++)
    if (used < sizeof line)
      used += snprintf (line + used, sizeof line - used, " %s=%" PRIu64
                        "/%" PRIu64, rp_op_name (op), st->requests[op],
                        st->errors[op]);
  log_msg (LOG_LEVEL_INFO, "stats", "requests/errors:%s", line);
}
