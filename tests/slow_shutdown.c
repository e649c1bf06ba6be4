/* slow_shutdown: an LD_PRELOAD shim that makes shutdown(2) slow, for
 * tests/test-write-unsent.sh.
 *
 * When a client connection dies, its reader marks it dead, fails what
 * was in flight on it, shuts the socket down and only then takes the
 * server down (client/conn.c conn_end).  In between, the server still
 * counts as up while its connection refuses every request: a write
 * that starts then finds its copy good and cannot send it.  On a
 * loaded host that window is microseconds to milliseconds wide; this
 * shim holds it open, so a test can write into it every time.
 *
 * Environment: RP_SHUTDOWN_DELAY_MS (unset: no delay, the shim does
 * nothing); RP_SHUTDOWN_MARK, a file that a line is appended to as
 * each delayed shutdown begins, before the delay: the test waits for
 * it, then writes.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int
shutdown (int fd, int how)
{
  static int (*real_shutdown) (int, int);
  const char *ms = getenv ("RP_SHUTDOWN_DELAY_MS");
  const char *mark = getenv ("RP_SHUTDOWN_MARK");

  if (real_shutdown == NULL)
    real_shutdown = (int (*) (int, int)) dlsym (RTLD_NEXT, "shutdown");
  if (real_shutdown == NULL) {
    errno = ENOSYS;
    return -1;
  }
  if (ms && *ms) {
    long delay = strtol (ms, NULL, 10);
    int saved = errno;
    if (mark && *mark) {
      int m = open (mark, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (m >= 0) {
        if (write (m, "shutdown\n", 9) != 9)
          ;  /* the test times out waiting for it */
        close (m);
      }
    }
    if (delay > 0) {
      struct timespec ts = { delay / 1000, (delay % 1000) * 1000000L };
      while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
        ;
    }
    errno = saved;
  }
  return real_shutdown (fd, how);
}
