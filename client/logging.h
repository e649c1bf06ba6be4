/* librampool's log: front ends route it with rp_set_log (the plugin
 * to nbdkit_error/nbdkit_debug).  State changes are logged once, when
 * they happen, never per request.
 */
#ifndef RP_LOGGING_H
#define RP_LOGGING_H

enum {
  LOGGING_ERROR = 0,
  LOGGING_WARN = 1,
  LOGGING_INFO = 2,
  LOGGING_DEBUG = 3
};

void logging_msg (int level, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

#endif /* RP_LOGGING_H */
