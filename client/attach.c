/* rampool attach / detach: the operator path from a pool to swap.
 *
 *   attach: start nbdkit with the rampool plugin (or, with --front=nbd,
 *           rampool-nbd) on a Unix socket in /run/rampool/DEV/, wait
 *           until it serves, connect the kernel nbd device to it with
 *           nbd-client (block size 4096, several connections, -swap so
 *           nbd-client locks itself in RAM), then mkswap and swapon.
 *   detach: swapoff, nbd-client -d, stop the server, remove the state.
 *
 * Every step runs a program by argv (no shell), checks its status and
 * undoes what was done before it on failure, so a failed attach leaves
 * nothing behind.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "rampool/client.h"
#include "attach.h"
#include "util.h"

#define ATTACH_STATE_DIR "/run/rampool"

/* Run argv, wait, return its exit status (or -1 if it could not run). */
static int
attach_run (char *const argv[])
{
  pid_t pid;
  int status;

  fprintf (stderr, "rampool:");
  for (int i = 0; argv[i]; i++)
    fprintf (stderr, " %s", argv[i]);
  fputc ('\n', stderr);
  pid = fork ();
  if (pid == -1)
    return -1;
  if (pid == 0) {
    execvp (argv[0], argv);
    fprintf (stderr, "rampool: %s: %s\n", argv[0], strerror (errno));
    _exit (127);
  }
  while (waitpid (pid, &status, 0) == -1)
    if (errno != EINTR)
      return -1;
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

static void
attach_paths (const char *dev, char *dir, char *sock, char *pidf, char *log,
              size_t len)
{
  char copy[256];

  snprintf (copy, sizeof copy, "%s", dev);
  snprintf (dir, len, "%s/%s", ATTACH_STATE_DIR, basename (copy));
  snprintf (sock, len, "%s/nbd.sock", dir);
  snprintf (pidf, len, "%s/nbdkit.pid", dir);
  snprintf (log, len, "%s/rampool-nbd.log", dir);
}

static pid_t
attach_read_pid (const char *pidf)
{
  FILE *fp = fopen (pidf, "r");
  long pid = 0;

  if (fp == NULL)
    return 0;
  if (fscanf (fp, "%ld", &pid) != 1)
    pid = 0;
  fclose (fp);
  return pid;
}

/* Stop the NBD server (nbdkit or rampool-nbd) whose pid is in pidf. */
static void
attach_stop_nbdkit (const char *pidf)
{
  pid_t pid = attach_read_pid (pidf);

  if (pid <= 0)
    return;
  kill (pid, SIGTERM);
  /* The server frees the pool's memory on the donors as it exits.  A
   * rampool-nbd started by this very attach is our child: reaped here,
   * or it would stay a zombie that kill (pid, 0) still finds.
   */
  for (int i = 0; i < 100 && kill (pid, 0) == 0; i++) {
    if (waitpid (pid, NULL, WNOHANG) == pid)
      break;
    usleep (100 * 1000);
  }
  if (kill (pid, 0) == 0) {
    fprintf (stderr, "rampool: server %ld did not stop in 10 s; killing it\n",
             (long) pid);
    kill (pid, SIGKILL);
  }
}

static void
attach_usage (FILE *fp)
{
  fprintf (
    fp,
    "Usage: rampool attach [--device=/dev/nbdN] [--connections=N] [--no-swap]\n"
    "                      [--discard] [--priority=P] [--timeout=S] "
    "[--plugin=PATH]\n"
    "                      [--front=nbdkit|nbd]\n"
    "                      servers=... size=... [KEY=VALUE...]\n"
    "       rampool detach [--device=/dev/nbdN]\n"
    "Keys (nbdkit-rampool-plugin(1); attach adds mlock=on realtime=10 for\n"
    "swap):\n%s\n",
    rp_config_help (RP_FRONT_PLUGIN));
}

/* What rampool attach was asked to do. */
struct attach_opts {
  const char *dev;             /* /dev/nbdN */
  const char *plugin;          /* the plugin's .so */
  bool is_nbd_front;           /* --front=nbd: rampool-nbd, not nbdkit */
  const char *prio;            /* swapon -p, or NULL */
  const char *nbd_timeout;     /* nbd-client -t, seconds */
  char conns[16];              /* nbd-client -C */
  bool is_swap, is_discard;
  char **keys;                 /* KEY=VALUE for the plugin, nkeys */
  int nkeys;
};

/* Parse the options and check the pool's keys the way the plugin will
 * (the one key table), so a typo is reported before anything starts.
 * 0, or the exit status for an error.
 */
static int
attach_parse (int argc, char **argv, struct attach_opts *o)
{
  struct rp_config cfg;
  char err[512];
  int i = 1;

  *o = (struct attach_opts) {
    .dev = "/dev/nbd0", .plugin = RAMPOOL_PLUGIN_PATH,
    /* The kernel's per-request timer.  Without -t it is still 30 s,
     * and with several connections its expiry marks the connection
     * dead and resends the request on another one, until none is
     * left.  It must outlast what the plugin may spend on one request:
     * timeout-ms per copy tried, plus outage-wait-ms (30 s by default).
     * One connection: with several, the kernel may never read the
     * replies on all but one of them (docs/operations.md, 3.3), and
     * the first request sent there waits the whole timeout.
     */
    .nbd_timeout = "120", .conns = "1", .is_swap = true,
  };
  for (; i < argc && strncmp (argv[i], "--", 2) == 0; i++) {
    uint64_t v;
    if (strncmp (argv[i], "--device=", 9) == 0)
      o->dev = argv[i] + 9;
    else if (strncmp (argv[i], "--connections=", 14) == 0) {
      if (rp_parse_uint (argv[i] + 14, 1, 16, &v) == -1) {
        fprintf (stderr, "rampool attach: --connections: '%s' is not 1-16\n",
                 argv[i] + 14);
        return 2;
      }
      snprintf (o->conns, sizeof o->conns, "%u", (unsigned) v);
    }
    else if (strcmp (argv[i], "--no-swap") == 0)
      o->is_swap = false;
    else if (strcmp (argv[i], "--discard") == 0)
      o->is_discard = true;
    else if (strncmp (argv[i], "--priority=", 11) == 0)
      o->prio = argv[i] + 11;
    else if (strncmp (argv[i], "--plugin=", 9) == 0)
      o->plugin = argv[i] + 9;
    else if (strcmp (argv[i], "--front=nbd") == 0)
      o->is_nbd_front = true;
    else if (strcmp (argv[i], "--front=nbdkit") == 0)
      o->is_nbd_front = false;
    else if (strncmp (argv[i], "--timeout=", 10) == 0) {
      if (rp_parse_uint (argv[i] + 10, 1, 86400, &v) == -1) {
        fprintf (stderr, "rampool attach: --timeout: '%s' is not 1-86400"
                 " seconds\n", argv[i] + 10);
        return 2;
      }
      o->nbd_timeout = argv[i] + 10;
    }
    else {
      fprintf (stderr, "rampool attach: unknown option '%s'\n", argv[i]);
      attach_usage (stderr);
      return 2;
    }
  }
  if (i == argc || argc - i > 40) {
    fprintf (stderr, "rampool attach: give the pool's keys (servers=..."
             " size=...), as for nbdkit-rampool-plugin(1)\n");
    attach_usage (stderr);
    return 2;
  }
  o->keys = argv + i;
  o->nkeys = argc - i;
  rp_config_init (&cfg);
  for (int k = 0; k < o->nkeys; k++) {
    char key[64];
    const char *eq = strchr (o->keys[k], '=');
    if (eq == NULL || (size_t) (eq - o->keys[k]) >= sizeof key) {
      fprintf (stderr, "rampool attach: '%s' is not KEY=VALUE\n", o->keys[k]);
      rp_config_free (&cfg);
      return 2;
    }
    snprintf (key, sizeof key, "%.*s", (int) (eq - o->keys[k]), o->keys[k]);
    if (rp_config_set_for (&cfg, RP_FRONT_PLUGIN, key, eq + 1, err,
                           sizeof err) == -1) {
      fprintf (stderr, "rampool attach: %s\n", err);
      rp_config_free (&cfg);
      return 2;
    }
  }
  if (rp_config_check (&cfg, err, sizeof err) == -1) {
    fprintf (stderr, "rampool attach: %s\n", err);
    rp_config_free (&cfg);
    return 2;
  }
  rp_config_free (&cfg);
  return 0;
}

/* Start rampool-nbd, which runs in the foreground, as a daemon of its
 * own: a new session, its log in log.  The caller waits for its pid
 * file.  0, or -1 if it could not be started.
 */
static int
attach_spawn (char *const argv[], const char *log)
{
  pid_t pid;

  fprintf (stderr, "rampool:");
  for (int i = 0; argv[i]; i++)
    fprintf (stderr, " %s", argv[i]);
  fprintf (stderr, " (log: %s)\n", log);
  pid = fork ();
  if (pid == -1)
    return -1;
  if (pid == 0) {
    int in = open ("/dev/null", O_RDONLY);
    int out = open (log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (in == -1 || out == -1 || dup2 (in, 0) == -1 || dup2 (out, 1) == -1 ||
        dup2 (out, 2) == -1 || setsid () == -1)
      _exit (127);
    execvp (argv[0], argv);
    fprintf (stderr, "rampool: %s: %s\n", argv[0], strerror (errno));
    _exit (127);
  }
  return 0;
}

/* Start nbdkit with the plugin (or rampool-nbd) on sock, and wait until
 * it serves.  0 or -1 (the server stopped again).
 */
static int
attach_start_nbdkit (const struct attach_opts *o, const char *sock,
                     const char *pidf, const char *log)
{
  char *argv_n[64];
  int n = 0;
  const char *name = o->is_nbd_front ? "rampool-nbd" : "nbdkit";

  /* nbdkit daemonizes once it serves; mlock=on locks it after the fork
   * (nbdkit --swap's own lock does not survive the fork).  rampool-nbd
   * writes its pid file once the pool is open and it listens.
   */
  argv_n[n++] = (char *) name;
  argv_n[n++] = (char *) "-U";
  argv_n[n++] = (char *) sock;
  argv_n[n++] = (char *) "-P";
  argv_n[n++] = (char *) pidf;
  if (!o->is_nbd_front)
    argv_n[n++] = (char *) o->plugin;
  for (int k = 0; k < o->nkeys; k++)
    argv_n[n++] = o->keys[k];
  /* For swap: lock nbdkit in RAM after its fork, and run its I/O
   * threads SCHED_FIFO, which lets their page allocations (TCP send
   * buffers) dip below the min watermark where the workload reclaims:
   * measured as what lets rampool survive whole-host memory pressure
   * (docs/operations.md, section 8).
   */
  if (o->is_swap) {
    argv_n[n++] = (char *) "mlock=on";
    argv_n[n++] = (char *) "realtime=10";
  }
  argv_n[n] = NULL;
  if (o->is_nbd_front ? attach_spawn (argv_n, log) != 0
      : attach_run (argv_n) != 0) {
    fprintf (stderr, "rampool attach: %s failed (see its errors %s)\n", name,
             o->is_nbd_front ? log : "above");
    return -1;
  }
  /* The pid file comes once it listens. */
  for (int t = 0; t < 300 && (access (pidf, F_OK) != 0 ||
                              access (sock, F_OK) != 0); t++) {
    if (o->is_nbd_front && waitpid (-1, NULL, WNOHANG) > 0) {
      fprintf (stderr, "rampool attach: rampool-nbd exited (see %s)\n", log);
      return -1;
    }
    usleep (100 * 1000);
  }
  if (access (pidf, F_OK) != 0 || access (sock, F_OK) != 0) {
    fprintf (stderr, "rampool attach: %s did not create %s in 30 s\n", name,
             sock);
    attach_stop_nbdkit (pidf);
    return -1;
  }
  return 0;
}

/* Connect the kernel nbd device to sock.  0 or -1. */
static int
attach_connect_nbd (const struct attach_opts *o, const char *sock)
{
  /* The kernel's own deadline (-t) must stay well above the plugin's
   * timeout-ms, or the kernel fails I/O that rampool would have
   * completed on another replica.
   */
  char *argv_c[16];
  int k = 0;

  argv_c[k++] = (char *) "nbd-client";
  argv_c[k++] = (char *) "-unix";
  argv_c[k++] = (char *) sock;
  argv_c[k++] = (char *) o->dev;
  argv_c[k++] = (char *) "-b";
  argv_c[k++] = (char *) "4096";
  argv_c[k++] = (char *) "-C";
  argv_c[k++] = (char *) o->conns;
  argv_c[k++] = (char *) "-t";
  argv_c[k++] = (char *) o->nbd_timeout;
  if (o->is_swap)
    argv_c[k++] = (char *) "-swap";
  argv_c[k] = NULL;
  if (attach_run (argv_c) != 0) {
    fprintf (stderr, "rampool attach: nbd-client failed (is the nbd"
             " module loaded? modprobe nbd)\n");
    return -1;
  }
  return 0;
}

/* mkswap and swapon the device.  0 or -1. */
static int
attach_swapon (const struct attach_opts *o)
{
  char *argv_m[] = { (char *) "mkswap", (char *) o->dev, NULL };
  char *argv_s[8];
  int k = 0;

  if (attach_run (argv_m) != 0)
    return -1;
  argv_s[k++] = (char *) "swapon";
  if (o->is_discard)
    argv_s[k++] = (char *) "--discard";
  if (o->prio) {
    argv_s[k++] = (char *) "-p";
    argv_s[k++] = (char *) o->prio;
  }
  argv_s[k++] = (char *) o->dev;
  argv_s[k] = NULL;
  return attach_run (argv_s) == 0 ? 0 : -1;
}

int
attach_main (int argc, char **argv)
{
  struct attach_opts o;
  char dir[300], sock[320], pidf[320], log[320];
  int status;

  if ((status = attach_parse (argc, argv, &o)) != 0)
    return status;
  attach_paths (o.dev, dir, sock, pidf, log, sizeof dir);
  if (access (pidf, F_OK) == 0 && kill (attach_read_pid (pidf), 0) == 0) {
    fprintf (stderr, "rampool attach: %s is already attached (server pid in"
             " %s); rampool detach --device=%s first\n", o.dev, pidf, o.dev);
    return 1;
  }
  if ((mkdir (ATTACH_STATE_DIR, 0700) == -1 && errno != EEXIST) ||
      (mkdir (dir, 0700) == -1 && errno != EEXIST)) {
    fprintf (stderr, "rampool attach: %s: %s\n", dir, strerror (errno));
    return 1;
  }
  unlink (sock);
  unlink (pidf);
  if (attach_start_nbdkit (&o, sock, pidf, log) == -1)
    goto out_rmdir;
  if (attach_connect_nbd (&o, sock) == -1)
    goto out_stop_nbdkit;
  if (o.is_swap && attach_swapon (&o) == -1)
    goto out_disconnect;
  printf ("rampool: %s attached%s (%s pid %ld, socket %s)\n", o.dev,
          o.is_swap ? " as swap" : "",
          o.is_nbd_front ? "rampool-nbd" : "nbdkit",
          (long) attach_read_pid (pidf), sock);
  return 0;

 out_disconnect:
  {
    char *argv_d[] = { (char *) "nbd-client", (char *) "-d", (char *) o.dev,
                       NULL };
    attach_run (argv_d);
  }
 out_stop_nbdkit:
  attach_stop_nbdkit (pidf);
 out_rmdir:
  unlink (sock);
  unlink (pidf);
  rmdir (dir);                 /* kept when rampool-nbd's log is in it */
  return 1;
}

int
detach_main (int argc, char **argv)
{
  const char *dev = "/dev/nbd0";
  char dir[300], sock[320], pidf[320], log[320];
  int status = 0;

  for (int i = 1; i < argc; i++) {
    if (strncmp (argv[i], "--device=", 9) == 0)
      dev = argv[i] + 9;
    else {
      fprintf (stderr, "rampool detach: unknown argument '%s'\n", argv[i]);
      attach_usage (stderr);
      return 2;
    }
  }
  attach_paths (dev, dir, sock, pidf, log, sizeof dir);
  {
    /* Not swap (attached with --no-swap, or already off): harmless. */
    char *argv_s[] = { (char *) "swapoff", (char *) dev, NULL };
    if (attach_run (argv_s) != 0)
      fprintf (stderr, "rampool detach: swapoff %s failed; continuing\n", dev);
  }
  {
    char *argv_d[] = { (char *) "nbd-client", (char *) "-d", (char *) dev,
                       NULL };
    if (attach_run (argv_d) != 0) {
      fprintf (stderr, "rampool detach: nbd-client -d %s failed\n", dev);
      status = 1;
    }
  }
  attach_stop_nbdkit (pidf);
  unlink (sock);
  unlink (pidf);
  unlink (log);
  rmdir (dir);
  if (status == 0)
    printf ("rampool: %s detached\n", dev);
  return status;
}
