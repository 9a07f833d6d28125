// Syscall wrappers: the only place that reads errno. Each returns Result/Status with a positive
// errno, opens with O_CLOEXEC, and never follows a symlink in a name it is given
// (DESIGN.md invariant 2). `dir` parameters are borrowed fds; names are single components.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/result.h"
#include "core/unique_fd.h"

namespace unionfs::sys {

/// openat(dir, name, flags | O_CLOEXEC | O_NOFOLLOW). Errors: those of openat(2).
Result<UniqueFd> open_at(int dir, const char* name, int flags, mode_t mode = 0);
/// Opens a multi-component relative `path` under `root` with openat2(RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS): a symlink anywhere in it gives ELOOP.
Result<UniqueFd> open_beneath(int root, const std::string& path, int flags, mode_t mode = 0);
/// Opens the object behind an O_PATH fd again with real access `flags` (via /proc/self/fd).
Result<UniqueFd> reopen(int fd, int flags);
/// Opens a directory path on the host (setup only).
Result<UniqueFd> open_path(const std::string& path, int flags);

Result<struct stat> stat_at(int dir, const char* name);  ///< lstat semantics.
Result<struct stat> fstat(int fd);                       ///< works on O_PATH fds.
Result<struct statvfs> fstatvfs(int fd);

Status mkdir_at(int dir, const char* name, mode_t mode);
Status mknod_at(int dir, const char* name, mode_t mode, dev_t rdev);
Status symlink_at(const char* target, int dir, const char* name);
Status unlink_at(int dir, const char* name, int flags = 0);
Status rename_at(int olddir, const char* oldname, int newdir, const char* newname,
                 unsigned flags = 0);
/// Hard-links the object behind fd (any fd, O_PATH included) as dir/name.
Status link_fd(int fd, int dir, const char* name);
Status link_at(int olddir, const char* oldname, int newdir, const char* newname);
Result<std::string> readlink_at(int dir, const char* name);  ///< name "" with an O_PATH fd.

Status chown_at(int dir, const char* name, uid_t uid, gid_t gid);  ///< never follows.
Status chmod_fd(int fd, mode_t mode);  ///< any fd incl. O_PATH (not for symlinks).
Status utimens_at(int dir, const char* name, const struct timespec times[2]);
Status ftruncate(int fd, off_t size);
/// pread(2), retried on EINTR: the number of bytes read (0 at the end).
Result<size_t> pread(int fd, char* buf, size_t len, off_t off);
Status fsync(int fd, bool datasync);
Status fallocate(int fd, int mode, off_t offset, off_t length);

/// Extended attributes of the object behind any fd (O_PATH allowed, not a symlink).
Result<std::string> getxattr(int fd, const char* name);
Result<std::vector<std::string>> listxattr(int fd);
Status setxattr(int fd, const char* name, const std::string& value, int flags);
Status removexattr(int fd, const char* name);
/// Same, for the entry `name` in `dir` without following it (works on symlinks).
Result<std::string> lgetxattr_at(int dir, const char* name, const char* attr);
Result<std::vector<std::string>> llistxattr_at(int dir, const char* name);
Status lsetxattr_at(int dir, const char* name, const char* attr, const std::string& value,
                    int flags);
Status lremovexattr_at(int dir, const char* name, const char* attr);

/// Copies `len` bytes in the kernel, keeping holes (SEEK_DATA/SEEK_HOLE).
Status copy_data(int in, int out, off_t len);

/// Directory entry as getdents gives it.
struct DirEnt {
  std::string name;
  ino_t ino;
  unsigned char type;  // DT_*
};
/// Reads all entries of an open directory fd (not "." or ".."), from its start.
Result<std::vector<DirEnt>> read_dir(int dir_fd);
/// Appends the entries (not "." or "..") of `fd`, a directory opened by the caller, from its
/// offset on, with getdents64 on `fd` itself (it moves its offset). Stops early once `out` holds
/// more than `max_entries`: returns whether the rest of the directory was read. A call after
/// one that stopped early goes on where that one stopped.
Result<bool> read_dir_fd(int fd, std::vector<DirEnt>* out, size_t max_entries = SIZE_MAX);
/// How many entries read_dir_fd has returned on this thread (for tests and measurements).
uint64_t dir_entries_read();
/// How many times stat_at has been called on this thread (for tests and measurements).
uint64_t stat_at_calls();

/// read(2), retried on EINTR: the number of bytes read (0 at the end).
Result<size_t> read(int fd, char* buf, size_t len);
/// pwrite(2) of all `len` bytes at `off` (retries short writes and EINTR).
Status pwrite_all(int fd, const char* buf, size_t len, off_t off);
/// Writes all `len` bytes (retries short writes and EINTR). EPIPE when the reader is gone.
Status write_all(int fd, const char* buf, size_t len);
/// lseek(2) from the start: the new offset.
Result<off_t> seek_set(int fd, off_t off);
/// A pipe, both ends O_CLOEXEC: {read end, write end}.
Result<std::pair<UniqueFd, UniqueFd>> pipe();
/// Starts `argv[0]` (searched in PATH) with stdin = `in` and stdout = `out`; other fds are
/// not inherited (all are O_CLOEXEC). ENOENT when the program is not installed.
Result<pid_t> spawn(const std::vector<std::string>& argv, int in, int out);
/// Waits for a child started by spawn(): its exit status, or 128 + signal if killed.
Result<int> wait_child(pid_t pid);
/// Sends `sig` to a child started by spawn().
void kill_child(pid_t pid, int sig);

/// "/proc/self/fd/N".
std::string fd_path(int fd);

}  // namespace unionfs::sys
