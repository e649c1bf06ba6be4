/* memserver logging: one levelled function with a subsystem prefix.
 * Repeated errors from one peer are rate limited by the caller through
 * log_ratelimit (see session.c).
 */
#ifndef MS_LOG_H
#define MS_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_ERR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

extern enum log_level log_max_level;

void log_msg (enum log_level level, const char *subsys, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

/* A per-peer limiter: allows `burst` messages, then one per second.
 * Returns true if the caller may log now.  *state is the caller's.
 */
struct log_limit {
  uint64_t window_start_ms;
  unsigned count;
  unsigned suppressed;
};
bool log_ratelimit (struct log_limit *state, unsigned burst);

#endif /* MS_LOG_H */
