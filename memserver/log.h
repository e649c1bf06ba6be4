/* memserver logging: one levelled function with a subsystem prefix,
 * and a rate limit for every line a peer can cause.
 *
 * log_msg writes a line unconditionally (start-up, configuration,
 * shutdown: things the operator did).  log_peer is for everything a
 * network peer can trigger, however indirectly: it goes through one
 * global limiter per log_kind, so no number of connections, however
 * short, can write more than LOG_BURST lines of one kind a second.  A
 * per-connection limit is not enough: 2000 connections that each send
 * one bad frame used to write 2000 lines (about 9.5k lines/s from one
 * attacker thread).  What was held back is counted and reported once
 * the window ends ("N similar messages suppressed"), either by the
 * next line of that kind or by log_flush, which the server's sweep
 * timer calls every second.
 *
 * Single-threaded: called only from the event loop (the limiter table
 * is static and unlocked).
 */
#ifndef MS_LOG_H
#define MS_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level {
  LOG_LEVEL_ERROR = 0,
  LOG_LEVEL_WARN = 1,
  LOG_LEVEL_INFO = 2,
  LOG_LEVEL_DEBUG = 3
};

extern enum log_level log_max_level;

void log_msg (enum log_level level, const char *subsys, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

/* What a peer-triggered line is about; each kind has its own limiter.
 * Lines of one kind are interchangeable for an operator: the first few
 * of a burst say what is going on, the count says how much of it.
 */
enum log_kind {
  LOG_KIND_CONN,         /* connected, closed, read/write errors */
  LOG_KIND_ACCEPT,       /* accept() failed */
  LOG_KIND_REFUSED,      /* over --max-connections */
  LOG_KIND_HANDSHAKE,    /* no HELLO/AUTH within the deadline */
  LOG_KIND_PROTOCOL,     /* malformed or out-of-order frame: closing */
  LOG_KIND_VERSION,      /* HELLO with a version we do not speak */
  LOG_KIND_AUTH,         /* AUTH proof wrong, or peer left before AUTH */
  LOG_KIND_LIMIT,        /* --max-clients, --max-client-connections,
                            --max-client-size */
  LOG_KIND_FENCE,        /* reconnects closing or refusing generations */
  LOG_KIND_MEMORY,       /* out of memory (connection, buffer, reply),
                            mlock failed */
  LOG_KIND_STALL,        /* closed for not reading its replies */
  LOG_KIND_RANDOM,       /* getrandom failed */
  LOG_KIND_LEASE,        /* leases expired (at most one a sweep anyway) */
  LOG_KIND_COPY,         /* COPYs to other memservers that failed */
  LOG_KINDS
};

/* Lines of one kind per window, and the window.  5 a second is enough
 * to see what is happening and small enough that even every kind at
 * once stays under 100 lines a second.
 */
#define LOG_BURST 5
#define LOG_WINDOW_MS 1000

void log_peer (enum log_kind kind, enum log_level level, const char *subsys,
               const char *fmt, ...)
  __attribute__ ((format (printf, 4, 5)));

/* Report the suppressed count of every kind whose window has ended
 * (every kind, when is_final: at shutdown), and start a new window.
 * Called once a second by the server.
 */
void log_flush (bool is_final);

#endif /* MS_LOG_H */
