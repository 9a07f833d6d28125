// Layer trees for bench_core, built once per process on the host filesystem and removed at exit.
//
// One pool of layer directories serves every depth: a stack of `depth` lower layers is a prefix
// of the pool, so going from depth 256 to 1024 only adds the 768 missing (almost empty) layers.
//
//   base/        the bottom layer of every stack
//     m/         f0000..f0999, "warmup", wh00..wh63 (files, whited out by top/ at depth >= 2),
//                x00..x63 (kernel whiteouts: the names whited out in the top lower layer when
//                base/ is the only lower layer, at depth 1)
//     d000..d015/  f0000..f0249: merged directories used once each (first-lookup cost)
//     big/       e000000..e099999: 100,000 entries in this one layer only (made on demand)
//   p0001../     middle layers: empty m/ and d*/ (the same dirs as base/, so they merge)
//   top/         the top lower layer at depth >= 2: m/ holds kernel whiteouts wh00..wh63
//   upper/       the optional writable upper: empty m/ and d*/
//
// Stack of depth D (D lower layers): base[:p0001...:p(D-2)][:top][:upper]. Lookups never write,
// so one upper/ serves every stack. Kernel whiteouts (char 0/0) need CAP_MKNOD; without it the
// pool has none and whiteouts() is false.
//
// A pool is normally a fresh directory removed with the object. A persistent pool (a given
// directory, kept) records each finished part as a stamp file in .stamps/, so that a later
// process reuses what an earlier one built; a layout stamp guards against a changed layout.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace unionfs_bench {

inline constexpr int kFiles = 1000;          ///< present names in base/m
inline constexpr int kWhiteouts = 64;        ///< whited-out names in m
inline constexpr int kFreshDirs = 16;        ///< merged dirs d000.. (one use per UnionFs)
inline constexpr int kFreshFiles = 250;      ///< files in base/dNNN
inline constexpr int kBigEntries = 100000;   ///< entries of base/big

inline std::string numbered(const char* prefix, int width, int i) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s%0*d", prefix, width, i);
  return buf;
}
inline std::string file_name(int i) { return numbered("f", 4, i); }
inline std::string fresh_dir_name(int i) { return numbered("d", 3, i); }
inline std::string big_name(int i) { return numbered("e", 6, i); }

class LayerPool {
 public:
  /// A fresh pool in a new directory under `parent` (which must exist), removed at the end.
  explicit LayerPool(const std::string& parent) {
    std::string tmpl = parent + "/unionfs-bench.XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) fail("mkdtemp " + tmpl);
    root_ = buf.data();
  }
  /// A persistent pool at `dir` (made if missing), reusing the parts built there before.
  static std::unique_ptr<LayerPool> persistent(const std::string& dir) {
    std::unique_ptr<LayerPool> p(new LayerPool());
    p->root_ = dir;
    p->keep_ = true;
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) fail("mkdir " + dir);
    if (::mkdir((dir + "/.stamps").c_str(), 0755) != 0 && errno != EEXIST) fail("mkdir " + dir);
    const std::string layout = "layout-" + std::to_string(kFiles) + "-" +
                               std::to_string(kWhiteouts) + "-" + std::to_string(kFreshDirs) +
                               "x" + std::to_string(kFreshFiles) + "-" +
                               std::to_string(kBigEntries) + "-v1";
    std::error_code ec;
    bool any = false, match = false;
    for (const auto& e : std::filesystem::directory_iterator(dir + "/.stamps", ec)) {
      const std::string n = e.path().filename().string();
      if (n.starts_with("layout-")) {
        any = true;
        match = match || n == layout;
      }
    }
    if (any && !match) {
      errno = EEXIST;
      fail("pool " + dir + " was built with another layout; remove it");
    }
    if (!any && std::filesystem::exists(dir + "/base")) {
      errno = EEXIST;
      fail("pool " + dir + " holds an unfinished or foreign tree; remove it");
    }
    p->stamp(layout);
    p->base_done_ = p->has_stamp("base");
    p->whiteouts_ = p->has_stamp("whiteouts");
    p->upper_done_ = p->has_stamp("upper");
    p->top_done_ = p->has_stamp("top");
    p->big_done_ = p->has_stamp("big");
    while (p->has_stamp(middle_name(p->middle_ + 1))) ++p->middle_;
    return p;
  }
  ~LayerPool() {
    if (!keep_) remove();
  }
  LayerPool(const LayerPool&) = delete;
  LayerPool& operator=(const LayerPool&) = delete;

  [[nodiscard]] const std::string& root() const { return root_; }
  [[nodiscard]] bool whiteouts() const { return whiteouts_; }

  void remove() {
    if (root_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
    root_.clear();
  }

  /// Makes every layer a stack of `depth` lower layers (plus upper/) needs.
  void ensure(int depth) {
    if (!base_done_) make_base();
    if (!upper_done_) {
      make_layer("upper", /*whiteout_m=*/false);
      upper_done_ = true;
    }
    if (depth >= 2 && !top_done_) {
      make_layer("top", /*whiteout_m=*/true);
      top_done_ = true;
    }
    while (middle_ < depth - 2) {
      make_layer(middle_name(middle_ + 1), false);
      ++middle_;
    }
  }

  /// Makes base/big (100,000 entries), once.
  void ensure_big() {
    if (!base_done_) make_base();
    if (big_done_) return;
    std::string dir = root_ + "/base/big";
    mkdir_or_fail(dir);
    int fd = open_dir(dir);
    for (int i = 0; i < kBigEntries; ++i) make_file(fd, dir, big_name(i));
    ::close(fd);
    big_done_ = true;
    stamp("big");
  }

  /// The layer spec of a stack with `depth` lower layers, bottom first.
  [[nodiscard]] std::string spec(int depth, bool upper) const {
    std::string s = root_ + "/base";
    for (int i = 1; i <= depth - 2; ++i) s += ":" + root_ + "/" + middle_name(i);
    if (depth >= 2) s += ":" + root_ + "/top";
    if (upper) s += ":" + root_ + "/upper";
    return s;
  }

  /// The i-th name whited out in the top lower layer of a stack of `depth` lower layers.
  static std::string whiteout_name(int depth, int i) {
    return numbered(depth >= 2 ? "wh" : "x", 2, i);
  }

 private:
  LayerPool() = default;
  void stamp(const std::string& name) const {
    if (!keep_) return;
    const std::string path = root_ + "/.stamps/" + name;
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) fail("create " + path);
    ::close(fd);
  }
  [[nodiscard]] bool has_stamp(const std::string& name) const {
    return ::access((root_ + "/.stamps/" + name).c_str(), F_OK) == 0;
  }

  [[noreturn]] static void fail(const std::string& what) {
    throw std::runtime_error(what + ": " + std::strerror(errno));
  }
  static std::string middle_name(int i) { return numbered("p", 4, i); }
  static void mkdir_or_fail(const std::string& path) {
    if (::mkdir(path.c_str(), 0755) != 0) fail("mkdir " + path);
  }
  static int open_dir(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail("open " + path);
    return fd;
  }
  static void make_file(int dir, const std::string& dir_path, const std::string& name) {
    if (::mknodat(dir, name.c_str(), S_IFREG | 0644, 0) != 0) fail("mknod " + dir_path + "/" + name);
  }
  /// A kernel whiteout; false (nothing made) without CAP_MKNOD.
  static bool make_whiteout(int dir, const std::string& dir_path, const std::string& name) {
    if (::mknodat(dir, name.c_str(), S_IFCHR | 0000, makedev(0, 0)) == 0) return true;
    if (errno == EPERM) return false;
    fail("mknod (whiteout) " + dir_path + "/" + name);
  }

  void make_base() {
    const std::string base = root_ + "/base";
    mkdir_or_fail(base);
    const std::string m = base + "/m";
    mkdir_or_fail(m);
    int fd = open_dir(m);
    for (int i = 0; i < kFiles; ++i) make_file(fd, m, file_name(i));
    make_file(fd, m, "warmup");
    bool wh = true;
    for (int i = 0; i < kWhiteouts; ++i) {
      make_file(fd, m, whiteout_name(2, i));
      wh = wh && make_whiteout(fd, m, whiteout_name(1, i));
    }
    ::close(fd);
    whiteouts_ = wh;
    if (wh) stamp("whiteouts");
    for (int d = 0; d < kFreshDirs; ++d) {
      const std::string dir = base + "/" + fresh_dir_name(d);
      mkdir_or_fail(dir);
      int dfd = open_dir(dir);
      for (int i = 0; i < kFreshFiles; ++i) make_file(dfd, dir, file_name(i));
      ::close(dfd);
    }
    base_done_ = true;
    stamp("base");
  }

  void make_layer(const std::string& name, bool whiteout_m) {
    const std::string layer = root_ + "/" + name;
    mkdir_or_fail(layer);
    const std::string m = layer + "/m";
    mkdir_or_fail(m);
    if (whiteout_m && whiteouts_) {
      int fd = open_dir(m);
      for (int i = 0; i < kWhiteouts; ++i) make_whiteout(fd, m, whiteout_name(2, i));
      ::close(fd);
    }
    for (int d = 0; d < kFreshDirs; ++d) mkdir_or_fail(layer + "/" + fresh_dir_name(d));
    stamp(name);
  }

  std::string root_;
  bool keep_ = false;  ///< persistent: not removed
  bool base_done_ = false, upper_done_ = false, top_done_ = false, big_done_ = false;
  bool whiteouts_ = false;
  int middle_ = 0;  ///< middle layers p0001..p<middle_> made
};

}  // namespace unionfs_bench
