/* See backup.h.  The file is opened with O_NOFOLLOW, must be ours, is
 * set to mode 0600 and emptied: it holds swapped pages.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "backup.h"
#include "logging.h"

int
backup_open (struct rp_pool *p, char *err, size_t errlen)
{
  const char *path = p->cfg.backup_file;
  struct stat sb;

  p->backup_fd = -1;
  if (path == NULL)
    return 0;
  /* A rampool disk starts empty in every session; so does its backup.
   * Never through a symlink, and only readable by us whatever mode an
   * existing file had.
   */
  p->backup_fd = open (path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (p->backup_fd == -1 || fstat (p->backup_fd, &sb) == -1) {
    snprintf (err, errlen, "backup: %s: %s", path,
              errno == ELOOP ? "is a symbolic link; refusing to follow it"
              : strerror (errno));
    goto out_close;
  }
  /* Another user's file (made in a shared directory before us) would
   * stay readable by that user whatever its mode: refuse it before a
   * byte is written.
   */
  if (!S_ISREG (sb.st_mode) || sb.st_uid != geteuid ()) {
    snprintf (err, errlen, "backup: %s: %s", path,
              !S_ISREG (sb.st_mode) ? "not a regular file"
              : "owned by another user; refusing to write swapped pages"
                " into it");
    goto out_close;
  }
  if (fchmod (p->backup_fd, 0600) == -1 || ftruncate (p->backup_fd, 0) == -1 ||
      ftruncate (p->backup_fd, p->cfg.size_bytes) == -1) {
    snprintf (err, errlen, "backup: %s: %s", path, strerror (errno));
    goto out_close;
  }
  return 0;
 out_close:
  backup_close (p);
  return -1;
}

void
backup_close (struct rp_pool *p)
{
  if (p->backup_fd >= 0)
    close (p->backup_fd);
  p->backup_fd = -1;
}

int
backup_write (struct rp_pool *p, uint64_t idx, uint32_t off, uint32_t len,
              const uint8_t *buf)
{
  uint64_t pos = (idx << p->map.shift) + off;
  int r;

  if (p->backup_fd < 0)
    return 0;
  errno = 0;
  if (buf)
    r = pwrite (p->backup_fd, buf, len, pos) == (ssize_t) len ? 0 : -1;
  else
    r = fallocate (p->backup_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                   pos, len);
  if (r == -1) {
    logging_msg (LOGGING_ERROR, "backup: write at %" PRIu64 ": %s", pos,
                 errno ? strerror (errno) : "short write");
    errno = EIO;
  }
  return r;
}

int
backup_read_raw (struct rp_pool *p, uint64_t idx, uint32_t off, uint32_t len,
                 uint8_t *buf)
{
  uint64_t pos = (idx << p->map.shift) + off;

  if (p->backup_fd < 0) {
    errno = EIO;
    return -1;
  }
  errno = 0;
  if (pread (p->backup_fd, buf, len, pos) != (ssize_t) len) {
    logging_msg (LOGGING_ERROR, "backup: read at %" PRIu64 ": %s", pos,
                 errno ? strerror (errno) : "short read");
    errno = EIO;
    return -1;
  }
  return 0;
}

int
backup_read (struct rp_pool *p, uint64_t idx, uint32_t off, uint32_t len,
             uint8_t *buf)
{
  uint64_t pos = (idx << p->map.shift) + off, bad;

  if (backup_read_raw (p, idx, off, len, buf) == -1)
    return -1;
  if (p->crypt.key &&
      crypt_decrypt (&p->crypt, pos / CRYPT_BLOCK, buf, len / CRYPT_BLOCK,
                     &bad) == -1) {
    logging_msg (LOGGING_ERROR,
                 "backup: block %" PRIu64 " failed"
                 " authentication",
                 bad);
    errno = EIO;
    return -1;
  }
  atomic_fetch_add (&p->count.backup_reads, 1);
  return 0;
}
