/* rampool-fuse: the pool's disk as a file, for hosts without the kernel
 * nbd driver.
 *
 *   rampool-fuse [-d] [-o OPT,...] MOUNTPOINT KEY=VALUE...
 *
 * Mounts a FUSE file system on the directory MOUNTPOINT holding one
 * regular file, "disk", of the pool's size; its reads and writes go to
 * librampool like the nbdkit plugin's.  Punching a hole (fallocate -p,
 * or discard through a loop device) frees whole extents on the
 * memservers.  Runs in the foreground (under systemd or with &); SIGTERM,
 * SIGINT or fusermount3 -u unmount it, and the pool's memory is freed on
 * the memservers before it exits.
 */
#define FUSE_USE_VERSION 31
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <linux/falloc.h>

#include <fuse.h>

#include "rampool/client.h"

#define DISK_NAME "disk"
#define DISK_PATH "/" DISK_NAME

static struct rp_pool *pool;
static uint64_t disk_size;
static uint32_t extent_size;
static time_t start_time;      /* the times the files show */

static bool
is_disk (const char *path)
{
  return strcmp (path, DISK_PATH) == 0;
}

/* Bytes of the disk that are mapped (written, not trimmed). */
static uint64_t
mapped_bytes (void)
{
  uint64_t n = 0;

  for (uint64_t off = 0; off < disk_size; off += extent_size)
    if (rp_pool_is_mapped (pool, off))
      n += extent_size;
  return n;
}

static void *
fs_init (struct fuse_conn_info *conn, struct fuse_config *cfg)
{
  (void) conn;
  /* No page cache: the data lives on the memservers, and caching it
   * here as well would spend the very memory the pool stands in for.
   */
  cfg->direct_io = 1;
  cfg->kernel_cache = 0;
  cfg->attr_timeout = 1;
  cfg->entry_timeout = 1;
  return NULL;
}

static int
fs_getattr (const char *path, struct stat *st, struct fuse_file_info *fi)
{
  (void) fi;
  memset (st, 0, sizeof *st);
  st->st_uid = getuid ();
  st->st_gid = getgid ();
  st->st_atime = st->st_mtime = st->st_ctime = start_time;
  if (strcmp (path, "/") == 0) {
    st->st_mode = S_IFDIR | 0700;
    st->st_nlink = 2;
    return 0;
  }
  if (!is_disk (path))
    return -ENOENT;
  st->st_mode = S_IFREG | 0600;
  st->st_nlink = 1;
  st->st_size = disk_size;
  st->st_blksize = 4096;
  st->st_blocks = mapped_bytes () / 512;
  return 0;
}

static int
fs_readdir (const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
            struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
  (void) off;
  (void) fi;
  (void) flags;
  if (strcmp (path, "/") != 0)
    return -ENOTDIR;
  fill (buf, ".", NULL, 0, 0);
  fill (buf, "..", NULL, 0, 0);
  fill (buf, DISK_NAME, NULL, 0, 0);
  return 0;
}

static int
fs_open (const char *path, struct fuse_file_info *fi)
{
  if (strcmp (path, "/") == 0)
    return -EISDIR;
  if (!is_disk (path))
    return -ENOENT;
  /* libfuse passes O_TRUNC here (atomic_o_trunc) rather than calling
   * truncate: refuse it the same way.
   */
  if (fi->flags & O_TRUNC) {
    fprintf (stderr, "rampool-fuse: open with O_TRUNC refused: the disk"
             " has a fixed size (use dd conv=notrunc)\n");
    return -EINVAL;
  }
  fi->direct_io = 1;
  return 0;
}

/* The disk has a fixed size; O_TRUNC and truncate cannot change it. */
static int
fs_truncate (const char *path, off_t size, struct fuse_file_info *fi)
{
  (void) fi;
  if (!is_disk (path))
    return -ENOENT;
  if ((uint64_t) size != disk_size) {
    fprintf (stderr, "rampool-fuse: truncate to %jd refused: the disk is"
             " %" PRIu64 " bytes, fixed (use dd conv=notrunc)\n",
             (intmax_t) size, disk_size);
    return -EINVAL;
  }
  return 0;
}

static int
fs_read (const char *path, char *buf, size_t size, off_t off,
         struct fuse_file_info *fi)
{
  (void) path;
  (void) fi;
  if (off < 0)
    return -EINVAL;
  if ((uint64_t) off >= disk_size)
    return 0;
  if (size > disk_size - off)
    size = disk_size - off;
  if (rp_pool_pread (pool, buf, size, off) == -1)
    return -errno;
  return size;
}

static int
fs_write (const char *path, const char *buf, size_t size, off_t off,
          struct fuse_file_info *fi)
{
  (void) path;
  (void) fi;
  if (off < 0)
    return -EINVAL;
  if ((uint64_t) off >= disk_size || size > disk_size - off)
    return -ENOSPC;
  if (rp_pool_pwrite (pool, buf, size, off) == -1)
    return -errno;
  return size;
}

/* fallocate: punching a hole frees the whole extents inside it on the
 * memservers and zeroes the rest (so it reads as zeros, as a punched
 * hole must).  Zeroing a range keeps it allocated, as fallocate(2)
 * promises for FALLOC_FL_ZERO_RANGE: whole extents are zeroed in place
 * and unmapped ones mapped, so later writes there cannot fail for want
 * of room.  Plain allocation within the disk is a no-op.
 */
static int
fs_fallocate (const char *path, int mode, off_t off, off_t len,
              struct fuse_file_info *fi)
{
  (void) path;
  (void) fi;
  if (off < 0 || len <= 0)
    return -EINVAL;
  if ((uint64_t) off > disk_size || (uint64_t) len > disk_size - off)
    return -ENOSPC;
  if (mode == 0 || mode == FALLOC_FL_KEEP_SIZE)
    return 0;
  if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE))
    return rp_pool_zero (pool, len, off, true) == -1 ? -errno : 0;
  if (mode == FALLOC_FL_ZERO_RANGE ||
      mode == (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE))
    return rp_pool_zero (pool, len, off, false) == -1 ? -errno : 0;
  return -EOPNOTSUPP;
}

/* Writes are acknowledged once the memservers have them: nothing to
 * flush here.
 */
static int
fs_fsync (const char *path, int datasync, struct fuse_file_info *fi)
{
  (void) path;
  (void) datasync;
  (void) fi;
  return 0;
}

static int
fs_statfs (const char *path, struct statvfs *sv)
{
  (void) path;
  memset (sv, 0, sizeof *sv);
  sv->f_bsize = sv->f_frsize = 4096;
  sv->f_blocks = disk_size / 4096;
  sv->f_bfree = sv->f_bavail = (disk_size - mapped_bytes ()) / 4096;
  sv->f_files = 1;
  sv->f_namemax = 255;
  return 0;
}

static const struct fuse_operations fs_ops = {
  .init = fs_init,
  .getattr = fs_getattr,
  .readdir = fs_readdir,
  .open = fs_open,
  .truncate = fs_truncate,
  .read = fs_read,
  .write = fs_write,
  .fallocate = fs_fallocate,
  .fsync = fs_fsync,
  .statfs = fs_statfs,
};

static void
usage (FILE *fp)
{
  fprintf (fp,
"Usage: rampool-fuse [-d] [-o OPT,...] MOUNTPOINT KEY=VALUE...\n"
"Mounts the pool's disk as the file MOUNTPOINT/" DISK_NAME " (runs in the\n"
"foreground; fusermount3 -u MOUNTPOINT or SIGTERM unmounts).\n"
"  -d          FUSE debug output\n"
"  -o OPT,...  FUSE mount options (e.g. allow_other)\n"
"Keys (as for nbdkit-rampool-plugin, less its mlock= and realtime=):\n"
"%s\n", rp_config_help (RP_FRONT_FUSE));
}

int
main (int argc, char **argv)
{
  struct rp_config cfg;
  char err[512];
  const char *mountpoint = NULL;
  char *fargv[64];
  int fargc = 0, ret = 1;
  struct fuse_args args;
  struct fuse *fuse;

  rp_config_init (&cfg);
  fargv[fargc++] = argv[0];
  fargv[fargc++] = (char *) "-o";
  fargv[fargc++] = (char *) "fsname=rampool,subtype=rampool";
  for (int i = 1; i < argc; i++) {
    char *eq = strchr (argv[i], '=');
    if (strcmp (argv[i], "-h") == 0 || strcmp (argv[i], "--help") == 0) {
      usage (stdout);
      rp_config_free (&cfg);
      return 0;
    }
    if (strcmp (argv[i], "-d") == 0 && fargc < 60)
      fargv[fargc++] = argv[i];
    else if (strcmp (argv[i], "-o") == 0 && i + 1 < argc && fargc < 60) {
      fargv[fargc++] = argv[i];
      fargv[fargc++] = argv[++i];
    }
    else if (argv[i][0] == '-') {
      fprintf (stderr, "rampool-fuse: unknown option '%s'\n", argv[i]);
      usage (stderr);
      goto out;
    }
    else if (eq == NULL && mountpoint == NULL)
      mountpoint = argv[i];
    else if (eq == NULL) {
      fprintf (stderr, "rampool-fuse: '%s' is neither KEY=VALUE nor the"
               " mount point (already '%s')\n", argv[i], mountpoint);
      goto out;
    }
    else {
      *eq = '\0';
      if (rp_config_set_for (&cfg, RP_FRONT_FUSE, argv[i], eq + 1, err,
                             sizeof err) == -1) {
        fprintf (stderr, "rampool-fuse: %s\n", err);
        goto out;
      }
    }
  }
  if (mountpoint == NULL) {
    fprintf (stderr, "rampool-fuse: no mount point given\n");
    usage (stderr);
    goto out;
  }
  if (rp_config_check (&cfg, err, sizeof err) == -1) {
    fprintf (stderr, "rampool-fuse: %s\n", err);
    goto out;
  }
  disk_size = cfg.size_bytes;
  extent_size = cfg.extent_size;
  start_time = time (NULL);

  args = (struct fuse_args) FUSE_ARGS_INIT (fargc, fargv);
  fuse = fuse_new (&args, &fs_ops, sizeof fs_ops, NULL);
  if (fuse == NULL) {
    fprintf (stderr, "rampool-fuse: bad FUSE options\n");
    goto out_args;
  }
  /* In the foreground, before mounting: a pool that cannot open leaves
   * no mount behind, and its error reaches the terminal.
   */
  pool = rp_pool_open (&cfg, err, sizeof err);
  if (pool == NULL) {
    fprintf (stderr, "rampool-fuse: %s\n", err);
    goto out_destroy;
  }
  if (fuse_mount (fuse, mountpoint) == -1) {
    fprintf (stderr, "rampool-fuse: cannot mount on %s (a directory the"
             " user may mount on; is /dev/fuse there and fuse3 installed?)\n",
             mountpoint);
    goto out_close;
  }
  if (fuse_set_signal_handlers (fuse_get_session (fuse)) == -1) {
    fprintf (stderr, "rampool-fuse: cannot set signal handlers\n");
    goto out_unmount;
  }
  fprintf (stderr, "rampool-fuse: %s" DISK_PATH " is the pool's disk,"
           " %" PRIu64 " bytes\n", mountpoint, disk_size);
  /* 0 on unmount, a signal number on SIGTERM/SIGINT/SIGHUP (a normal
   * stop too), -errno on failure.
   */
  ret = fuse_loop_mt (fuse, 0);
  if (ret < 0)
    fprintf (stderr, "rampool-fuse: %s\n", strerror (-ret));
  ret = ret < 0;
  fuse_remove_signal_handlers (fuse_get_session (fuse));
 out_unmount:
  fuse_unmount (fuse);
 out_close:
  /* Frees every extent on the memservers. */
  rp_pool_close (pool);
 out_destroy:
  fuse_destroy (fuse);
 out_args:
  fuse_opt_free_args (&args);
 out:
  rp_config_free (&cfg);
  return ret;
}
