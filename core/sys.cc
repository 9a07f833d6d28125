// Syscall wrappers: errno is read here and nowhere else, right after the call that set it.
#include "core/sys.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

namespace unionfs::sys {
namespace {

Errno last_errno() { return Errno{errno == 0 ? EIO : errno}; }

Status status_of(int rc) { return rc < 0 ? Status(last_errno()) : Status(); }

Result<UniqueFd> fd_result(int fd) {
  if (fd < 0) return last_errno();
  return UniqueFd(fd);
}

}  // namespace

std::string fd_path(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// listxattrat(2): the same number on every architecture (asm-generic/unistd.h, Linux 6.13);
// Debian 12's headers predate it.
#ifdef __NR_listxattrat
constexpr long kSysListxattrat = __NR_listxattrat;
#else
constexpr long kSysListxattrat = 465;
#endif

Result<UniqueFd> open_at(int dir, const char* name, int flags, mode_t mode) {
  return fd_result(::openat(dir, name, flags | O_CLOEXEC | O_NOFOLLOW, mode));
}

Result<UniqueFd> open_beneath(int root, const std::string& path, int flags, mode_t mode) {
  struct open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC | O_NOFOLLOW);
  how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  const char* p = path.empty() ? "." : path.c_str();
  return fd_result(static_cast<int>(::syscall(SYS_openat2, root, p, &how, sizeof(how))));
}

Result<UniqueFd> reopen(int fd, int flags) {
  // O_NOFOLLOW must not be given here: /proc/self/fd/N is a magic link we mean to follow.
  return fd_result(::open(fd_path(fd).c_str(), (flags & ~O_NOFOLLOW) | O_CLOEXEC));
}

Result<UniqueFd> open_path(const std::string& path, int flags) {
  return fd_result(::open(path.c_str(), flags | O_CLOEXEC));
}

namespace {
thread_local uint64_t t_stat_at_calls = 0;
}  // namespace

uint64_t stat_at_calls() { return t_stat_at_calls; }

Result<struct stat> stat_at(int dir, const char* name) {
  ++t_stat_at_calls;
  struct stat st{};
  if (::fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) return last_errno();
  return st;
}

Result<struct stat> fstat(int fd) {
  struct stat st{};
  if (::fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) return last_errno();
  return st;
}

Result<struct statvfs> fstatvfs(int fd) {
  struct statvfs sv{};
  if (::fstatvfs(fd, &sv) < 0) return last_errno();
  return sv;
}

Status mkdir_at(int dir, const char* name, mode_t mode) {
  return status_of(::mkdirat(dir, name, mode));
}
Status mknod_at(int dir, const char* name, mode_t mode, dev_t rdev) {
  return status_of(::mknodat(dir, name, mode, rdev));
}
Status symlink_at(const char* target, int dir, const char* name) {
  return status_of(::symlinkat(target, dir, name));
}
Status unlink_at(int dir, const char* name, int flags) {
  return status_of(::unlinkat(dir, name, flags));
}
Status rename_at(int olddir, const char* oldname, int newdir, const char* newname,
                 unsigned flags) {
  return status_of(static_cast<int>(
      ::syscall(SYS_renameat2, olddir, oldname, newdir, newname, flags)));
}
Status link_fd(int fd, int dir, const char* name) {
  // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the /proc form works for everyone.
  if (::linkat(fd, "", dir, name, AT_EMPTY_PATH) == 0) return kOk;
  if (errno != ENOENT && errno != EPERM) return last_errno();
  return status_of(::linkat(AT_FDCWD, fd_path(fd).c_str(), dir, name, AT_SYMLINK_FOLLOW));
}
Status link_at(int olddir, const char* oldname, int newdir, const char* newname) {
  return status_of(::linkat(olddir, oldname, newdir, newname, 0));
}

Result<std::string> readlink_at(int dir, const char* name) {
  std::string buf(256, '\0');
  for (;;) {
    ssize_t n = ::readlinkat(dir, name, buf.data(), buf.size());
    if (n < 0) return last_errno();
    if (static_cast<size_t>(n) < buf.size()) {
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
    if (buf.size() > 65536) return Errno{ENAMETOOLONG};
    buf.resize(buf.size() * 4);
  }
}

Status chown_at(int dir, const char* name, uid_t uid, gid_t gid) {
  return status_of(::fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW |
                                                      (name[0] ? 0 : AT_EMPTY_PATH)));
}
Status chmod_fd(int fd, mode_t mode) { return status_of(::chmod(fd_path(fd).c_str(), mode)); }
Status utimens_at(int dir, const char* name, const struct timespec times[2]) {
  if (name[0] == '\0') {
    // The object behind the fd itself, a symlink included (AT_EMPTY_PATH, Linux 5.8+).
    if (::utimensat(dir, "", times, AT_EMPTY_PATH) == 0) return kOk;
    if (errno != EINVAL) return last_errno();
    return status_of(::utimensat(AT_FDCWD, fd_path(dir).c_str(), times, 0));
  }
  return status_of(::utimensat(dir, name, times, AT_SYMLINK_NOFOLLOW));
}
Status ftruncate(int fd, off_t size) { return status_of(::ftruncate(fd, size)); }
Result<size_t> pread(int fd, char* buf, size_t len, off_t off) {
  for (;;) {
    const ssize_t n = ::pread(fd, buf, len, off);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return last_errno();
  }
}
Status fsync(int fd, bool datasync) {
  return status_of(datasync ? ::fdatasync(fd) : ::fsync(fd));
}
Status fallocate(int fd, int mode, off_t offset, off_t length) {
  return status_of(::fallocate(fd, mode, offset, length));
}

namespace {

template <typename F>
Result<std::string> read_xattr(F&& get) {
  std::string buf(256, '\0');
  for (int i = 0; i < 8; ++i) {
    ssize_t n = get(buf.data(), buf.size());
    if (n >= 0) {
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
    if (errno != ERANGE) return last_errno();
    ssize_t need = get(nullptr, 0);
    if (need < 0) return last_errno();
    buf.resize(static_cast<size_t>(need) + 1);
  }
  return Errno{ERANGE};
}

std::vector<std::string> split_names(const std::string& raw) {
  std::vector<std::string> names;
  for (size_t i = 0; i < raw.size();) {
    size_t len = std::strlen(raw.data() + i);
    if (len) names.emplace_back(raw.data() + i, len);
    i += len + 1;
  }
  return names;
}

std::string entry_path(int dir, const char* name) { return fd_path(dir) + "/" + name; }

}  // namespace

// The f*xattr calls work on real fds; an O_PATH fd (EBADF) goes through /proc/self/fd.
Result<std::string> getxattr(int fd, const char* name) {
  auto r = read_xattr([&](char* b, size_t n) { return ::fgetxattr(fd, name, b, n); });
  if (r.ok() || r.error() != EBADF) return r;
  std::string p = fd_path(fd);
  return read_xattr([&](char* b, size_t n) { return ::getxattr(p.c_str(), name, b, n); });
}
Result<std::vector<std::string>> listxattr(int fd) {
  auto raw = read_xattr([&](char* b, size_t n) { return ::flistxattr(fd, b, n); });
  if (!raw && raw.error() == EBADF) {
    std::string p = fd_path(fd);
    raw = read_xattr([&](char* b, size_t n) { return ::listxattr(p.c_str(), b, n); });
  }
  if (!raw) return Errno{raw.error()};
  return split_names(*raw);
}
Status setxattr(int fd, const char* name, const std::string& value, int flags) {
  if (::fsetxattr(fd, name, value.data(), value.size(), flags) == 0) return kOk;
  if (errno != EBADF) return last_errno();
  return status_of(::setxattr(fd_path(fd).c_str(), name, value.data(), value.size(), flags));
}
Status removexattr(int fd, const char* name) {
  if (::fremovexattr(fd, name) == 0) return kOk;
  if (errno != EBADF) return last_errno();
  return status_of(::removexattr(fd_path(fd).c_str(), name));
}
Result<std::string> lgetxattr_at(int dir, const char* name, const char* attr) {
  std::string p = entry_path(dir, name);
  return read_xattr([&](char* b, size_t n) { return ::lgetxattr(p.c_str(), attr, b, n); });
}
Result<std::vector<std::string>> llistxattr_at(int dir, const char* name) {
  // listxattrat(2) (Linux 6.13) takes the directory fd; older kernels go through /proc.
  static std::atomic<bool> no_listxattrat{false};
  std::string p;
  auto raw = read_xattr([&](char* b, size_t n) -> ssize_t {
    if (!no_listxattrat.load(std::memory_order_relaxed)) {
      long r = ::syscall(kSysListxattrat, dir, name, AT_SYMLINK_NOFOLLOW, b, n);
      if (r >= 0 || errno != ENOSYS) return r;
      no_listxattrat.store(true, std::memory_order_relaxed);
    }
    if (p.empty()) p = entry_path(dir, name);
    return ::llistxattr(p.c_str(), b, n);
  });
  if (!raw) return Errno{raw.error()};
  return split_names(*raw);
}
Status lsetxattr_at(int dir, const char* name, const char* attr, const std::string& value,
                    int flags) {
  return status_of(
      ::lsetxattr(entry_path(dir, name).c_str(), attr, value.data(), value.size(), flags));
}
Status lremovexattr_at(int dir, const char* name, const char* attr) {
  return status_of(::lremovexattr(entry_path(dir, name).c_str(), attr));
}

Status copy_data(int in, int out, off_t len) {
  off_t pos = 0;
  while (pos < len) {
    off_t data = ::lseek(in, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole is left
      data = pos;                 // SEEK_DATA unsupported: copy everything
    }
    off_t hole = ::lseek(in, data, SEEK_HOLE);
    if (hole < 0 || hole > len) hole = len;
    off_t in_off = data, out_off = data;
    while (in_off < hole) {
      ssize_t n = ::copy_file_range(in, &in_off, out, &out_off,
                                    static_cast<size_t>(hole - in_off), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EXDEV && errno != EINVAL && errno != EOPNOTSUPP && errno != ENOSYS)
          return last_errno();
        // Fall back to a user-space copy for this extent.
        char buf[1 << 16];
        // Never read past the extent: the hole after it must stay a hole.
        const size_t want = std::min(sizeof(buf), static_cast<size_t>(hole - in_off));
        ssize_t r = ::pread(in, buf, want, in_off);
        if (r < 0) return last_errno();
        if (r == 0) break;
        ssize_t w = ::pwrite(out, buf, static_cast<size_t>(r), out_off);
        if (w < 0) return last_errno();
        in_off += w;
        out_off += w;
        continue;
      }
      if (n == 0) break;
    }
    pos = hole;
  }
  // The destination gets the full size even when the source ends in a hole.
  return ftruncate(out, len);
}

Result<size_t> read(int fd, char* buf, size_t len) {
  for (;;) {
    const ssize_t n = ::read(fd, buf, len);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return last_errno();
  }
}

Status write_all(int fd, const char* buf, size_t len) {
  while (len > 0) {
    const ssize_t n = ::write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return last_errno();
    }
    buf += n;
    len -= static_cast<size_t>(n);
  }
  return kOk;
}

Status pwrite_all(int fd, const char* buf, size_t len, off_t off) {
  while (len > 0) {
    const ssize_t n = ::pwrite(fd, buf, len, off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return last_errno();
    }
    buf += n;
    off += n;
    len -= static_cast<size_t>(n);
  }
  return kOk;
}

Result<off_t> seek_set(int fd, off_t off) {
  const off_t r = ::lseek(fd, off, SEEK_SET);
  if (r < 0) return last_errno();
  return r;
}

Result<std::pair<UniqueFd, UniqueFd>> pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) < 0) return last_errno();
  return std::pair<UniqueFd, UniqueFd>(UniqueFd(fds[0]), UniqueFd(fds[1]));
}

Result<pid_t> spawn(const std::vector<std::string>& argv, int in, int out) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  // posix_spawn* return the error number; they do not set errno.
  int rc = ::posix_spawn_file_actions_init(&fa);
  if (rc != 0) return Errno{rc};
  rc = ::posix_spawn_file_actions_adddup2(&fa, in, STDIN_FILENO);
  if (rc == 0) rc = ::posix_spawn_file_actions_adddup2(&fa, out, STDOUT_FILENO);
  pid_t pid = -1;
  if (rc == 0) rc = ::posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  ::posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return Errno{rc};
  return pid;
}

Result<int> wait_child(pid_t pid) {
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) return last_errno();
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void kill_child(pid_t pid, int sig) { (void)::kill(pid, sig); }

namespace {
thread_local uint64_t t_dir_entries_read = 0;
}  // namespace

uint64_t dir_entries_read() { return t_dir_entries_read; }

Result<bool> read_dir_fd(int fd, std::vector<DirEnt>* out, size_t max_entries) {
  // getdents64 directly: fdopendir would cost an fstat and two fcntls per directory, and a
  // merged directory's first use reads one instance per layer.
  alignas(8) char buf[32768];
  // With a small limit, small reads: giving up costs about the limit, not 32 KiB of entries
  // (~1,300 short names).
  const size_t len = max_entries < sizeof(buf) / 64 ? std::max<size_t>(4096, max_entries * 64)
                                                    : sizeof(buf);
  for (;;) {
    const long n = ::syscall(SYS_getdents64, fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return last_errno();
    }
    if (n == 0) return true;
    for (long off = 0; off < n;) {
      const auto* e = reinterpret_cast<const struct dirent64*>(buf + off);
      off += e->d_reclen;
      const char* nm = e->d_name;
      if (nm[0] == '.' && (nm[1] == '\0' || (nm[1] == '.' && nm[2] == '\0'))) continue;
      out->push_back({nm, static_cast<ino_t>(e->d_ino), e->d_type});
      ++t_dir_entries_read;
    }
    if (out->size() > max_entries) return false;
  }
}

Result<std::vector<DirEnt>> read_dir(int dir_fd) {
  UNIONFS_ASSIGN_OR_RETURN(UniqueFd fd, open_at(dir_fd, ".", O_RDONLY | O_DIRECTORY));
  std::vector<DirEnt> out;
  UNIONFS_TRY(read_dir_fd(fd.get(), &out));
  return out;
}

}  // namespace unionfs::sys
