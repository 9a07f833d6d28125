// Per-syscall tests on a live union mount, in the spirit of libfuse's test/test_syscalls.c: one
// function per syscall, each working in its own subtree (a directory of the bottom layer) of one
// stack that this program builds and mounts in a fresh temp dir, and always unmounts.
//
// Usage: syscalls_test [UNIONFS_BIN] [TEST_NAME...]   (or UNIONFS_BIN in the environment)
//        UNIONFS_IMPL=kernel syscalls_test             runs the same checks on kernel overlayfs,
//                                                      to check the expectations against the reference.
#include <dirent.h>
#include <fcntl.h>
#include <sys/sysmacros.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr unsigned kTimeLimitSeconds = 120;

// ---- tiny assertion framework ----------------------------------------------------------------

int g_test_failures = 0;  // failed checks in the running test

template <typename T>
std::string show(const T& v) {
  std::ostringstream os;
  if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, const char*>) {
    os << '"' << v << '"';
  } else {
    os << v;
  }
  return os.str();
}

void report(const char* file, int line, const std::string& what, int saved_errno) {
  std::cerr << "    " << file << ":" << line << ": " << what;
  if (saved_errno != 0) std::cerr << " [errno " << saved_errno << " " << strerrorname_np(saved_errno) << ": " << strerror(saved_errno) << "]";
  std::cerr << "\n";
  ++g_test_failures;
}

#define CHECK(cond)                                                        \
  do {                                                                     \
    errno = 0;                                                             \
    if (!(cond)) report(__FILE__, __LINE__, "CHECK(" #cond ") failed", errno); \
  } while (0)

#define REQUIRE(cond)                                                        \
  do {                                                                       \
    errno = 0;                                                               \
    if (!(cond)) {                                                           \
      report(__FILE__, __LINE__, "REQUIRE(" #cond ") failed, test stopped", errno); \
      return;                                                                \
    }                                                                        \
  } while (0)

#define CHECK_EQ(actual, expected)                                                           \
  do {                                                                                       \
    errno = 0;                                                                               \
    const auto& a_ = (actual);                                                               \
    const auto& e_ = (expected);                                                             \
    int en_ = errno;                                                                         \
    if (!(a_ == e_))                                                                         \
      report(__FILE__, __LINE__, std::string(#actual " == " #expected ": expected ") + show(e_) + \
                                     ", actual " + show(a_), en_);                         \
  } while (0)

// The call must succeed (return something other than -1).
#define CHECK_OK(expr)                                                            \
  do {                                                                            \
    errno = 0;                                                                    \
    long r_ = static_cast<long>(expr);                                            \
    int en_ = errno;                                                              \
    if (r_ == -1) report(__FILE__, __LINE__, std::string(#expr " failed"), en_);  \
  } while (0)

// The call must fail with exactly this errno.
#define CHECK_ERR(expr, expected_errno)                                                        \
  do {                                                                                         \
    errno = 0;                                                                                 \
    long r_ = static_cast<long>(expr);                                                         \
    int en_ = errno;                                                                           \
    if (r_ != -1)                                                                              \
      report(__FILE__, __LINE__, std::string(#expr ": expected -1 with " #expected_errno ", returned ") + \
                                     std::to_string(r_), 0);                                   \
    else if (en_ != (expected_errno))                                                          \
      report(__FILE__, __LINE__, std::string(#expr ": expected " #expected_errno ", got this"), en_); \
  } while (0)

// ---- the stack ---------------------------------------------------------------------------------

std::string g_root, g_l1, g_l2, g_upper, g_mnt, g_work, g_bin, g_log;
bool g_kernel = false;
pid_t g_daemon = -1;
char g_mnt_c[PATH_MAX];  // for the signal handler

std::string mp(const std::string& rel) { return g_mnt + "/" + rel; }
std::string l1(const std::string& rel) { return g_l1 + "/" + rel; }
std::string l2(const std::string& rel) { return g_l2 + "/" + rel; }
std::string up(const std::string& rel) { return g_upper + "/" + rel; }

struct Fd {
  int fd;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  operator int() const { return fd; }
  void reset() {
    if (fd >= 0) close(fd);
    fd = -1;
  }
};

void put(const std::string& path, const std::string& data, mode_t mode = 0644) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0 || write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
    perror(path.c_str());
    exit(2);
  }
  fchmod(fd, mode);
  close(fd);
}

std::optional<std::string> get(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, n);
  close(fd);
  if (n < 0) return std::nullopt;
  return out;
}

std::string got(const std::string& path) { return get(path).value_or("<unreadable>"); }

void mkdirs(const std::string& path) { std::filesystem::create_directories(path); }

struct stat st_of(const std::string& path, bool follow = false) {
  struct stat st {};
  if ((follow ? stat(path.c_str(), &st) : lstat(path.c_str(), &st)) != 0) st.st_ino = 0;
  return st;
}

bool exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

std::set<std::string> list_dir(const std::string& path, std::map<std::string, ino_t>* inos = nullptr) {
  std::set<std::string> names;
  DIR* d = opendir(path.c_str());
  if (!d) return {"<opendir failed>"};
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n == ".." ) continue;
    if (inos) (*inos)[n] = e->d_ino;
    if (n != ".") names.insert(n);
  }
  closedir(d);
  return names;
}

std::string join(const std::set<std::string>& s) {
  std::string out;
  for (auto& x : s) out += (out.empty() ? "" : " ") + x;
  return out;
}

// Runs argv, waits at most timeout_s; kills only that child. Returns its exit status or -1.
int run(const std::vector<std::string>& argv, int timeout_s) {
  pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> a;
    for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    execvp(a[0], a.data());
    _exit(127);
  }
  for (int i = 0; i < timeout_s * 20; ++i) {
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    usleep(50000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

bool is_mounted(const std::string& mnt) {
  std::ifstream in("/proc/mounts");
  std::string dev, dir, rest;
  while (in >> dev >> dir && std::getline(in, rest))
    if (dir == mnt) return true;
  return false;
}

// SIGALRM: the time limit. Kill our daemon (which aborts any request we are blocked on), detach
// the mount, and leave.
void on_alarm(int) {
  static const char msg[] = "syscalls_test: time limit reached, aborting\n";
  ssize_t ignored = write(2, msg, sizeof msg - 1);
  (void)ignored;
  if (g_daemon > 0) kill(g_daemon, SIGKILL);
  pid_t p = fork();
  if (p == 0) {
    if (g_kernel) {
      umount2(g_mnt_c, MNT_DETACH);
      _exit(0);
    }
    execlp("fusermount3", "fusermount3", "-uz", g_mnt_c, static_cast<char*>(nullptr));
    _exit(127);
  }
  if (p > 0) waitpid(p, nullptr, 0);
  _exit(3);
}

// A second line of defence: if we are stuck where even SIGALRM cannot run its handler (a FUSE
// request whose answer never comes), a watchdog child kills the daemon and then us.
void start_watchdog(unsigned seconds) {
  int p[2];
  if (pipe(p) != 0) return;
  pid_t parent = getpid();
  pid_t w = fork();
  if (w != 0) {
    close(p[0]);  // keep p[1] open until we exit: EOF tells the watchdog we are gone
    return;
  }
  close(p[1]);
  pollfd pfd{p[0], POLLIN, 0};
  if (poll(&pfd, 1, static_cast<int>(seconds) * 1000) == 0) {
    if (g_daemon > 0) kill(g_daemon, SIGKILL);
    sleep(2);
    if (kill(parent, 0) == 0) {
      kill(parent, SIGKILL);
      if (g_kernel)
        umount2(g_mnt_c, MNT_DETACH);
      else
        execlp("fusermount3", "fusermount3", "-uz", g_mnt_c, static_cast<char*>(nullptr));
    }
  }
  _exit(0);
}

bool mount_stack() {
  if (g_kernel) {
    std::string opts = "lowerdir=" + g_l2 + ":" + g_l1 + ",upperdir=" + g_upper + ",workdir=" + g_work;
    if (mount("overlay", g_mnt.c_str(), "overlay", 0, opts.c_str()) != 0) {
      perror("mount overlay");
      return false;
    }
    return true;
  }
  std::string spec = g_l1 + ":" + g_l2 + ":" + g_upper;
  g_daemon = fork();
  if (g_daemon == 0) {
    int fd = open(g_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    const char* opts = getenv("UNIONFS_OPTS");  // e.g. whiteout=oci
    if (opts && *opts)
      execl(g_bin.c_str(), g_bin.c_str(), "-f", "-o", opts, spec.c_str(), g_mnt.c_str(), static_cast<char*>(nullptr));
    else
      execl(g_bin.c_str(), g_bin.c_str(), "-f", spec.c_str(), g_mnt.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 15 * 20; ++i) {
    if (is_mounted(g_mnt)) return true;
    int status;
    if (waitpid(g_daemon, &status, WNOHANG) == g_daemon) {
      std::cerr << "daemon exited (status " << status << ") before mounting; log:\n" << got(g_log) << "\n";
      g_daemon = -1;
      return false;
    }
    usleep(50000);
  }
  std::cerr << "timeout waiting for the mount; log:\n" << got(g_log) << "\n";
  return false;
}

// Unmount, wait for the daemon; true when it went cleanly.
bool unmount_stack() {
  bool clean = true;
  if (g_kernel) {
    if (umount2(g_mnt.c_str(), 0) != 0) {
      clean = false;
      umount2(g_mnt.c_str(), MNT_DETACH);
    }
    return clean && !is_mounted(g_mnt);
  }
  if (is_mounted(g_mnt) && run({"fusermount3", "-u", g_mnt}, 10) != 0) {
    std::cerr << "fusermount3 -u failed; detaching lazily\n";
    clean = false;
    run({"fusermount3", "-uz", g_mnt}, 10);
  }
  if (g_daemon > 0) {
    int status = 0;
    bool exited = false;
    for (int i = 0; i < 10 * 20 && !exited; ++i) {
      exited = waitpid(g_daemon, &status, WNOHANG) == g_daemon;
      if (!exited) usleep(50000);
    }
    if (!exited) {
      std::cerr << "daemon still running 10 s after unmount; killing pid " << g_daemon << "\n";
      kill(g_daemon, SIGKILL);
      waitpid(g_daemon, &status, 0);
      clean = false;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::cerr << "daemon exited with status " << status << " after unmount; log:\n" << got(g_log) << "\n";
      clean = false;
    }
    g_daemon = -1;
  }
  if (is_mounted(g_mnt)) {
    std::cerr << g_mnt << " is still mounted\n";
    clean = false;
  }
  return clean;
}

struct MountGuard {
  bool active = false;
  bool clean = true;
  ~MountGuard() {
    if (active) clean = unmount_stack();
  }
};

// Snapshot of the lower layers: every entry's type, mode, size, times and content.
std::string snapshot_lowers() {
  std::ostringstream os;
  for (const auto& root : {g_l1, g_l2}) {
    for (auto& e : std::filesystem::recursive_directory_iterator(root)) {
      struct stat st {};
      lstat(e.path().c_str(), &st);
      os << e.path().string() << " " << std::oct << st.st_mode << std::dec << " " << st.st_uid << ":" << st.st_gid
         << " " << st.st_size << " " << st.st_mtim.tv_sec << "." << st.st_mtim.tv_nsec << " " << st.st_ctim.tv_sec
         << "." << st.st_ctim.tv_nsec << " " << st.st_nlink;
      if (S_ISREG(st.st_mode)) os << " " << std::hash<std::string>{}(got(e.path()));
      char names[4096];
      ssize_t n = llistxattr(e.path().c_str(), names, sizeof names);
      if (n > 0) os << " xattrs:" << std::string(names, n);
      os << "\n";
    }
  }
  return os.str();
}

// ---- the tests ---------------------------------------------------------------------------------
// Each test NAME works below mp("NAME"), a directory of the bottom layer; setup_NAME writes what
// it needs into the lower layers before the mount.

void setup_stat() {
  put(l1("stat/file"), "hello", 0640);
  mkdirs(l1("stat/dir"));
  symlink("file", l1("stat/link").c_str());
  put(l2("stat/file2"), "x");
}
void test_stat() {
  struct stat st {};
  CHECK_OK(stat(mp("stat/file").c_str(), &st));
  CHECK(S_ISREG(st.st_mode));
  CHECK_EQ(st.st_size, 5);
  CHECK_EQ(st.st_mode & 07777, 0640u);
  CHECK_EQ(st.st_nlink, 1u);
  ino_t ino = st.st_ino;
  CHECK_OK(lstat(mp("stat/link").c_str(), &st));
  CHECK(S_ISLNK(st.st_mode));
  CHECK_EQ(st.st_size, 4);
  CHECK_OK(stat(mp("stat/link").c_str(), &st));
  CHECK(S_ISREG(st.st_mode));
  CHECK_EQ(st.st_ino, ino);
  Fd fd(open(mp("stat/file").c_str(), O_RDONLY));
  REQUIRE(fd >= 0);
  CHECK_OK(fstat(fd, &st));
  CHECK_EQ(st.st_ino, ino);
  CHECK_EQ(st.st_size, 5);
  CHECK_OK(stat(mp("stat/dir").c_str(), &st));
  CHECK(S_ISDIR(st.st_mode));
  CHECK_OK(stat(mp("stat/file2").c_str(), &st));
  CHECK_EQ(st.st_size, 1);
  struct stat root {};
  CHECK_OK(stat(g_mnt.c_str(), &root));
  CHECK_EQ(st.st_dev, root.st_dev);
  CHECK_ERR(stat(mp("stat/missing").c_str(), &st), ENOENT);
  CHECK_ERR(stat(mp("stat/file/x").c_str(), &st), ENOTDIR);
}

void setup_open_excl() { put(l1("open_excl/lower"), "l"); }
void test_open_excl() {
  const auto n = mp("open_excl/new");
  {
    Fd fd(open(n.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600));
    CHECK(fd >= 0);
  }
  CHECK_EQ(st_of(n).st_mode & 07777, 0600u);
  CHECK_ERR(open(n.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600), EEXIST);
  CHECK_ERR(open(mp("open_excl/lower").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600), EEXIST);
  CHECK_ERR(open(mp("open_excl").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600), EEXIST);
  {
    Fd fd(open(mp("open_excl/lower").c_str(), O_CREAT | O_WRONLY, 0600));  // no O_EXCL: opens it
    CHECK(fd >= 0);
  }
  CHECK_EQ(got(mp("open_excl/lower")), std::string("l"));
  CHECK_OK(unlink(mp("open_excl/lower").c_str()));
  {
    Fd fd(open(mp("open_excl/lower").c_str(), O_CREAT | O_EXCL | O_RDWR, 0640));
    CHECK(fd >= 0);
  }
  CHECK_EQ(got(mp("open_excl/lower")), std::string(""));  // a new file, not the whited-out lower one
  CHECK_EQ(st_of(mp("open_excl/lower")).st_mode & 07777, 0640u);
  CHECK_ERR(open(mp("open_excl/nodir/x").c_str(), O_CREAT | O_WRONLY, 0600), ENOENT);
}

void setup_open_trunc() {
  put(l1("open_trunc/f"), "0123456789");
  put(l1("open_trunc/g"), "ro");
}
void test_open_trunc() {
  {
    Fd fd(open(mp("open_trunc/f").c_str(), O_WRONLY | O_TRUNC));
    REQUIRE(fd >= 0);
    struct stat st {};
    CHECK_OK(fstat(fd, &st));
    CHECK_EQ(st.st_size, 0);
  }
  CHECK_EQ(st_of(mp("open_trunc/f")).st_size, 0);
  CHECK_EQ(got(mp("open_trunc/f")), std::string(""));
  CHECK_EQ(got(l1("open_trunc/f")), std::string("0123456789"));
  {
    Fd fd(open(mp("open_trunc/g").c_str(), O_RDONLY));
    CHECK(fd >= 0);
  }
  CHECK(!exists(up("open_trunc/g")));  // a read-only open does not copy up
}

void setup_read_write() {
  std::string pattern;
  for (int i = 0; i < 65536; ++i) pattern += static_cast<char>('a' + i % 26);
  put(l1("read_write/lower"), pattern);
}
void test_read_write() {
  Fd fd(open(mp("read_write/f").c_str(), O_CREAT | O_RDWR, 0644));
  REQUIRE(fd >= 0);
  CHECK_EQ(write(fd, "hello world", 11), 11);
  CHECK_EQ(lseek(fd, 0, SEEK_SET), 0);
  char buf[128] = {};
  CHECK_EQ(read(fd, buf, sizeof buf), 11);
  CHECK_EQ(std::string(buf, 11), std::string("hello world"));
  CHECK_EQ(pwrite(fd, "WORLD", 5, 6), 5);
  CHECK_EQ(pread(fd, buf, 5, 6), 5);
  CHECK_EQ(std::string(buf, 5), std::string("WORLD"));
  CHECK_EQ(pwrite(fd, "end", 3, 100), 3);
  struct stat st {};
  CHECK_OK(fstat(fd, &st));
  CHECK_EQ(st.st_size, 103);
  CHECK_EQ(pread(fd, buf, 10, 11), 10);
  CHECK_EQ(std::string(buf, 10), std::string(10, '\0'));
  CHECK_EQ(got(mp("read_write/f")).substr(0, 11), std::string("hello WORLD"));
  // Big write and read back (several FUSE requests).
  std::string big(3 * 1024 * 1024 + 7, 'x');
  for (size_t i = 0; i < big.size(); i += 4093) big[i] = static_cast<char>('0' + i % 10);
  CHECK_EQ(pwrite(fd, big.data(), big.size(), 0), static_cast<ssize_t>(big.size()));
  CHECK_OK(fsync(fd));
  CHECK_EQ(got(mp("read_write/f")), big);
  // Reads of a lower file, whole and at an offset.
  auto lower = got(l1("read_write/lower"));
  CHECK_EQ(got(mp("read_write/lower")), lower);
  Fd lfd(open(mp("read_write/lower").c_str(), O_RDONLY));
  REQUIRE(lfd >= 0);
  CHECK_EQ(pread(lfd, buf, 10, 4099), 10);
  CHECK_EQ(std::string(buf, 10), lower.substr(4099, 10));
  CHECK_EQ(pread(lfd, buf, 10, 65536), 0);  // at EOF
  CHECK_ERR(write(lfd, "x", 1), EBADF);
  CHECK(!exists(up("read_write/lower")));
}

void setup_append() { put(l2("append/f"), "abc"); }
void test_append() {
  {
    Fd fd(open(mp("append/f").c_str(), O_WRONLY | O_APPEND));
    REQUIRE(fd >= 0);
    CHECK_EQ(write(fd, "def", 3), 3);
    CHECK_EQ(lseek(fd, 0, SEEK_SET), 0);
    CHECK_EQ(write(fd, "g", 1), 1);
  }
  CHECK_EQ(got(mp("append/f")), std::string("abcdefg"));
  CHECK_EQ(got(l2("append/f")), std::string("abc"));
  Fd fd(open(mp("append/new").c_str(), O_CREAT | O_WRONLY | O_APPEND, 0644));
  REQUIRE(fd >= 0);
  for (int i = 0; i < 100; ++i) CHECK_EQ(write(fd, "0123456789", 10), 10);
  CHECK_EQ(st_of(mp("append/new")).st_size, 1000);
}

void setup_truncate() {
  put(l1("truncate/f"), "0123456789");
  put(l1("truncate/g"), "0123456789");
  mkdirs(l1("truncate/dir"));
}
void test_truncate() {
  CHECK_OK(truncate(mp("truncate/f").c_str(), 3));
  CHECK_EQ(st_of(mp("truncate/f")).st_size, 3);
  CHECK_EQ(got(mp("truncate/f")), std::string("012"));
  CHECK_OK(truncate(mp("truncate/f").c_str(), 10));
  CHECK_EQ(got(mp("truncate/f")), std::string("012") + std::string(7, '\0'));
  {
    Fd fd(open(mp("truncate/g").c_str(), O_RDWR));
    REQUIRE(fd >= 0);
    CHECK_OK(ftruncate(fd, 5));
    struct stat st {};
    CHECK_OK(fstat(fd, &st));
    CHECK_EQ(st.st_size, 5);
  }
  CHECK_EQ(got(mp("truncate/g")), std::string("01234"));
  CHECK_EQ(got(l1("truncate/f")), std::string("0123456789"));
  CHECK_EQ(got(l1("truncate/g")), std::string("0123456789"));
  CHECK_ERR(truncate(mp("truncate/dir").c_str(), 0), EISDIR);
  CHECK_ERR(truncate(mp("truncate/missing").c_str(), 0), ENOENT);
  CHECK_ERR(truncate(mp("truncate/f").c_str(), -1), EINVAL);
}

void setup_fsync() { put(l1("fsync/lower"), "l"); }
void test_fsync() {
  Fd fd(open(mp("fsync/f").c_str(), O_CREAT | O_RDWR, 0644));
  REQUIRE(fd >= 0);
  CHECK_EQ(write(fd, "data", 4), 4);
  CHECK_OK(fsync(fd));
  CHECK_OK(fdatasync(fd));
  Fd lfd(open(mp("fsync/lower").c_str(), O_RDONLY));
  REQUIRE(lfd >= 0);
  CHECK_OK(fsync(lfd));
  Fd dfd(open(mp("fsync").c_str(), O_RDONLY | O_DIRECTORY));
  REQUIRE(dfd >= 0);
  CHECK_OK(fsync(dfd));
  CHECK_OK(syncfs(fd));
}

void setup_unlink_open() { put(l1("unlink_open/low"), "lowdata"); }
void test_unlink_open() {
  put(mp("unlink_open/f"), "data");
  {
    Fd fd(open(mp("unlink_open/f").c_str(), O_RDWR));
    REQUIRE(fd >= 0);
    CHECK_OK(unlink(mp("unlink_open/f").c_str()));
    CHECK(!exists(mp("unlink_open/f")));
    struct stat st {};
    CHECK_OK(fstat(fd, &st));
    CHECK_EQ(st.st_nlink, 0u);
    char buf[16] = {};
    CHECK_EQ(pread(fd, buf, sizeof buf, 0), 4);
    CHECK_EQ(std::string(buf, 4), std::string("data"));
    CHECK_EQ(pwrite(fd, "more", 4, 4), 4);
    CHECK_EQ(pread(fd, buf, sizeof buf, 0), 8);
    CHECK_EQ(std::string(buf, 8), std::string("datamore"));
  }
  {
    Fd fd(open(mp("unlink_open/low").c_str(), O_RDONLY));
    REQUIRE(fd >= 0);
    CHECK_OK(unlink(mp("unlink_open/low").c_str()));
    CHECK(!exists(mp("unlink_open/low")));
    char buf[16] = {};
    CHECK_EQ(pread(fd, buf, sizeof buf, 0), 7);
    CHECK_EQ(std::string(buf, 7), std::string("lowdata"));
    // No st_nlink check here: kernel overlayfs reports the lower file's count (1) for a
    // read-only fd of an unlinked lower file; either answer is defensible.
  }
  CHECK(list_dir(mp("unlink_open")).empty());
  CHECK_EQ(got(l1("unlink_open/low")), std::string("lowdata"));
}

void setup_mkdir_rmdir() {
  put(l1("mkdir_rmdir/full/child"), "c");
  mkdirs(l1("mkdir_rmdir/empty"));
  put(l1("mkdir_rmdir/file"), "f");
  put(l1("mkdir_rmdir/merged/a"), "a");
  put(l2("mkdir_rmdir/merged/b"), "b");
}
void test_mkdir_rmdir() {
  CHECK_OK(mkdir(mp("mkdir_rmdir/new").c_str(), 0750));
  struct stat st = st_of(mp("mkdir_rmdir/new"));
  CHECK(S_ISDIR(st.st_mode));
  CHECK_EQ(st.st_mode & 07777, 0750u);
  CHECK_ERR(mkdir(mp("mkdir_rmdir/new").c_str(), 0755), EEXIST);
  CHECK_ERR(mkdir(mp("mkdir_rmdir/empty").c_str(), 0755), EEXIST);
  CHECK_ERR(mkdir(mp("mkdir_rmdir/file").c_str(), 0755), EEXIST);
  CHECK_ERR(mkdir(mp("mkdir_rmdir/file/x").c_str(), 0755), ENOTDIR);
  CHECK_ERR(mkdir(mp("mkdir_rmdir/nodir/x").c_str(), 0755), ENOENT);
  CHECK_ERR(rmdir(mp("mkdir_rmdir/full").c_str()), ENOTEMPTY);
  CHECK_ERR(rmdir(mp("mkdir_rmdir/merged").c_str()), ENOTEMPTY);
  CHECK_ERR(rmdir(mp("mkdir_rmdir/file").c_str()), ENOTDIR);
  CHECK_ERR(unlink(mp("mkdir_rmdir/empty").c_str()), EISDIR);
  CHECK_ERR(unlink(mp("mkdir_rmdir/new").c_str()), EISDIR);
  CHECK_ERR(rmdir(mp("mkdir_rmdir/missing").c_str()), ENOENT);
  CHECK_OK(rmdir(mp("mkdir_rmdir/empty").c_str()));
  CHECK(!exists(mp("mkdir_rmdir/empty")));
  CHECK_OK(mkdir(mp("mkdir_rmdir/empty").c_str(), 0700));
  CHECK_EQ(join(list_dir(mp("mkdir_rmdir/empty"))), std::string(""));
  CHECK_OK(unlink(mp("mkdir_rmdir/full/child").c_str()));
  CHECK_OK(rmdir(mp("mkdir_rmdir/full").c_str()));  // only whiteouts left: empty
  CHECK_OK(unlink(mp("mkdir_rmdir/merged/a").c_str()));
  CHECK_ERR(rmdir(mp("mkdir_rmdir/merged").c_str()), ENOTEMPTY);
  CHECK_OK(unlink(mp("mkdir_rmdir/merged/b").c_str()));
  CHECK_OK(rmdir(mp("mkdir_rmdir/merged").c_str()));
  CHECK_OK(mkdir(mp("mkdir_rmdir/merged").c_str(), 0755));
  CHECK_EQ(join(list_dir(mp("mkdir_rmdir/merged"))), std::string(""));
  CHECK_OK(rmdir(mp("mkdir_rmdir/new").c_str()));
  CHECK_EQ(join(list_dir(mp("mkdir_rmdir"))), std::string("empty file merged"));
}

void setup_rename() {
  for (auto n : {"a", "b", "c", "d", "x", "y"}) put(l1(std::string("rename/") + n), std::string(1, n[0] - 32));
  put(l1("rename/full/child"), "c");
  put(l1("rename/sub1/p"), "P");
  mkdirs(l1("rename/sub2"));
  put(l1("rename/gone/child"), "c");
  mkdirs(l1("rename/lowdir"));
}
void test_rename() {
  ino_t ino_a = st_of(mp("rename/a")).st_ino;
  CHECK_OK(rename(mp("rename/a").c_str(), mp("rename/b").c_str()));
  CHECK_EQ(got(mp("rename/b")), std::string("A"));
  CHECK(!exists(mp("rename/a")));
  CHECK_EQ(st_of(mp("rename/b")).st_ino, ino_a);
  CHECK_ERR(renameat2(AT_FDCWD, mp("rename/c").c_str(), AT_FDCWD, mp("rename/d").c_str(), RENAME_NOREPLACE), EEXIST);
  CHECK_EQ(got(mp("rename/c")), std::string("C"));
  CHECK_EQ(got(mp("rename/d")), std::string("D"));
  CHECK_OK(renameat2(AT_FDCWD, mp("rename/c").c_str(), AT_FDCWD, mp("rename/c2").c_str(), RENAME_NOREPLACE));
  CHECK_EQ(got(mp("rename/c2")), std::string("C"));
  // Exchange of two new files, then of two lower files.
  put(mp("rename/e"), "E");
  put(mp("rename/f"), "F");
  CHECK_OK(renameat2(AT_FDCWD, mp("rename/e").c_str(), AT_FDCWD, mp("rename/f").c_str(), RENAME_EXCHANGE));
  CHECK_EQ(got(mp("rename/e")), std::string("F"));
  CHECK_EQ(got(mp("rename/f")), std::string("E"));
  CHECK_OK(renameat2(AT_FDCWD, mp("rename/x").c_str(), AT_FDCWD, mp("rename/y").c_str(), RENAME_EXCHANGE));
  CHECK_EQ(got(mp("rename/x")), std::string("Y"));
  CHECK_EQ(got(mp("rename/y")), std::string("X"));
  CHECK_ERR(renameat2(AT_FDCWD, mp("rename/x").c_str(), AT_FDCWD, mp("rename/nothere").c_str(), RENAME_EXCHANGE), ENOENT);
  CHECK_ERR(rename(mp("rename/missing").c_str(), mp("rename/m2").c_str()), ENOENT);
  // Type mismatches.
  CHECK_OK(mkdir(mp("rename/newdir").c_str(), 0755));
  CHECK_ERR(rename(mp("rename/d").c_str(), mp("rename/newdir").c_str()), EISDIR);
  CHECK_ERR(rename(mp("rename/newdir").c_str(), mp("rename/d").c_str()), ENOTDIR);
  CHECK_ERR(rename(mp("rename/newdir").c_str(), mp("rename/full").c_str()), ENOTEMPTY);
  CHECK_ERR(rename(mp("rename/newdir").c_str(), mp("rename/newdir/sub").c_str()), EINVAL);
  // A new dir may replace an empty lower dir; then the lower dir's contents must not show.
  CHECK_OK(mkdir(mp("rename/newdir2").c_str(), 0755));
  put(mp("rename/newdir2/inner"), "i");
  CHECK_OK(rename(mp("rename/newdir2").c_str(), mp("rename/newdir3").c_str()));
  CHECK_EQ(got(mp("rename/newdir3/inner")), std::string("i"));
  CHECK_OK(rename(mp("rename/d").c_str(), mp("rename/d").c_str()));  // same name: no-op
  CHECK_EQ(got(mp("rename/d")), std::string("D"));
  CHECK_EQ(join(list_dir(mp("rename"))), std::string("b c2 d e f full gone lowdir newdir newdir3 sub1 sub2 x y"));
  CHECK_EQ(got(l1("rename/a")), std::string("A"));
  // Across two lower dirs: both parents get copied up.
  CHECK_OK(rename(mp("rename/sub1/p").c_str(), mp("rename/sub2/q").c_str()));
  CHECK_EQ(got(mp("rename/sub2/q")), std::string("P"));
  CHECK(!exists(mp("rename/sub1/p")));
  CHECK_EQ(join(list_dir(mp("rename/sub1"))), std::string(""));
  // A new dir renamed onto the name of a deleted lower dir must hide that dir's children.
  CHECK_OK(unlink(mp("rename/gone/child").c_str()));
  CHECK_OK(rmdir(mp("rename/gone").c_str()));
  CHECK_OK(mkdir(mp("rename/fresh").c_str(), 0755));
  put(mp("rename/fresh/mine"), "m");
  CHECK_OK(rename(mp("rename/fresh").c_str(), mp("rename/gone").c_str()));
  CHECK_EQ(join(list_dir(mp("rename/gone"))), std::string("mine"));
  CHECK(!exists(mp("rename/gone/child")));
  // A file renamed onto a deleted lower file's name; and a lower file over a lower dir's name.
  CHECK_OK(unlink(mp("rename/y").c_str()));
  CHECK_OK(rename(mp("rename/x").c_str(), mp("rename/y").c_str()));
  CHECK_EQ(got(mp("rename/y")), std::string("Y"));
  CHECK(!exists(mp("rename/x")));
  CHECK_OK(rmdir(mp("rename/lowdir").c_str()));
  CHECK_OK(rename(mp("rename/y").c_str(), mp("rename/lowdir").c_str()));
  CHECK_EQ(got(mp("rename/lowdir")), std::string("Y"));
}

void setup_link() { put(l1("link/low"), "L"); }
void test_link() {
  put(mp("link/f"), "F");
  CHECK_OK(link(mp("link/f").c_str(), mp("link/g").c_str()));
  struct stat f = st_of(mp("link/f")), g = st_of(mp("link/g"));
  CHECK_EQ(f.st_nlink, 2u);
  CHECK_EQ(g.st_nlink, 2u);
  CHECK_EQ(f.st_ino, g.st_ino);
  CHECK_EQ(got(mp("link/g")), std::string("F"));
  ino_t low_ino = st_of(mp("link/low")).st_ino;
  CHECK_OK(link(mp("link/low").c_str(), mp("link/low2").c_str()));
  CHECK_EQ(got(mp("link/low2")), std::string("L"));
  CHECK_EQ(st_of(mp("link/low")).st_nlink, 2u);
  CHECK_EQ(st_of(mp("link/low2")).st_ino, st_of(mp("link/low")).st_ino);
  CHECK_EQ(st_of(mp("link/low")).st_ino, low_ino);
  CHECK_ERR(link(mp("link/f").c_str(), mp("link/low").c_str()), EEXIST);
  CHECK_ERR(link(mp("link").c_str(), mp("link/dirlink").c_str()), EPERM);
  CHECK_ERR(link(mp("link/missing").c_str(), mp("link/m2").c_str()), ENOENT);
  CHECK_OK(unlink(mp("link/g").c_str()));
  CHECK_EQ(st_of(mp("link/f")).st_nlink, 1u);
  // A write through one name shows through the other.
  {
    Fd fd(open(mp("link/low2").c_str(), O_WRONLY | O_APPEND));
    REQUIRE(fd >= 0);
    CHECK_EQ(write(fd, "+", 1), 1);
  }
  CHECK_EQ(got(mp("link/low")), std::string("L+"));
  CHECK_EQ(got(l1("link/low")), std::string("L"));
}

void setup_symlink() { symlink("../x", l1("symlink/lowlink").c_str()); put(l1("symlink/file"), "f"); }
void test_symlink() {
  CHECK_OK(symlink("target/path", mp("symlink/s").c_str()));
  struct stat st = st_of(mp("symlink/s"));
  CHECK(S_ISLNK(st.st_mode));
  CHECK_EQ(st.st_size, 11);
  char buf[PATH_MAX] = {};
  CHECK_EQ(readlink(mp("symlink/s").c_str(), buf, sizeof buf), 11);
  CHECK_EQ(std::string(buf, 11), std::string("target/path"));
  CHECK_ERR(symlink("x", mp("symlink/s").c_str()), EEXIST);
  CHECK_ERR(symlink("x", mp("symlink/file").c_str()), EEXIST);
  CHECK_EQ(readlink(mp("symlink/lowlink").c_str(), buf, sizeof buf), 4);
  CHECK_EQ(std::string(buf, 4), std::string("../x"));
  CHECK_ERR(readlink(mp("symlink/file").c_str(), buf, sizeof buf), EINVAL);
  struct stat fst {};
  CHECK_ERR(stat(mp("symlink/s").c_str(), &fst), ENOENT);  // dangling
  CHECK_OK(symlink("file", mp("symlink/tofile").c_str()));
  CHECK_EQ(got(mp("symlink/tofile")), std::string("f"));
  std::string longtarget(4000, 'z');
  CHECK_OK(symlink(longtarget.c_str(), mp("symlink/long").c_str()));
  CHECK_EQ(readlink(mp("symlink/long").c_str(), buf, sizeof buf), 4000);
}

void test_mknod() {
  CHECK_OK(mkfifo(mp("mknod/fifo").c_str(), 0640));
  struct stat st = st_of(mp("mknod/fifo"));
  CHECK(S_ISFIFO(st.st_mode));
  CHECK_EQ(st.st_mode & 07777, 0640u);
  {
    Fd fd(open(mp("mknod/fifo").c_str(), O_RDONLY | O_NONBLOCK));
    CHECK(fd >= 0);
  }
  CHECK_OK(mknod(mp("mknod/reg").c_str(), S_IFREG | 0600, 0));
  CHECK(S_ISREG(st_of(mp("mknod/reg")).st_mode));
  if (geteuid() == 0) {
    CHECK_OK(mknod(mp("mknod/null").c_str(), S_IFCHR | 0666, makedev(1, 3)));
    st = st_of(mp("mknod/null"));
    CHECK(S_ISCHR(st.st_mode));
    CHECK_EQ(st.st_rdev, makedev(1, 3));
  }
  CHECK_ERR(mkfifo(mp("mknod/fifo").c_str(), 0640), EEXIST);
  CHECK_EQ(join(list_dir(mp("mknod"))), std::string(geteuid() == 0 ? "fifo null reg" : "fifo reg"));
}

void setup_attrs() {
  put(l1("attrs/f"), "x", 0644);
  put(l1("attrs/g"), "y", 0644);
  symlink("f", l1("attrs/link").c_str());
  timespec ts[2] = {{946684800, 111}, {946684800, 222}};
  utimensat(AT_FDCWD, l1("attrs/f").c_str(), ts, 0);
  utimensat(AT_FDCWD, l1("attrs/g").c_str(), ts, 0);
}
void test_attrs() {
  CHECK_OK(chmod(mp("attrs/f").c_str(), 0600));
  CHECK_EQ(st_of(mp("attrs/f")).st_mode & 07777, 0600u);
  CHECK_EQ(st_of(l1("attrs/f")).st_mode & 07777, 0644u);
  CHECK_OK(chmod(mp("attrs/f").c_str(), 04755));
  CHECK_EQ(st_of(mp("attrs/f")).st_mode & 07777, 04755u);
  CHECK_OK(chmod(mp("attrs").c_str(), 0711));
  CHECK_EQ(st_of(mp("attrs")).st_mode & 07777, 0711u);
  if (geteuid() == 0) {
    CHECK_OK(chown(mp("attrs/f").c_str(), 1234, 5678));
    struct stat st = st_of(mp("attrs/f"));
    CHECK_EQ(st.st_uid, 1234u);
    CHECK_EQ(st.st_gid, 5678u);
    CHECK_OK(lchown(mp("attrs/link").c_str(), 42, 43));
    CHECK_EQ(st_of(mp("attrs/link")).st_uid, 42u);
    CHECK_EQ(st_of(mp("attrs/f")).st_uid, 1234u);
    CHECK_OK(chown(mp("attrs/f").c_str(), -1, 99));
    CHECK_EQ(st_of(mp("attrs/f")).st_uid, 1234u);
    CHECK_EQ(st_of(mp("attrs/f")).st_gid, 99u);
  }
  // utimensat: UTIME_NOW sets now, UTIME_OMIT keeps.
  struct stat before = st_of(mp("attrs/g"));
  CHECK_EQ(before.st_mtim.tv_sec, 946684800);
  CHECK_EQ(before.st_mtim.tv_nsec, 222);
  timespec now_omit[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
  CHECK_OK(utimensat(AT_FDCWD, mp("attrs/g").c_str(), now_omit, 0));
  struct stat after = st_of(mp("attrs/g"));
  CHECK_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
  CHECK_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
  CHECK(labs(after.st_atim.tv_sec - time(nullptr)) < 10);
  timespec omit_set[2] = {{0, UTIME_OMIT}, {1234567890, 123456789}};
  CHECK_OK(utimensat(AT_FDCWD, mp("attrs/g").c_str(), omit_set, 0));
  struct stat after2 = st_of(mp("attrs/g"));
  CHECK_EQ(after2.st_mtim.tv_sec, 1234567890);
  CHECK_EQ(after2.st_mtim.tv_nsec, 123456789);
  CHECK_EQ(after2.st_atim.tv_sec, after.st_atim.tv_sec);
  CHECK_EQ(after2.st_atim.tv_nsec, after.st_atim.tv_nsec);
  {
    Fd fd(open(mp("attrs/g").c_str(), O_RDONLY));
    REQUIRE(fd >= 0);
    timespec both[2] = {{1000, 1}, {2000, 2}};
    CHECK_OK(futimens(fd, both));
    struct stat st {};
    CHECK_OK(fstat(fd, &st));
    CHECK_EQ(st.st_atim.tv_sec, 1000);
    CHECK_EQ(st.st_mtim.tv_sec, 2000);
    CHECK_EQ(st.st_mtim.tv_nsec, 2);
    CHECK_OK(fchmod(fd, 0604));
    CHECK_OK(fstat(fd, &st));
    CHECK_EQ(st.st_mode & 07777, 0604u);
  }
  timespec ts[2] = {{3000, 0}, {4000, 0}};
  CHECK_OK(utimensat(AT_FDCWD, mp("attrs/link").c_str(), ts, AT_SYMLINK_NOFOLLOW));
  CHECK_EQ(st_of(mp("attrs/link")).st_mtim.tv_sec, 4000);
  struct stat lg = st_of(l1("attrs/g"));
  CHECK_EQ(lg.st_mtim.tv_sec, 946684800);
  CHECK_EQ(lg.st_mode & 07777, 0644u);
  CHECK_ERR(chmod(mp("attrs/missing").c_str(), 0600), ENOENT);
}

bool has_name(const std::string& list, const std::string& name) {
  for (size_t i = 0; i < list.size(); i += strlen(list.c_str() + i) + 1)
    if (name == list.c_str() + i) return true;
  return false;
}
std::string xattr_list(const std::string& path) {
  char buf[8192];
  ssize_t n = llistxattr(path.c_str(), buf, sizeof buf);
  return n < 0 ? std::string("<failed>") : std::string(buf, n);
}

void setup_xattr() {
  put(l1("xattr/f"), "f");
  put(l1("xattr/deleted/child"), "c");
  setxattr(l1("xattr/f").c_str(), "user.lower", "low", 3, 0);
}
void test_xattr() {
  const auto f = mp("xattr/f");
  char buf[64] = {};
  CHECK_EQ(getxattr(f.c_str(), "user.lower", buf, sizeof buf), 3);
  CHECK_EQ(std::string(buf, 3), std::string("low"));
  CHECK_OK(setxattr(f.c_str(), "user.foo", "bar", 3, 0));
  CHECK_EQ(getxattr(f.c_str(), "user.foo", nullptr, 0), 3);
  CHECK_EQ(getxattr(f.c_str(), "user.foo", buf, sizeof buf), 3);
  CHECK_EQ(std::string(buf, 3), std::string("bar"));
  CHECK_ERR(getxattr(f.c_str(), "user.foo", buf, 1), ERANGE);
  CHECK_EQ(getxattr(f.c_str(), "user.lower", buf, sizeof buf), 3);  // copy-up kept the lower's xattr
  auto list = xattr_list(f);
  CHECK(has_name(list, "user.foo"));
  CHECK(has_name(list, "user.lower"));
  CHECK(list.find("trusted.overlay.") == std::string::npos);
  CHECK_ERR(setxattr(f.c_str(), "user.foo", "x", 1, XATTR_CREATE), EEXIST);
  CHECK_ERR(setxattr(f.c_str(), "user.nope", "x", 1, XATTR_REPLACE), ENODATA);
  CHECK_OK(setxattr(f.c_str(), "user.foo", "longer value", 12, XATTR_REPLACE));
  CHECK_EQ(getxattr(f.c_str(), "user.foo", buf, sizeof buf), 12);
  CHECK_OK(removexattr(f.c_str(), "user.foo"));
  CHECK_ERR(getxattr(f.c_str(), "user.foo", buf, sizeof buf), ENODATA);
  CHECK_ERR(removexattr(f.c_str(), "user.foo"), ENODATA);
  CHECK_ERR(getxattr(f.c_str(), "user.missing", buf, sizeof buf), ENODATA);
  // Internal xattrs: neither settable nor visible (DESIGN.md). Kernel overlayfs >= 6.7 instead
  // escapes them (stores trusted.overlay.overlay.*), so this part is ours only.
  if (!g_kernel) {
    CHECK(setxattr(f.c_str(), "trusted.overlay.opaque", "y", 1, 0) == -1);
    CHECK(setxattr(f.c_str(), "trusted.overlay.foo", "y", 1, 0) == -1);
    CHECK(!has_name(xattr_list(f), "trusted.overlay.opaque"));
  }
  // An opaque dir made by mkdir over a deleted lower dir hides its marker.
  CHECK_OK(unlink(mp("xattr/deleted/child").c_str()));
  CHECK_OK(rmdir(mp("xattr/deleted").c_str()));
  CHECK_OK(mkdir(mp("xattr/deleted").c_str(), 0755));
  auto dlist = xattr_list(mp("xattr/deleted"));
  CHECK(dlist.find("overlay.") == std::string::npos);
  CHECK(getxattr(mp("xattr/deleted").c_str(), "trusted.overlay.opaque", buf, sizeof buf) == -1);
  CHECK(xattr_list(mp("xattr")).find("overlay.") == std::string::npos);
  CHECK_ERR(getxattr(l1("xattr/f").c_str(), "user.foo", buf, sizeof buf), ENODATA);
  CHECK(!has_name(xattr_list(l1("xattr/f")), "user.foo"));
}

void setup_access() {
  put(l1("access/f"), "f", 0644);
  put(l1("access/x"), "x", 0755);
}
void test_access() {
  CHECK_OK(access(mp("access/f").c_str(), F_OK));
  CHECK_OK(access(mp("access/f").c_str(), R_OK | W_OK));
  CHECK_OK(access(mp("access/x").c_str(), X_OK));
  if (geteuid() == 0) CHECK_ERR(access(mp("access/f").c_str(), X_OK), EACCES);
  CHECK_ERR(access(mp("access/missing").c_str(), F_OK), ENOENT);
  CHECK_OK(access(mp("access").c_str(), R_OK | W_OK | X_OK));
  CHECK_OK(faccessat(AT_FDCWD, mp("access/x").c_str(), X_OK, AT_EACCESS));
  CHECK(!exists(up("access/f")));  // access(W_OK) does not copy up
}

void setup_fallocate() { put(l1("fallocate/low"), std::string(8192, 'L')); }
void test_fallocate() {
  {
    Fd fd(open(mp("fallocate/f").c_str(), O_CREAT | O_RDWR, 0644));
    REQUIRE(fd >= 0);
    CHECK_OK(fallocate(fd, 0, 0, 1 << 20));
    struct stat st {};
    CHECK_OK(fstat(fd, &st));
    CHECK_EQ(st.st_size, 1 << 20);
    CHECK(st.st_blocks * 512 >= (1 << 20));
    CHECK_OK(fallocate(fd, FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20));
    CHECK_OK(fstat(fd, &st));
    CHECK_EQ(st.st_size, 1 << 20);
  }
  {
    Fd fd(open(mp("fallocate/low").c_str(), O_RDWR));
    REQUIRE(fd >= 0);
    CHECK_OK(fallocate(fd, 0, 0, 16384));
    struct stat st {};
    CHECK_OK(fstat(fd, &st));
    CHECK_EQ(st.st_size, 16384);
    CHECK_OK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096));
    CHECK_OK(fstat(fd, &st));
    CHECK_EQ(st.st_size, 16384);
  }
  auto data = got(mp("fallocate/low"));
  CHECK_EQ(data.size(), 16384u);
  CHECK_EQ(data.substr(0, 4096), std::string(4096, '\0'));
  CHECK_EQ(data.substr(4096, 4096), std::string(4096, 'L'));
  CHECK_EQ(data.substr(8192), std::string(8192, '\0'));
  CHECK_EQ(got(l1("fallocate/low")), std::string(8192, 'L'));
}

constexpr off_t kMiB = 1 << 20;
void setup_seek_hole() {
  put(l1("seek_hole/sparse"), "");
  int fd = open(l1("seek_hole/sparse").c_str(), O_WRONLY);
  std::string a(4096, 'a'), b(4096, 'b');
  if (pwrite(fd, a.data(), a.size(), 0) < 0 || pwrite(fd, b.data(), b.size(), kMiB) < 0 || ftruncate(fd, 2 * kMiB) < 0)
    perror("sparse");
  close(fd);
}
// -o passthrough: the kernel does the file I/O (fuse/passthrough.h).
bool passthrough_mode() {
  const char* opts = getenv("UNIONFS_OPTS");
  return opts && std::string(opts).find("passthrough") != std::string::npos;
}

void test_seek_hole() {
  {
    Fd lfd(open(l1("seek_hole/sparse").c_str(), O_RDONLY));
    if (lseek(lfd, 0, SEEK_HOLE) != 4096) {
      std::cerr << "    (the lower file system does not report holes; skipped)\n";
      return;
    }
  }
  Fd ro(open(mp("seek_hole/sparse").c_str(), O_RDONLY));
  const int fd = ro;
  REQUIRE(fd >= 0);
  CHECK_EQ(lseek(fd, 0, SEEK_DATA), 0);
  CHECK_EQ(lseek(fd, 0, SEEK_HOLE), 4096);
  CHECK_EQ(lseek(fd, 4096, SEEK_DATA), kMiB);
  CHECK_EQ(lseek(fd, kMiB, SEEK_HOLE), kMiB + 4096);
  CHECK_ERR(lseek(fd, kMiB + 4096, SEEK_DATA), ENXIO);
  CHECK_EQ(lseek(fd, 2 * kMiB - 1, SEEK_HOLE), 2 * kMiB - 1);  // already in the trailing hole
  CHECK_ERR(lseek(fd, 2 * kMiB, SEEK_DATA), ENXIO);
  CHECK_ERR(lseek(fd, 2 * kMiB, SEEK_HOLE), ENXIO);
  // Copy-up keeps the holes (DESIGN.md; kernel overlayfs on ext4 here fills them, so ours only).
  if (g_kernel) return;
  if (passthrough_mode()) {
    // Open for reading from its lower file, which backs it in the kernel: no writer meanwhile.
    Fd w(open(mp("seek_hole/sparse").c_str(), O_RDWR));
    const int werr = errno;
    CHECK_EQ(static_cast<int>(w), -1);
    CHECK_EQ(werr, ETXTBSY);
    CHECK_ERR(truncate(mp("seek_hole/sparse").c_str(), 1), ETXTBSY);
    ro.reset();
  }
  {
    Fd wfd(open(mp("seek_hole/sparse").c_str(), O_RDWR));
    REQUIRE(wfd >= 0);
    CHECK_EQ(pwrite(wfd, "a", 1, 0), 1);
    CHECK_EQ(lseek(wfd, 0, SEEK_HOLE), 4096);
    CHECK_EQ(lseek(wfd, 4096, SEEK_DATA), kMiB);
  }
  struct stat st = st_of(up("seek_hole/sparse"));
  CHECK(st.st_ino != 0);
  CHECK_EQ(st.st_size, 2 * kMiB);
  CHECK(st.st_blocks * 512 <= 64 * 1024);
  auto data = got(mp("seek_hole/sparse"));
  CHECK_EQ(data.size(), static_cast<size_t>(2 * kMiB));
  CHECK_EQ(data.substr(kMiB, 4096), std::string(4096, 'b'));
  CHECK_EQ(data.substr(4096, 4096), std::string(4096, '\0'));
}

bool oci_mode() {
  const char* opts = getenv("UNIONFS_OPTS");
  return opts && std::string(opts).find("whiteout=oci") != std::string::npos;
}

void test_statfs() {
  struct statvfs sv {}, usv {};
  CHECK_OK(statvfs(g_mnt.c_str(), &sv));
  CHECK_OK(statvfs(g_upper.c_str(), &usv));
  CHECK(sv.f_bsize > 0);
  CHECK(sv.f_blocks > 0);
  // With OCI whiteouts a name must leave room for the ".wh." prefix.
  CHECK_EQ(sv.f_namemax, oci_mode() ? 251ul : 255ul);
  CHECK_EQ(sv.f_blocks * sv.f_frsize, usv.f_blocks * usv.f_frsize);
  CHECK_OK(statvfs(mp("statfs").c_str(), &sv));
}

void test_name_too_long() {
  struct statvfs sv {};
  CHECK_OK(statvfs(g_mnt.c_str(), &sv));
  std::string n256(256, 'n'), n255(sv.f_namemax, 'n');  // n255: the longest name allowed
  if (sv.f_namemax < 255) {
    std::string over(sv.f_namemax + 1, 'o');
    CHECK_ERR(open(mp("name_too_long/" + over).c_str(), O_CREAT | O_WRONLY, 0644), ENAMETOOLONG);
    CHECK_ERR(mkdir(mp("name_too_long/" + over).c_str(), 0755), ENAMETOOLONG);
  }
  CHECK_ERR(open(mp("name_too_long/" + n256).c_str(), O_CREAT | O_WRONLY, 0644), ENAMETOOLONG);
  struct stat st {};
  CHECK_ERR(stat(mp("name_too_long/" + n256).c_str(), &st), ENAMETOOLONG);
  CHECK_ERR(mkdir(mp("name_too_long/" + n256).c_str(), 0755), ENAMETOOLONG);
  CHECK_ERR(symlink("x", mp("name_too_long/" + n256).c_str()), ENAMETOOLONG);
  {
    Fd fd(open(mp("name_too_long/" + n255).c_str(), O_CREAT | O_WRONLY, 0644));
    CHECK(fd >= 0);
  }
  CHECK(exists(mp("name_too_long/" + n255)));
  CHECK_ERR(rename(mp("name_too_long/" + n255).c_str(), mp("name_too_long/" + n256).c_str()), ENAMETOOLONG);
  std::string longpath = mp("name_too_long/");
  while (longpath.size() <= PATH_MAX) longpath += "d/";
  CHECK_ERR(stat(longpath.c_str(), &st), ENAMETOOLONG);
  CHECK_ERR(open(longpath.c_str(), O_CREAT | O_WRONLY, 0644), ENAMETOOLONG);
}

void setup_ino_readdir() {
  for (auto n : {"a", "b", "both"}) put(l1(std::string("ino_readdir/") + n), n);
  mkdirs(l1("ino_readdir/dir"));
  put(l2("ino_readdir/both"), "l2");
  put(l2("ino_readdir/c"), "c");
  mkdirs(l2("ino_readdir/dir"));
  put(up("ino_readdir/d"), "d");
}
void test_ino_readdir() {
  put(mp("ino_readdir/e"), "e");
  CHECK_OK(chmod(mp("ino_readdir/a").c_str(), 0600));  // copied up
  std::map<std::string, ino_t> inos;
  auto names = list_dir(mp("ino_readdir"), &inos);
  CHECK_EQ(join(names), std::string("a b both c d dir e"));
  std::set<ino_t> seen;
  for (auto& [name, ino] : inos) {
    struct stat st = st_of(mp("ino_readdir/" + name));
    if (st.st_ino != ino)
      report(__FILE__, __LINE__, "d_ino of " + name + " is " + std::to_string(ino) + ", st_ino " + std::to_string(st.st_ino), 0);
    if (name != "." && !seen.insert(st.st_ino).second)
      report(__FILE__, __LINE__, "st_ino of " + name + " is not unique", 0);
  }
  // The root too.
  std::map<std::string, ino_t> root_inos;
  list_dir(g_mnt, &root_inos);
  CHECK_EQ(root_inos["ino_readdir"], st_of(mp("ino_readdir")).st_ino);
}

void setup_ino_copyup() {
  for (auto n : {"f", "g", "h", "k"}) put(l1(std::string("ino_copyup/") + n), n);
  put(l1("ino_copyup/dir/x"), "x");
  put(l2("ino_copyup/dir/y"), "y");
}
void test_ino_copyup() {
  auto ino = [](const char* n) { return st_of(mp(std::string("ino_copyup/") + n)).st_ino; };
  ino_t f = ino("f"), g = ino("g"), h = ino("h"), k = ino("k"), dir = ino("dir"), x = ino("dir/x");
  Fd rfd(open(mp("ino_copyup/g").c_str(), O_RDONLY));
  REQUIRE(rfd >= 0);
  {
    Fd fd(open(mp("ino_copyup/f").c_str(), O_WRONLY | O_APPEND));
    REQUIRE(fd >= 0);
    CHECK_EQ(write(fd, "+", 1), 1);
  }
  CHECK_EQ(ino("f"), f);
  CHECK_OK(chmod(mp("ino_copyup/g").c_str(), 0600));
  CHECK_EQ(ino("g"), g);
  struct stat st {};
  CHECK_OK(fstat(rfd, &st));
  CHECK_EQ(st.st_ino, g);
  CHECK_EQ(st.st_mode & 07777, 0600u);
  CHECK_OK(rename(mp("ino_copyup/h").c_str(), mp("ino_copyup/h2").c_str()));
  CHECK_EQ(ino("h2"), h);
  put(mp("ino_copyup/dir/new"), "n");  // copies up dir
  CHECK_EQ(ino("dir"), dir);
  CHECK_EQ(ino("dir/x"), x);
  // The kernel forgets the inodes; the numbers must survive a fresh lookup.
  sync();
  if (geteuid() == 0) {
    std::ofstream("/proc/sys/vm/drop_caches") << "2\n";
  }
  CHECK_EQ(ino("f"), f);
  CHECK_EQ(ino("g"), g);
  CHECK_EQ(ino("h2"), h);
  CHECK_EQ(ino("k"), k);
  CHECK_EQ(ino("dir"), dir);
  CHECK_EQ(ino("dir/x"), x);
}

void setup_readdir_large() {
  for (int i = 0; i < 1500; ++i) put(l1("readdir_large/a" + std::to_string(i)), "");
  for (int i = 0; i < 1500; ++i) put(l2("readdir_large/b" + std::to_string(i)), "");
  for (int i = 0; i < 500; ++i) put(l2("readdir_large/a" + std::to_string(i)), "x");
  // Kernel whiteouts (char 0/0) in l2 delete a1000..a1299.
  for (int i = 0; i < 300; ++i)
    if (mknod(l2("readdir_large/a" + std::to_string(1000 + i)).c_str(), S_IFCHR, makedev(0, 0)) != 0) perror("whiteout");
}
void test_readdir_large() {
  DIR* d = opendir(mp("readdir_large").c_str());
  REQUIRE(d != nullptr);
  std::multiset<std::string> names;
  while (dirent* e = readdir(d)) names.insert(e->d_name);
  size_t first = names.size();
  rewinddir(d);
  size_t again = 0;
  while (readdir(d)) ++again;
  closedir(d);
  std::set<std::string> unique(names.begin(), names.end());
  CHECK_EQ(names.size(), unique.size());
  CHECK_EQ(unique.size(), 2u + 1500u - 300u + 1500u);
  CHECK_EQ(again, first);
  CHECK(!unique.count("a1000"));
  CHECK(unique.count("a999"));
  // Deletions during a listing.
  for (int i = 0; i < 100; ++i) CHECK_OK(unlink(mp("readdir_large/b" + std::to_string(i)).c_str()));
  CHECK_EQ(list_dir(mp("readdir_large")).size(), 1500u - 300u + 1500u - 100u);
}

void setup_mmap() { put(l1("mmap/f"), std::string(8192, 'l')); }
void test_mmap() {
  Fd fd(open(mp("mmap/f").c_str(), O_RDWR));
  REQUIRE(fd >= 0);
  void* p = mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  REQUIRE(p != MAP_FAILED);
  memcpy(static_cast<char*>(p) + 4096, "mapped", 6);
  CHECK_OK(msync(p, 8192, MS_SYNC));
  CHECK_OK(munmap(p, 8192));
  auto data = got(mp("mmap/f"));
  CHECK_EQ(data.substr(4096, 8), std::string("mappedll"));
  CHECK_EQ(got(l1("mmap/f")), std::string(8192, 'l'));
  // A private read-only map of a lower file.
  Fd rfd(open(mp("mmap/f").c_str(), O_RDONLY));
  REQUIRE(rfd >= 0);
  void* q = mmap(nullptr, 8192, PROT_READ, MAP_PRIVATE, rfd, 0);
  REQUIRE(q != MAP_FAILED);
  CHECK_EQ(std::string(static_cast<char*>(q) + 4096, 6), std::string("mapped"));
  munmap(q, 8192);
}

// A descriptor opened for reading before its file is copied up reads the copy from then on, as
// overlayfs does (ovl_real_fdget): data read before and after, cached pages or not.
void setup_read_after_copyup() {
  std::string data(2 * kMiB, 'o');
  data.replace(0, 5, "old-0");
  data.replace(kMiB, 5, "old-1");
  put(l1("read_after_copyup/f"), data);
}
void test_read_after_copyup() {
  Fd r(open(mp("read_after_copyup/f").c_str(), O_RDONLY));
  REQUIRE(r >= 0);
  char buf[5];
  CHECK_EQ(pread(r, buf, 5, 0), 5);
  CHECK_EQ(std::string(buf, 5), std::string("old-0"));
  if (passthrough_mode()) return;  // a writer waits for the reader (passthrough.sh)
  {
    Fd w(open(mp("read_after_copyup/f").c_str(), O_WRONLY));
    REQUIRE(w >= 0);
    CHECK_EQ(pwrite(w, "new-0", 5, 0), 5);
    CHECK_EQ(pwrite(w, "new-1", 5, kMiB), 5);
  }
  // The kernel may drop the cached pages: ask for them again.
  CHECK_OK(posix_fadvise(r, 0, 0, POSIX_FADV_DONTNEED));
  CHECK_EQ(pread(r, buf, 5, kMiB), 5);
  CHECK_EQ(std::string(buf, 5), std::string("new-1"));
  CHECK_EQ(pread(r, buf, 5, 0), 5);
  CHECK_EQ(std::string(buf, 5), std::string("new-0"));
  // Nor do later opens see the lower data through the pages the old descriptor read.
  CHECK_EQ(got(mp("read_after_copyup/f")).substr(kMiB, 5), std::string("new-1"));
  CHECK_EQ(got(l1("read_after_copyup/f")).substr(0, 5), std::string("old-0"));
}

void setup_exec() {
  std::filesystem::copy_file("/bin/true", l1("exec/true"));
  chmod(l1("exec/true").c_str(), 0755);
  std::filesystem::copy_file("/bin/true", l1("exec/true2"));
  chmod(l1("exec/true2").c_str(), 0755);
}
void test_exec() {
  CHECK_EQ(run({mp("exec/true")}, 10), 0);
  CHECK_OK(chmod(mp("exec/true2").c_str(), 0700));  // copied up, then run
  CHECK_EQ(run({mp("exec/true2")}, 10), 0);
  std::filesystem::copy_file("/bin/true", mp("exec/new"));
  CHECK_OK(chmod(mp("exec/new").c_str(), 0755));
  CHECK_EQ(run({mp("exec/new")}, 10), 0);
}

void setup_dir_times() {
  put(l1("dir_times/sub/f"), "f");
  timespec ts[2] = {{1000000000, 0}, {1000000000, 0}};
  utimensat(AT_FDCWD, l1("dir_times/sub").c_str(), ts, 0);
}
void test_dir_times() {
  struct stat before = st_of(mp("dir_times/sub"));
  CHECK_EQ(before.st_mtim.tv_sec, 1000000000);
  put(mp("dir_times/sub/new"), "n");
  struct stat after = st_of(mp("dir_times/sub"));
  CHECK(after.st_mtim.tv_sec > before.st_mtim.tv_sec);
  // Copy-up of a child does not change the parent's times (overlayfs restores them).
  struct stat p0 = st_of(mp("dir_times"));
  CHECK_OK(chmod(mp("dir_times/sub/f").c_str(), 0600));
  CHECK_EQ(st_of(mp("dir_times/sub")).st_mtim.tv_sec, after.st_mtim.tv_sec);
  CHECK_EQ(st_of(mp("dir_times")).st_mtim.tv_sec, p0.st_mtim.tv_sec);
  struct stat u0 = st_of(mp("dir_times/sub"));
  sleep(1);
  CHECK_OK(unlink(mp("dir_times/sub/f").c_str()));
  CHECK(st_of(mp("dir_times/sub")).st_mtim.tv_sec > u0.st_mtim.tv_sec);
}

void setup_type_change() {
  put(l1("type_change/d/child"), "c");
  put(l1("type_change/f"), "f");
}
void test_type_change() {
  // dir -> file
  CHECK_OK(unlink(mp("type_change/d/child").c_str()));
  CHECK_OK(rmdir(mp("type_change/d").c_str()));
  put(mp("type_change/d"), "now a file");
  CHECK(S_ISREG(st_of(mp("type_change/d")).st_mode));
  CHECK_EQ(got(mp("type_change/d")), std::string("now a file"));
  // file -> dir
  CHECK_OK(unlink(mp("type_change/f").c_str()));
  CHECK_OK(mkdir(mp("type_change/f").c_str(), 0755));
  CHECK(S_ISDIR(st_of(mp("type_change/f")).st_mode));
  // file -> dir again, over the earlier dir's name: the lower children must stay hidden
  CHECK_OK(unlink(mp("type_change/d").c_str()));
  CHECK_OK(mkdir(mp("type_change/d").c_str(), 0755));
  CHECK_EQ(join(list_dir(mp("type_change/d"))), std::string(""));
  CHECK(!exists(mp("type_change/d/child")));
  // Even after the kernel forgets what it knew.
  sync();
  if (geteuid() == 0) std::ofstream("/proc/sys/vm/drop_caches") << "2\n";
  CHECK(!exists(mp("type_change/d/child")));
  CHECK_EQ(join(list_dir(mp("type_change"))), std::string("d f"));
}

struct Test {
  const char* name;
  void (*setup)();
  void (*run)();
};

const std::vector<Test>& all_tests() {
  static const std::vector<Test> tests = {
      {"stat", setup_stat, test_stat},
      {"open_excl", setup_open_excl, test_open_excl},
      {"open_trunc", setup_open_trunc, test_open_trunc},
      {"read_write", setup_read_write, test_read_write},
      {"append", setup_append, test_append},
      {"truncate", setup_truncate, test_truncate},
      {"fsync", setup_fsync, test_fsync},
      {"unlink_open", setup_unlink_open, test_unlink_open},
      {"mkdir_rmdir", setup_mkdir_rmdir, test_mkdir_rmdir},
      {"rename", setup_rename, test_rename},
      {"link", setup_link, test_link},
      {"symlink", setup_symlink, test_symlink},
      {"mknod", nullptr, test_mknod},
      {"attrs", setup_attrs, test_attrs},
      {"xattr", setup_xattr, test_xattr},
      {"access", setup_access, test_access},
      {"fallocate", setup_fallocate, test_fallocate},
      {"seek_hole", setup_seek_hole, test_seek_hole},
      {"read_after_copyup", setup_read_after_copyup, test_read_after_copyup},
      {"statfs", nullptr, test_statfs},
      {"name_too_long", nullptr, test_name_too_long},
      {"ino_readdir", setup_ino_readdir, test_ino_readdir},
      {"ino_copyup", setup_ino_copyup, test_ino_copyup},
      {"readdir_large", setup_readdir_large, test_readdir_large},
      {"mmap", setup_mmap, test_mmap},
      {"exec", setup_exec, test_exec},
      {"dir_times", setup_dir_times, test_dir_times},
      {"type_change", setup_type_change, test_type_change},
  };
  return tests;
}

}  // namespace

int main(int argc, char** argv) {
  umask(0);
  setvbuf(stdout, nullptr, _IOLBF, 0);
  std::vector<std::string> selected;
  const char* env_bin = getenv("UNIONFS_BIN");
  const char* impl = getenv("UNIONFS_IMPL");
  g_kernel = impl && std::string(impl) == "kernel";
  int argi = 1;
  if (env_bin && *env_bin) {
    g_bin = env_bin;
  } else if (!g_kernel && argc > 1) {
    g_bin = argv[argi++];
  }
  if (argi < argc && std::string(argv[argi]) == g_bin) ++argi;  // also given as argument
  for (; argi < argc; ++argi) selected.push_back(argv[argi]);
  if (!g_kernel && (g_bin.empty() || access(g_bin.c_str(), X_OK) != 0)) {
    std::cerr << "usage: syscalls_test UNIONFS_BIN [TEST...] (or set UNIONFS_BIN)\n";
    return 2;
  }
  if (!g_kernel && access("/dev/fuse", R_OK | W_OK) != 0) {
    std::cout << "SKIP: /dev/fuse not usable\n";
    return 77;
  }
  if (!g_kernel && passthrough_mode()) {
    struct utsname u{};
    int major = 0, minor = 0;
    if (uname(&u) != 0 || sscanf(u.release, "%d.%d", &major, &minor) != 2 ||
        major * 100 + minor < 609 || geteuid() != 0) {
      std::cout << "SKIP: -o passthrough needs root and Linux 6.9+\n";
      return 77;
    }
  }

  char tmpl[] = "/tmp/unionfs-syscalls.XXXXXX";
  if (!mkdtemp(tmpl)) {
    perror("mkdtemp");
    return 2;
  }
  g_root = tmpl;
  g_l1 = g_root + "/l1";
  g_l2 = g_root + "/l2";
  g_upper = g_root + "/upper";
  g_mnt = g_root + "/mnt";
  g_work = g_root + "/work";
  g_log = g_root + "/daemon.log";
  snprintf(g_mnt_c, sizeof g_mnt_c, "%s", g_mnt.c_str());
  for (auto& d : {g_l1, g_l2, g_upper, g_mnt, g_work}) mkdirs(d);

  std::vector<Test> tests;
  for (auto& t : all_tests())
    if (selected.empty() || std::find(selected.begin(), selected.end(), t.name) != selected.end()) tests.push_back(t);
  for (auto& t : tests) {
    mkdirs(l1(t.name));
    if (t.setup) t.setup();
  }
  std::string lowers_before = snapshot_lowers();

  signal(SIGALRM, on_alarm);
  int passed = 0, failed = 0;
  bool clean = true;
  {
    MountGuard guard;
    if (!mount_stack()) {
      guard.active = g_daemon > 0 || is_mounted(g_mnt);
      std::cout << "0 passed, " << tests.size() << " failed (no mount)\n";
      return 1;
    }
    guard.active = true;
    start_watchdog(kTimeLimitSeconds + 15);
    alarm(kTimeLimitSeconds);
    for (auto& t : tests) {
      g_test_failures = 0;
      std::cout << "test_" << t.name << " ..." << std::flush;
      std::cerr << std::flush;
      t.run();
      if (g_test_failures == 0) {
        ++passed;
        std::cout << " ok\n";
      } else {
        ++failed;
        std::cout << " FAILED (" << g_test_failures << " checks)\n";
      }
    }
    alarm(0);
    guard.active = false;
    clean = unmount_stack();
  }
  if (!clean) {
    std::cout << "unmount was not clean\n";
    ++failed;
  }
  if (snapshot_lowers() != lowers_before) {
    std::cout << "FAIL: the lower layers changed during the run\n";
    ++failed;
  }
  if (!is_mounted(g_mnt)) {
    std::error_code ec;
    std::filesystem::remove_all(g_root, ec);
  } else {
    std::cout << "still mounted; leaving " << g_root << "\n";
  }
  std::cout << passed << " passed, " << failed << " failed\n";
  return failed == 0 ? 0 : 1;
}
